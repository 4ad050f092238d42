//! Loading an operator's signing key without ever printing it.

use std::path::{Path, PathBuf};

use alloy::signers::local::PrivateKeySigner;

/// Environment variable that may hold a hex private key instead of a key file.
pub const PRIVATE_KEY_ENV: &str = "INFERA_PRIVATE_KEY";

/// Why no signer could be loaded. Messages name the source, never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither a key file nor the environment variable was given.
    #[error("no private key: pass --private-key-file or set {PRIVATE_KEY_ENV}")]
    Missing,
    /// The key file could not be read.
    #[error("cannot read private key file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key is not 32 bytes of hex (an optional 0x prefix and surrounding whitespace are fine).
    #[error("the private key from {origin} is not a 32-byte hex string")]
    Invalid {
        /// Where the key came from (a path or the variable's name).
        origin: String,
    },
}

/// Loads the signer from `file` when given, else from `$INFERA_PRIVATE_KEY`.
pub fn load_signer(file: Option<&Path>) -> Result<PrivateKeySigner, KeyError> {
    let (text, origin) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
                path: path.to_owned(),
                source,
            })?;
            (text, path.display().to_string())
        }
        None => match std::env::var(PRIVATE_KEY_ENV) {
            Ok(text) => (text, PRIVATE_KEY_ENV.to_owned()),
            Err(_) => return Err(KeyError::Missing),
        },
    };
    text.trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| KeyError::Invalid { origin })
}

#[cfg(test)]
mod tests {
    use super::*;

    // anvil's first well-known dev key: public test material, never a real key.
    const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn reads_a_key_file_with_whitespace() {
        let dir = std::env::temp_dir().join(format!("infera-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, format!("  {DEV_KEY}\n")).unwrap();
        let signer = load_signer(Some(&path)).unwrap();
        assert_eq!(
            signer.address(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
                .parse::<alloy::primitives::Address>()
                .unwrap()
        );
    }

    #[test]
    fn errors_name_the_source_not_the_key() {
        let dir = std::env::temp_dir().join(format!("infera-keys-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "0xnot-a-key-but-secret-looking").unwrap();
        let message = load_signer(Some(&path)).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(
            !message.contains("secret-looking"),
            "the key must never be echoed: {message}"
        );

        let missing = load_signer(Some(&dir.join("absent"))).unwrap_err();
        assert!(matches!(missing, KeyError::Unreadable { .. }), "{missing}");
    }
}
