//! The Infera validator: it keeps executors honest (DESIGN.md §3–4).
//!
//! On start it loads the model (checked against the registry's sha256), makes sure it is staked as
//! a validator, then follows the chain through an embedded indexer:
//! - **audits**: every submitted job is drawn for audit with randomness that exists only after its
//!   commitment ([`audit::draw`]: the submission block's hash, the job and the validator) at the
//!   registry's audit rate (or the configured one), plus every flagged job; an audited job is
//!   checked teacher-forced ([`check`]) and a failed check becomes a challenge (bond and terms)
//!   inside the challenge window;
//! - **juries**: drawn as a juror, it runs the same check, commits its vote (the salt is written to
//!   its database before the commitment is sent), reveals once allowed, and resolves disputes
//!   once they can be; it draws the jury of disputes it opened;
//! - **canaries** ([`canary`]): at a configured rate it plants a job with a known-bad answer through
//!   an executor identity of its own and challenges it; jurors that approve it lose their penalty.
//!
//! Everything is in SQLite ([`store`]) and every transaction goes through the shared transaction
//! manager, so a restart resumes — and still reveals before the reveal deadline.

pub mod audit;
pub mod canary;
pub mod chain;
pub mod check;
pub mod config;
mod disputes;
pub mod store;

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, U256},
    providers::Provider,
    rpc::types::{Filter, Log},
    signers::local::PrivateKeySigner,
    sol_types::{SolEvent, SolValue},
};
use infera_chain::{
    bindings::{IJobEscrow, JobEscrow},
    deploy::ChainError,
    keys::{self, KeyError},
    tx::TxManager,
};
use infera_engine::EngineError;
use infera_indexer::{Feed, Indexer, IndexerConfig, Position};
use infera_protocol::{models::DEFAULT_MODEL, verify::Thresholds};

pub use check::Checker;
pub use config::{ConfigError, Faults, ValidatorConfig};

use crate::{
    chain::{Chain, SendError},
    store::{Audit, JobEvent, JobRow, StoreError},
};

/// Staking role of validators (`IStaking.Role.Validator`).
pub const VALIDATOR_ROLE: u8 = 1;

/// Blocks read from the indexer's feed at once.
const FEED_BLOCKS: u64 = 5_000;

/// Why the validator stopped.
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    /// The configuration is incomplete or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The model could not be loaded.
    #[error("model: {0}")]
    Engine(#[from] EngineError),
    /// The chain refused or could not be reached.
    #[error(transparent)]
    Chain(#[from] SendError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedded indexer could not start or stopped.
    #[error("embedded indexer: {0}")]
    Indexer(#[from] infera_indexer::IndexerError),
}

impl From<ChainError> for ValidatorError {
    fn from(error: ChainError) -> Self {
        Self::Chain(SendError::Chain(error))
    }
}

/// Why one step of the validator's work failed (logged; the next tick tries again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error("{}", infera_chain::redact::redact_text(&.0.to_string()))]
    Send(#[from] SendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("indexer feed: {0}")]
    Feed(#[from] infera_indexer::StoreError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Refused(String),
}

impl From<alloy::contract::Error> for StepError {
    fn from(error: alloy::contract::Error) -> Self {
        Self::Send(SendError::from(error))
    }
}

impl From<alloy::transports::RpcError<alloy::transports::TransportErrorKind>> for StepError {
    fn from(error: alloy::transports::RpcError<alloy::transports::TransportErrorKind>) -> Self {
        Self::Send(SendError::Rpc(error))
    }
}

/// A transaction manager's background task (recovery, re-broadcasts, fee bumps).
#[derive(Debug)]
struct TxTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TxTask {
    fn spawn(manager: TxManager) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            manager
                .run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
        });
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What the validator's tasks share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ValidatorConfig,
    pub(crate) chain: Chain,
    pub(crate) checker: Arc<Checker>,
    /// The canary executor identity, when configured.
    pub(crate) canary: Option<canary::CanaryExecutor>,
    /// Audit rates and thresholds per (model, rules version).
    rules: Mutex<HashMap<(B256, u32), (u32, Thresholds)>>,
    /// Set when a fault asks the validator to stop.
    pub(crate) stop: tokio::sync::watch::Sender<bool>,
}

/// A started validator: staked, its model loaded.
#[derive(Debug)]
pub struct Validator {
    inner: Arc<Inner>,
    tx_tasks: Vec<TxTask>,
}

impl Validator {
    /// Loads the key and the model, then [`Validator::start_with`].
    ///
    /// # Errors
    /// [`ValidatorError`].
    pub async fn start(config: ValidatorConfig) -> Result<Self, ValidatorError> {
        config.check()?;
        let signer = keys::load_signer(config.private_key_file.as_deref())?;
        let path: infera_engine::ScorePath = config
            .score_path
            .parse()
            .map_err(|_| ConfigError::Invalid("score_path must be dense or engine".into()))?;
        let model_path = config
            .model_path()
            .map_err(|e| ValidatorError::Engine(e.into()))?;
        let checker = Checker::load(
            model_path,
            DEFAULT_MODEL.sha256,
            Some(DEFAULT_MODEL.size).filter(|_| config.model_path.is_none()),
            path,
        )
        .await?;
        Self::start_with(config, signer, Arc::new(checker)).await
    }

    /// Connects with `signer`, checking with `checker` (loaded once per process and shared), and
    /// makes sure the validator is staked (and the canary identity, when configured, registered).
    ///
    /// # Errors
    /// [`ValidatorError`].
    pub async fn start_with(
        config: ValidatorConfig,
        signer: PrivateKeySigner,
        checker: Arc<Checker>,
    ) -> Result<Self, ValidatorError> {
        config.check()?;
        let job_escrow = config.job_escrow.ok_or_else(|| {
            ConfigError::Invalid(
                "job_escrow is required (the address `infera devnet` prints)".into(),
            )
        })?;
        let chain = Chain::connect(
            &config.rpc_url,
            job_escrow,
            config.disputes,
            signer,
            config.database.as_deref(),
            config.tx_config(),
        )
        .await?;
        tracing::info!(validator = %chain.address, chain_id = chain.chain_id, %job_escrow, disputes = %chain.disputes.address(), database = %chain.store().path().display(), "validator starting");
        let mut tx_tasks = vec![TxTask::spawn(chain.tx().clone())];
        let canary = match &config.canary_executor_key {
            Some(path) => {
                let signer = keys::load_signer(Some(path))?;
                let manager = chain.manager_for(signer, config.tx_config()).await?;
                tx_tasks.push(TxTask::spawn(manager.clone()));
                Some(canary::CanaryExecutor { manager })
            }
            None => None,
        };
        let (stop, _) = tokio::sync::watch::channel(false);
        let validator = Self {
            inner: Arc::new(Inner {
                config,
                chain,
                checker,
                canary,
                rules: Mutex::new(HashMap::new()),
                stop,
            }),
            tx_tasks,
        };
        validator.inner.stake().await?;
        if validator.inner.canary.is_some() {
            canary::register(&validator.inner).await?;
        }
        Ok(validator)
    }

    /// The validator's address.
    pub fn address(&self) -> Address {
        self.inner.chain.address
    }

    /// The validator's database.
    pub fn store(&self) -> &store::Store {
        self.inner.chain.store()
    }

    /// Follows the chain and works until `shutdown` resolves (or a fault injection stops it).
    ///
    /// # Errors
    /// [`ValidatorError::Indexer`] when the embedded indexer cannot start or stops on an error.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ValidatorError> {
        let inner = Arc::clone(&self.inner);
        let (indexer, start) = inner.embedded_indexer().await?;
        let feed = indexer.store().clone();
        let mut stopped = inner.stop.subscribe();
        // The indexer has its own signal, sent once the tasks below are stopped: a stop asked by a
        // fault injection is never mistaken for the indexer stopping by itself.
        let (stop_indexer, mut indexer_stop) = tokio::sync::watch::channel(false);
        let mut indexing = tokio::spawn(async move {
            indexer
                .follow_until(async move {
                    let _ = indexer_stop.wait_for(|stop| *stop).await;
                })
                .await
        });
        let mut tasks = tokio::task::JoinSet::new();
        {
            let inner = Arc::clone(&inner);
            tasks.spawn(async move { inner.scan_loop(feed, start).await });
        }
        {
            let inner = Arc::clone(&inner);
            tasks.spawn(async move { inner.audit_loop().await });
        }
        {
            let inner = Arc::clone(&inner);
            tasks.spawn(async move { inner.dispute_loop().await });
        }
        if inner.canary.is_some() && inner.config.canary_rate_ppm > 0 {
            let inner = Arc::clone(&inner);
            tasks.spawn(async move { canary::canary_loop(&inner).await });
        }
        let failed = tokio::select! {
            biased;
            () = shutdown => None,
            _ = stopped.wait_for(|stop| *stop) => {
                tracing::warn!("validator stopping (fault injection)");
                None
            }
            joined = &mut indexing => Some(match joined {
                Ok(Ok(())) => infera_indexer::IndexerError::Config("stopped unasked".into()),
                Ok(Err(error)) => error,
                Err(error) => infera_indexer::IndexerError::Config(format!("task failed: {error}")),
            }),
        };
        let _ = inner.stop.send(true);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let _ = stop_indexer.send(true);
        if failed.is_none() {
            let _ = indexing.await;
        }
        for task in self.tx_tasks {
            task.stop().await;
        }
        tracing::info!("validator stopped");
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

/// `infera validator`: start, then serve until `shutdown` resolves.
///
/// # Errors
/// [`ValidatorError`].
pub async fn run(
    config: ValidatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ValidatorError> {
    Validator::start(config).await?.serve(shutdown).await
}

/// Longest a stake top-up waits for pending jury draws before the validator serves without it.
const STAKE_DRAW_WAIT: Duration = Duration::from_secs(120);

impl Inner {
    /// Sleeps one poll interval, or returns `false` when the validator stops.
    async fn pause(&self, delay: Duration) -> bool {
        let mut stopped = self.stop.subscribe();
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => false,
            () = tokio::time::sleep(delay) => true,
        }
    }

    /// Stakes up to the configured amount (approve + stake, awaited; steps in flight from before a
    /// restart are awaited first, so nothing is staked twice).
    async fn stake(&self) -> Result<(), ValidatorError> {
        let chain = &self.chain;
        let me = chain.address;
        settle_in_flight(chain.tx(), &["approve-stake", "stake"]).await?;
        let staked = U256::from(
            chain
                .staking
                .stakeOf(me, VALIDATOR_ROLE)
                .call()
                .await
                .map_err(SendError::from)?
                .staked,
        );
        if staked >= self.config.stake {
            return Ok(());
        }
        let missing = self.config.stake - staked;
        let balance = chain
            .token
            .balanceOf(me)
            .call()
            .await
            .map_err(SendError::from)?;
        if balance < missing {
            return Err(ConfigError::Invalid(format!(
                "stake {} wanted, {staked} staked, but only {balance} tokens to add",
                self.config.stake
            ))
            .into());
        }
        // Validator stake cannot move while a jury draw is pending (Staking refuses with
        // `DrawPending`, so nobody shifts the draw's weights after seeing its block hash): wait for
        // the draw, at most STAKE_DRAW_WAIT; then serve with the stake there is, and say so.
        let waiting_since = std::time::Instant::now();
        loop {
            let pending = chain
                .disputes
                .pendingDraws()
                .call()
                .await
                .map_err(SendError::from)?;
            if pending.is_zero() {
                break;
            }
            if waiting_since.elapsed() >= STAKE_DRAW_WAIT {
                tracing::warn!(staked = %staked, wanted = %self.config.stake, pending_draws = %pending,
                    "jury draws still pending: stake not topped up this time");
                return Ok(());
            }
            tracing::info!(pending_draws = %pending, "a jury draw is pending: staking waits for it");
            if !self.pause(Duration::from_secs(2)).await {
                return Ok(());
            }
        }
        let approve = chain.token.approve(*chain.staking.address(), missing);
        chain
            .send("approve-stake", approve.into_transaction_request())
            .await?;
        let stake = chain.staking.stake(VALIDATOR_ROLE, missing);
        let receipt = chain
            .send("stake", stake.into_transaction_request())
            .await?;
        tracing::info!(added = %missing, total = %self.config.stake, tx_hash = %receipt.transaction_hash, "staked as validator");
        Ok(())
    }

    /// The embedded indexer on its own SQLite file, and the position to read from on a new
    /// database.
    async fn embedded_indexer(&self) -> Result<(Indexer, Position), ValidatorError> {
        let head = self
            .chain
            .provider
            .get_block_number()
            .await
            .map_err(SendError::from)?;
        let position = self.chain.store().position().await?;
        let start = match position {
            Some(position) => position.block_number + 1,
            None => self.config.start_block.unwrap_or(head),
        }
        .min(head + 1);
        let hashed = position.is_some_and(|p| p.block_hash.is_some());
        let index_from = if hashed {
            start.saturating_sub(infera_indexer::REREAD_DEPTH)
        } else {
            start
        };
        let database = self.config.index_database(self.chain.store().path());
        let indexer = Indexer::connect(IndexerConfig {
            rpc_url: self.config.rpc_url.clone(),
            job_escrow: Some(*self.chain.escrow.address()),
            database_url: format!("sqlite://{}", database.display()),
            start_block: Some(index_from),
            poll_interval_ms: self.config.poll_interval_ms,
            ..IndexerConfig::default()
        })
        .await?;
        Ok((indexer, position.unwrap_or(Position::before(start))))
    }

    // ------------------------------------------------------------------ following the chain

    async fn scan_loop(self: Arc<Self>, feed: infera_indexer::Store, start: Position) {
        let mut position = start;
        loop {
            match self.scan(&feed, position).await {
                Ok(next) => position = next,
                Err(error) => tracing::warn!(%error, "reading the chain failed; trying again"),
            }
            if !self.pause(self.config.poll_interval()).await {
                return;
            }
        }
    }

    /// Reads the escrow's events after `position` into the store (the audit draw made for each
    /// submission) until caught up; returns the new position.
    async fn scan(
        &self,
        feed: &infera_indexer::Store,
        mut position: Position,
    ) -> Result<Position, StepError> {
        const FOLLOWED: [B256; 3] = [
            JobEscrow::JobPosted::SIGNATURE_HASH,
            JobEscrow::JobAccepted::SIGNATURE_HASH,
            JobEscrow::ResultSubmitted::SIGNATURE_HASH,
        ];
        let escrow = [*self.chain.escrow.address()];
        for _ in 0..64 {
            let (logs, next) = match feed
                .feed(
                    self.chain.chain_id,
                    position,
                    &escrow,
                    &FOLLOWED,
                    FEED_BLOCKS,
                )
                .await?
            {
                Feed::Logs { logs, next } => (logs, next),
                Feed::Reorged { ancestor } => {
                    tracing::warn!(
                        block = position.block_number,
                        ancestor = ancestor.block_number,
                        "chain reorganised; reading again"
                    );
                    self.chain.store().record(&[], ancestor).await?;
                    position = ancestor;
                    continue;
                }
            };
            if next == position {
                break;
            }
            let mut events = Vec::new();
            for log in &logs {
                if let Some(event) = self.decode(log).await? {
                    events.push(event);
                }
            }
            self.chain.store().record(&events, next).await?;
            position = next;
        }
        Ok(position)
    }

    async fn decode(&self, log: &Log) -> Result<Option<JobEvent>, StepError> {
        let block = log.block_number.unwrap_or_default();
        if let Ok(posted) = log.log_decode::<JobEscrow::JobPosted>() {
            let posted = posted.inner.data;
            return Ok(Some(JobEvent::Posted {
                job_id: posted.jobId,
                job: posted.job,
                prompt: posted.prompt,
                block,
            }));
        }
        if let Ok(accepted) = log.log_decode::<JobEscrow::JobAccepted>() {
            let accepted = accepted.inner.data;
            return Ok(Some(JobEvent::Accepted {
                job_id: accepted.jobId,
                assignment: accepted.assignment,
            }));
        }
        let Ok(submitted) = log.log_decode::<JobEscrow::ResultSubmitted>() else {
            return Ok(None);
        };
        let submitted = submitted.inner.data;
        let job_id = submitted.jobId;
        let block_hash = log.block_hash.unwrap_or_default();
        let audit = self
            .audit_draw(job_id, &submitted.settlement, block_hash)
            .await?;
        Ok(Some(JobEvent::Submitted {
            job_id,
            result: result_of(&submitted),
            settlement: submitted.settlement,
            block,
            block_hash,
            audit,
        }))
    }

    /// Whether this validator audits job `job_id` submitted in block `block_hash`.
    async fn audit_draw(
        &self,
        job_id: U256,
        settlement: &IJobEscrow::Settlement,
        block_hash: B256,
    ) -> Result<Audit, StepError> {
        let me = self.chain.address;
        if settlement.executor == me
            || settlement.requester == me
            || self
                .canary
                .as_ref()
                .is_some_and(|c| c.manager.address() == settlement.executor)
        {
            return Ok(Audit::Own);
        }
        if self.config.faults.challenge_everything || self.config.flag_jobs.contains(&job_id) {
            return Ok(Audit::Due);
        }
        let rate = match self.config.audit_rate_ppm {
            Some(rate) => rate,
            None => {
                let row = match self.chain.store().job(job_id).await? {
                    Some(row) => Some(row),
                    // Posted before the validator followed the chain: read from its events.
                    None => self.job(job_id).await?,
                };
                match row {
                    Some(row) => self.rules(&row.job).await?.0,
                    None => {
                        return Err(StepError::Refused(format!(
                            "job {job_id} submitted but never posted"
                        )));
                    }
                }
            }
        };
        Ok(if audit::selected(block_hash, job_id, me, rate) {
            tracing::info!(job_id = %job_id, rate_ppm = rate, "job drawn for audit");
            Audit::Due
        } else {
            Audit::Skipped
        })
    }

    /// The audit rate and thresholds of `job`'s rules version.
    async fn rules(&self, job: &IJobEscrow::Job) -> Result<(u32, Thresholds), StepError> {
        let key = (job.spec.modelId, job.rulesVersion);
        if let Some(rules) = self.rules.lock().ok().and_then(|r| r.get(&key).copied()) {
            return Ok(rules);
        }
        let rules = self
            .chain
            .registry
            .rulesAt(job.spec.modelId, job.rulesVersion)
            .call()
            .await?;
        let value = (
            rules.auditRatePpm,
            Thresholds {
                max_margin_ppm: rules.thresholds.maxMarginPpm,
                max_flip_rate_ppm: rules.thresholds.maxFlipRatePpm,
            },
        );
        if let Ok(mut cache) = self.rules.lock() {
            cache.insert(key, value);
        }
        Ok(value)
    }

    // ------------------------------------------------------------------ audits

    async fn audit_loop(self: Arc<Self>) {
        loop {
            if let Err(error) = self.audit_due().await {
                tracing::warn!(%error, "audit pass failed; trying again");
            }
            if !self.pause(self.config.poll_interval()).await {
                return;
            }
        }
    }

    /// Checks the jobs drawn for audit and challenges those found faulty.
    async fn audit_due(&self) -> Result<(), StepError> {
        let store = self.chain.store();
        for job in store.jobs_with(Audit::Fraud).await? {
            self.challenge_job(&job).await?;
        }
        for job in store.jobs_with(Audit::Due).await? {
            let job_id = job.job_id;
            let Some(settlement) = &job.settlement else {
                continue;
            };
            if self.chain.now().await? >= settlement.challengeEnd {
                tracing::warn!(job_id = %job_id, "challenge window closed before the audit");
                store.set_audit(job_id, Audit::Missed, None).await?;
                continue;
            }
            let faults = &self.config.faults;
            if faults.always_approve {
                store
                    .set_audit(
                        job_id,
                        Audit::Honest,
                        Some("{\"approved\":\"without a check\"}"),
                    )
                    .await?;
                continue;
            }
            if faults.challenge_everything {
                store
                    .set_audit(
                        job_id,
                        Audit::Fraud,
                        Some("{\"challenged\":\"without a check\"}"),
                    )
                    .await?;
            } else {
                let (honest, verdict) = match self.verdict(&job).await {
                    Ok(found) => found,
                    Err(StepError::Refused(reason)) => {
                        store
                            .set_audit(job_id, Audit::Failed, Some(&reason))
                            .await?;
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                let audit = if honest { Audit::Honest } else { Audit::Fraud };
                tracing::info!(job_id = %job_id, verdict = audit.as_str(), "audited");
                store.set_audit(job_id, audit, Some(&verdict)).await?;
                if honest {
                    continue;
                }
            }
            if let Some(job) = store.job(job_id).await? {
                self.challenge_job(&job).await?;
            }
        }
        Ok(())
    }

    /// Runs the check on a stored job: `(honest, verdict as JSON)`. A job whose record cannot be
    /// made into a transcript is judged faulty.
    pub(crate) async fn verdict(&self, job: &JobRow) -> Result<(bool, String), StepError> {
        let (Some(assignment), Some(result), Some(settlement)) =
            (&job.assignment, &job.result, &job.settlement)
        else {
            return Err(StepError::Refused(format!(
                "job {} has no complete record",
                job.job_id
            )));
        };
        let (_, thresholds) = self.rules(&job.job).await?;
        let transcript =
            match check::transcript(&job.job, &job.prompt, assignment, result, settlement) {
                Ok(transcript) => transcript,
                Err(error) => {
                    return Ok((
                        false,
                        serde_json::json!({ "malformed": error.to_string() }).to_string(),
                    ));
                }
            };
        let started = std::time::Instant::now();
        let verdict = match self.checker.check(&transcript, thresholds).await {
            Ok(verdict) => verdict,
            // Ids no model can score (outside the vocabulary, beyond the context): no honest
            // executor submits them. Any other failure decides nothing and is retried.
            Err(error @ (EngineError::InvalidRequest(_) | EngineError::ContextExceeded { .. })) => {
                tracing::warn!(job_id = %job.job_id, %error, "result cannot be scored: judged faulty");
                return Ok((
                    false,
                    serde_json::json!({ "unscorable": error.to_string() }).to_string(),
                ));
            }
            Err(error) => return Err(error.into()),
        };
        tracing::info!(
            job_id = %job.job_id,
            honest = verdict.is_honest(),
            failed_rules = ?verdict.failed_rules,
            max_margin = verdict.max_margin,
            positions = verdict.positions_checked,
            check_ms = started.elapsed().as_millis() as u64,
            "checked"
        );
        let json = serde_json::to_string(&verdict).unwrap_or_default();
        Ok((verdict.is_honest(), json))
    }

    /// Challenges a job found faulty: bond approved, `challenge(escrow, jobId, settlement)`.
    pub(crate) async fn challenge_job(&self, job: &JobRow) -> Result<(), StepError> {
        let job_id = job.job_id;
        let store = self.chain.store();
        let Some(settlement) = &job.settlement else {
            return Ok(());
        };
        let escrow = *self.chain.escrow.address();
        let existing = self
            .chain
            .disputes
            .disputeOfClaim(escrow, job_id)
            .call()
            .await?;
        if !existing.is_zero() {
            let ours = self
                .chain
                .disputes
                .disputeOf(existing)
                .call()
                .await?
                .challenger
                == self.chain.address;
            store.follow_dispute(existing, job_id, ours).await?;
            store
                .set_audit(
                    job_id,
                    if ours {
                        Audit::Challenged
                    } else {
                        Audit::Missed
                    },
                    None,
                )
                .await?;
            return Ok(());
        }
        if self.chain.now().await? >= settlement.challengeEnd {
            store.set_audit(job_id, Audit::Missed, None).await?;
            return Ok(());
        }
        let bond = self.chain.disputes.bond().call().await?;
        let disputes = *self.chain.disputes.address();
        let allowance = self
            .chain
            .token
            .allowance(self.chain.address, disputes)
            .call()
            .await?;
        if allowance < bond {
            let approve = self.chain.token.approve(disputes, bond);
            self.chain
                .step("approve-bond", job_id, approve.into_transaction_request())
                .await?;
        }
        let terms = alloy::primitives::Bytes::from(settlement.abi_encode());
        let call = self.chain.disputes.challenge(escrow, job_id, terms);
        let receipt = match self
            .chain
            .step("challenge", job_id, call.into_transaction_request())
            .await
        {
            Ok(receipt) => receipt,
            Err(SendError::Chain(error)) => {
                tracing::warn!(job_id = %job_id, %error, "challenge refused");
                store.set_audit(job_id, Audit::Missed, None).await?;
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let challenged = receipt
            .decoded_log::<infera_chain::bindings::Disputes::Challenged>()
            .map(|log| log.data)
            .ok_or_else(|| StepError::Refused("challenge emitted no Challenged".into()))?;
        store
            .follow_dispute(challenged.disputeId, job_id, true)
            .await?;
        store.set_audit(job_id, Audit::Challenged, None).await?;
        tracing::info!(job_id = %job_id, dispute_id = %challenged.disputeId, tx_hash = %receipt.transaction_hash, block = receipt.block_number, bond = %challenged.bond, "challenged");
        Ok(())
    }

    /// The stored job, or (posted before this validator followed the chain) read from the escrow's
    /// events and stored.
    pub(crate) async fn job(&self, job_id: U256) -> Result<Option<JobRow>, StepError> {
        let store = self.chain.store();
        if let Some(job) = store.job(job_id).await?
            && job.settlement.is_some()
            && job.assignment.is_some()
        {
            return Ok(Some(job));
        }
        let filter = Filter::new()
            .address(*self.chain.escrow.address())
            .event_signature(vec![
                JobEscrow::JobPosted::SIGNATURE_HASH,
                JobEscrow::JobAccepted::SIGNATURE_HASH,
                JobEscrow::ResultSubmitted::SIGNATURE_HASH,
            ])
            .topic1(B256::from(job_id))
            .from_block(0);
        let logs = self.chain.provider.get_logs(&filter).await?;
        let mut row: Option<JobRow> = None;
        for log in &logs {
            if let Ok(posted) = log.log_decode::<JobEscrow::JobPosted>() {
                let posted = posted.inner.data;
                row = Some(JobRow {
                    job_id,
                    job: posted.job,
                    prompt: posted.prompt,
                    posted_block: log.block_number.unwrap_or_default(),
                    assignment: None,
                    result: None,
                    settlement: None,
                    submitted: None,
                    audit: Audit::None,
                    verdict: None,
                });
            } else if let Ok(accepted) = log.log_decode::<JobEscrow::JobAccepted>() {
                if let Some(row) = &mut row {
                    row.assignment = Some(accepted.inner.data.assignment);
                }
            } else if let Ok(submitted) = log.log_decode::<JobEscrow::ResultSubmitted>()
                && let Some(row) = &mut row
            {
                let submitted = submitted.inner.data;
                row.result = Some(result_of(&submitted));
                row.settlement = Some(submitted.settlement);
                row.submitted = Some((
                    log.block_number.unwrap_or_default(),
                    log.block_hash.unwrap_or_default(),
                ));
            }
        }
        if let Some(row) = &row {
            store.put_job(row).await?;
        }
        Ok(row)
    }
}

/// The result a `ResultSubmitted` event carries.
pub(crate) fn result_of(submitted: &JobEscrow::ResultSubmitted) -> IJobEscrow::Result {
    IJobEscrow::Result {
        inputTokens: submitted.inputTokens,
        finishReason: submitted.finishReason,
        promptTokensHash: submitted.promptTokensHash,
        outputTokens: submitted.outputTokens.clone(),
        output: submitted.output.clone(),
    }
}

/// How long startup waits for registration transactions a previous run left in flight.
const REGISTRATION_WAIT: Duration = Duration::from_secs(120);

/// Awaits transactions of `kinds` (sent for no job) a previous run left in flight, for at most
/// [`REGISTRATION_WAIT`]; a revert is only reported (the state read next says what is left to do).
pub(crate) async fn settle_in_flight(tx: &TxManager, kinds: &[&str]) -> Result<(), ValidatorError> {
    let settle = async {
        for &kind in kinds {
            for pending in tx.in_flight_kind(kind).await.map_err(SendError::from)? {
                let tx_hash = pending.first_hash;
                tracing::info!(%tx_hash, kind, "awaiting a transaction sent before a restart");
                if let Err(error) = pending.confirmed().await {
                    tracing::warn!(%tx_hash, kind, %error, "transaction from before a restart did not take effect");
                }
            }
        }
        Ok::<(), ValidatorError>(())
    };
    match tokio::time::timeout(REGISTRATION_WAIT, settle).await {
        Ok(settled) => settled,
        Err(_) => {
            tracing::warn!(
                kinds = kinds.join(","),
                "a transaction from before a restart is still in flight; going on"
            );
            Ok(())
        }
    }
}

/// `infera validator withdraw`: pulls the validator's credits from the dispute contract (bonds,
/// rewards) and the escrow (canary refunds). Returns the total paid.
///
/// # Errors
/// [`ValidatorError`].
pub async fn withdraw(config: ValidatorConfig) -> Result<U256, ValidatorError> {
    let signer = keys::load_signer(config.private_key_file.as_deref())?;
    let job_escrow = config
        .job_escrow
        .ok_or_else(|| ConfigError::Invalid("job_escrow is required".into()))?;
    let chain = Chain::connect(
        &config.rpc_url,
        job_escrow,
        config.disputes,
        signer,
        config.database.as_deref(),
        config.tx_config(),
    )
    .await?;
    let task = TxTask::spawn(chain.tx().clone());
    let paid = withdraw_credits(&chain).await;
    task.stop().await;
    paid
}

/// Withdraws what the dispute contract and the escrow credit the validator.
pub(crate) async fn withdraw_credits(chain: &Chain) -> Result<U256, ValidatorError> {
    let mut paid = U256::ZERO;
    let credits = chain
        .disputes
        .credits(chain.address)
        .call()
        .await
        .map_err(SendError::from)?;
    if !credits.is_zero() {
        let receipt = chain
            .send(
                "withdraw-disputes",
                chain.disputes.withdraw().into_transaction_request(),
            )
            .await?;
        tracing::info!(amount = %credits, tx_hash = %receipt.transaction_hash, "dispute credits withdrawn");
        paid += credits;
    }
    let credits = chain
        .escrow
        .credits(chain.address)
        .call()
        .await
        .map_err(SendError::from)?;
    if !credits.is_zero() {
        let receipt = chain
            .send(
                "withdraw-escrow",
                chain.escrow.withdraw().into_transaction_request(),
            )
            .await?;
        let amount = receipt
            .decoded_log::<JobEscrow::Withdrawn>()
            .map_or(credits, |log| log.data.amount);
        tracing::info!(%amount, tx_hash = %receipt.transaction_hash, "escrow credits withdrawn");
        paid += amount;
    }
    Ok(paid)
}
