//! The on-chain job loop: find jobs, accept those this executor can serve, generate, submit the
//! result, and finalize after the challenge window.
//!
//! Every step is recorded in the [`Store`] before the next begins and every transaction goes
//! through the write-ahead log of [`Chain`], so the loop can be killed at any point: on restart it
//! re-reads the chain and carries on from the last recorded stage, never sending a step twice.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::Provider,
    rpc::types::{Filter, Log},
    sol_types::SolEvent,
};
use infera_chain::bindings::{IJobEscrow, JobEscrow};
use infera_chain::market::EXECUTOR_ROLE;
use infera_engine::{Engine, GenerateRequest, Reservation};
use infera_indexer::{Feed, Position};
use infera_protocol::{SAMPLER_VERSION, Sampler, pack_tokens, prompt::Prompt, tokens_hash};
use tokio::sync::Semaphore;

use crate::{
    chain::{Chain, SendError},
    store::{JobRow, NewJob, Stage, Store, StoreError},
};

/// Blocks read from the indexer's feed at once.
const FEED_BLOCKS: u64 = 5_000;
/// Feed reads per tick at most (a fresh executor with a start block catches up over a few ticks).
const FEED_READS_PER_TICK: usize = 64;

/// The escrow events the job loop follows.
const FOLLOWED: [B256; 4] = [
    JobEscrow::JobPosted::SIGNATURE_HASH,
    JobEscrow::JobAccepted::SIGNATURE_HASH,
    JobEscrow::JobCancelled::SIGNATURE_HASH,
    JobEscrow::JobExpired::SIGNATURE_HASH,
];

/// On-chain `JobStatus` values.
mod status {
    pub const POSTED: u8 = 1;
    pub const ACCEPTED: u8 = 2;
    pub const SUBMITTED: u8 = 3;
    pub const DISPUTED: u8 = 4;
    pub const FINALIZED: u8 = 5;
    pub const CANCELLED: u8 = 6;
    pub const EXPIRED: u8 = 7;
    pub const REJECTED: u8 = 8;

    /// The status's name in `IJobEscrow.JobStatus`.
    pub fn name(status: u8) -> &'static str {
        match status {
            0 => "none",
            POSTED => "posted",
            ACCEPTED => "accepted",
            SUBMITTED => "submitted",
            DISPUTED => "disputed",
            FINALIZED => "finalized",
            CANCELLED => "cancelled",
            EXPIRED => "expired",
            REJECTED => "rejected",
            _ => "unknown",
        }
    }
}

/// A model this executor serves.
#[derive(Debug, Clone)]
pub struct Served {
    /// The loaded engine.
    pub engine: Arc<Engine>,
    /// Price per million input tokens.
    pub input_price: u64,
    /// Price per million output tokens.
    pub output_price: u64,
    /// Largest prompt + output the model takes (the registry's and the engine's, whichever is less).
    pub context: usize,
}

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Jobs worked on at once.
    pub max_jobs: usize,
    /// Jobs whose deadline is closer than this are not accepted.
    pub min_deadline: Duration,
    /// Finalize own jobs after their challenge window.
    pub auto_finalize: bool,
    /// How often the chain is polled.
    pub poll_interval: Duration,
    /// First block to scan on a new database (default: block 0; the executor passes its
    /// configured start block, or the head it started the embedded indexer at).
    pub start_block: Option<u64>,
    /// Fault injection for crash tests (see `ExecutorConfig::crash_after`).
    pub crash_after: Option<String>,
}

/// Why a job step failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    /// Shown with the credentials of any URL it quotes masked (transport errors quote the RPC
    /// URL): this text goes to the logs and into the store's reasons.
    #[error("{}", infera_chain::redact::redact_text(&.0.to_string()))]
    Send(#[from] SendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("indexer feed: {0}")]
    Feed(#[from] infera_indexer::StoreError),
    #[error("engine: {0}")]
    Engine(#[from] infera_engine::EngineError),
    #[error("{0}")]
    Refused(String),
    /// Not possible yet; the next tick looks again.
    #[error("{0}")]
    Later(String),
}

impl StepError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Send(e) => e.is_transient(),
            Self::Engine(infera_engine::EngineError::Busy { .. }) | Self::Later(_) => true,
            _ => false,
        }
    }
}

/// The job loop of one executor.
#[derive(Debug)]
pub struct JobLoop {
    chain: Arc<Chain>,
    store: Store,
    /// The embedded indexer's database: the chain's escrow events, read through its feed.
    feed: infera_indexer::Store,
    models: HashMap<B256, Served>,
    config: LoopConfig,
    slots: Arc<Semaphore>,
    active: Mutex<HashSet<U256>>,
    /// Engine places held for jobs accepted and not generated yet (see [`Reservation`]).
    reservations: Mutex<HashMap<U256, Reservation>>,
}

impl JobLoop {
    /// A loop over `chain` serving `models`, finding jobs in `feed`, the database of an indexer
    /// following `chain` ([`infera_indexer::Indexer::follow_until`]).
    pub fn new(
        chain: Arc<Chain>,
        feed: infera_indexer::Store,
        models: HashMap<B256, Served>,
        config: LoopConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: chain.store().clone(),
            feed,
            chain,
            models,
            slots: Arc::new(Semaphore::new(config.max_jobs)),
            config,
            active: Mutex::new(HashSet::new()),
            reservations: Mutex::new(HashMap::new()),
        })
    }

    /// Runs until `shutdown` fires; jobs in progress are left for the next start to resume.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        // The finalization pass in progress: one at a time, beside the ticks.
        let mut finalizer: Option<tokio::task::JoinHandle<()>> = None;
        // Poll at the configured interval; while the node fails, back off up to a minute.
        let mut delay = self.config.poll_interval;
        loop {
            match self.tick(&mut tasks, &mut finalizer).await {
                Ok(()) => delay = self.config.poll_interval,
                Err(error) => {
                    delay = (delay * 2).min(Duration::from_secs(60));
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "job loop step failed");
                }
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        tasks.abort_all();
        if let Some(finalizer) = finalizer {
            // A finalize in flight is in the transaction log: the next start awaits it.
            finalizer.abort();
        }
        tracing::info!("job loop stopped");
    }

    async fn tick(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        finalizer: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> Result<(), StepError> {
        // Finalizations run in their own task, started before the scan (so a failing node read
        // below does not hold them back): a finalize whose confirmation is slow (stuck, bumped)
        // never stalls scanning or the jobs owed a submission. Another pass starts only once the
        // previous one has ended.
        if self.config.auto_finalize && finalizer.as_ref().is_none_or(|f| f.is_finished()) {
            let this = Arc::clone(self);
            *finalizer = Some(tokio::spawn(async move {
                if let Err(error) = this.finalize_due().await {
                    tracing::warn!(%error, "finalization pass failed; the next tick tries again");
                }
            }));
        }
        self.scan().await?;
        for job in self
            .store
            .jobs_in(&[Stage::Accepted, Stage::Generated, Stage::Posted])
            .await?
        {
            let committed = job.stage != Stage::Posted;
            // Jobs already accepted go first and always get a worker: they are owed.
            let permit = match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) if committed => None,
                Err(_) => continue,
            };
            {
                let Ok(mut active) = self.active.lock() else {
                    continue;
                };
                if !active.insert(job.job_id) {
                    continue;
                }
            }
            let this = Arc::clone(self);
            tasks.spawn(async move {
                let job_id = job.job_id;
                this.drive(job).await;
                if let Ok(mut active) = this.active.lock() {
                    active.remove(&job_id);
                }
                drop(permit);
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------ discovery

    /// Reads new escrow events from the indexer's feed into the store, moving the position in the
    /// same transaction, until it has caught up with the indexer. On a reorganisation the position
    /// goes back to the common ancestor and the blocks above are read again: jobs recorded from
    /// void blocks stay, and [`JobLoop::accept`] closes them when the chain no longer has them.
    async fn scan(&self) -> Result<(), StepError> {
        let escrow = [*self.chain.escrow.address()];
        let mut position = match self.store.scan_position().await? {
            Some(position) => position,
            None => Position::before(self.config.start_block.unwrap_or(0)),
        };
        for _ in 0..FEED_READS_PER_TICK {
            let read = self
                .feed
                .feed(
                    self.chain.chain_id,
                    position,
                    &escrow,
                    &FOLLOWED,
                    FEED_BLOCKS,
                )
                .await?;
            let (logs, next) = match read {
                Feed::Logs { logs, next } => (logs, next),
                Feed::Reorged { ancestor } => {
                    tracing::warn!(
                        block = position.block_number,
                        ancestor = ancestor.block_number,
                        "chain reorganised below the scan position; reading again from the ancestor"
                    );
                    metrics::counter!("infera_executor_scan_reorgs_total").increment(1);
                    self.store.record_scan(&[], &[], ancestor).await?;
                    position = ancestor;
                    continue;
                }
            };
            if next == position {
                return Ok(());
            }
            let (new, closed) = self.decode(&logs, next.block_number);
            self.store.record_scan(&new, &closed, next).await?;
            if !logs.is_empty() {
                tracing::debug!(
                    from = position.block_number + 1,
                    to = next.block_number,
                    events = logs.len(),
                    "scanned"
                );
            }
            position = next;
        }
        Ok(())
    }

    /// The jobs posted and the jobs closed by others in `logs`.
    fn decode(&self, logs: &[Log], last: u64) -> (Vec<NewJob>, Vec<(U256, String)>) {
        let mut new = Vec::new();
        let mut closed = Vec::new();
        for log in logs {
            let block = log.block_number.unwrap_or(last);
            if let Ok(posted) = log.log_decode::<JobEscrow::JobPosted>() {
                let posted = posted.inner.data;
                let reason = self.first_look(&posted.job);
                match &reason {
                    Some(reason) => {
                        tracing::info!(job_id = %posted.jobId, block, reason, "job ignored")
                    }
                    None => tracing::info!(job_id = %posted.jobId, block, "job found"),
                }
                new.push(NewJob {
                    job_id: posted.jobId,
                    stage: if reason.is_some() {
                        Stage::Ignored
                    } else {
                        Stage::Posted
                    },
                    reason,
                    job: posted.job,
                    prompt: posted.prompt,
                    block,
                });
            } else if let Ok(accepted) = log.log_decode::<JobEscrow::JobAccepted>() {
                let accepted = accepted.inner.data;
                if accepted.executor != self.chain.address {
                    closed.push((accepted.jobId, format!("accepted by {}", accepted.executor)));
                }
            } else if let Ok(cancelled) = log.log_decode::<JobEscrow::JobCancelled>() {
                closed.push((cancelled.inner.data.jobId, "cancelled".into()));
            } else if let Ok(expired) = log.log_decode::<JobEscrow::JobExpired>() {
                closed.push((expired.inner.data.jobId, "expired".into()));
            }
        }
        (new, closed)
    }

    /// Why a posted job is not for this executor, judged from its terms alone.
    fn first_look(&self, job: &IJobEscrow::Job) -> Option<String> {
        let spec = &job.spec;
        let Some(served) = self.models.get(&spec.modelId) else {
            return Some(format!("model {} not served", spec.modelId));
        };
        if spec.executor != Address::ZERO && spec.executor != self.chain.address {
            return Some(format!("designated to {}", spec.executor));
        }
        if job.samplerVersion != SAMPLER_VERSION {
            return Some(format!(
                "sampler version {} not supported",
                job.samplerVersion
            ));
        }
        if spec.maxInputPrice < served.input_price || spec.maxOutputPrice < served.output_price {
            return Some("price below ours".into());
        }
        let tokens = spec.maxInputTokens as usize + spec.maxOutputTokens as usize;
        if tokens > served.context {
            return Some(format!(
                "{tokens} tokens exceed the context of {}",
                served.context
            ));
        }
        None
    }

    // ------------------------------------------------------------------ one job

    /// Moves one job on as far as it goes now.
    async fn drive(&self, mut job: JobRow) {
        let job_id = job.job_id;
        loop {
            let step = match job.stage {
                Stage::Posted => self.accept(&job).await,
                Stage::Accepted => self.generate(&job).await,
                Stage::Generated => self.submit(&job).await,
                _ => return,
            };
            match step {
                Ok(()) => {}
                Err(error) if error.is_transient() => {
                    tracing::warn!(job_id = %job_id, %error, "job step failed; will retry");
                    return;
                }
                Err(error) => {
                    let stage = if job.stage == Stage::Posted {
                        Stage::Ignored
                    } else {
                        Stage::Failed
                    };
                    tracing::warn!(job_id = %job_id, %error, stage = stage.as_str(), "job given up");
                    if let Err(error) = self
                        .store
                        .set_stage(job_id, stage, Some(&error.to_string()))
                        .await
                    {
                        tracing::error!(job_id = %job_id, %error, "cannot record job stage");
                    }
                    return;
                }
            }
            job = match self.store.job(job_id).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(job_id = %job_id, %error, "cannot read job");
                    return;
                }
            };
        }
    }

    async fn served(&self, job: &JobRow) -> Result<&Served, StepError> {
        self.models
            .get(&job.job.spec.modelId)
            .ok_or_else(|| StepError::Refused("model not served".into()))
    }

    async fn render(&self, job: &JobRow) -> Result<Vec<u32>, StepError> {
        let prompt = Prompt::parse(&job.prompt).map_err(|e| StepError::Refused(e.to_string()))?;
        Ok(self.served(job).await?.engine.render(&prompt).await?)
    }

    async fn chain_status(&self, job_id: U256) -> Result<u8, StepError> {
        Ok(self
            .chain
            .escrow
            .jobStatus(job_id)
            .call()
            .await
            .map_err(|e| SendError::Chain(e.into()))?)
    }

    async fn block_timestamp(&self) -> Result<u64, StepError> {
        let block = self
            .chain
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(SendError::from)?
            .ok_or_else(|| StepError::Refused("no latest block".into()))?;
        Ok(block.header.timestamp)
    }

    /// The first `E` event of `job_id`, from the block it was posted in.
    async fn job_event<E: SolEvent>(&self, job: &JobRow) -> Result<Option<E>, StepError> {
        let filter = Filter::new()
            .address(*self.chain.escrow.address())
            .event_signature(E::SIGNATURE_HASH)
            .topic1(B256::from(job.job_id))
            .from_block(job.posted_block);
        let logs: Vec<Log> = self
            .chain
            .provider
            .get_logs(&filter)
            .await
            .map_err(SendError::from)?;
        Ok(logs
            .iter()
            .find_map(|log| log.log_decode::<E>().ok().map(|l| l.inner.data)))
    }

    /// Stage `Posted`: check eligibility against the chain and accept.
    async fn accept(&self, job: &JobRow) -> Result<(), StepError> {
        let job_id = job.job_id;
        match self.chain_status(job_id).await? {
            status::POSTED => {}
            status::ACCEPTED => return self.adopt_acceptance(job).await,
            status => {
                self.store
                    .set_stage(
                        job_id,
                        Stage::Closed,
                        Some(&format!("on-chain status {status}")),
                    )
                    .await?;
                return Ok(());
            }
        }
        let now = self.block_timestamp().await?;
        let deadline = job.job.spec.deadline;
        // An acceptance sent before a restart may still be mined: it is awaited below (never sent
        // again), however close the deadline is now — a job given up here could not be worked on.
        if deadline < now + self.config.min_deadline.as_secs()
            && self
                .chain
                .tx()
                .in_flight("accept", job_id)
                .await
                .map_err(SendError::from)?
                .is_none()
        {
            return Err(StepError::Refused(format!(
                "deadline {deadline} too close (now {now})"
            )));
        }
        let prompt_ids = self.render(job).await?;
        let spec = &job.job.spec;
        if prompt_ids.len() > spec.maxInputTokens as usize {
            return Err(StepError::Refused(format!(
                "prompt has {} tokens, the job pays for {}",
                prompt_ids.len(),
                spec.maxInputTokens
            )));
        }
        let collateral = collateral(&job.job);
        let free = self
            .chain
            .staking
            .freeStake(self.chain.address, EXECUTOR_ROLE)
            .call()
            .await
            .map_err(|e| SendError::Chain(e.into()))?;
        if free < collateral {
            // Stake may free up when other jobs finish: stay posted and look again later.
            return Err(StepError::Later(format!(
                "free stake {free} below the collateral {collateral}"
            )));
        }
        // The engine place the job will generate in, held from before acceptance until it is
        // generated: gateway requests cannot take it, so they cannot starve the job into expiry.
        // With no place free the job stays posted.
        let reservation = self.served(job).await?.engine.try_reserve()?;
        let call = self.chain.escrow.acceptJob(job_id, job.job.clone());
        let receipt = self
            .chain
            .send("accept", Some(job_id), call.into_transaction_request())
            .await
            .map_err(|error| match error {
                // Someone else was faster, or the job changed: not ours.
                SendError::Chain(e) => StepError::Refused(e.to_string()),
                other => StepError::Send(other),
            })?;
        let accepted = receipt
            .decoded_log::<JobEscrow::JobAccepted>()
            .map(|log| log.data.assignment)
            .ok_or_else(|| StepError::Refused("accept emitted no JobAccepted".into()))?;
        self.store.set_accepted(job_id, &accepted).await?;
        if let Ok(mut reservations) = self.reservations.lock() {
            reservations.insert(job_id, reservation);
        }
        tracing::info!(job_id = %job_id, tx_hash = %receipt.transaction_hash, block = receipt.block_number, collateral = %accepted.collateral, "job accepted");
        metrics::counter!("infera_executor_jobs_total", "outcome" => "accepted").increment(1);
        self.crash_point("accepted");
        Ok(())
    }

    /// The chain says the job is accepted while the store says posted: our accept was mined
    /// just before a crash, or another executor took it.
    async fn adopt_acceptance(&self, job: &JobRow) -> Result<(), StepError> {
        match self.job_event::<JobEscrow::JobAccepted>(job).await? {
            Some(event) if event.executor == self.chain.address => {
                tracing::info!(job_id = %job.job_id, "resuming a job accepted before a restart");
                self.store
                    .set_accepted(job.job_id, &event.assignment)
                    .await?;
            }
            Some(event) => {
                self.store
                    .set_stage(
                        job.job_id,
                        Stage::Closed,
                        Some(&format!("accepted by {}", event.executor)),
                    )
                    .await?;
            }
            None => return Err(StepError::Later("JobAccepted not visible yet".into())),
        }
        Ok(())
    }

    /// Compares the assignment stored for a job the chain shows ACCEPTED with the chain's (its
    /// `JobAccepted` event on the current branch) and records any change: another assignment of
    /// ours moves the job back to `Accepted` (generated again with the chain's seed), an
    /// acceptance by another executor closes it.
    async fn recheck_acceptance(
        &self,
        job: &JobRow,
        stored: &IJobEscrow::Assignment,
    ) -> Result<Acceptance, StepError> {
        let job_id = job.job_id;
        let Some(event) = self.job_event::<JobEscrow::JobAccepted>(job).await? else {
            return Err(StepError::Later("JobAccepted not visible yet".into()));
        };
        let acceptance = acceptance(self.chain.address, stored, &event.assignment);
        match &acceptance {
            Acceptance::Same => {}
            Acceptance::Reassigned(assignment) => {
                tracing::warn!(job_id = %job_id, stored_seed = %stored.seed, seed = %assignment.seed, "acceptance reorganised into another assignment; generating again");
                metrics::counter!("infera_executor_reassignments_total").increment(1);
                self.store.set_accepted(job_id, assignment).await?;
            }
            Acceptance::Taken(executor) => {
                tracing::warn!(job_id = %job_id, %executor, "acceptance reorganised away; the job went to another executor");
                self.store
                    .set_stage(
                        job_id,
                        Stage::Closed,
                        Some(&format!("accepted by {executor}")),
                    )
                    .await?;
            }
        }
        Ok(acceptance)
    }

    /// Stage `Accepted`: generate with the job's sampler, seeded as the assignment says, and
    /// record the result.
    async fn generate(&self, job: &JobRow) -> Result<(), StepError> {
        let job_id = job.job_id;
        // Taken out first, so that it is given back however this step ends.
        let reserved = self
            .reservations
            .lock()
            .ok()
            .and_then(|mut reservations| reservations.remove(&job_id));
        let Some(assignment) = &job.assignment else {
            return Err(StepError::Refused("accepted job without assignment".into()));
        };
        let served = self.served(job).await?;
        let prompt_ids = self.render(job).await?;
        let spec = &job.job.spec;
        // The seed exists only since acceptance: it is the assignment's, never chosen here.
        let sampler = Sampler::new(spec.sampling.clone().into(), assignment.seed);
        // The place reserved at acceptance; after a restart, the next one that frees up (handed
        // out in order, so gateway requests cannot jump ahead).
        let reservation = match reserved {
            Some(reservation) => reservation,
            None => served.engine.reserve().await?,
        };
        tracing::info!(job_id = %job_id, prompt_tokens = prompt_ids.len(), max_tokens = spec.maxOutputTokens, seed = %assignment.seed, "generating");
        let output = served
            .engine
            .generate_all_reserved(
                GenerateRequest {
                    prompt_ids: prompt_ids.clone(),
                    max_tokens: spec.maxOutputTokens,
                    sampler,
                },
                reservation,
            )
            .await?;
        let decode = output
            .timings
            .decode_tokens_per_second(output.output_ids.len())
            .unwrap_or_default();
        tracing::info!(
            job_id = %job_id,
            output_tokens = output.output_ids.len(),
            finish = ?output.finish_reason,
            ttft_ms = output.timings.time_to_first_token.as_millis() as u64,
            decode_tok_s = format!("{decode:.1}"),
            "generated"
        );
        metrics::counter!("infera_executor_output_tokens_total")
            .increment(output.output_ids.len() as u64);
        crate::telemetry::record_generation(&output, "job");
        let input_tokens = u32::try_from(prompt_ids.len())
            .map_err(|_| StepError::Refused(format!("prompt of {} tokens", prompt_ids.len())))?;
        let result = IJobEscrow::Result {
            inputTokens: input_tokens,
            finishReason: output.finish_reason.as_u8(),
            promptTokensHash: tokens_hash(&prompt_ids),
            outputTokens: Bytes::from(pack_tokens(&output.output_ids)),
            output: Bytes::from(output.text.into_bytes()),
        };
        self.store.set_generated(job_id, &result).await?;
        self.crash_point("generated");
        Ok(())
    }

    /// Stage `Generated`: submit the stored result (once).
    async fn submit(&self, job: &JobRow) -> Result<(), StepError> {
        let job_id = job.job_id;
        let (Some(assignment), Some(result)) = (&job.assignment, &job.result) else {
            return Err(StepError::Refused(
                "generated job without assignment or result".into(),
            ));
        };
        match self.chain_status(job_id).await? {
            status::ACCEPTED => {
                // The assignment was read from the accept's receipt: a reorganisation since may
                // have mined the accept again in another block, with another seed (or another
                // executor's), and the contract refuses a result for the old one.
                if self.recheck_acceptance(job, assignment).await? != Acceptance::Same {
                    return Ok(());
                }
            }
            status::POSTED if self.block_timestamp().await? <= job.job.spec.deadline => {
                // Our acceptance was reorganised away; the transaction manager broadcasts it
                // again, and the next look finds it accepted (by us or by another).
                return Err(StepError::Later(
                    "acceptance reorganised away; awaiting it again".into(),
                ));
            }
            status::SUBMITTED => {
                // Our submission was mined just before a restart.
                let Some(event) = self.job_event::<JobEscrow::ResultSubmitted>(job).await? else {
                    return Err(StepError::Later("ResultSubmitted not visible yet".into()));
                };
                self.store.set_submitted(job_id, &event.settlement).await?;
                tracing::info!(job_id = %job_id, "resumed a result submitted before a restart");
                return Ok(());
            }
            status => {
                return Err(StepError::Refused(format!(
                    "on-chain status {status} before submission"
                )));
            }
        }
        // What the contract will commit to (commitment v2: the seed of the assignment, the billed
        // input count and the text's hash among the rest), checked against its own below.
        let expected = commitment(&job.job, assignment, result)?;
        if self.block_timestamp().await? > job.job.spec.deadline {
            return Err(StepError::Refused(
                "deadline passed before submission".into(),
            ));
        }
        let call = self.chain.escrow.submitResult(
            job_id,
            job.job.clone(),
            assignment.clone(),
            result.clone(),
        );
        let receipt = self
            .chain
            .send("submit", Some(job_id), call.into_transaction_request())
            .await?;
        let submitted = receipt
            .decoded_log::<JobEscrow::ResultSubmitted>()
            .map(|log| log.data)
            .ok_or_else(|| StepError::Refused("submit emitted no ResultSubmitted".into()))?;
        if submitted.settlement.commitment != expected {
            tracing::error!(job_id = %job_id, onchain = %submitted.settlement.commitment, local = %expected, "commitment mismatch");
            metrics::counter!("infera_executor_commitment_mismatches_total").increment(1);
        }
        self.store
            .set_submitted(job_id, &submitted.settlement)
            .await?;
        tracing::info!(
            job_id = %job_id,
            tx_hash = %receipt.transaction_hash,
            block = receipt.block_number,
            commitment = %submitted.settlement.commitment,
            payment = %submitted.settlement.payment,
            "result submitted"
        );
        metrics::counter!("infera_executor_jobs_total", "outcome" => "submitted").increment(1);
        Ok(())
    }

    // ------------------------------------------------------------------ payment

    /// Finalizes own submitted jobs whose challenge (or unresolved dispute) window has passed, and
    /// closes those that ended otherwise: finalized by someone else, or rejected in a dispute (or
    /// any other end) — those reach a final stage and are never looked at again. A finalization
    /// that was due and still refused for a reason that does not change with time fails the job.
    async fn finalize_due(&self) -> Result<(), StepError> {
        let submitted = self.store.jobs_in(&[Stage::Submitted]).await?;
        if submitted.is_empty() {
            return Ok(());
        }
        let now = self.block_timestamp().await?;
        for job in submitted {
            let job_id = job.job_id;
            let Some(settlement) = job.settlement.clone() else {
                self.end(job_id, Stage::Failed, "submitted without a settlement")
                    .await?;
                continue;
            };
            let status = self.chain_status(job_id).await?;
            match finalize_step(status, &settlement, now) {
                FinalizeStep::Wait => continue,
                FinalizeStep::Done => {
                    self.store.set_stage(job_id, Stage::Finalized, None).await?;
                    tracing::info!(job_id = %job_id, "job finalized by someone else");
                    continue;
                }
                FinalizeStep::Lost(reason) => {
                    self.end(job_id, Stage::Lost, &reason).await?;
                    continue;
                }
                FinalizeStep::Reopen => {
                    self.reopen(&job, status).await?;
                    continue;
                }
                FinalizeStep::Send => {}
            }
            let call = self.chain.escrow.finalize(job_id, settlement.clone());
            match self
                .chain
                .send("finalize", Some(job_id), call.into_transaction_request())
                .await
            {
                Ok(receipt) => {
                    self.store.set_stage(job_id, Stage::Finalized, None).await?;
                    tracing::info!(job_id = %job_id, tx_hash = %receipt.transaction_hash, block = receipt.block_number, earned = %(settlement.payment - settlement.validatorFee), "job finalized");
                    metrics::counter!("infera_executor_jobs_total", "outcome" => "finalized")
                        .increment(1);
                }
                Err(error) if error.is_transient() => return Err(error.into()),
                Err(error) => {
                    // (As a step error it is shown redacted.)
                    let error = StepError::from(error);
                    // Refused although due: moved on in between (finalized by someone else,
                    // disputed), which the next tick reads, or refused for good (terms that do
                    // not match the chain's): that one ends here instead of being sent each tick.
                    let now = self.block_timestamp().await?;
                    let again = self.chain_status(job_id).await?;
                    if again == status
                        && finalize_step(again, &settlement, now) == FinalizeStep::Send
                    {
                        self.end(job_id, Stage::Failed, &format!("finalize refused: {error}"))
                            .await?;
                    } else {
                        tracing::info!(job_id = %job_id, %error, status = status::name(again), "not finalized; the job moved on");
                    }
                }
            }
        }
        Ok(())
    }

    /// A job the store calls submitted whose submission the chain no longer shows (on-chain
    /// `status` accepted or posted: reorganised away): back to `Generated`, so the loop submits
    /// it again before the deadline, or to `Accepted` when the chain's assignment changed.
    async fn reopen(&self, job: &JobRow, status: u8) -> Result<(), StepError> {
        let job_id = job.job_id;
        if status == status::ACCEPTED {
            let Some(assignment) = &job.assignment else {
                return self
                    .end(job_id, Stage::Failed, "submitted without an assignment")
                    .await;
            };
            match self.recheck_acceptance(job, assignment).await {
                Ok(Acceptance::Same) => {}
                // Recorded (back to accepted, or closed).
                Ok(_) => return Ok(()),
                Err(error) if error.is_transient() => {
                    tracing::debug!(job_id = %job_id, %error, "submission reorganised away; looking again later");
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        tracing::warn!(job_id = %job_id, status = status::name(status), "submission reorganised away; submitting again");
        metrics::counter!("infera_executor_resubmissions_total").increment(1);
        self.store
            .set_stage(
                job_id,
                Stage::Generated,
                Some("submission reorganised away"),
            )
            .await?;
        Ok(())
    }

    /// Records that a submitted job ended without this executor finalizing it.
    async fn end(&self, job_id: U256, stage: Stage, reason: &str) -> Result<(), StepError> {
        self.store.set_stage(job_id, stage, Some(reason)).await?;
        tracing::warn!(job_id = %job_id, stage = stage.as_str(), reason, "job ended unpaid");
        metrics::counter!("infera_executor_jobs_total", "outcome" => stage.as_str()).increment(1);
        Ok(())
    }

    fn crash_point(&self, stage: &str) {
        if self.config.crash_after.as_deref() == Some(stage) {
            tracing::error!(stage, "crash_after: aborting (fault injection)");
            std::process::abort();
        }
    }
}

/// What `finalize_due` does with a submitted job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FinalizeStep {
    /// Not finalizable yet: its window is open (or the chain does not show the submission).
    Wait,
    /// Send `finalize`.
    Send,
    /// Finalized already.
    Done,
    /// Ended without payment: a final stage, with the reason.
    Lost(String),
    /// The chain no longer shows the submission (a reorganisation): submit again.
    Reopen,
}

/// The step for a job in on-chain `status` whose submission settled as `settlement`, at block
/// time `now`. `finalize` passes from `challengeEnd` on for a submitted job and from `disputeEnd`
/// on for a disputed one nobody resolved (`JobEscrow.finalize`).
fn finalize_step(status: u8, settlement: &IJobEscrow::Settlement, now: u64) -> FinalizeStep {
    match status {
        status::SUBMITTED if settlement.challengeEnd <= now => FinalizeStep::Send,
        status::DISPUTED if settlement.disputeEnd <= now => FinalizeStep::Send,
        status::SUBMITTED | status::DISPUTED => FinalizeStep::Wait,
        // A reorganisation took the submission (or the acceptance too) away.
        status::ACCEPTED | status::POSTED => FinalizeStep::Reopen,
        status::FINALIZED => FinalizeStep::Done,
        status::REJECTED => FinalizeStep::Lost("rejected in a dispute".into()),
        other => FinalizeStep::Lost(format!("on-chain status {}", status::name(other))),
    }
}

/// How the chain's acceptance of a job compares with the one stored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Acceptance {
    /// The same assignment: the stored result (or submission) stands.
    Same,
    /// Ours, with another assignment (re-mined elsewhere after a reorganisation: another seed).
    Reassigned(IJobEscrow::Assignment),
    /// Accepted by another executor.
    Taken(Address),
}

/// Compares the assignment `stored` for executor `me` with the chain's `onchain` one.
fn acceptance(
    me: Address,
    stored: &IJobEscrow::Assignment,
    onchain: &IJobEscrow::Assignment,
) -> Acceptance {
    if onchain.executor != me {
        Acceptance::Taken(onchain.executor)
    } else if onchain != stored {
        Acceptance::Reassigned(onchain.clone())
    } else {
        Acceptance::Same
    }
}

/// The collateral `acceptJob` locks: the escrow × the job's collateral ratio, rounded up (as
/// `JobEscrow._bpsCeil` does).
fn collateral(job: &IJobEscrow::Job) -> U256 {
    const BPS: u64 = 10_000;
    (job.escrow * U256::from(job.collateralBps) + U256::from(BPS - 1)) / U256::from(BPS)
}

/// The commitment the contract computes for `result` of `job` as `assignment` bound it.
fn commitment(
    job: &IJobEscrow::Job,
    assignment: &IJobEscrow::Assignment,
    result: &IJobEscrow::Result,
) -> Result<B256, StepError> {
    Ok(
        infera_chain::bindings::commitment_input(job, assignment, result)
            .map_err(|e| StepError::Refused(e.to_string()))?
            .commitment(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{aliases::U96, keccak256};
    use infera_protocol::CommitmentInput;
    use infera_protocol::FinishReason;

    fn job(escrow: u64, collateral_bps: u16) -> IJobEscrow::Job {
        IJobEscrow::Job {
            spec: IJobEscrow::JobSpec {
                modelId: B256::repeat_byte(1),
                executor: Address::ZERO,
                callback: Address::ZERO,
                callbackGasLimit: 0,
                maxInputTokens: 16,
                maxOutputTokens: 4,
                maxInputPrice: 1_000_000,
                maxOutputPrice: 2_000_000,
                deadline: 1_800_000_000,
                sampling: infera_protocol::SamplingParams {
                    temperature_ppm: 700_000,
                    top_k: 40,
                    top_p_ppm: 950_000,
                }
                .into(),
                salt: B256::repeat_byte(0x5a),
            },
            requester: Address::repeat_byte(2),
            promptHash: B256::repeat_byte(3),
            samplerVersion: SAMPLER_VERSION,
            rulesVersion: 1,
            minExecutorStake: U96::from(100u64),
            validatorFeeBps: 500,
            collateralBps: collateral_bps,
            challengeWindow: 600,
            disputeWindow: 3_600,
            escrow: U256::from(escrow),
        }
    }

    fn settlement(challenge_end: u64, dispute_end: u64) -> IJobEscrow::Settlement {
        IJobEscrow::Settlement {
            requester: Address::repeat_byte(2),
            executor: Address::repeat_byte(4),
            escrow: U256::from(1_000),
            payment: U256::from(100),
            validatorFee: U256::from(5),
            collateral: U256::from(2_000),
            commitment: B256::repeat_byte(9),
            challengeEnd: challenge_end,
            disputeEnd: dispute_end,
        }
    }

    /// Submitted jobs are finalized once their window has passed, and every other end is final:
    /// nothing is sent for them again.
    #[test]
    fn finalize_step_ends_rejected_and_other_closed_jobs() {
        let s = settlement(1_000, 2_000);
        assert_eq!(
            finalize_step(status::SUBMITTED, &s, 999),
            FinalizeStep::Wait
        );
        assert_eq!(
            finalize_step(status::SUBMITTED, &s, 1_000),
            FinalizeStep::Send
        );
        // A dispute nobody resolved settles from its dispute end on.
        assert_eq!(
            finalize_step(status::DISPUTED, &s, 1_500),
            FinalizeStep::Wait
        );
        assert_eq!(
            finalize_step(status::DISPUTED, &s, 2_000),
            FinalizeStep::Send
        );
        assert_eq!(finalize_step(status::FINALIZED, &s, 0), FinalizeStep::Done);
        assert_eq!(
            finalize_step(status::REJECTED, &s, 5_000),
            FinalizeStep::Lost("rejected in a dispute".into())
        );
        for (end, name) in [
            (status::EXPIRED, "expired"),
            (status::CANCELLED, "cancelled"),
            (0, "none"),
        ] {
            assert_eq!(
                finalize_step(end, &s, 5_000),
                FinalizeStep::Lost(format!("on-chain status {name}"))
            );
        }
        // The chain no longer shows the submission (a reorg): it is submitted again, not awaited
        // for ever (nor given up when the acceptance went too).
        assert_eq!(
            finalize_step(status::ACCEPTED, &s, 5_000),
            FinalizeStep::Reopen
        );
        assert_eq!(
            finalize_step(status::POSTED, &s, 5_000),
            FinalizeStep::Reopen
        );
    }

    /// A reorganisation that mined our accept again in another block (another seed) is seen as a
    /// new assignment to generate for, one that gave the job to another executor as lost.
    #[test]
    fn acceptance_compares_the_stored_assignment_with_the_chains() {
        let me = Address::repeat_byte(4);
        let stored = IJobEscrow::Assignment {
            executor: me,
            inputPrice: 100_000,
            outputPrice: 400_000,
            collateral: U256::from(2_048),
            seed: B256::repeat_byte(0x5e),
        };
        assert_eq!(acceptance(me, &stored, &stored.clone()), Acceptance::Same);
        let mut reseeded = stored.clone();
        reseeded.seed = keccak256(stored.seed);
        assert_eq!(
            acceptance(me, &stored, &reseeded),
            Acceptance::Reassigned(reseeded.clone())
        );
        let mut repriced = stored.clone();
        repriced.outputPrice = 500_000;
        assert_eq!(
            acceptance(me, &stored, &repriced),
            Acceptance::Reassigned(repriced.clone())
        );
        let mut other = stored.clone();
        other.executor = Address::repeat_byte(7);
        assert_eq!(
            acceptance(me, &stored, &other),
            Acceptance::Taken(Address::repeat_byte(7))
        );
    }

    #[test]
    fn collateral_is_rounded_up_as_the_escrow_does() {
        assert_eq!(collateral(&job(1_024, 20_000)), U256::from(2_048));
        // 1 × 5,000 / 10,000 = 0.5: a one-unit job still puts a unit of stake at risk.
        assert_eq!(collateral(&job(1, 5_000)), U256::from(1));
        assert_eq!(collateral(&job(3, 3_333)), U256::from(1));
        assert_eq!(collateral(&job(10_001, 1)), U256::from(2));
        assert_eq!(collateral(&job(10_000, 1)), U256::from(1));
        assert_eq!(collateral(&job(7, 0)), U256::ZERO);
    }

    /// The executor's commitment takes the seed from the assignment (the job has none since it is
    /// fixed at acceptance) and binds the billed input count and the text (commitment v2).
    #[test]
    fn commitment_uses_the_assignment_seed_the_count_and_the_text() {
        let job = job(1_024, 20_000);
        let assignment = IJobEscrow::Assignment {
            executor: Address::repeat_byte(4),
            inputPrice: 100_000,
            outputPrice: 400_000,
            collateral: U256::from(2_048),
            seed: B256::repeat_byte(0x5e),
        };
        let (prompt, output) = ([151_644u32, 872, 198], [9_707u32, 151_645]);
        let result = IJobEscrow::Result {
            inputTokens: 3,
            finishReason: FinishReason::Stop.as_u8(),
            promptTokensHash: tokens_hash(&prompt),
            outputTokens: Bytes::from(pack_tokens(&output)),
            output: Bytes::from_static("Bonjour ✓".as_bytes()),
        };
        let ours = commitment(&job, &assignment, &result).unwrap();
        let expected = CommitmentInput::from_tokens(
            job.spec.modelId,
            job.samplerVersion,
            job.spec.sampling.clone().into(),
            assignment.seed,
            infera_protocol::Transcript {
                prompt_token_ids: &prompt,
                output_token_ids: &output,
                output_text: "Bonjour ✓".as_bytes(),
                finish_reason: FinishReason::Stop,
            },
        )
        .unwrap()
        .commitment();
        assert_eq!(ours, expected);

        let mut reseeded = assignment.clone();
        reseeded.seed = keccak256(assignment.seed);
        assert_ne!(commitment(&job, &reseeded, &result).unwrap(), ours);
        let mut over_billed = result.clone();
        over_billed.inputTokens = 4;
        assert_ne!(commitment(&job, &assignment, &over_billed).unwrap(), ours);
        let mut other_text = result.clone();
        other_text.output = Bytes::from_static(b"Bonjour !");
        assert_ne!(commitment(&job, &assignment, &other_text).unwrap(), ours);
        let mut bad = result;
        bad.finishReason = 3;
        assert!(commitment(&job, &assignment, &bad).is_err());
    }
}
