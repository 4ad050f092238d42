//! The Infera executor: a miner's node.
//!
//! On start it loads its models (each checked against the model registry's sha256 before
//! loading), makes sure it is staked, registered and priced on-chain, then serves:
//! - the **on-chain job market** ([`jobs`]): it accepts jobs it can serve, generates with the
//!   verifiable sampler, submits the result with its commitment and finalizes after the
//!   challenge window — resuming exactly where it was after a crash ([`store`], [`chain`]);
//! - **gateways** over HTTP ([`http`]): signed requests from allow-listed gateways, streamed back
//!   token by token and closed with an EIP-712 receipt; `/health`; `/metrics`.
//!
//! [`run`] is the whole of `infera executor`; [`withdraw`] pulls the earnings.

pub mod chain;
pub mod config;
mod hardware;
pub mod http;
pub mod jobs;
pub mod store;
pub mod telemetry;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, U256},
    signers::local::PrivateKeySigner,
};
use infera_chain::{
    deploy::ChainError,
    keys::{self, KeyError},
    market::EXECUTOR_ROLE,
};
use infera_engine::{DeviceKind, Engine, EngineConfig, EngineError};
use infera_indexer::{Indexer, IndexerConfig, IndexerError};
use infera_protocol::{SAMPLER_VERSION, models::DEFAULT_MODEL, receipt};

pub use config::{ConfigError, ExecutorConfig, ModelConfig};

use crate::{
    chain::{Chain, SendError},
    jobs::{JobLoop, LoopConfig, Served},
    store::StoreError,
};

/// Why the executor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The configuration is incomplete or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The signing key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A model could not be served.
    #[error("model {name}: {reason}")]
    Model {
        /// The model's registry name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A model failed to load (missing, corrupt or refused by mistral.rs).
    #[error("model {name}: {source}")]
    Engine {
        /// The model's registry name.
        name: String,
        /// Why.
        source: EngineError,
    },
    /// The chain refused or could not be reached.
    #[error(transparent)]
    Chain(#[from] SendError),
    /// The executor's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedded indexer, which the job loop finds jobs through, could not start or stopped on
    /// an error retrying cannot fix.
    #[error("embedded indexer ({database}): {source}")]
    Indexer {
        /// Its database file.
        database: std::path::PathBuf,
        /// Why.
        source: infera_indexer::IndexerError,
    },
    /// The HTTP endpoint could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl From<ChainError> for ExecutorError {
    fn from(error: ChainError) -> Self {
        Self::Chain(SendError::Chain(error))
    }
}

/// The process-wide Prometheus recorder (installed once; later executors in the same process, as
/// in tests, share it).
fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| telemetry::install_recorder().ok())
        .clone()
}

/// A started executor: models loaded, registered on-chain, listening.
#[derive(Debug)]
pub struct Executor {
    config: ExecutorConfig,
    chain: Arc<Chain>,
    signer: PrivateKeySigner,
    served: HashMap<B256, Served>,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    /// The transaction manager's background task (recovery, re-broadcasts, fee bumps).
    tx_task: TxTask,
}

/// The transaction manager's background task: it stops when told to or when dropped.
#[derive(Debug)]
struct TxTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TxTask {
    /// Spawns [`infera_chain::tx::TxManager::run`] for `chain`: its first pass is the recovery of
    /// transactions sent before a restart, which nobody waits for.
    fn spawn(chain: &Chain) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let manager = chain.tx().clone();
        let task = tokio::spawn(async move {
            manager
                .run(async move {
                    // Resolves when told to stop or when the sender is dropped.
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
        });
        Self { stop, task }
    }

    /// Stops the task and waits for it.
    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await
            && error.is_panic()
        {
            tracing::error!(%error, "transaction manager task panicked");
        }
    }
}

impl Executor {
    /// Loads the key, the models and the database (refusing one of another deployment), starts the
    /// transaction manager's background task — which recovers transactions sent before a crash
    /// while the executor goes on: startup never waits for them — and makes sure the executor is
    /// staked, registered and priced on-chain.
    ///
    /// # Errors
    /// [`ExecutorError`] naming what is missing or refused.
    pub async fn start(config: ExecutorConfig) -> Result<Self, ExecutorError> {
        let signer = keys::load_signer(config.private_key_file.as_deref())?;
        Self::start_with_signer(config, signer).await
    }

    /// [`Executor::start`] with a signer at hand (the devnet passes a dev account's) instead of
    /// the configured key.
    ///
    /// # Errors
    /// [`ExecutorError`] naming what is missing or refused.
    pub async fn start_with_signer(
        config: ExecutorConfig,
        signer: PrivateKeySigner,
    ) -> Result<Self, ExecutorError> {
        let job_escrow = config.job_escrow.ok_or_else(|| {
            ConfigError::Invalid(
                "job_escrow is required (the address `infera devnet` prints)".into(),
            )
        })?;
        let chain = Chain::connect(
            &config.rpc_url,
            job_escrow,
            signer.clone(),
            config.database.as_deref(),
            config.tx_config(),
        )
        .await?
        .crash_after_broadcast(config.crash_after_broadcast());
        tracing::info!(executor = %chain.address, chain_id = chain.chain_id, %job_escrow, database = %chain.store().path().display(), "executor starting");
        let tx_task = TxTask::spawn(&chain);

        let device = parse_device(&config.device)?;
        let mut served = HashMap::new();
        for model in &config.models {
            served.insert(
                model.id(),
                load_model(&chain, &config, model, device).await?,
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ExecutorError::Listen {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ExecutorError::Listen {
                addr: config.listen,
                source,
            })?;
        let executor = Self {
            chain: Arc::new(chain),
            signer,
            served,
            listener,
            local_addr,
            config,
            tx_task,
        };
        executor.register().await?;
        Ok(executor)
    }

    /// The executor's address.
    pub fn address(&self) -> Address {
        self.chain.address
    }

    /// Where the HTTP endpoint listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The executor's database file.
    pub fn database(&self) -> &std::path::Path {
        self.chain.store().path()
    }

    /// The URL registered on-chain.
    fn endpoint(&self) -> String {
        self.config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.local_addr))
    }

    /// Stakes up to the configured amount, registers the endpoint and hardware, sets prices.
    async fn register(&self) -> Result<(), ExecutorError> {
        let chain = &self.chain;
        let me = chain.address;
        // A step sent before a restart and not mined yet is awaited first, so the state read next
        // includes it (a stake still in the mempool is not sent twice).
        let stake_settled = settle_in_flight(chain, &["approve", "stake"]).await?;
        let staked = U256::from(
            chain
                .staking
                .stakeOf(me, EXECUTOR_ROLE)
                .call()
                .await
                .map_err(ChainError::from)?
                .staked,
        );
        if staked < self.config.stake && stake_settled {
            let missing = self.config.stake - staked;
            let balance = chain
                .token
                .balanceOf(me)
                .call()
                .await
                .map_err(ChainError::from)?;
            if balance < missing {
                return Err(ExecutorError::Config(ConfigError::Invalid(format!(
                    "stake {} wanted, {staked} staked, but only {balance} tokens to add",
                    self.config.stake
                ))));
            }
            let approve = chain.token.approve(*chain.staking.address(), missing);
            chain
                .send("approve", None, approve.into_transaction_request())
                .await?;
            let stake = chain.staking.stake(EXECUTOR_ROLE, missing);
            chain
                .send("stake", None, stake.into_transaction_request())
                .await?;
            tracing::info!(added = %missing, total = %self.config.stake, "staked");
        }
        let endpoint = self.endpoint();
        let hardware = self
            .config
            .hardware
            .clone()
            .unwrap_or_else(|| hardware::profile(&self.config.device));
        let register_settled = settle_in_flight(chain, &["register"]).await?;
        let profile = chain
            .staking
            .executorProfile(me)
            .call()
            .await
            .map_err(ChainError::from)?;
        if register_settled
            && (!profile.registered || profile.endpoint != endpoint || profile.hardware != hardware)
        {
            let call = chain
                .staking
                .registerExecutor(endpoint.clone(), hardware.clone());
            chain
                .send("register", None, call.into_transaction_request())
                .await?;
            tracing::info!(endpoint, hardware, "registered");
        }
        let price_settled = settle_in_flight(chain, &["price"]).await?;
        for (id, served) in self.served.iter().filter(|_| price_settled) {
            let price = chain
                .staking
                .priceOf(me, *id)
                .call()
                .await
                .map_err(ChainError::from)?;
            if !price.active
                || price.inputPerMillion != served.input_price
                || price.outputPerMillion != served.output_price
            {
                let call = chain
                    .staking
                    .setPrice(*id, served.input_price, served.output_price);
                chain
                    .send("price", None, call.into_transaction_request())
                    .await?;
                tracing::info!(model_id = %id, input_price = served.input_price, output_price = served.output_price, "price set");
            }
        }
        Ok(())
    }

    /// Serves jobs and gateway requests until `shutdown` resolves.
    ///
    /// # Errors
    /// [`ExecutorError::Listen`] when the HTTP server fails.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ExecutorError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (indexer, start_block) = self.embedded_indexer().await?;
        let index_database = self.index_database();
        let feed = indexer.store().clone();
        let mut indexer_stopped = stopped.clone();
        let mut indexing = tokio::spawn(async move {
            indexer
                .follow_until(async move {
                    let _ = indexer_stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
        let job_loop = JobLoop::new(
            Arc::clone(&self.chain),
            feed,
            self.served.clone(),
            LoopConfig {
                max_jobs: self.config.max_jobs,
                min_deadline: std::time::Duration::from_secs(self.config.min_deadline_secs),
                auto_finalize: self.config.auto_finalize,
                poll_interval: self.config.poll_interval(),
                start_block: Some(start_block),
                crash_after: self.config.crash_after.clone(),
            },
        );
        let jobs = tokio::spawn(job_loop.run(stopped.clone()));
        let pending_transactions: http::PendingCount = {
            let tx = self.chain.tx().clone();
            Arc::new(move || {
                let tx = tx.clone();
                Box::pin(async move { tx.pending_count().await.ok() })
            })
        };
        let state = Arc::new(http::HttpState {
            served: self.served.clone(),
            store: self.chain.store().clone(),
            signer: self.signer.clone(),
            domain: receipt::domain(self.chain.chain_id, *self.chain.escrow.address()),
            gateways: self.config.gateways.iter().copied().collect::<HashSet<_>>(),
            chain_id: self.chain.chain_id,
            metrics: metrics_handle(),
            provider: self.chain.provider.clone(),
            pending_transactions: Some(pending_transactions),
        });
        tracing::info!(listen = %self.local_addr, executor = %self.chain.address, "serving");
        let mut http_stopped = stopped;
        let served =
            axum::serve(self.listener, http::router(state)).with_graceful_shutdown(async move {
                let _ = http_stopped.changed().await;
            });
        let server = tokio::spawn(async move { served.await });
        // A fatal indexer error (a reorganisation below finality, a node on another chain, a
        // corrupt index) would freeze job discovery: the executor stops on it, loudly.
        let failed = tokio::select! {
            () = shutdown => None,
            joined = &mut indexing => Some(match joined {
                Ok(Ok(())) => IndexerError::Config("stopped unasked".into()),
                Ok(Err(error)) => error,
                Err(error) => IndexerError::Config(format!("task failed: {error}")),
            }),
        };
        if let Some(error) = &failed {
            tracing::error!(%error, database = %index_database.display(), "embedded indexer stopped: no new jobs can be found; the executor stops");
        }
        tracing::info!("executor stopping");
        let _ = stop.send(true);
        let _ = jobs.await;
        if failed.is_none() {
            match indexing.await {
                Ok(Err(error)) => tracing::error!(%error, "embedded indexer failed while stopping"),
                Err(error) if error.is_panic() => {
                    tracing::error!(%error, "embedded indexer task panicked")
                }
                _ => {}
            }
        }
        self.tx_task.stop().await;
        if let Some(source) = failed {
            return Err(ExecutorError::Indexer {
                database: index_database,
                source,
            });
        }
        server
            .await
            .map_err(|e| ExecutorError::Listen {
                addr: self.local_addr,
                source: std::io::Error::other(e),
            })?
            .map_err(|source| ExecutorError::Listen {
                addr: self.local_addr,
                source,
            })
    }
}

impl Executor {
    /// The embedded indexer's database file.
    fn index_database(&self) -> std::path::PathBuf {
        self.config.index_database(self.chain.store().path())
    }

    /// Connects the embedded indexer the job loop follows the chain through, on its own SQLite
    /// file, and returns it with the first block the job loop reads on a new database. It starts
    /// where the job loop stands, or at the configured start block, or (a new executor without
    /// one) at the head: history is not scanned unless asked for.
    async fn embedded_indexer(&self) -> Result<(Indexer, u64), ExecutorError> {
        use alloy::providers::Provider;
        let head = self
            .chain
            .provider
            .get_block_number()
            .await
            .map_err(SendError::from)?;
        // Not above the head: the indexer reads the header of the block before its start (even
        // when its database exists), and a chain reorganised onto a shorter branch while the
        // executor was down may not have the block after the executor's position yet.
        let start_block = match self.chain.store().next_block().await? {
            Some(next) => next,
            None => self.config.start_block.unwrap_or(head),
        }
        .min(head + 1);
        // A position above finality may lie on a branch a reorg left while the executor was down;
        // the feed then sends it back `REREAD_DEPTH` blocks. A new index database (deleted, or the
        // first run after an upgrade) must hold those blocks: it starts that far back. An existing
        // one ignores its start block.
        let hashed = self
            .chain
            .store()
            .scan_position()
            .await?
            .is_some_and(|position| position.block_hash.is_some());
        let index_from = if hashed {
            start_block.saturating_sub(infera_indexer::REREAD_DEPTH)
        } else {
            start_block
        };
        let database = self.index_database();
        let config = IndexerConfig {
            rpc_url: self.config.rpc_url.clone(),
            job_escrow: Some(*self.chain.escrow.address()),
            database_url: format!("sqlite://{}", database.display()),
            start_block: Some(index_from),
            poll_interval_ms: self.config.poll_interval_ms,
            ..IndexerConfig::default()
        };
        let indexer = Indexer::connect(config)
            .await
            .map_err(|source| ExecutorError::Indexer {
                database: database.clone(),
                source,
            })?;
        tracing::info!(database = %database.display(), block = start_block, "embedded indexer connected");
        Ok((indexer, start_block))
    }
}

/// `infera executor`: start, then serve until `shutdown` resolves.
///
/// # Errors
/// [`ExecutorError`].
pub async fn run(
    config: ExecutorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ExecutorError> {
    Executor::start(config).await?.serve(shutdown).await
}

/// `infera executor withdraw`: pulls the executor's credited earnings from the escrow. Returns the
/// amount paid (zero when nothing was credited).
///
/// # Errors
/// [`ExecutorError`].
pub async fn withdraw(config: ExecutorConfig) -> Result<U256, ExecutorError> {
    let signer = keys::load_signer(config.private_key_file.as_deref())?;
    let job_escrow = config
        .job_escrow
        .ok_or_else(|| ConfigError::Invalid("job_escrow is required".into()))?;
    let chain = Chain::connect(
        &config.rpc_url,
        job_escrow,
        signer,
        config.database.as_deref(),
        config.tx_config(),
    )
    .await?;
    // Transactions a crashed executor left behind are recovered meanwhile; the withdrawal queues
    // behind them.
    let tx_task = TxTask::spawn(&chain);
    let withdrawn = withdraw_credits(&chain).await;
    tx_task.stop().await;
    withdrawn
}

/// How long startup waits for registration transactions a previous run left in flight.
const REGISTRATION_WAIT: Duration = Duration::from_secs(120);

/// Awaits the registration transactions of `kinds` (sent for no job) that a previous run logged and
/// that are not final yet, for at most [`REGISTRATION_WAIT`]. The background transaction manager
/// re-broadcasts and bumps them. A revert or a lost nonce is only reported: the on-chain state read
/// next says whether the step is still to do. Returns `false` when one is still in flight after
/// the wait (a fee cap below the base fee, say): the caller does not send that step again (no
/// double stake) and startup goes on, so the executor never hangs on an old transaction.
async fn settle_in_flight(chain: &Chain, kinds: &[&str]) -> Result<bool, ExecutorError> {
    let settle = async {
        for &kind in kinds {
            let pending = chain
                .tx()
                .in_flight_kind(kind)
                .await
                .map_err(SendError::from)?;
            for tx in pending {
                let (tx_hash, nonce) = (tx.first_hash, tx.nonce);
                tracing::info!(%tx_hash, kind, nonce, "awaiting a registration transaction sent before a restart");
                match tx.confirmed().await {
                    Ok(receipt) => {
                        tracing::info!(tx_hash = %receipt.transaction_hash, block = receipt.block_number, kind, "registration transaction from before a restart mined");
                    }
                    Err(
                        error @ (infera_chain::tx::TxError::Reverted { .. }
                        | infera_chain::tx::TxError::Replaced { .. }),
                    ) => {
                        tracing::warn!(%tx_hash, kind, %error, "registration transaction from before a restart did not take effect");
                    }
                    Err(error) => return Err(ExecutorError::from(SendError::from(error))),
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(REGISTRATION_WAIT, settle).await {
        Ok(settled) => settled.map(|()| true),
        Err(_) => {
            tracing::warn!(
                kinds = kinds.join(","),
                waited_s = REGISTRATION_WAIT.as_secs(),
                "a registration transaction from before a restart is still in flight; not sending it again (the transaction manager keeps bumping it)"
            );
            Ok(false)
        }
    }
}

async fn withdraw_credits(chain: &Chain) -> Result<U256, ExecutorError> {
    let credits = chain
        .escrow
        .credits(chain.address)
        .call()
        .await
        .map_err(ChainError::from)?;
    if credits.is_zero() {
        return Ok(U256::ZERO);
    }
    let receipt = chain
        .send(
            "withdraw",
            None,
            chain.escrow.withdraw().into_transaction_request(),
        )
        .await?;
    // What was paid: the credit, plus any released locked credit (no-show compensation).
    let amount = receipt
        .decoded_log::<infera_chain::bindings::JobEscrow::Withdrawn>()
        .map_or(credits, |log| log.data.amount);
    tracing::info!(%amount, tx_hash = %receipt.transaction_hash, "withdrawn");
    Ok(amount)
}

fn parse_device(device: &str) -> Result<DeviceKind, ExecutorError> {
    let invalid = || ConfigError::Invalid(format!("device {device:?}: expected cpu or cuda:N"));
    match device {
        "cpu" => Ok(DeviceKind::Cpu),
        other => {
            let ordinal = other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(invalid)?;
            Ok(DeviceKind::Cuda(ordinal))
        }
    }
}

/// Checks `model` against the registry and loads it.
async fn load_model(
    chain: &Chain,
    config: &ExecutorConfig,
    model: &ModelConfig,
    device: DeviceKind,
) -> Result<Served, ExecutorError> {
    let fail = |reason: String| ExecutorError::Model {
        name: model.name.clone(),
        reason,
    };
    let entry = chain.registry.model(model.id()).call().await.map_err(|e| {
        fail(format!(
            "not in the model registry ({})",
            ChainError::from(e)
        ))
    })?;
    if !entry.terms.active {
        return Err(fail("inactive in the model registry".into()));
    }
    if entry.terms.samplerVersion != SAMPLER_VERSION {
        return Err(fail(format!(
            "registry wants sampler version {}, this executor implements {SAMPLER_VERSION}",
            entry.terms.samplerVersion
        )));
    }
    let path = ExecutorConfig::model_path(model).map_err(|e| ExecutorError::Engine {
        name: model.name.clone(),
        source: e.into(),
    })?;
    let size = (entry.weightsSha256 == DEFAULT_MODEL.sha256).then_some(DEFAULT_MODEL.size);
    let engine = Engine::load(EngineConfig {
        max_running: config.max_running,
        max_queued: config.max_queued,
        device,
        ..EngineConfig::new(path, entry.weightsSha256, size)
    })
    .await
    .map_err(|source| ExecutorError::Engine {
        name: model.name.clone(),
        source,
    })?;
    let context = engine
        .context_length()
        .map_or(entry.terms.maxContext as usize, |c| {
            c.min(entry.terms.maxContext as usize)
        });
    Ok(Served {
        engine: Arc::new(engine),
        input_price: model.input_price,
        output_price: model.output_price,
        context,
    })
}
