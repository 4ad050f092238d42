//! Applying decoded events to the typed tables.
//!
//! A batch loads the rows it touches once (lazily, inside its transaction), changes them in memory
//! in log order, and writes each changed row once at the end. For blocks above the finalized one it
//! records, per row and block, the image from before that block's first change: a reorg restores
//! the earliest image above the common ancestor.

use std::collections::{HashMap, HashSet};

use alloy::{
    primitives::{Address, B256, U256},
    rpc::types::Log,
    sol_types::SolEventInterface,
};
use infera_chain::bindings::{
    Disputes::DisputesEvents, JobEscrow::JobEscrowEvents, ModelRegistry::ModelRegistryEvents,
    Staking::StakingEvents,
};
use sqlx::AnyConnection;

use crate::{
    rows::{
        BalanceRow, DisputeRow, ExecutorRow, JobRow, JobStatus, JurorBallot, ModelRow, PriceRow,
        ROLE_EXECUTOR, RulesRow, StakeRow, Table,
    },
    store::{self, StoreError, UndoEntry},
};

/// The contracts followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contracts {
    /// JobEscrow.
    pub job_escrow: Address,
    /// Staking.
    pub staking: Address,
    /// ModelRegistry.
    pub model_registry: Address,
    /// Disputes (zero while JobEscrow has no dispute contract wired: then it is not followed).
    pub disputes: Address,
}

impl Contracts {
    /// The addresses, in `eth_getLogs` order.
    pub fn addresses(&self) -> Vec<Address> {
        let mut addresses = vec![self.job_escrow, self.staking, self.model_registry];
        if !self.disputes.is_zero() {
            addresses.push(self.disputes);
        }
        addresses
    }

    /// How a database records which contracts it indexes.
    pub fn fingerprint(&self) -> String {
        let mut fingerprint = format!(
            "{:#x},{:#x},{:#x}",
            self.job_escrow, self.staking, self.model_registry
        );
        if !self.disputes.is_zero() {
            fingerprint.push_str(&format!(",{:#x}", self.disputes));
        }
        fingerprint
    }
}

/// A decoded log of a followed contract.
#[derive(Debug)]
pub(crate) enum Event {
    Escrow(Box<JobEscrowEvents>),
    Staking(StakingEvents),
    Registry(ModelRegistryEvents),
    Disputes(Box<DisputesEvents>),
}

/// Decodes `log`; `None` for a log no followed contract's ABI knows (it is still stored raw).
pub(crate) fn decode(contracts: &Contracts, log: &Log) -> Option<Event> {
    let topics = log.topics();
    let data = &log.data().data;
    let address = log.address();
    if address == contracts.job_escrow {
        JobEscrowEvents::decode_raw_log(topics, data)
            .ok()
            .map(|e| Event::Escrow(Box::new(e)))
    } else if address == contracts.staking {
        StakingEvents::decode_raw_log(topics, data)
            .ok()
            .map(Event::Staking)
    } else if address == contracts.model_registry {
        ModelRegistryEvents::decode_raw_log(topics, data)
            .ok()
            .map(Event::Registry)
    } else if address == contracts.disputes && !address.is_zero() {
        DisputesEvents::decode_raw_log(topics, data)
            .ok()
            .map(|e| Event::Disputes(Box::new(e)))
    } else {
        None
    }
}

/// Rows of one table touched by a batch.
#[derive(Debug)]
pub(crate) struct Cache<R: Table> {
    rows: HashMap<R::Key, Option<R>>,
    dirty: Vec<R::Key>,
    dirty_set: HashSet<R::Key>,
    undone_in: HashMap<R::Key, u64>,
}

impl<R: Table> Default for Cache<R> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            dirty: Vec::new(),
            dirty_set: HashSet::new(),
            undone_in: HashMap::new(),
        }
    }
}

/// Everything a batch changes, before it is written.
#[derive(Debug)]
pub(crate) struct Changes {
    chain_id: u64,
    /// Undo images are recorded for blocks above this one (the node's finalized block).
    undo_above: u64,
    models: Cache<ModelRow>,
    rules: Cache<RulesRow>,
    executors: Cache<ExecutorRow>,
    prices: Cache<PriceRow>,
    stakes: Cache<StakeRow>,
    jobs: Cache<JobRow>,
    disputes: Cache<DisputeRow>,
    balances: Cache<BalanceRow>,
    undo: Vec<UndoEntry>,
    /// Logs that decoded to a known event.
    pub events: u64,
}

trait Cached<R: Table> {
    fn cache(&mut self) -> &mut Cache<R>;
}

macro_rules! cached {
    ($($field:ident: $row:ty),* $(,)?) => {
        $(impl Cached<$row> for Changes {
            fn cache(&mut self) -> &mut Cache<$row> {
                &mut self.$field
            }
        })*
    };
}

cached!(
    models: ModelRow,
    rules: RulesRow,
    executors: ExecutorRow,
    prices: PriceRow,
    stakes: StakeRow,
    jobs: JobRow,
    disputes: DisputeRow,
    balances: BalanceRow,
);

fn narrow_votes(value: U256) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn to_u64(value: U256) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

impl Changes {
    pub(crate) fn new(chain_id: u64, undo_above: u64) -> Self {
        Self {
            chain_id,
            undo_above,
            models: Cache::default(),
            rules: Cache::default(),
            executors: Cache::default(),
            prices: Cache::default(),
            stakes: Cache::default(),
            jobs: Cache::default(),
            disputes: Cache::default(),
            balances: Cache::default(),
            undo: Vec::new(),
            events: 0,
        }
    }

    async fn load<R: Table>(
        &mut self,
        db: &mut AnyConnection,
        key: &R::Key,
    ) -> Result<Option<R>, StoreError>
    where
        Self: Cached<R>,
    {
        if let Some(row) = self.cache().rows.get(key) {
            return Ok(row.clone());
        }
        let row = store::select_one::<R>(db, self.chain_id, key).await?;
        self.cache().rows.insert(key.clone(), row.clone());
        Ok(row)
    }

    /// Stores `row` as changed in `row.block()`, recording the prior image when that block can
    /// still be reorganised away. The row must have been loaded first, or be new.
    fn save<R: Table>(&mut self, row: R) -> Result<(), StoreError>
    where
        Self: Cached<R>,
    {
        let key = row.key();
        let block = row.block();
        let undo_above = self.undo_above;
        let cache = self.cache();
        let prior = if block > undo_above && cache.undone_in.get(&key) != Some(&block) {
            cache.undone_in.insert(key.clone(), block);
            Some(cache.rows.get(&key).cloned().flatten())
        } else {
            None
        };
        cache.rows.insert(key.clone(), Some(row));
        if cache.dirty_set.insert(key.clone()) {
            cache.dirty.push(key.clone());
        }
        if let Some(image) = prior {
            let json = |e: serde_json::Error| StoreError::Corrupt {
                table: R::NAME,
                source: crate::rows::DecodeError {
                    column: "image",
                    reason: e.to_string(),
                },
            };
            self.undo.push(UndoEntry {
                block,
                table: R::NAME,
                key: serde_json::to_string(&key).map_err(json)?,
                image: image
                    .map(|row| serde_json::to_string(&row))
                    .transpose()
                    .map_err(json)?,
            });
        }
        Ok(())
    }

    fn dirty<R: Table>(&mut self) -> Vec<R>
    where
        Self: Cached<R>,
    {
        let cache = self.cache();
        cache
            .dirty
            .iter()
            .filter_map(|key| cache.rows.get(key).cloned().flatten())
            .collect()
    }

    /// Writes every changed row and the undo images.
    pub(crate) async fn flush(mut self, db: &mut AnyConnection) -> Result<(), StoreError> {
        let chain_id = self.chain_id;
        store::upsert(db, chain_id, &self.dirty::<ModelRow>()).await?;
        store::upsert(db, chain_id, &self.dirty::<RulesRow>()).await?;
        store::upsert(db, chain_id, &self.dirty::<ExecutorRow>()).await?;
        store::upsert(db, chain_id, &self.dirty::<PriceRow>()).await?;
        store::upsert(db, chain_id, &self.dirty::<StakeRow>()).await?;
        store::upsert(db, chain_id, &self.dirty::<JobRow>()).await?;
        store::upsert(db, chain_id, &self.dirty::<DisputeRow>()).await?;
        store::upsert(db, chain_id, &self.dirty::<BalanceRow>()).await?;
        store::insert_undo(db, chain_id, &self.undo).await?;
        Ok(())
    }

    async fn job(
        &mut self,
        db: &mut AnyConnection,
        job_id: U256,
    ) -> Result<Option<JobRow>, StoreError> {
        let row = self.load::<JobRow>(db, &to_u64(job_id)).await?;
        if row.is_none() {
            tracing::warn!(job_id = %job_id, "event for a job the indexer never saw posted");
        }
        Ok(row)
    }

    async fn stake(
        &mut self,
        db: &mut AnyConnection,
        account: Address,
        role: u8,
        block: u64,
    ) -> Result<StakeRow, StoreError> {
        Ok(self
            .load::<StakeRow>(db, &(account, role))
            .await?
            .unwrap_or_else(|| StakeRow::empty(account, role, block)))
    }

    async fn balance(
        &mut self,
        db: &mut AnyConnection,
        account: Address,
        block: u64,
    ) -> Result<BalanceRow, StoreError> {
        Ok(self
            .load::<BalanceRow>(db, &account)
            .await?
            .unwrap_or_else(|| BalanceRow::empty(account, block)))
    }

    async fn credit(
        &mut self,
        db: &mut AnyConnection,
        account: Address,
        amount: U256,
        block: u64,
    ) -> Result<(), StoreError> {
        if amount.is_zero() {
            return Ok(());
        }
        let mut row = self.balance(db, account, block).await?;
        row.credit = row.credit.saturating_add(amount);
        row.block = block;
        self.save(row)
    }

    async fn executor(
        &mut self,
        db: &mut AnyConnection,
        address: Address,
        block: u64,
    ) -> Result<ExecutorRow, StoreError> {
        Ok(self
            .load::<ExecutorRow>(db, &address)
            .await?
            .unwrap_or(ExecutorRow {
                address,
                endpoint: String::new(),
                hardware: String::new(),
                disputes_lost: 0,
                block,
            }))
    }

    /// Applies one log.
    pub(crate) async fn apply(
        &mut self,
        db: &mut AnyConnection,
        contracts: &Contracts,
        log: &Log,
    ) -> Result<(), StoreError> {
        let Some(event) = decode(contracts, log) else {
            return Ok(());
        };
        self.events += 1;
        let block = log.block_number.unwrap_or_default();
        match event {
            Event::Escrow(event) => self.escrow(db, *event, log, block).await,
            Event::Staking(event) => self.staking(db, event, block).await,
            Event::Registry(event) => self.registry(db, event, block).await,
            Event::Disputes(event) => self.disputes(db, *event, block).await,
        }
    }

    async fn escrow(
        &mut self,
        db: &mut AnyConnection,
        event: JobEscrowEvents,
        log: &Log,
        block: u64,
    ) -> Result<(), StoreError> {
        match event {
            JobEscrowEvents::JobPosted(e) => {
                let job = e.job;
                // A new id: nothing to load (the undo image of a new row is "absent").
                self.save(JobRow {
                    job_id: to_u64(e.jobId),
                    status: JobStatus::Posted,
                    requester: e.requester,
                    model_id: e.modelId,
                    prompt_hash: job.promptHash,
                    salt: job.spec.salt,
                    rules_version: job.rulesVersion,
                    // Fixed at acceptance.
                    seed: None,
                    max_input_tokens: job.spec.maxInputTokens,
                    max_output_tokens: job.spec.maxOutputTokens,
                    max_input_price: job.spec.maxInputPrice,
                    max_output_price: job.spec.maxOutputPrice,
                    deadline: job.spec.deadline,
                    escrow: job.escrow,
                    executor: None,
                    input_price: None,
                    output_price: None,
                    collateral: None,
                    input_tokens: None,
                    output_tokens: None,
                    finish_reason: None,
                    commitment: None,
                    payment: None,
                    validator_fee: None,
                    challenge_end: None,
                    dispute_end: None,
                    refund: None,
                    collateral_seized: None,
                    compensation: None,
                    to_reward_pool: None,
                    posted_block: block,
                    posted_tx: log.transaction_hash.unwrap_or_default(),
                    block,
                })?;
            }
            JobEscrowEvents::JobAccepted(e) => {
                let Some(mut job) = self.job(db, e.jobId).await? else {
                    return Ok(());
                };
                let a = e.assignment;
                job.status = JobStatus::Accepted;
                job.executor = Some(a.executor);
                job.input_price = Some(a.inputPrice);
                job.output_price = Some(a.outputPrice);
                job.collateral = Some(a.collateral);
                job.seed = Some(a.seed);
                job.block = block;
                self.save(job)?;
                let mut stake = self.stake(db, a.executor, ROLE_EXECUTOR, block).await?;
                stake.locked = stake.locked.saturating_add(a.collateral);
                stake.block = block;
                self.save(stake)?;
            }
            JobEscrowEvents::ResultSubmitted(e) => {
                let Some(mut job) = self.job(db, e.jobId).await? else {
                    return Ok(());
                };
                let s = e.settlement;
                job.status = JobStatus::Submitted;
                job.input_tokens = Some(e.inputTokens);
                job.output_tokens =
                    Some(u32::try_from(e.outputTokens.len() / 4).unwrap_or(u32::MAX));
                job.finish_reason = Some(e.finishReason);
                job.commitment = Some(s.commitment);
                job.payment = Some(s.payment);
                job.validator_fee = Some(s.validatorFee);
                job.challenge_end = Some(s.challengeEnd);
                job.dispute_end = Some(s.disputeEnd);
                job.block = block;
                self.save(job)?;
            }
            JobEscrowEvents::JobFinalized(e) => {
                let Some(mut job) = self.job(db, e.jobId).await? else {
                    return Ok(());
                };
                let payment = job.payment.unwrap_or_default();
                let fee = job.validator_fee.unwrap_or_default();
                let refund = job.escrow.saturating_sub(payment);
                job.status = JobStatus::Finalized;
                job.refund = Some(refund);
                job.block = block;
                let (requester, executor, collateral) = (
                    job.requester,
                    job.executor.unwrap_or_default(),
                    job.collateral.unwrap_or_default(),
                );
                self.save(job)?;
                self.credit(db, executor, payment.saturating_sub(fee), block)
                    .await?;
                self.credit(db, requester, refund, block).await?;
                let mut stake = self.stake(db, executor, ROLE_EXECUTOR, block).await?;
                stake.locked = stake.locked.saturating_sub(collateral);
                // Only jobs that paid something build reputation.
                if !payment.is_zero() {
                    stake.jobs_completed = stake.jobs_completed.saturating_add(1);
                }
                stake.block = block;
                self.save(stake)?;
            }
            JobEscrowEvents::JobCancelled(e) => {
                let Some(mut job) = self.job(db, e.jobId).await? else {
                    return Ok(());
                };
                job.status = JobStatus::Cancelled;
                job.refund = Some(e.refund);
                job.block = block;
                let requester = job.requester;
                self.save(job)?;
                self.credit(db, requester, e.refund, block).await?;
            }
            JobEscrowEvents::JobExpired(e) => {
                let Some(mut job) = self.job(db, e.jobId).await? else {
                    return Ok(());
                };
                // The escrow is credited at once; of the seized collateral, the compensation was
                // locked for the requester (`CreditLocked`, just before) and the rest went to the
                // validator reward pool.
                job.status = JobStatus::Expired;
                job.refund = Some(e.refund);
                job.collateral_seized = Some(e.compensation.saturating_add(e.toRewardPool));
                job.compensation = Some(e.compensation);
                job.to_reward_pool = Some(e.toRewardPool);
                job.block = block;
                let requester = job.requester;
                self.save(job)?;
                self.credit(db, requester, e.refund, block).await?;
            }
            JobEscrowEvents::CreditLocked(e) => {
                let mut row = self.balance(db, e.account, block).await?;
                row.locked_credit = row.locked_credit.saturating_add(e.amount);
                // One lock per account: a new compensation moves its release to the latest.
                row.locked_release_at = to_u64(e.releaseAt);
                row.block = block;
                self.save(row)?;
            }
            JobEscrowEvents::JobDisputed(e) => {
                let Some(mut job) = self.job(db, e.jobId).await? else {
                    return Ok(());
                };
                // The dispute itself is Disputes' `Challenged`, in the same transaction.
                job.status = JobStatus::Disputed;
                job.block = block;
                self.save(job)?;
            }
            JobEscrowEvents::JobRejected(e) => {
                let Some(mut job) = self.job(db, e.jobId).await? else {
                    return Ok(());
                };
                job.status = JobStatus::Rejected;
                job.refund = Some(e.refund);
                job.collateral_seized = Some(e.collateralSeized);
                job.block = block;
                let requester = job.requester;
                self.save(job)?;
                self.credit(db, requester, e.refund, block).await?;
            }
            JobEscrowEvents::Withdrawn(e) => {
                // Pays the whole credit, plus the whole locked credit when it was released: the
                // amount says which (to whom it went changes no balance).
                let mut row = self.balance(db, e.account, block).await?;
                let with_locked = row.credit.saturating_add(row.locked_credit);
                let released = !row.locked_credit.is_zero() && e.amount == with_locked;
                if e.amount != row.credit && !released {
                    tracing::warn!(account = %e.account, indexed = %row.credit, locked = %row.locked_credit,
                        withdrawn = %e.amount, "withdrawal differs from the indexed credit");
                }
                if released {
                    row.locked_credit = U256::ZERO;
                    row.locked_release_at = 0;
                }
                row.credit = row.credit.saturating_sub(e.amount);
                row.withdrawn = row.withdrawn.saturating_add(e.amount);
                row.block = block;
                self.save(row)?;
            }
            JobEscrowEvents::RewardPaid(e) => self.credit(db, e.to, e.amount, block).await?,
            // Raw only: governance and callback outcomes change no derived state.
            _ => {}
        }
        Ok(())
    }

    /// Applies an event of the Disputes contract.
    async fn disputes(
        &mut self,
        db: &mut AnyConnection,
        event: DisputesEvents,
        block: u64,
    ) -> Result<(), StoreError> {
        let id = |dispute_id: U256| to_u64(dispute_id);
        match event {
            DisputesEvents::Challenged(e) => {
                let dispute_id = id(e.disputeId);
                self.load::<DisputeRow>(db, &dispute_id).await?;
                self.save(DisputeRow {
                    dispute_id,
                    source: e.source,
                    claim_id: e.claimId,
                    challenger: e.challenger,
                    executor: e.executor,
                    bond: e.bond,
                    status: "drawing".into(),
                    draw_block: e.drawBlock,
                    commit_end: e.commitEnd,
                    reveal_end: e.revealEnd,
                    jurors: Vec::new(),
                    faulty_votes: 0,
                    honest_votes: 0,
                    collateral_seized: None,
                    burned: None,
                    opened_block: block,
                    resolved_block: None,
                    block,
                })?;
            }
            DisputesEvents::DrawRearmed(e) => {
                if let Some(mut dispute) = self.dispute(db, e.disputeId).await? {
                    dispute.draw_block = e.drawBlock;
                    dispute.block = block;
                    self.save(dispute)?;
                }
            }
            DisputesEvents::JuryDrawn(e) => {
                if let Some(mut dispute) = self.dispute(db, e.disputeId).await? {
                    dispute.status = "voting".into();
                    dispute.jurors = e
                        .jurors
                        .iter()
                        .map(|&juror| JurorBallot {
                            juror,
                            committed: false,
                            vote: None,
                        })
                        .collect();
                    dispute.block = block;
                    self.save(dispute)?;
                }
            }
            DisputesEvents::VoteCommitted(e) => {
                if let Some(mut dispute) = self.dispute(db, e.disputeId).await? {
                    for seat in dispute.jurors.iter_mut().filter(|s| s.juror == e.juror) {
                        seat.committed = true;
                    }
                    dispute.block = block;
                    self.save(dispute)?;
                }
            }
            DisputesEvents::VoteRevealed(e) => {
                if let Some(mut dispute) = self.dispute(db, e.disputeId).await? {
                    // Vote: 1 Honest, 2 Faulty.
                    let vote = match e.vote {
                        1 => "honest",
                        2 => "faulty",
                        _ => "none",
                    };
                    for seat in dispute.jurors.iter_mut().filter(|s| s.juror == e.juror) {
                        seat.vote = Some(vote.into());
                    }
                    match e.vote {
                        1 => dispute.honest_votes = dispute.honest_votes.saturating_add(1),
                        2 => dispute.faulty_votes = dispute.faulty_votes.saturating_add(1),
                        _ => {}
                    }
                    dispute.block = block;
                    self.save(dispute)?;
                }
            }
            DisputesEvents::DisputeResolved(e) => {
                if let Some(mut dispute) = self.dispute(db, e.disputeId).await? {
                    dispute.status = if e.executorFaulty {
                        "executor_faulty"
                    } else {
                        "executor_honest"
                    }
                    .into();
                    dispute.faulty_votes = narrow_votes(e.faultyVotes);
                    dispute.honest_votes = narrow_votes(e.honestVotes);
                    dispute.collateral_seized = Some(e.collateralSeized);
                    dispute.burned = Some(e.burned);
                    dispute.resolved_block = Some(block);
                    dispute.block = block;
                    self.save(dispute)?;
                }
            }
            // Raw only: payouts (`Credited`, `Withdrawn`), penalties (Staking's `Slashed` moves the
            // stake) and governance change no derived row.
            _ => {}
        }
        Ok(())
    }

    async fn dispute(
        &mut self,
        db: &mut AnyConnection,
        dispute_id: U256,
    ) -> Result<Option<DisputeRow>, StoreError> {
        let row = self.load::<DisputeRow>(db, &to_u64(dispute_id)).await?;
        if row.is_none() {
            tracing::warn!(dispute_id = %dispute_id, "event for a dispute the indexer never saw opened");
        }
        Ok(row)
    }

    async fn staking(
        &mut self,
        db: &mut AnyConnection,
        event: StakingEvents,
        block: u64,
    ) -> Result<(), StoreError> {
        match event {
            StakingEvents::Staked(e) => {
                let mut stake = self.stake(db, e.account, e.role, block).await?;
                stake.staked = stake.staked.saturating_add(e.amount);
                stake.block = block;
                self.save(stake)?;
            }
            StakingEvents::UnstakeRequested(e) => {
                let mut stake = self.stake(db, e.account, e.role, block).await?;
                stake.staked = stake.staked.saturating_sub(e.amount);
                stake.unbonding = stake.unbonding.saturating_add(e.amount);
                stake.release_at = to_u64(e.releaseAt);
                stake.block = block;
                self.save(stake)?;
            }
            StakingEvents::Withdrawn(e) => {
                let mut stake = self.stake(db, e.account, e.role, block).await?;
                stake.unbonding = stake.unbonding.saturating_sub(e.amount);
                stake.release_at = 0;
                stake.block = block;
                self.save(stake)?;
            }
            StakingEvents::ExecutorRegistered(e) => {
                let mut executor = self.executor(db, e.executor, block).await?;
                executor.endpoint = e.endpoint;
                executor.hardware = e.hardware;
                executor.block = block;
                self.save(executor)?;
            }
            StakingEvents::PriceSet(e) => {
                self.load::<PriceRow>(db, &(e.executor, e.modelId)).await?;
                self.save(PriceRow {
                    executor: e.executor,
                    model_id: e.modelId,
                    active: true,
                    input_per_million: e.inputPerMillion,
                    output_per_million: e.outputPerMillion,
                    block,
                })?;
            }
            StakingEvents::ModelRemoved(e) => {
                if let Some(mut price) = self.load::<PriceRow>(db, &(e.executor, e.modelId)).await?
                {
                    price.active = false;
                    price.block = block;
                    self.save(price)?;
                }
            }
            StakingEvents::CollateralSeized(e) => {
                // The job's whole collateral leaves `locked`; `amount` is what was actually taken
                // from the stake: less when a slash already took part of it (the deficit).
                let collateral = match self.job(db, e.jobId).await? {
                    Some(job) => job.collateral.unwrap_or(e.amount),
                    None => e.amount,
                };
                let mut stake = self.stake(db, e.executor, ROLE_EXECUTOR, block).await?;
                stake.locked = stake.locked.saturating_sub(collateral);
                stake.staked = stake.staked.saturating_sub(e.amount);
                // Fault 0 is a no-show, 1 a lost dispute.
                if e.fault == 0 {
                    stake.jobs_expired = stake.jobs_expired.saturating_add(1);
                } else {
                    let mut executor = self.executor(db, e.executor, block).await?;
                    executor.disputes_lost = executor.disputes_lost.saturating_add(1);
                    executor.block = block;
                    self.save(executor)?;
                }
                stake.block = block;
                self.save(stake)?;
            }
            StakingEvents::Slashed(e) => {
                // As the contract does: from free stake first, then unbonding stake, then the stake
                // behind open jobs. `locked` keeps counting those jobs' collateral, so the last part
                // leaves a deficit (locked above staked) that their release or seizure absorbs.
                let mut stake = self.stake(db, e.account, e.role, block).await?;
                let free = stake.staked.saturating_sub(stake.locked);
                let from_free = e.amount.min(free);
                let from_unbonding = (e.amount - from_free).min(stake.unbonding);
                let from_locked = e.amount - from_free - from_unbonding;
                stake.staked = stake.staked.saturating_sub(from_free + from_locked);
                stake.unbonding = stake.unbonding.saturating_sub(from_unbonding);
                stake.block = block;
                self.save(stake)?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn registry(
        &mut self,
        db: &mut AnyConnection,
        event: ModelRegistryEvents,
        block: u64,
    ) -> Result<(), StoreError> {
        match event {
            ModelRegistryEvents::ModelRegistered(e) => {
                self.load::<ModelRow>(db, &e.modelId).await?;
                self.save(ModelRow {
                    model_id: e.modelId,
                    name: e.name,
                    weights_sha256: e.weightsSha256,
                    tokenizer_hash: e.tokenizerHash,
                    active: false,
                    sampler_version: 0,
                    max_context: 0,
                    audit_rate_ppm: 0,
                    min_executor_stake: U256::ZERO,
                    max_margin_ppm: 0,
                    max_flip_rate_ppm: 0,
                    rules_version: 0,
                    block,
                })?;
            }
            ModelRegistryEvents::ModelTermsUpdated(e) => {
                if let Some(mut model) = self.model(db, e.modelId).await? {
                    let t = e.terms;
                    model.active = t.active;
                    model.sampler_version = t.samplerVersion;
                    model.max_context = t.maxContext;
                    model.audit_rate_ppm = t.auditRatePpm;
                    model.min_executor_stake = U256::from(t.minExecutorStake);
                    model.rules_version = t.rulesVersion;
                    model.block = block;
                    self.save(model)?;
                }
            }
            ModelRegistryEvents::ThresholdsUpdated(e) => {
                if let Some(mut model) = self.model(db, e.modelId).await? {
                    model.max_margin_ppm = e.thresholds.maxMarginPpm;
                    model.max_flip_rate_ppm = e.thresholds.maxFlipRatePpm;
                    model.block = block;
                    self.save(model)?;
                }
            }
            ModelRegistryEvents::RulesVersioned(e) => {
                let rules = e.rules;
                self.load::<RulesRow>(db, &(e.modelId, e.version)).await?;
                self.save(RulesRow {
                    model_id: e.modelId,
                    version: e.version,
                    audit_rate_ppm: rules.auditRatePpm,
                    max_margin_ppm: rules.thresholds.maxMarginPpm,
                    max_flip_rate_ppm: rules.thresholds.maxFlipRatePpm,
                    block,
                })?;
                // The model's current rules are its latest version.
                if let Some(mut model) = self.model(db, e.modelId).await? {
                    model.rules_version = e.version;
                    model.audit_rate_ppm = rules.auditRatePpm;
                    model.max_margin_ppm = rules.thresholds.maxMarginPpm;
                    model.max_flip_rate_ppm = rules.thresholds.maxFlipRatePpm;
                    model.block = block;
                    self.save(model)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn model(
        &mut self,
        db: &mut AnyConnection,
        model_id: B256,
    ) -> Result<Option<ModelRow>, StoreError> {
        self.load::<ModelRow>(db, &model_id).await
    }
}
