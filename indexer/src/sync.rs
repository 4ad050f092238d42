//! Following the chain: backfill of finalized history in adaptive, concurrently fetched block
//! ranges; then block-by-block following of the unfinalized tip with reorg detection by parent
//! hash and rollback to the common ancestor.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockNumberOrTag,
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{Filter, Log, SyncStatus},
    transports::{RpcError, TransportErrorKind},
};
use futures::{StreamExt, TryStreamExt, stream};
use infera_protocol::bindings::JobEscrow;

use crate::{
    config::IndexerConfig,
    state::{Changes, Contracts},
    store::{self, BlockRef, Cursor, Store, StoreError, Tip},
};

/// Why the indexer stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node failed or could not be reached (retried with backoff while following).
    #[error("node: {0}")]
    Rpc(#[from] RpcError<TransportErrorKind>),
    /// The node answered something impossible (a missing block, say).
    #[error("node: {0}")]
    Node(String),
    /// The node is still syncing: its view of the chain cannot be trusted yet.
    #[error(
        "the node is still syncing (at block {current} of {highest}): the indexer waits for a synced node and stops"
    )]
    NodeSyncing {
        /// Its current block.
        current: u64,
        /// The highest block it knows of.
        highest: u64,
    },
    /// The chain reorganised below a block the node had called finalized.
    #[error(
        "the chain reorganised below finalized block {finalized} (the indexed block {block} is gone, no common ancestor above {finalized}): refusing to roll back finalized data; check the node"
    )]
    BelowFinalized {
        /// The last finalized block the database saw.
        finalized: u64,
        /// The block that no longer matches.
        block: u64,
    },
    /// The node's head is below a block it reported finalized.
    #[error(
        "the node's {what} went back from block {before} to {now}: a node out of sync, or another chain; stopping without touching the data"
    )]
    WentBack {
        /// What went back.
        what: &'static str,
        /// What it said before.
        before: u64,
        /// What it says now.
        now: u64,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl IndexerError {
    /// Whether retrying cannot help: the indexer stops.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::NodeSyncing { .. }
                | Self::BelowFinalized { .. }
                | Self::WentBack { .. }
                | Self::Config(_)
                | Self::Store(StoreError::CursorMoved { .. } | StoreError::OtherContracts { .. })
                | Self::Store(StoreError::Corrupt { .. } | StoreError::Migrate(_))
        )
    }
}

/// What one step of the loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing new on chain.
    Idle,
    /// Committed blocks up to this one.
    Advanced(u64),
    /// Rolled back to this common ancestor.
    RolledBack(u64),
}

/// A connected indexer.
#[derive(Debug, Clone)]
pub struct Indexer {
    store: Store,
    provider: DynProvider,
    contracts: Contracts,
    chain_id: u64,
    config: IndexerConfig,
    range: Arc<AtomicU64>,
}

/// Fewest blocks per `eth_getLogs` after the provider keeps refusing.
const MIN_RANGE: u64 = 1;
/// Logs per `eth_getLogs` the range adapts towards.
const TARGET_LOGS: u64 = 5_000;
/// Blocks per batch above the finalized block (each needs its header).
const UNFINALIZED_BATCH: u64 = 128;

fn is_range_limit(error: &RpcError<TransportErrorKind>) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    [
        "limit",
        "too many",
        "exceed",
        "block range",
        "response size",
        "returned more than",
        "too large",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

impl Indexer {
    /// Connects to the node and the database, resolves the contracts from JobEscrow, and opens
    /// (or creates) the cursor.
    ///
    /// # Errors
    /// [`IndexerError`] when the node or database cannot be reached or the database belongs to
    /// other contracts.
    pub async fn connect(config: IndexerConfig) -> Result<Self, IndexerError> {
        let job_escrow = config.job_escrow.ok_or_else(|| {
            IndexerError::Config(
                "job_escrow is required (the address `infera devnet` prints)".into(),
            )
        })?;
        let url = config.rpc_url.parse().map_err(|e| {
            IndexerError::Config(format!("invalid rpc_url {}: {e}", config.rpc_url))
        })?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        let chain_id = provider.get_chain_id().await?;
        let escrow = JobEscrow::new(job_escrow, provider.clone());
        let resolve = |e: alloy::contract::Error| {
            IndexerError::Config(format!(
                "{job_escrow} does not answer as a JobEscrow on chain {chain_id}: {e}"
            ))
        };
        let contracts = Contracts {
            job_escrow,
            staking: escrow.staking().call().await.map_err(resolve)?,
            model_registry: escrow.registry().call().await.map_err(resolve)?,
        };
        let store = Store::connect(&config.database_url).await?;
        let start = config.start_block.unwrap_or(0);
        let before = start.saturating_sub(1);
        let indexer = Self {
            store,
            provider,
            contracts,
            chain_id,
            range: Arc::new(AtomicU64::new(config.initial_block_range.max(MIN_RANGE))),
            config,
        };
        let start_ref = indexer.header(before).await?;
        let cursor = indexer
            .store
            .open_cursor(chain_id, &contracts.fingerprint(), start_ref)
            .await?;
        tracing::info!(
            chain_id,
            job_escrow = %contracts.job_escrow,
            staking = %contracts.staking,
            model_registry = %contracts.model_registry,
            block = cursor.block_number,
            database = ?indexer.store.backend(),
            "indexer connected"
        );
        Ok(indexer)
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The chain followed.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The contracts followed.
    pub fn contracts(&self) -> Contracts {
        self.contracts
    }

    async fn header(&self, number: u64) -> Result<BlockRef, IndexerError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .await?
            .ok_or_else(|| IndexerError::Node(format!("block {number} not found")))?;
        Ok(BlockRef {
            number,
            hash: block.header.hash,
            parent_hash: block.header.parent_hash,
        })
    }

    async fn tag(&self, tag: BlockNumberOrTag) -> Result<u64, IndexerError> {
        Ok(self
            .provider
            .get_block_by_number(tag)
            .await?
            .map_or(0, |block| block.header.number))
    }

    /// The node's head, safe and finalized blocks; fails when it is still syncing.
    async fn tip(&self) -> Result<Tip, IndexerError> {
        if let SyncStatus::Info(info) = self.provider.syncing().await? {
            return Err(IndexerError::NodeSyncing {
                current: u64::try_from(info.current_block).unwrap_or(u64::MAX),
                highest: u64::try_from(info.highest_block).unwrap_or(u64::MAX),
            });
        }
        let (head, safe, finalized) = tokio::try_join!(
            async { Ok::<_, IndexerError>(self.provider.get_block_number().await?) },
            self.tag(BlockNumberOrTag::Safe),
            self.tag(BlockNumberOrTag::Finalized),
        )?;
        Ok(Tip {
            head,
            safe: safe.min(head),
            finalized: finalized.min(head),
        })
    }

    /// Logs of the followed contracts in `from..=to`, splitting the range while the provider
    /// refuses it as too large, and adapting the range of later requests.
    async fn logs(&self, from: u64, to: u64) -> Result<Vec<Log>, IndexerError> {
        let mut pending = vec![(from, to)];
        let mut logs = Vec::new();
        while let Some((a, b)) = pending.pop() {
            let filter = Filter::new()
                .address(self.contracts.addresses())
                .from_block(a)
                .to_block(b);
            match self.provider.get_logs(&filter).await {
                Ok(mut found) => {
                    // Aim at about TARGET_LOGS logs per request: big enough to amortise the round
                    // trip, small enough that fetching the next range overlaps writing this one.
                    let span = b - a + 1;
                    let next = if found.len() as u64 > TARGET_LOGS {
                        (span * TARGET_LOGS / found.len() as u64).max(MIN_RANGE)
                    } else {
                        span.saturating_mul(2)
                    };
                    self.range
                        .store(next.min(self.config.max_block_range), Ordering::Relaxed);
                    logs.append(&mut found);
                }
                Err(error) if is_range_limit(&error) && b > a => {
                    let mid = a + (b - a) / 2;
                    self.range
                        .store((b - a + 1).div_ceil(2).max(MIN_RANGE), Ordering::Relaxed);
                    tracing::debug!(from = a, to = b, %error, "provider refused the range; halving");
                    pending.push((mid + 1, b));
                    pending.push((a, mid));
                }
                Err(error) => return Err(error.into()),
            }
        }
        logs.sort_by_key(|log| (log.block_number, log.log_index));
        Ok(logs)
    }

    /// Commits `logs` of blocks up to `to` with their headers, moving the cursor from `cursor`.
    async fn commit(
        &self,
        cursor: &Cursor,
        to: BlockRef,
        headers: &[BlockRef],
        logs: &[Log],
        tip: Tip,
    ) -> Result<(Cursor, u64), IndexerError> {
        let mut tx = self
            .store
            .begin_advance(self.chain_id, cursor, to, tip)
            .await?;
        store::insert_logs(&mut tx, self.chain_id, logs).await?;
        let mut changes = Changes::new(self.chain_id, tip.finalized);
        for log in logs {
            changes.apply(&mut tx, &self.contracts, log).await?;
        }
        let events = changes.events;
        changes.flush(&mut tx).await?;
        store::save_blocks(&mut tx, self.chain_id, headers, tip.finalized, to.number).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok((
            Cursor {
                block_number: to.number,
                block_hash: to.hash,
                head: tip.head,
                safe: tip.safe,
                finalized: tip.finalized,
                updated_at_ms: store::now_ms(),
                ..cursor.clone()
            },
            events,
        ))
    }

    /// One step: detect a reorg and roll back, or index what is new, or report idle.
    ///
    /// # Errors
    /// [`IndexerError`]; fatal ones ([`IndexerError::is_fatal`]) must stop the indexer.
    pub async fn step(&self) -> Result<Step, IndexerError> {
        let mut tip = self.tip().await?;
        let cursor = self
            .store
            .cursor(self.chain_id)
            .await?
            .ok_or_else(|| IndexerError::Node("cursor missing".into()))?;
        // Finality only moves forward: a node (or one behind a load balancer) that reports an
        // older finalized block does not make finalized data unfinal again.
        if tip.finalized < cursor.finalized {
            tracing::debug!(
                node = tip.finalized,
                kept = cursor.finalized,
                "node reports an older finalized block; keeping the newer one"
            );
            tip.finalized = cursor.finalized;
            tip.safe = tip.safe.max(tip.finalized);
        }
        if tip.head < cursor.finalized {
            return Err(IndexerError::WentBack {
                what: "head",
                before: cursor.finalized,
                now: tip.head,
            });
        }

        // Reorg: the indexed block is no longer the node's block at that height.
        let still_canonical = cursor.block_number <= tip.head
            && self.header(cursor.block_number).await?.hash == cursor.block_hash;
        if !still_canonical {
            return self.roll_back(&cursor, tip).await;
        }
        if cursor.block_number >= tip.head {
            return Ok(Step::Idle);
        }
        let from = cursor.block_number + 1;
        if from <= tip.finalized {
            self.backfill(cursor, tip).await
        } else {
            self.follow(cursor, tip).await
        }
    }

    /// Walks the stored headers down to the newest one the node still has, and rolls back to it.
    async fn roll_back(&self, cursor: &Cursor, tip: Tip) -> Result<Step, IndexerError> {
        let started = Instant::now();
        for stored in self.store.blocks_desc(self.chain_id).await? {
            if stored.number > tip.head || self.header(stored.number).await?.hash != stored.hash {
                continue;
            }
            if stored.number < cursor.finalized {
                break;
            }
            let report = self
                .store
                .rollback(self.chain_id, cursor, stored, tip)
                .await?;
            tracing::warn!(
                block = stored.number,
                depth = cursor.block_number - stored.number,
                rows_restored = report.rows_restored,
                logs_removed = report.logs_removed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "reorg: rolled back to the common ancestor"
            );
            return Ok(Step::RolledBack(stored.number));
        }
        Err(IndexerError::BelowFinalized {
            finalized: cursor.finalized,
            block: cursor.block_number,
        })
    }

    /// Finalized history: ranges fetched `concurrency` at a time, committed in order.
    async fn backfill(&self, cursor: Cursor, tip: Tip) -> Result<Step, IndexerError> {
        let first = cursor.block_number + 1;
        let last = tip.finalized;
        let total = last - first + 1;
        let started = Instant::now();
        let mut report = Instant::now();
        let (mut events, mut cursor) = (0u64, cursor);
        let mut writing = Duration::ZERO;

        // Ranges are cut lazily so each one uses the range size learnt so far.
        let next = Arc::new(AtomicU64::new(first));
        let ranges = stream::iter(std::iter::from_fn(|| {
            let from = next.load(Ordering::Relaxed);
            (from <= last).then(|| {
                let to = (from + self.range.load(Ordering::Relaxed) - 1).min(last);
                next.store(to + 1, Ordering::Relaxed);
                (from, to)
            })
        }));
        let mut fetched = ranges
            .map(|(from, to)| async move {
                let (logs, header) = tokio::try_join!(self.logs(from, to), self.header(to))?;
                Ok::<_, IndexerError>((logs, header))
            })
            .buffered(self.config.concurrency.max(1));
        while let Some((logs, header)) = fetched.try_next().await? {
            let commit_started = Instant::now();
            let (moved, n) = self.commit(&cursor, header, &[header], &logs, tip).await?;
            writing += commit_started.elapsed();
            cursor = moved;
            events += n;
            if report.elapsed() >= Duration::from_secs(2) || cursor.block_number == last {
                report = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let done = cursor.block_number - first + 1;
                let blocks_per_s = done as f64 / secs;
                tracing::info!(
                    block = cursor.block_number,
                    target = last,
                    percent = (done * 100 / total.max(1)),
                    blocks_per_s = blocks_per_s as u64,
                    events_per_s = (events as f64 / secs) as u64,
                    events,
                    eta_s = ((total - done) as f64 / blocks_per_s.max(1e-3)) as u64,
                    range = self.range.load(Ordering::Relaxed),
                    writing_percent = (writing.as_secs_f64() * 100.0 / secs) as u64,
                    "backfill"
                );
            }
        }
        if total > 1_000 {
            self.store.checkpoint().await?;
        }
        Ok(Step::Advanced(cursor.block_number))
    }

    /// The unfinalized tip: headers checked link by link, logs checked against them.
    async fn follow(&self, cursor: Cursor, tip: Tip) -> Result<Step, IndexerError> {
        let from = cursor.block_number + 1;
        let to = tip.head.min(from + UNFINALIZED_BATCH - 1);
        let headers: Vec<BlockRef> = stream::iter(from..=to)
            .map(|n| self.header(n))
            .buffered(self.config.concurrency.max(1) * 4)
            .try_collect()
            .await?;
        let mut parent = cursor.block_hash;
        for header in &headers {
            if header.parent_hash != parent {
                // The chain moved while we read it; the next step finds out where.
                return Ok(Step::Idle);
            }
            parent = header.hash;
        }
        let logs = self.logs(from, to).await?;
        for log in &logs {
            let n = log.block_number.unwrap_or_default();
            let expected = headers
                .get(usize::try_from(n.saturating_sub(from)).unwrap_or(usize::MAX))
                .map(|h| h.hash);
            if log.block_hash != expected {
                return Ok(Step::Idle);
            }
        }
        let Some(last) = headers.last().copied() else {
            return Ok(Step::Idle);
        };
        let (cursor, events) = self.commit(&cursor, last, &headers, &logs, tip).await?;
        if events > 0 {
            tracing::info!(block = cursor.block_number, events, "indexed");
        }
        Ok(Step::Advanced(cursor.block_number))
    }

    /// Steps until `shutdown` resolves or a fatal error; transient errors are retried with
    /// backoff (up to 30 s between tries).
    ///
    /// # Errors
    /// The fatal [`IndexerError`] that stopped it.
    pub async fn follow_until(
        &self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), IndexerError> {
        tokio::pin!(shutdown);
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        let mut backoff = poll;
        loop {
            let step = tokio::select! {
                () = &mut shutdown => return Ok(()),
                step = self.step() => step,
            };
            let pause = match step {
                Ok(Step::Idle) => {
                    backoff = poll;
                    poll
                }
                Ok(_) => {
                    backoff = poll;
                    Duration::ZERO
                }
                Err(error) if error.is_fatal() => {
                    tracing::error!(%error, "indexer stopped");
                    return Err(error);
                }
                Err(error) => {
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "indexer step failed");
                    backoff
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}
