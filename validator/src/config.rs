//! The validator's configuration: one TOML file plus `INFERA_VALIDATOR_*` environment overrides,
//! with defaults that run against `infera devnet`.

use std::path::PathBuf;

use alloy::primitives::{Address, U256};
use infera_protocol::models::DEFAULT_MODEL;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration keys:
/// `INFERA_VALIDATOR_RPC_URL` sets `rpc_url`, `INFERA_VALIDATOR_AUDIT_RATE_PPM` sets
/// `audit_rate_ppm`, and so on. Values are read as TOML (numbers, booleans, arrays) and, when that
/// fails, as a string.
pub const ENV_PREFIX: &str = "INFERA_VALIDATOR_";

pub use infera_chain::config::ConfigError;

/// Everything the validator needs. Its `Debug` form shows the RPC URL with its credentials masked.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorConfig {
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The JobEscrow contract (it names the staking contract, the registry, the token and the
    /// dispute contract).
    pub job_escrow: Option<Address>,
    /// The dispute contract (default: the one JobEscrow names, `JobEscrow.disputes()`).
    pub disputes: Option<Address>,
    /// File with the validator's hex private key; when absent, `$INFERA_PRIVATE_KEY`. Never logged.
    pub private_key_file: Option<PathBuf>,
    /// SQLite file keeping audits, verdicts, vote salts and the transaction log across restarts
    /// (default: `<data dir>/infera/validator/<chain id>-<validator address>.sqlite`). It belongs
    /// to one chain, one set of contracts and one key: the validator refuses another's.
    pub database: Option<PathBuf>,
    /// SQLite file of the embedded indexer the validator follows the chain through (default:
    /// `<database>.index.sqlite`).
    pub index_database: Option<PathBuf>,
    /// The default model's GGUF (default: the model cache). Checked against the registry's sha256.
    pub model_path: Option<PathBuf>,
    /// Validator stake to hold, in token base units; topped up at start when below.
    pub stake: U256,
    /// Share of jobs audited, × 1e6 (default: the registry's audit rate of each job's rules
    /// version). 1,000,000 audits every job.
    pub audit_rate_ppm: Option<u32>,
    /// Jobs checked whatever the audit draw says (flagged by someone).
    pub flag_jobs: Vec<U256>,
    /// The numeric path of the check: `dense` (the fast CPU path) or `engine` (mistral.rs).
    pub score_path: String,
    /// Probability × 1e6 that a canary is planted in each `canary_period_secs` (needs
    /// `canary_executor_key`). 0: never.
    pub canary_rate_ppm: u32,
    /// The period the canary draw is made in, in seconds.
    pub canary_period_secs: u64,
    /// Canaries planted at most over the validator's lifetime (none: no limit).
    pub max_canaries: Option<u64>,
    /// File with the hex private key of the executor identity canaries are planted with (it is
    /// staked as an executor and registered for the default model at start). Never logged.
    pub canary_executor_key: Option<PathBuf>,
    /// Executor stake the canary identity holds.
    pub canary_executor_stake: U256,
    /// First block to read when the database is new (default: the current head).
    pub start_block: Option<u64>,
    /// How often the chain is polled, in milliseconds.
    pub poll_interval_ms: u64,
    /// Credits (bond refunds, rewards) are withdrawn this often, in seconds (0: never).
    pub withdraw_interval_secs: u64,
    /// Blocks on top of a transaction's block before it counts as final (1: its own block).
    pub confirmations: u64,
    /// A transaction not mined this many seconds after its last broadcast is re-signed at the
    /// same nonce with higher fees.
    pub resubmit_after_secs: u64,
    /// Never bid more than this many wei per gas (default: no cap).
    pub max_fee_per_gas: Option<u64>,
    /// Fault injection for tests only; never set in production.
    #[doc(hidden)]
    pub faults: Faults,
}

/// Faults a test injects into a validator to see the protocol punish it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[doc(hidden)]
pub struct Faults {
    /// Votes Honest on every dispute and never challenges (a lazy validator).
    pub always_approve: bool,
    /// Commits its votes and never reveals them.
    pub never_reveal: bool,
    /// Stops the validator (its `run` returns) right after its first vote commitment is mined.
    pub stop_after_commit: bool,
    /// Challenges every job it sees submitted, whatever the check says.
    pub challenge_everything: bool,
}

impl std::fmt::Debug for ValidatorConfig {
    /// Every field, the RPC URL redacted: it often carries an API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.clone();
        shown.rpc_url = infera_chain::redact::redact_url(&self.rpc_url);
        match serde_json::to_string(&shown) {
            Ok(fields) => write!(f, "ValidatorConfig {fields}"),
            Err(_) => f.write_str("ValidatorConfig { .. }"),
        }
    }
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8545".into(),
            job_escrow: None,
            disputes: None,
            private_key_file: None,
            database: None,
            index_database: None,
            model_path: None,
            stake: U256::from(1_000_000_000u64), // 1,000 tokens of 6 decimals
            audit_rate_ppm: None,
            flag_jobs: Vec::new(),
            score_path: "dense".into(),
            canary_rate_ppm: 0,
            canary_period_secs: 3_600,
            max_canaries: None,
            canary_executor_key: None,
            canary_executor_stake: U256::from(200_000_000u64),
            start_block: None,
            poll_interval_ms: 500,
            withdraw_interval_secs: 3_600,
            confirmations: 1,
            resubmit_after_secs: 12,
            max_fee_per_gas: None,
            faults: Faults::default(),
        }
    }
}

impl ValidatorConfig {
    /// Reads `path` (when given), applies the `INFERA_VALIDATOR_*` variables of `env`, and checks
    /// the result.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or value at fault.
    pub fn load(
        path: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let config: Self = infera_chain::config::load(path, env, ENV_PREFIX)?;
        config.check()?;
        Ok(config)
    }

    /// Checks values the types cannot.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.poll_interval_ms == 0 {
            return invalid("poll_interval_ms must be at least 1");
        }
        if self.confirmations == 0 || self.resubmit_after_secs == 0 {
            return invalid("confirmations and resubmit_after_secs must be at least 1");
        }
        if self.audit_rate_ppm.is_some_and(|rate| rate > 1_000_000)
            || self.canary_rate_ppm > 1_000_000
        {
            return invalid("audit_rate_ppm and canary_rate_ppm are at most 1000000");
        }
        if self.canary_rate_ppm > 0 && self.canary_executor_key.is_none() {
            return invalid("canary_rate_ppm needs canary_executor_key");
        }
        if self.canary_period_secs == 0 {
            return invalid("canary_period_secs must be at least 1");
        }
        if !["dense", "engine"].contains(&self.score_path.as_str()) {
            return invalid("score_path must be dense or engine");
        }
        Ok(())
    }

    /// How the transaction manager bids and waits.
    pub fn tx_config(&self) -> infera_chain::tx::TxConfig {
        infera_chain::tx::TxConfig {
            confirmations: self.confirmations,
            resubmit_after: std::time::Duration::from_secs(self.resubmit_after_secs),
            max_fee_per_gas_cap: self.max_fee_per_gas.map(u128::from),
            poll_interval: self.poll_interval(),
            ..infera_chain::tx::TxConfig::default()
        }
    }

    /// How often to poll.
    pub fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_interval_ms)
    }

    /// The embedded indexer's database for a validator whose database is `database`.
    pub fn index_database(&self, database: &std::path::Path) -> PathBuf {
        self.index_database.clone().unwrap_or_else(|| {
            let mut path = database.as_os_str().to_owned();
            path.push(".index.sqlite");
            PathBuf::from(path)
        })
    }

    /// The model file: the configured one, or the default model in the cache.
    ///
    /// # Errors
    /// [`infera_models::ModelError`] when the cache cannot be located.
    pub fn model_path(&self) -> Result<PathBuf, infera_models::ModelError> {
        match &self.model_path {
            Some(path) => Ok(path.clone()),
            None => infera_models::cached_path(&DEFAULT_MODEL),
        }
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
    fn defaults_run_the_devnet() {
        let config = ValidatorConfig::load(None, env(&[])).unwrap();
        assert_eq!(config, ValidatorConfig::default());
        assert_eq!(config.faults, Faults::default());
        assert_eq!(config.audit_rate_ppm, None);
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("infera-val-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("validator.toml");
        std::fs::write(
            &path,
            r#"
rpc_url = "http://10.0.0.1:8545"
audit_rate_ppm = 1000000
flag_jobs = ["7", "9"]
stake = "5000000"
score_path = "engine"

[faults]
never_reveal = true
"#,
        )
        .unwrap();
        let config = ValidatorConfig::load(
            Some(&path),
            env(&[
                ("INFERA_VALIDATOR_POLL_INTERVAL_MS", "50"),
                ("INFERA_VALIDATOR_CANARY_RATE_PPM", "0"),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(config.rpc_url, "http://10.0.0.1:8545");
        assert_eq!(config.audit_rate_ppm, Some(1_000_000));
        assert_eq!(config.flag_jobs, vec![U256::from(7), U256::from(9)]);
        assert_eq!(config.stake, U256::from(5_000_000));
        assert_eq!(config.poll_interval_ms, 50);
        assert_eq!(config.score_path, "engine");
        assert!(config.faults.never_reveal && !config.faults.always_approve);
    }

    #[test]
    fn bad_values_are_named() {
        for (key, value, named) in [
            (
                "INFERA_VALIDATOR_AUDIT_RATE_PPM",
                "2000000",
                "audit_rate_ppm",
            ),
            ("INFERA_VALIDATOR_SCORE_PATH", "gpu", "score_path"),
            (
                "INFERA_VALIDATOR_CANARY_RATE_PPM",
                "10",
                "canary_executor_key",
            ),
            ("INFERA_VALIDATOR_NO_SUCH_KEY", "1", "no_such_key"),
        ] {
            let err = ValidatorConfig::load(None, env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{key}: {err}");
        }
    }

    #[test]
    fn debug_masks_the_urls_credentials() {
        let config = ValidatorConfig {
            rpc_url: "https://user:hunter2@rpc.example/v3/0123456789abcdef0123456789abcdef".into(),
            ..ValidatorConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("0123456789abcdef0123"),
            "{shown}"
        );
        assert!(shown.contains("audit_rate_ppm"), "{shown}");
    }
}
