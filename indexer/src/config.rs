//! The indexer's configuration: one TOML file plus `INFERA_INDEXER_*` environment overrides, with
//! defaults that follow `infera devnet` into a SQLite file.

use std::{net::SocketAddr, path::Path};

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration keys:
/// `INFERA_INDEXER_DATABASE_URL` sets `database_url`, and so on. Values are read as TOML (numbers,
/// booleans) and, when that fails, as a string.
pub const ENV_PREFIX: &str = "INFERA_INDEXER_";

pub use infera_chain::config::ConfigError;

/// Everything the indexer needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexerConfig {
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The JobEscrow contract; Staking and ModelRegistry are read from it.
    pub job_escrow: Option<Address>,
    /// `sqlite://FILE` (created when missing) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// First block to index when the database is new (the deployment block saves time).
    pub start_block: Option<u64>,
    /// Address of the read API.
    pub listen: SocketAddr,
    /// How often the head is polled while following, in milliseconds.
    pub poll_interval_ms: u64,
    /// Blocks asked of `eth_getLogs` at first; grows on success, halves on provider limits.
    pub initial_block_range: u64,
    /// Most blocks asked of `eth_getLogs` at once.
    pub max_block_range: u64,
    /// `eth_getLogs` requests in flight during backfill.
    pub concurrency: usize,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8545".into(),
            job_escrow: None,
            database_url: "sqlite://infera-indexer.db".into(),
            start_block: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            poll_interval_ms: 100,
            initial_block_range: 100,
            max_block_range: 50_000,
            concurrency: 4,
        }
    }
}

impl IndexerConfig {
    /// Reads `path` (when given), applies the `INFERA_INDEXER_*` variables of `env`, and checks
    /// the result.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or value at fault.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config: Self = infera_chain::config::load(path, env, ENV_PREFIX)?;
        if config.initial_block_range == 0
            || config.max_block_range < config.initial_block_range
            || config.concurrency == 0
            || config.poll_interval_ms == 0
        {
            return Err(ConfigError::Invalid(
                "need 0 < initial_block_range <= max_block_range, concurrency >= 1, poll_interval_ms >= 1"
                    .into(),
            ));
        }
        crate::store::Backend::of(&config.database_url)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        assert_eq!(
            IndexerConfig::load(None, env(&[])).unwrap(),
            IndexerConfig::default()
        );
        let dir =
            std::env::temp_dir().join(format!("infera-indexer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("indexer.toml");
        std::fs::write(
            &path,
            "database_url = \"postgres://127.0.0.1/test\"\nconcurrency = 2\njob_escrow = \"0x00000000000000000000000000000000000000aa\"\n",
        )
        .unwrap();
        let config = IndexerConfig::load(
            Some(&path),
            env(&[
                ("INFERA_INDEXER_CONCURRENCY", "8"),
                ("INFERA_INDEXER_START_BLOCK", "12"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.database_url, "postgres://127.0.0.1/test");
        assert_eq!(config.concurrency, 8);
        assert_eq!(config.start_block, Some(12));
        assert!(config.job_escrow.is_some());
    }

    #[test]
    fn bad_values_are_named() {
        let err = IndexerConfig::load(None, env(&[("INFERA_INDEXER_DATABASE_URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql://x"), "{err}");
        let err = IndexerConfig::load(None, env(&[("INFERA_INDEXER_CONCURRENCY", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("concurrency"), "{err}");
        assert!(
            IndexerConfig::load(Some(Path::new("/nonexistent/indexer.toml")), env(&[])).is_err()
        );
    }

    #[test]
    fn a_bad_database_url_is_named_without_its_password() {
        let err = IndexerConfig::load(
            None,
            env(&[(
                "INFERA_INDEXER_DATABASE_URL",
                "mysql://indexer:hunter2@db/x",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mysql://indexer:***@db/x"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
