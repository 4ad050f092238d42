//! The executor's configuration: one TOML file plus `INFERA_EXECUTOR_*` environment overrides, with
//! defaults that run against `infera devnet`.

use std::{net::SocketAddr, path::PathBuf};

use alloy::primitives::{Address, B256, U256, keccak256};
use infera_protocol::models::DEFAULT_MODEL;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration keys: `INFERA_EXECUTOR_RPC_URL`
/// sets `rpc_url`, `INFERA_EXECUTOR_MAX_JOBS` sets `max_jobs`, and so on. Values are read as TOML
/// (numbers, booleans, arrays) and, when that fails, as a string.
pub const ENV_PREFIX: &str = "INFERA_EXECUTOR_";

pub use infera_chain::config::ConfigError;

/// Everything the executor needs. Its `Debug` form shows the RPC URL and the endpoint with their
/// credentials masked ([`infera_chain::redact::redact_url`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The JobEscrow contract (it names the staking contract, the registry and the token).
    pub job_escrow: Option<Address>,
    /// File with the executor's hex private key; when absent, `$INFERA_PRIVATE_KEY`. Never logged.
    pub private_key_file: Option<PathBuf>,
    /// SQLite file keeping job state and the transaction log across restarts (default: the
    /// user's data directory, `<data dir>/infera/executor/<chain id>-<executor address>.sqlite`,
    /// never relative to the working directory). It belongs to one chain, one set of contracts and
    /// one executor key: the executor refuses to run on a database recorded for another.
    pub database: Option<PathBuf>,
    /// SQLite file of the embedded indexer the job loop follows the chain through (default: next
    /// to the database, `<database>.index.sqlite`).
    pub index_database: Option<PathBuf>,
    /// Address the HTTP endpoint (gateway requests, /health, /metrics) listens on.
    pub listen: SocketAddr,
    /// URL registered on-chain for gateways to reach this executor (default: `http://{listen}`).
    pub endpoint: Option<String>,
    /// Hardware profile registered on-chain (default: read from the machine).
    pub hardware: Option<String>,
    /// Executor stake to hold, in token base units; topped up at start when below.
    pub stake: U256,
    /// The models served and their prices.
    pub models: Vec<ModelConfig>,
    /// On-chain jobs worked on at once.
    pub max_jobs: usize,
    /// Requests the engine generates together (batch size). Default 1: batched decoding in
    /// mistral.rs 0.8.1 on CPU produced tokens the model does not give (see
    /// `infera_engine::EngineConfig::max_running`), and such results are slashed.
    pub max_running: usize,
    /// Requests that may wait for the engine beyond those; more are refused as busy.
    pub max_queued: usize,
    /// Gateways (signer addresses) whose requests are served; empty refuses all gateway requests.
    pub gateways: Vec<Address>,
    /// How often the chain is polled for new jobs, and for the receipts of the executor's
    /// transactions, in milliseconds.
    pub poll_interval_ms: u64,
    /// Jobs whose deadline is closer than this many seconds are not accepted.
    pub min_deadline_secs: u64,
    /// Finalize own jobs once their challenge window has passed.
    pub auto_finalize: bool,
    /// First block to scan for jobs when the database is new (default: the current head).
    pub start_block: Option<u64>,
    /// Where the model runs: `cpu` or `cuda:N` (needs the `cuda` feature).
    pub device: String,
    /// Blocks on top of a transaction's block before it counts as final (1: its own block).
    pub confirmations: u64,
    /// A transaction not mined this many seconds after its last broadcast is re-signed at the
    /// same nonce with higher fees.
    pub resubmit_after_secs: u64,
    /// Never bid more than this many wei per gas (default: no cap).
    pub max_fee_per_gas: Option<u64>,
    /// Fault injection for crash tests: abort the process right after this job stage is reached
    /// (`accepted`, `generated`), or right after broadcasting the acceptance or the submission
    /// (`accepting`, `submitting`). Never set in production.
    pub crash_after: Option<String>,
}

/// A model the executor serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The registry name; the model id is `keccak256(name)`.
    pub name: String,
    /// The GGUF file (default: the model cache, for the default model).
    pub path: Option<PathBuf>,
    /// Price per million input tokens, in token base units.
    pub input_price: u64,
    /// Price per million output tokens, in token base units.
    pub output_price: u64,
}

impl ModelConfig {
    /// The registry id.
    pub fn id(&self) -> B256 {
        keccak256(&self.name)
    }
}

impl std::fmt::Debug for ExecutorConfig {
    /// Every field, the URLs redacted: an RPC URL often carries an API key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.clone();
        shown.rpc_url = infera_chain::redact::redact_url(&self.rpc_url);
        shown.endpoint = self
            .endpoint
            .as_deref()
            .map(infera_chain::redact::redact_url);
        match serde_json::to_string(&shown) {
            Ok(fields) => write!(f, "ExecutorConfig {fields}"),
            Err(_) => f.write_str("ExecutorConfig { .. }"),
        }
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8545".into(),
            job_escrow: None,
            private_key_file: None,
            database: None,
            index_database: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8600)),
            endpoint: None,
            hardware: None,
            stake: U256::from(1_000_000_000u64), // 1,000 tokens of 6 decimals
            models: vec![ModelConfig {
                name: DEFAULT_MODEL.name.into(),
                path: None,
                input_price: 100_000,
                output_price: 400_000,
            }],
            max_jobs: 4,
            max_running: 1,
            max_queued: 16,
            gateways: Vec::new(),
            poll_interval_ms: 500,
            min_deadline_secs: 30,
            auto_finalize: true,
            start_block: None,
            device: "cpu".into(),
            confirmations: 1,
            resubmit_after_secs: 12,
            max_fee_per_gas: None,
            crash_after: None,
        }
    }
}

impl ExecutorConfig {
    /// Reads `path` (when given), applies the `INFERA_EXECUTOR_*` variables of `env`, and checks
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

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
        if self.models.is_empty() {
            return invalid("no models configured");
        }
        if self.max_jobs == 0 || self.max_running == 0 {
            return invalid("max_jobs and max_running must be at least 1");
        }
        if self.poll_interval_ms == 0 {
            return invalid("poll_interval_ms must be at least 1");
        }
        if self.confirmations == 0 || self.resubmit_after_secs == 0 {
            return invalid("confirmations and resubmit_after_secs must be at least 1");
        }
        if let Some(stage) = &self.crash_after
            && !["accepting", "accepted", "generated", "submitting"].contains(&stage.as_str())
        {
            return invalid("crash_after must be accepting, accepted, generated or submitting");
        }
        Ok(())
    }

    /// The URL advertised on-chain.
    pub fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// The transaction kind after whose broadcast `crash_after` aborts, if any.
    pub fn crash_after_broadcast(&self) -> Option<String> {
        match self.crash_after.as_deref() {
            Some("accepting") => Some("accept".into()),
            Some("submitting") => Some("submit".into()),
            _ => None,
        }
    }

    /// How the transaction manager bids and waits.
    pub fn tx_config(&self) -> infera_chain::tx::TxConfig {
        infera_chain::tx::TxConfig {
            confirmations: self.confirmations,
            resubmit_after: std::time::Duration::from_secs(self.resubmit_after_secs),
            max_fee_per_gas_cap: self.max_fee_per_gas.map(u128::from),
            // Receipts and the mempool are polled as often as the chain is for jobs.
            poll_interval: self.poll_interval(),
            ..infera_chain::tx::TxConfig::default()
        }
    }

    /// How often to poll.
    pub fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_interval_ms)
    }

    /// The embedded indexer's database for an executor whose database is `database`: the
    /// configured `index_database`, or `<database>.index.sqlite`.
    pub fn index_database(&self, database: &std::path::Path) -> PathBuf {
        self.index_database.clone().unwrap_or_else(|| {
            let mut path = database.as_os_str().to_owned();
            path.push(".index.sqlite");
            PathBuf::from(path)
        })
    }

    /// The model file of `model`: its configured path, or the cache path of the default model.
    pub fn model_path(model: &ModelConfig) -> Result<PathBuf, infera_models::ModelError> {
        match &model.path {
            Some(path) => Ok(path.clone()),
            None if model.name == DEFAULT_MODEL.name => infera_models::cached_path(&DEFAULT_MODEL),
            None => Err(infera_models::ModelError::Missing(PathBuf::from(format!(
                "<no path configured for model {}>",
                model.name
            )))),
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

    /// A configuration in a log line or an error report keeps the RPC URL's credentials out.
    #[test]
    fn debug_masks_the_urls_credentials() {
        let config = ExecutorConfig {
            rpc_url: "https://user:hunter2@mainnet.infura.io/v3/0123456789abcdef0123456789abcdef"
                .into(),
            endpoint: Some("https://executor.example/?token=s3cr3t".into()),
            ..ExecutorConfig::default()
        };
        let shown = format!("{config:?}");
        for secret in ["hunter2", "0123456789abcdef0123456789abcdef", "s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("mainnet.infura.io/v3/"), "{shown}");
        assert!(shown.contains("max_jobs"), "{shown}");
    }

    #[test]
    fn defaults_run_the_devnet() {
        let config = ExecutorConfig::load(None, env(&[])).unwrap();
        assert_eq!(config, ExecutorConfig::default());
        assert_eq!(config.endpoint(), "http://127.0.0.1:8600");
        assert_eq!(config.models[0].id(), DEFAULT_MODEL.model_id());
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("infera-exec-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("executor.toml");
        std::fs::write(
            &path,
            r#"
rpc_url = "http://10.0.0.1:8545"
max_jobs = 2
stake = "5000000"
gateways = ["0x00000000000000000000000000000000000000aa"]

[[models]]
name = "m"
path = "/models/m.gguf"
input_price = 1
output_price = 2
"#,
        )
        .unwrap();
        let config = ExecutorConfig::load(
            Some(&path),
            env(&[
                ("INFERA_EXECUTOR_MAX_JOBS", "7"),
                ("INFERA_EXECUTOR_LISTEN", "0.0.0.0:9000"),
                ("INFERA_EXECUTOR_AUTO_FINALIZE", "false"),
                ("OTHER_VARIABLE", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(config.rpc_url, "http://10.0.0.1:8545");
        assert_eq!(config.max_jobs, 7);
        assert_eq!(config.listen.port(), 9000);
        assert!(!config.auto_finalize);
        assert_eq!(config.stake, U256::from(5_000_000));
        assert_eq!(config.gateways, vec![Address::with_last_byte(0xaa)]);
        assert_eq!(config.models[0].output_price, 2);
    }

    #[test]
    fn bad_values_are_named() {
        let err = ExecutorConfig::load(None, env(&[("INFERA_EXECUTOR_MAX_JOBS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_jobs"), "{err}");
        let err = ExecutorConfig::load(None, env(&[("INFERA_EXECUTOR_NO_SUCH_KEY", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_key"), "{err}");
        let err = ExecutorConfig::load(None, env(&[("INFERA_EXECUTOR_MAX_JOBS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn crash_points_after_a_broadcast_name_the_transaction() {
        let config = |stage: &str| {
            ExecutorConfig::load(None, env(&[("INFERA_EXECUTOR_CRASH_AFTER", stage)])).unwrap()
        };
        assert_eq!(
            config("accepting").crash_after_broadcast().as_deref(),
            Some("accept")
        );
        assert_eq!(
            config("submitting").crash_after_broadcast().as_deref(),
            Some("submit")
        );
        assert_eq!(config("accepted").crash_after_broadcast(), None);
        assert!(
            ExecutorConfig::load(None, env(&[("INFERA_EXECUTOR_CRASH_AFTER", "later")])).is_err()
        );
        // The database is found from the chain and the key unless configured.
        assert_eq!(ExecutorConfig::default().database, None);
        // The embedded indexer's database sits next to the executor's unless configured.
        assert_eq!(
            ExecutorConfig::default().index_database(std::path::Path::new("/d/e.sqlite")),
            PathBuf::from("/d/e.sqlite.index.sqlite")
        );
        let tx = config("accepted").tx_config();
        assert_eq!(
            (
                tx.confirmations,
                tx.resubmit_after.as_secs(),
                tx.max_fee_per_gas_cap,
                tx.poll_interval.as_millis()
            ),
            (1, 12, None, 500)
        );
    }
}
