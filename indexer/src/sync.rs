//! Following the chain: backfill of finalized history in adaptive, concurrently fetched block
//! ranges; then block-by-block following of the unfinalized tip with reorg detection by parent
//! hash and rollback to the common ancestor.
//!
//! Above the finalized block the follower does not trust a range answer of `eth_getLogs`: behind
//! a load balancer one node may be a block behind and answer a range with the newest block's logs
//! missing (or nothing at all). Instead, each block's header is read, and only blocks whose logs
//! bloom may hold a followed contract are asked for their logs, by block hash (EIP-234), so that
//! a node that lacks the block says so instead of answering for another view:
//!
//! - every log of the answer must belong to that block (hash and number), to a followed contract,
//!   and be in the header's bloom; otherwise the block is "not ready" and asked again later;
//! - an empty answer for a bloom hit is confirmed with the block's receipts (`eth_getBlockReceipts`
//!   by hash): a node that has the block answers all of them (as many as the block has
//!   transactions, each of that block), and their logs are the truth; a node that lacks it answers
//!   nothing and the block is asked again later. A bloom's false positive so costs two requests;
//!   a block with no bloom hit costs none beyond its header;
//! - blocks are committed up to the first one that is not ready, in order.
//!
//! Finalized history is read in ranges: a node that is a few blocks behind the head has all of
//! it. Rate-limit answers (HTTP 429 or 503, JSON-RPC 429 or -32005 with a rate message) are
//! retried with exponential backoff and jitter without shrinking the range; range-limit refusals
//! halve it.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::{
    eips::{BlockId, BlockNumberOrTag},
    primitives::{Address, Bloom, BloomInput},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{Filter, Log, SyncStatus},
    transports::{RpcError, TransportErrorKind},
};
use futures::{StreamExt, TryStreamExt, stream};
use infera_chain::{
    bindings::JobEscrow,
    redact::{Redacted, redact_text},
};

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
    /// The node failed or could not be reached (retried with backoff while following). The
    /// message is shown with credentials in URLs masked.
    #[error("node: {}", redact_text(&.0.to_string()))]
    Rpc(#[from] RpcError<TransportErrorKind>),
    /// The node answered something impossible (a missing block, say).
    #[error("node: {0}")]
    Node(String),
    /// The node is still syncing: its view of the chain cannot be trusted yet.
    #[error(
        "the node is still syncing (at block {current} of {highest}): waiting for a synced node"
    )]
    NodeSyncing {
        /// Its current block.
        current: u64,
        /// The highest block it knows of.
        highest: u64,
    },
    /// The chain reorganised below a block the node had called finalized.
    #[error(
        "the chain reorganised below finalized block {finalized} (the indexed block {block} is gone, no common ancestor at or above {finalized}): refusing to roll back finalized data; check the node"
    )]
    BelowFinalized {
        /// The last finalized block the database saw.
        finalized: u64,
        /// The block that no longer matches.
        block: u64,
    },
    /// The node's head is below a block it reported finalized.
    #[error(
        "the node's {what} went back from block {before} to {now}: a node behind (a load balancer's pool?) or out of sync; waiting without touching the data"
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
        // A syncing node or a head below finalized is a node behind, often one answer of a
        // load-balanced pool: retried with backoff, never fatal (the executor embeds this
        // follower and must not stop on one lagging answer). The data is left alone meanwhile.
        matches!(
            self,
            Self::BelowFinalized { .. }
                | Self::Config(_)
                | Self::Store(StoreError::CursorMoved { .. } | StoreError::OtherContracts { .. })
                | Self::Store(StoreError::Corrupt { .. } | StoreError::Migrate(_))
        )
    }

    /// Whether the node refused for its rate limit (retried after a longer pause).
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Self::Rpc(error) if refusal(error) == Refusal::RateLimit)
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
    /// Steps in a row that found the next block not ready.
    not_ready: Arc<AtomicU64>,
}

/// Steps in a row the next block may be not ready before it is reported (at warn level).
const NOT_READY_REPORT: u64 = 50;

/// Fewest blocks per `eth_getLogs` after the provider keeps refusing.
const MIN_RANGE: u64 = 1;
/// Logs per `eth_getLogs` the range adapts towards.
const TARGET_LOGS: u64 = 5_000;
/// A node behind the indexed chain this long is reported as an error, not a warning.
const BEHIND_ALARM: Duration = Duration::from_secs(300);
/// The newest blocks followed header by header even when finalized: deeper than any pool node
/// lags (a node further behind answers ranges it cannot fill).
const FOLLOW_DEPTH: u64 = 64;
/// Blocks per batch above the finalized block (each needs its header).
const UNFINALIZED_BATCH: u64 = 128;
/// First pause after a rate-limit answer; it doubles per retry up to [`RATE_LIMIT_MAX_PAUSE`].
const RATE_LIMIT_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two tries of one rate-limited request.
const RATE_LIMIT_MAX_PAUSE: Duration = Duration::from_secs(10);
/// Tries of one request the node keeps rate-limiting before the step fails (and the loop backs
/// off further).
const RATE_LIMIT_TRIES: u32 = 8;

/// A header as the follower needs it: its link, its logs bloom and its transaction count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    block: BlockRef,
    bloom: Bloom,
    transactions: usize,
}

/// How a node refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many requests: wait and ask the same again.
    RateLimit,
    /// Too much asked at once (a block range or a response size): ask for less.
    RangeLimit,
    /// Anything else.
    Other,
}

/// Messages of rate-limit refusals, lowercase (Infura, Alchemy, QuickNode, Ankr, nginx, Cloudflare).
const RATE_LIMIT_TEXT: &[&str] = &[
    "rate limit",
    "rate-limit",
    "ratelimit",
    "rate exceeded",
    "request rate",
    "too many requests",
    "requests per second",
    "compute units per second",
    "throughput",
    "capacity exceeded",
    "throttl",
    "slow down",
];

/// Messages of range-limit refusals, lowercase.
const RANGE_LIMIT_TEXT: &[&str] = &[
    "limit",
    "too many",
    "exceed",
    "block range",
    "response size",
    "returned more than",
    "too large",
];

/// Classifies a refusal: an HTTP 429 or 503, a JSON-RPC error code 429, or a rate message
/// (Infura's -32005 is both "project ID request rate exceeded" and "query returned more than
/// 10000 results": the message decides) is a rate limit; a message about ranges, sizes or counts
/// is a range limit.
pub(crate) fn refusal(error: &RpcError<TransportErrorKind>) -> Refusal {
    match error {
        RpcError::Transport(kind)
            if kind.as_http_error().is_some_and(|http| {
                http.is_rate_limit_err() || http.is_temporarily_unavailable()
            }) =>
        {
            return Refusal::RateLimit;
        }
        RpcError::ErrorResp(payload) if payload.code == 429 => return Refusal::RateLimit,
        _ => {}
    }
    let text = error.to_string().to_ascii_lowercase();
    if RATE_LIMIT_TEXT.iter().any(|needle| text.contains(needle)) {
        Refusal::RateLimit
    } else if RANGE_LIMIT_TEXT.iter().any(|needle| text.contains(needle)) {
        Refusal::RangeLimit
    } else {
        Refusal::Other
    }
}

/// Whether the node says it does not have the block asked for by hash (not that it lacks the
/// method: -32601 is an error, which the loop reports while retrying).
fn is_unknown_block(error: &RpcError<TransportErrorKind>) -> bool {
    let RpcError::ErrorResp(payload) = error else {
        return false;
    };
    let text = payload.message.to_ascii_lowercase();
    if payload.code == -32601 || text.contains("method") {
        return false;
    }
    [
        "unknown block",
        "not found",
        "missing",
        "unavailable",
        "does not exist",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// `pause` scaled by a pseudo-random factor in [0.5, 1.5): clients that were refused together do
/// not come back together.
fn jitter(pause: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per instance from the OS; hashing the time mixes in more.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let unit = (hasher.finish() % 1_000) as f64 / 1_000.0;
    pause.mul_f64(0.5 + unit)
}

/// Whether `bloom` may hold a log of one of `addresses`.
fn may_hold(bloom: &Bloom, addresses: &[Address]) -> bool {
    addresses
        .iter()
        .any(|address| bloom.contains_input(BloomInput::Raw(address.as_slice())))
}

/// Whether `logs` can be `header`'s logs of `addresses`: each of that block (hash and number), of
/// a followed contract, not removed, and in the header's bloom.
fn belong_to(logs: &[Log], header: &Header, addresses: &[Address]) -> bool {
    logs.iter().all(|log| {
        log.block_hash == Some(header.block.hash)
            && log.block_number.is_none_or(|n| n == header.block.number)
            && log.log_index.is_some()
            && !log.removed
            && addresses.contains(&log.address())
            && header.bloom.contains_raw_log(log.address(), log.topics())
    })
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
            IndexerError::Config(format!(
                "invalid rpc_url {}: {e}",
                Redacted(&config.rpc_url)
            ))
        })?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        let chain_id =
            retry_rate_limited("eth_chainId", || async { provider.get_chain_id().await }).await?;
        let escrow = JobEscrow::new(job_escrow, provider.clone());
        let resolve = |e: alloy::contract::Error| match e {
            alloy::contract::Error::TransportError(e) => IndexerError::Rpc(e),
            e => IndexerError::Config(format!(
                "{job_escrow} does not answer as a JobEscrow on chain {chain_id}: {}",
                redact_text(&e.to_string())
            )),
        };
        let contracts = Contracts {
            job_escrow,
            staking: retry_rate_limited("eth_call", || async { escrow.staking().call().await })
                .await
                .map_err(resolve)?,
            model_registry: retry_rate_limited("eth_call", || async {
                escrow.registry().call().await
            })
            .await
            .map_err(resolve)?,
            disputes: retry_rate_limited("eth_call", || async { escrow.disputes().call().await })
                .await
                .map_err(resolve)?,
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
            not_ready: Arc::new(AtomicU64::new(0)),
            config,
        };
        let start_ref = indexer.header(before).await?.block;
        let cursor = indexer
            .store
            .open_cursor(chain_id, &contracts.fingerprint(), start_ref)
            .await?;
        tracing::info!(
            chain_id,
            job_escrow = %contracts.job_escrow,
            staking = %contracts.staking,
            model_registry = %contracts.model_registry,
            disputes = %contracts.disputes,
            block = cursor.block_number,
            rpc = %Redacted(&indexer.config.rpc_url),
            database = %Redacted(&indexer.config.database_url),
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

    /// The header at `number`, or `None` when the node does not have it.
    async fn header_at(&self, number: u64) -> Result<Option<Header>, IndexerError> {
        let block = retry_rate_limited("eth_getBlockByNumber", || async {
            self.provider
                .get_block_by_number(BlockNumberOrTag::Number(number))
                .await
        })
        .await?;
        Ok(block.map(|block| Header {
            block: BlockRef {
                number,
                hash: block.header.hash,
                parent_hash: block.header.parent_hash,
            },
            bloom: block.header.logs_bloom,
            transactions: block.transactions.len(),
        }))
    }

    /// The header at `number`, which the node must have.
    async fn header(&self, number: u64) -> Result<Header, IndexerError> {
        self.header_at(number)
            .await?
            .ok_or_else(|| IndexerError::Node(format!("block {number} not found")))
    }

    async fn tag(&self, tag: BlockNumberOrTag) -> Result<u64, IndexerError> {
        let block = retry_rate_limited("eth_getBlockByNumber", || async {
            self.provider.get_block_by_number(tag).await
        })
        .await?;
        Ok(block.map_or(0, |block| block.header.number))
    }

    /// The node's head, safe and finalized blocks; fails when it is still syncing.
    async fn tip(&self) -> Result<Tip, IndexerError> {
        let syncing =
            retry_rate_limited("eth_syncing", || async { self.provider.syncing().await }).await?;
        if let SyncStatus::Info(info) = syncing {
            return Err(IndexerError::NodeSyncing {
                current: u64::try_from(info.current_block).unwrap_or(u64::MAX),
                highest: u64::try_from(info.highest_block).unwrap_or(u64::MAX),
            });
        }
        let (head, safe, finalized) = tokio::try_join!(
            async {
                Ok::<_, IndexerError>(
                    retry_rate_limited("eth_blockNumber", || async {
                        self.provider.get_block_number().await
                    })
                    .await?,
                )
            },
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
    /// refuses it as too large, and adapting the range of later requests. Rate limits are waited
    /// out (the range stays).
    async fn logs(&self, from: u64, to: u64) -> Result<Vec<Log>, IndexerError> {
        let mut pending = vec![(from, to)];
        let mut logs = Vec::new();
        while let Some((a, b)) = pending.pop() {
            let filter = Filter::new()
                .address(self.contracts.addresses())
                .from_block(a)
                .to_block(b);
            match retry_rate_limited("eth_getLogs", || self.provider.get_logs(&filter)).await {
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
                Err(error) if refusal(&error) == Refusal::RangeLimit && b > a => {
                    let mid = a + (b - a) / 2;
                    self.range
                        .store((b - a + 1).div_ceil(2).max(MIN_RANGE), Ordering::Relaxed);
                    tracing::debug!(from = a, to = b, error = %redact_text(&error.to_string()), "provider refused the range; halving");
                    pending.push((mid + 1, b));
                    pending.push((a, mid));
                }
                Err(error) => return Err(error.into()),
            }
        }
        logs.sort_by_key(|log| (log.block_number, log.log_index));
        Ok(logs)
    }

    /// The logs of the followed contracts in one unfinalized block whose bloom may hold them, or
    /// `None` when the node cannot answer for that block yet (see the module documentation).
    async fn block_logs(&self, header: &Header) -> Result<Option<Vec<Log>>, IndexerError> {
        let addresses = self.contracts.addresses();
        let filter = Filter::new()
            .address(addresses.clone())
            .at_block_hash(header.block.hash);
        match retry_rate_limited("eth_getLogs", || self.provider.get_logs(&filter)).await {
            Ok(logs) if !belong_to(&logs, header, &addresses) => {
                tracing::debug!(
                    block = header.block.number,
                    "logs by hash do not match the header; asking again later"
                );
                return Ok(None);
            }
            Ok(logs) if !logs.is_empty() => return Ok(Some(logs)),
            Ok(_) => {}
            Err(error) if is_unknown_block(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        }
        // A bloom hit and no logs: a false positive, or a node that answers an empty list for a
        // block it lacks. The receipts tell.
        let receipts = match retry_rate_limited("eth_getBlockReceipts", || async {
            self.provider
                .get_block_receipts(BlockId::hash(header.block.hash))
                .await
        })
        .await
        {
            Ok(Some(receipts)) => receipts,
            Ok(None) => return Ok(None),
            Err(error) if is_unknown_block(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if receipts.len() != header.transactions
            || receipts
                .iter()
                .any(|r| r.block_hash != Some(header.block.hash))
        {
            tracing::debug!(
                block = header.block.number,
                receipts = receipts.len(),
                transactions = header.transactions,
                "receipts do not match the header; asking again later"
            );
            return Ok(None);
        }
        let logs: Vec<Log> = receipts
            .iter()
            .flat_map(|receipt| receipt.inner.logs().iter().cloned())
            .filter(|log| addresses.contains(&log.address()))
            .collect();
        if !belong_to(&logs, header, &addresses) {
            return Ok(None);
        }
        if !logs.is_empty() {
            tracing::warn!(
                block = header.block.number,
                logs = logs.len(),
                "the node answered no logs for a block that has some; taken from its receipts"
            );
        }
        Ok(Some(logs))
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

        // Reorg: the indexed block is no longer the node's block at that height. A node whose
        // head is below the cursor is either behind (behind a load balancer the next answer may
        // come from a node a few blocks behind) or on a shorter branch: its head block tells
        // which — the one indexed at that height (wait for the node) or another (roll back).
        if cursor.block_number > tip.head {
            let indexed = self
                .store
                .blocks_desc(self.chain_id, tip.head)
                .await?
                .into_iter()
                .find(|block| block.number == tip.head);
            let node = self.header_at(tip.head).await?;
            if let (Some(indexed), Some(node)) = (indexed, node)
                && indexed.hash == node.block.hash
            {
                tracing::debug!(
                    block = cursor.block_number,
                    head = tip.head,
                    "the node is behind the indexed block; waiting"
                );
                return Ok(Step::Idle);
            }
            return self.roll_back(&cursor, tip).await;
        }
        let current = self.header_at(cursor.block_number).await?;
        let still_canonical = match current {
            Some(header) => header.block.hash == cursor.block_hash,
            None => {
                return Err(IndexerError::Node(format!(
                    "block {} not found",
                    cursor.block_number
                )));
            }
        };
        if !still_canonical {
            return self.roll_back(&cursor, tip).await;
        }
        if cursor.block_number >= tip.head {
            return Ok(Step::Idle);
        }
        let from = cursor.block_number + 1;
        // Ranges by number only where every node of a pool has the blocks: the last
        // `FOLLOW_DEPTH` blocks, finalized or not, are followed header by header (bloom, logs by
        // hash), so a node a few blocks behind cannot make a range look empty on a chain whose
        // finalized block is close to its head.
        if from <= tip.finalized.min(tip.head.saturating_sub(FOLLOW_DEPTH)) {
            self.backfill(cursor, tip).await
        } else {
            self.follow(cursor, tip).await
        }
    }

    /// Walks the stored headers down to the newest one the node still has, and rolls back to it.
    async fn roll_back(&self, cursor: &Cursor, tip: Tip) -> Result<Step, IndexerError> {
        let started = Instant::now();
        for stored in self
            .store
            .blocks_desc(self.chain_id, cursor.finalized)
            .await?
        {
            // The finalized block itself is a valid common ancestor (its header is kept).
            if stored.number < cursor.finalized {
                break;
            }
            if stored.number > tip.head
                || self
                    .header_at(stored.number)
                    .await?
                    .is_none_or(|header| header.block.hash != stored.hash)
            {
                continue;
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
        let last = tip.finalized.min(tip.head.saturating_sub(FOLLOW_DEPTH));
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
                Ok::<_, IndexerError>((logs, header.block))
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

    /// The unfinalized tip: headers checked link by link, logs asked by block hash for the
    /// blocks whose bloom may hold them and checked against the headers (see the module
    /// documentation); committed up to the first block the node cannot answer for yet.
    async fn follow(&self, cursor: Cursor, tip: Tip) -> Result<Step, IndexerError> {
        let from = cursor.block_number + 1;
        let to = tip.head.min(from + UNFINALIZED_BATCH - 1);
        let fetched: Vec<Option<Header>> = stream::iter(from..=to)
            .map(|n| self.header_at(n))
            .buffered(self.config.concurrency.max(1) * 4)
            .try_collect()
            .await?;
        // A node a block behind may lack the newest headers: index up to the first gap.
        let headers: Vec<Header> = fetched.into_iter().map_while(|h| h).collect();
        let mut parent = cursor.block_hash;
        for header in &headers {
            if header.block.parent_hash != parent {
                // The chain moved while we read it; the next step finds out where.
                return Ok(Step::Idle);
            }
            parent = header.block.hash;
        }
        let addresses = self.contracts.addresses();
        let answers: Vec<Option<Vec<Log>>> = stream::iter(headers.clone())
            .map(|header| {
                let hit = may_hold(&header.bloom, &addresses);
                async move {
                    if hit {
                        self.block_logs(&header).await
                    } else {
                        Ok(Some(Vec::new()))
                    }
                }
            })
            .buffered(self.config.concurrency.max(1) * 4)
            .try_collect()
            .await?;
        let ready = answers.iter().take_while(|a| a.is_some()).count();
        if ready < headers.len() {
            let steps = self.not_ready.fetch_add(1, Ordering::Relaxed) + 1;
            if steps.is_multiple_of(NOT_READY_REPORT) {
                tracing::warn!(
                    block = from + ready as u64,
                    steps,
                    "the node still cannot answer for this block's logs (by hash, or its receipts)"
                );
            } else {
                tracing::debug!(
                    block = from + ready as u64,
                    "the node cannot answer for this block yet; indexing up to the one before"
                );
            }
        } else {
            self.not_ready.store(0, Ordering::Relaxed);
        }
        let Some(last) = headers.get(..ready).and_then(|h| h.last()).map(|h| h.block) else {
            return Ok(Step::Idle);
        };
        let mut logs: Vec<Log> = answers
            .into_iter()
            .take(ready)
            .flatten()
            .flatten()
            .collect();
        logs.sort_by_key(|log| (log.block_number, log.log_index));
        let refs: Vec<BlockRef> = headers[..ready].iter().map(|h| h.block).collect();
        let (cursor, events) = self.commit(&cursor, last, &refs, &logs, tip).await?;
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
        // Since when the node has been behind (head below finalized, or syncing), continuously.
        let mut behind_since: Option<Instant> = None;
        loop {
            let step = tokio::select! {
                () = &mut shutdown => return Ok(()),
                step = self.step() => step,
            };
            let behind = matches!(
                step,
                Err(IndexerError::WentBack { .. } | IndexerError::NodeSyncing { .. })
            );
            if !behind {
                behind_since = None;
            }
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
                    if error.is_rate_limit() {
                        // The node kept refusing for its rate: give it more room.
                        backoff = backoff.max(RATE_LIMIT_MAX_PAUSE);
                    }
                    let pause = jitter(backoff);
                    let since = behind.then(|| *behind_since.get_or_insert_with(Instant::now));
                    match since.map(|since| since.elapsed()) {
                        // Behind this long is no lagging pool member: another chain (a devnet
                        // restarted under the same id), or a node that lost its sync.
                        Some(behind_for) if behind_for >= BEHIND_ALARM => tracing::error!(
                            %error,
                            behind_s = behind_for.as_secs(),
                            retry_in_ms = pause.as_millis() as u64,
                            "the node has been behind the indexed chain for a long time: check it (another chain? lost sync?)"
                        ),
                        _ => {
                            tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "indexer step failed")
                        }
                    }
                    pause
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

/// An error that may be the node's.
trait NodeError {
    fn rpc(&self) -> Option<&RpcError<TransportErrorKind>>;
}

impl NodeError for RpcError<TransportErrorKind> {
    fn rpc(&self) -> Option<&RpcError<TransportErrorKind>> {
        Some(self)
    }
}

impl NodeError for alloy::contract::Error {
    fn rpc(&self) -> Option<&RpcError<TransportErrorKind>> {
        match self {
            Self::TransportError(error) => Some(error),
            _ => None,
        }
    }
}

/// Runs `call` until it succeeds, fails other than by a rate limit, or was rate-limited
/// [`RATE_LIMIT_TRIES`] times; between tries it waits the node's `Retry-After`, or an exponential
/// pause with jitter.
async fn retry_rate_limited<T, E, F, Fut>(what: &'static str, call: F) -> Result<T, E>
where
    E: NodeError,
    F: Fn() -> Fut,
    Fut: std::future::IntoFuture<Output = Result<T, E>>,
{
    let mut pause = RATE_LIMIT_FIRST_PAUSE;
    let mut tries = 1;
    loop {
        match call().into_future().await {
            Err(error)
                if tries < RATE_LIMIT_TRIES
                    && error
                        .rpc()
                        .is_some_and(|e| refusal(e) == Refusal::RateLimit) =>
            {
                let asked = match error.rpc() {
                    Some(RpcError::Transport(kind)) => kind.retry_after(),
                    _ => None,
                };
                let wait = asked
                    .unwrap_or_else(|| jitter(pause))
                    .min(RATE_LIMIT_MAX_PAUSE);
                tracing::debug!(
                    request = what,
                    tries,
                    wait_ms = wait.as_millis() as u64,
                    "rate limited; backing off"
                );
                tokio::time::sleep(wait).await;
                pause = (pause * 2).min(RATE_LIMIT_MAX_PAUSE);
                tries += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;

    fn error_resp(code: i64, message: &str) -> RpcError<TransportErrorKind> {
        RpcError::ErrorResp(
            serde_json::from_value(serde_json::json!({"code": code, "message": message})).unwrap(),
        )
    }

    #[test]
    fn rate_limits_are_not_range_limits() {
        for error in [
            TransportErrorKind::http_error(429, "Too Many Requests".into()),
            TransportErrorKind::http_error(503, String::new()),
            error_resp(429, "slow down"),
            error_resp(-32005, "project ID request rate exceeded"),
            error_resp(-32005, "limit exceeded: too many requests"),
            error_resp(-32016, "over rate limit"),
        ] {
            assert_eq!(refusal(&error), Refusal::RateLimit, "{error}");
        }
        for error in [
            error_resp(-32005, "query returned more than 10000 results"),
            error_resp(-32602, "block range is too large"),
            error_resp(-32000, "exceed maximum block range: 5000"),
            error_resp(-32000, "Log response size exceeded"),
        ] {
            assert_eq!(refusal(&error), Refusal::RangeLimit, "{error}");
        }
        assert_eq!(
            refusal(&error_resp(-32000, "execution reverted")),
            Refusal::Other
        );
        assert_eq!(
            refusal(&TransportErrorKind::http_error(500, String::new())),
            Refusal::Other
        );
    }

    #[test]
    fn an_unknown_block_is_not_a_missing_method() {
        assert!(is_unknown_block(&error_resp(-32000, "unknown block")));
        assert!(is_unknown_block(&error_resp(-32000, "header not found")));
        assert!(!is_unknown_block(&error_resp(
            -32601,
            "the method eth_getBlockReceipts does not exist/is not available"
        )));
        assert!(!is_unknown_block(&TransportErrorKind::http_error(
            404,
            "not found".into()
        )));
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..100 {
            let pause = jitter(Duration::from_millis(100));
            assert!(pause >= Duration::from_millis(50) && pause < Duration::from_millis(150));
        }
    }

    #[test]
    fn node_errors_are_shown_without_credentials() {
        let error = IndexerError::from(TransportErrorKind::custom_str(
            "error sending request for url (https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161)",
        ));
        let text = error.to_string();
        assert!(!text.contains("9aa3d95b"), "{text}");
        assert!(text.contains("https://mainnet.infura.io/v3/***"), "{text}");
    }

    #[test]
    fn logs_must_be_the_headers_and_in_its_bloom() {
        let address = Address::repeat_byte(1);
        let topic = B256::repeat_byte(2);
        let mut bloom = Bloom::default();
        bloom.accrue_raw_log(address, &[topic]);
        let header = Header {
            block: BlockRef {
                number: 7,
                hash: B256::repeat_byte(7),
                parent_hash: B256::repeat_byte(6),
            },
            bloom,
            transactions: 1,
        };
        let log = |hash: B256, address: Address| Log {
            inner: alloy::primitives::Log::new_unchecked(address, vec![topic], Default::default()),
            block_hash: Some(hash),
            block_number: Some(7),
            log_index: Some(0),
            ..Log::default()
        };
        assert!(may_hold(&bloom, &[address]));
        assert!(!may_hold(&Bloom::default(), &[address]));
        assert!(belong_to(
            &[log(header.block.hash, address)],
            &header,
            &[address]
        ));
        assert!(belong_to(&[], &header, &[address]));
        // Another block's log (a node answering for its own view), or one not in the bloom.
        assert!(!belong_to(
            &[log(B256::repeat_byte(9), address)],
            &header,
            &[address]
        ));
        let other = Address::repeat_byte(3);
        assert!(!belong_to(
            &[log(header.block.hash, other)],
            &header,
            &[address, other]
        ));
    }
}
