//! How every Infera service reads its configuration: one TOML file plus environment overrides
//! (`<PREFIX><KEY>`, e.g. `INFERA_INDEXER_DATABASE_URL` sets `database_url`), with defaults that run
//! the devnet. Override values are read as TOML (numbers, booleans, arrays) and, when that fails,
//! as a string.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Reads `path` (when given; the type's defaults fill what it leaves out) and applies the variables
/// of `env` that start with `prefix`.
///
/// # Errors
/// [`ConfigError`] naming the file, key or value at fault.
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    prefix: &str,
) -> Result<T, ConfigError> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?,
        None => String::new(),
    };
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    for (name, raw) in env {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(raw));
        table.insert(key.to_ascii_lowercase(), value);
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))
}
