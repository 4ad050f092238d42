//! The transaction manager every sending service shares: one key, one nonce sequence, one
//! append-only log.
//!
//! - **Log before broadcast.** Every signed transaction is appended to [`TxLog`] (table
//!   `chain_txs`, keyed by hash, several hashes per nonce) before it is broadcast; rows are never
//!   updated except their `status` column.
//! - **Short nonce lock.** [`TxManager::send`] estimates (decoding refusals) outside the lock, then
//!   holds the nonce lock only to sign, log and broadcast. Receipts are awaited concurrently by
//!   [`PendingTx::confirmed`].
//! - **Background keeper.** [`TxManager::run`] re-broadcasts transactions the node lost (e.g.
//!   dropped from its mempool), re-signs at the same nonce with bumped fees
//!   (`max(old × 1.125 rounded up, the node's current estimate)`, capped by
//!   [`TxConfig::max_fee_per_gas_cap`]) a transaction the node refuses as underpriced, or one that
//!   waited [`TxConfig::resubmit_after`] while bidding below the node's current estimate (a bid the
//!   market accepts is re-broadcast, never raised: fees do not compound on a halted chain), fills
//!   nonce gaps nobody logged with a 0-value self-transfer, re-broadcasts a mined transaction a
//!   reorganisation took away (instead of filling its nonce), and settles the status of every
//!   hash of a nonce once one of them is mined (never `replaced` while the node shows one of our
//!   hashes in a block but its receipt lags). Its first pass is the startup recovery:
//!   [`TxManager::new`] never waits for an old transaction.
//! - **Typed errors.** [`classify`] sorts node errors (insufficient funds, nonce too low,
//!   underpriced replacement, already known, fee below base fee, revert, HTTP 429/5xx …); only
//!   transient ones come back as [`TxError::Rpc`]. Messages and log lines pass node errors through
//!   [`crate::redact::redact_text`] (transport errors quote the RPC URL).
//!
//! Changes to the API agreed with the executor (decided by the chain crate):
//! - [`TxError::Rejected`] is added: a permanent refusal by the node that is neither a revert nor
//!   insufficient funds (e.g. "intrinsic gas too low", a fee below the base fee under the cap).
//! - Log status `failed` is added: the node refused the signed transaction at broadcast (it never
//!   entered a mempool, its nonce was not consumed).
//! - When the broadcast of a logged transaction fails *transiently*, [`TxManager::send`] still
//!   returns `Ok(PendingTx)`: the transaction may have reached the node, its nonce is consumed and
//!   the background task re-broadcasts it. Sending the step again would double it.
//! - A request carrying its own `gas` limit is sent with that limit, without estimation.
//! - [`TxLog::entries`] and [`TxLogEntry`] expose the log (tests, diagnostics).

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::{
    consensus::{SignableTransaction, TxEip1559, TxEnvelope},
    eips::eip2718::{Decodable2718, Encodable2718},
    network::TxSignerSync,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    transports::{RpcError, TransportErrorKind},
};
use sqlx::{Row, SqlitePool, sqlite::SqliteRow};
use tokio::sync::Mutex;

use crate::deploy::ChainError;

/// The kind logged for the 0-value self-transfers that fill a nonce gap nobody logged.
pub const GAP_FILL_KIND: &str = "nonce_gap_fill";

/// How the manager behaves.
#[derive(Debug, Clone)]
pub struct TxConfig {
    /// Blocks from the inclusion block (counted as 1) before [`PendingTx::confirmed`] returns.
    pub confirmations: u64,
    /// A transaction not mined this long after its newest signature was logged is re-signed at the
    /// same nonce with bumped fees.
    pub resubmit_after: Duration,
    /// Receipt and mempool polling interval (also the background task's period).
    pub poll_interval: Duration,
    /// Never bid a max fee per gas above this (`None`: no cap).
    pub max_fee_per_gas_cap: Option<u128>,
    /// Gas limit = estimate × (100 + this) / 100.
    pub gas_headroom_percent: u64,
}

impl Default for TxConfig {
    fn default() -> Self {
        Self {
            confirmations: 1,
            resubmit_after: Duration::from_secs(12),
            poll_interval: Duration::from_millis(500),
            max_fee_per_gas_cap: None,
            gas_headroom_percent: 25,
        }
    }
}

/// Errors of the transaction manager.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// The node refused at estimation: a revert, decoded to our contracts' custom errors where
    /// possible. Permanent: sending the same request again fails the same way.
    #[error("refused: {0}")]
    Refused(ChainError),
    /// The key cannot pay for the transaction. Permanent until topped up: never retried blindly.
    #[error("insufficient funds: {0}")]
    InsufficientFunds(String),
    /// The node refused the transaction for another permanent reason.
    #[error("rejected by the node: {0}")]
    Rejected(String),
    /// Transient: the node was unreachable, overloaded (HTTP 429, 5xx) or timed out.
    #[error("rpc: {}", shown(.0))]
    Rpc(RpcError<TransportErrorKind>),
    /// The transaction was mined but reverted.
    #[error("transaction {tx_hash} ({kind}) reverted")]
    Reverted {
        /// What it was for.
        kind: String,
        /// The hash that was mined.
        tx_hash: B256,
        /// Its receipt.
        receipt: Box<TransactionReceipt>,
    },
    /// Its nonce was used by a transaction that is not in the log (someone else used the key).
    #[error("nonce {nonce} ({kind}) was used by a transaction not in the log")]
    Replaced {
        /// What it was for.
        kind: String,
        /// The nonce.
        nonce: u64,
    },
    /// The transaction could not be built or signed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The log could not be read or written.
    #[error("transaction log: {0}")]
    Log(#[from] sqlx::Error),
}

impl TxError {
    /// Whether trying again later may help (the node was unreachable or overloaded), as opposed to
    /// a refusal or a final outcome.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Rpc(_))
    }

    /// Sorts a node error: transient ones stay [`TxError::Rpc`], permanent ones are typed.
    fn from_rpc(error: RpcError<TransportErrorKind>) -> Self {
        match classify(&error) {
            RpcErrorClass::Transient => Self::Rpc(error),
            RpcErrorClass::InsufficientFunds => Self::InsufficientFunds(shown(&error)),
            RpcErrorClass::Reverted => Self::Refused(ChainError::Contract(
                alloy::contract::Error::TransportError(error),
            )),
            _ => Self::Rejected(shown(&error)),
        }
    }
}

/// An error as shown in messages and logs: transport errors quote the RPC URL, which may carry
/// an API key.
fn shown(error: &impl std::fmt::Display) -> String {
    crate::redact::redact_text(&error.to_string())
}

/// What a node error means for a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcErrorClass {
    /// Not enough ETH for gas × price + value.
    InsufficientFunds,
    /// The nonce was already used.
    NonceTooLow,
    /// A transaction at this nonce is in the mempool and ours does not pay enough more.
    ReplacementUnderpriced,
    /// The node already has this very transaction.
    AlreadyKnown,
    /// The max fee is below the block's base fee (nodes that refuse rather than queue).
    FeeBelowBaseFee,
    /// Execution reverted (at estimation or a call).
    Reverted,
    /// Any other refusal by the node: permanent.
    Rejected,
    /// The node could not be reached, was overloaded or timed out: try again later.
    Transient,
}

/// Sorts a node error by the messages geth, reth and anvil return and by HTTP status.
pub fn classify(error: &RpcError<TransportErrorKind>) -> RpcErrorClass {
    match error {
        RpcError::ErrorResp(payload) => {
            let message = payload.message.to_lowercase();
            if message.contains("insufficient funds") {
                RpcErrorClass::InsufficientFunds
            } else if message.contains("nonce too low") {
                RpcErrorClass::NonceTooLow
            } else if message.contains("underpriced") {
                RpcErrorClass::ReplacementUnderpriced
            } else if message.contains("already known")
                || message.contains("known transaction")
                || message.contains("already imported")
            {
                RpcErrorClass::AlreadyKnown
            } else if message.contains("less than block base fee")
                || message.contains("fee cap less than")
            {
                RpcErrorClass::FeeBelowBaseFee
            } else if message.contains("revert") {
                RpcErrorClass::Reverted
            } else if payload.code == -32005
                || [
                    "rate limit",
                    "too many requests",
                    "timeout",
                    "timed out",
                    "try again",
                    "temporarily",
                    "header not found",
                    "busy",
                ]
                .iter()
                .any(|pattern| message.contains(pattern))
            {
                RpcErrorClass::Transient
            } else {
                RpcErrorClass::Rejected
            }
        }
        RpcError::Transport(kind) => match kind.as_http_error() {
            Some(http) if http.status == 429 || http.status == 408 || http.status >= 500 => {
                RpcErrorClass::Transient
            }
            Some(_) => RpcErrorClass::Rejected,
            // Connection refused, reset, backend gone, custom transport failures.
            None => RpcErrorClass::Transient,
        },
        RpcError::NullResp | RpcError::DeserError { .. } => RpcErrorClass::Transient,
        _ => RpcErrorClass::Rejected,
    }
}

/// Status of one logged hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// Logged and (about to be) broadcast; not mined yet.
    Pending,
    /// Mined and succeeded.
    Mined,
    /// Mined and reverted.
    Reverted,
    /// Another hash of its nonce was mined.
    Superseded,
    /// Its nonce was used by a transaction not in the log.
    Replaced,
    /// The node refused it at broadcast: it never entered a mempool.
    Failed,
}

impl TxStatus {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Mined => "mined",
            Self::Reverted => "reverted",
            Self::Superseded => "superseded",
            Self::Replaced => "replaced",
            Self::Failed => "failed",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "pending" => Self::Pending,
            "mined" => Self::Mined,
            "reverted" => Self::Reverted,
            "superseded" => Self::Superseded,
            "replaced" => Self::Replaced,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxLogEntry {
    /// Insertion order.
    pub id: i64,
    /// The signed transaction's hash.
    pub tx_hash: B256,
    /// The signing address.
    pub sender: Address,
    /// Its nonce.
    pub nonce: u64,
    /// What it is for (e.g. `accept`, `submit`).
    pub kind: String,
    /// The job it is for, if any.
    pub job_id: Option<U256>,
    /// The signed bytes (EIP-2718).
    pub raw: Bytes,
    /// Its max fee per gas.
    pub max_fee_per_gas: u128,
    /// Its max priority fee per gas.
    pub max_priority_fee_per_gas: u128,
    /// When it was logged (Unix milliseconds).
    pub logged_at_ms: i64,
    /// Its status.
    pub status: TxStatus,
}

/// Append-only log of signed transactions, keyed by hash (several hashes per nonce), in a SQLite
/// database the caller owns (open it with `synchronous = FULL` so a row survives a crash).
#[derive(Debug, Clone)]
pub struct TxLog {
    pool: SqlitePool,
}

/// `SELECT <columns of a TxLogEntry> FROM chain_txs <rest>`, as a static string.
macro_rules! select_entries {
    ($rest:literal) => {
        concat!(
            "SELECT id, tx_hash, sender, nonce, kind, job_id, raw, max_fee_per_gas, ",
            "max_priority_fee_per_gas, logged_at_ms, status FROM chain_txs ",
            $rest
        )
    };
}

impl TxLog {
    /// Creates the `chain_txs` table when missing (no sqlx migrations, so it can live beside any
    /// service's own).
    ///
    /// # Errors
    /// [`TxError::Log`] when the database fails.
    pub async fn open(pool: SqlitePool) -> Result<Self, TxError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS chain_txs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                tx_hash TEXT NOT NULL UNIQUE,
                sender TEXT NOT NULL,
                nonce INTEGER NOT NULL,
                kind TEXT NOT NULL,
                job_id TEXT,
                raw BLOB NOT NULL,
                max_fee_per_gas TEXT NOT NULL,
                max_priority_fee_per_gas TEXT NOT NULL,
                logged_at_ms INTEGER NOT NULL,
                status TEXT NOT NULL DEFAULT 'pending'
            )",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS chain_txs_nonce ON chain_txs (sender, nonce, status)",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS chain_txs_job ON chain_txs (sender, kind, job_id, status)",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    /// Every row of `sender`, in insertion order.
    ///
    /// # Errors
    /// [`TxError::Log`] when the database fails or holds a malformed row.
    pub async fn entries(&self, sender: Address) -> Result<Vec<TxLogEntry>, TxError> {
        let rows = sqlx::query(select_entries!("WHERE sender = ? ORDER BY id"))
            .bind(sender.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry).collect()
    }

    async fn append(&self, entry: &TxLogEntry) -> Result<(), TxError> {
        sqlx::query(
            "INSERT INTO chain_txs (tx_hash, sender, nonce, kind, job_id, raw, max_fee_per_gas,
                 max_priority_fee_per_gas, logged_at_ms, status)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (tx_hash) DO NOTHING",
        )
        .bind(entry.tx_hash.to_string())
        .bind(entry.sender.to_string())
        .bind(nonce_column(entry.nonce)?)
        .bind(&entry.kind)
        .bind(entry.job_id.map(|id| id.to_string()))
        .bind(entry.raw.to_vec())
        .bind(entry.max_fee_per_gas.to_string())
        .bind(entry.max_priority_fee_per_gas.to_string())
        .bind(entry.logged_at_ms)
        .bind(entry.status.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_status(&self, tx_hash: B256, status: TxStatus) -> Result<(), TxError> {
        sqlx::query("UPDATE chain_txs SET status = ? WHERE tx_hash = ?")
            .bind(status.as_str())
            .bind(tx_hash.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Settles a nonce: `mined_hash` (when one of ours was mined) gets `status`, every other
    /// pending hash of the nonce `superseded`; with no hash of ours mined, they become `replaced`.
    async fn settle_nonce(
        &self,
        sender: Address,
        nonce: u64,
        mined: Option<(B256, TxStatus)>,
    ) -> Result<(), TxError> {
        let mut db = self.pool.begin().await?;
        let others = match mined {
            Some((tx_hash, status)) => {
                sqlx::query("UPDATE chain_txs SET status = ? WHERE tx_hash = ?")
                    .bind(status.as_str())
                    .bind(tx_hash.to_string())
                    .execute(&mut *db)
                    .await?;
                TxStatus::Superseded
            }
            None => TxStatus::Replaced,
        };
        sqlx::query(
            "UPDATE chain_txs SET status = ?
             WHERE sender = ? AND nonce = ? AND status = 'pending'",
        )
        .bind(others.as_str())
        .bind(sender.to_string())
        .bind(nonce_column(nonce)?)
        .execute(&mut *db)
        .await?;
        db.commit().await?;
        Ok(())
    }

    /// Rows of one nonce, in insertion order.
    async fn nonce_entries(&self, sender: Address, nonce: u64) -> Result<Vec<TxLogEntry>, TxError> {
        let rows = sqlx::query(select_entries!(
            "WHERE sender = ? AND nonce = ? ORDER BY id"
        ))
        .bind(sender.to_string())
        .bind(nonce_column(nonce)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// Pending rows grouped by nonce, each group in insertion order.
    async fn pending(&self, sender: Address) -> Result<BTreeMap<u64, Vec<TxLogEntry>>, TxError> {
        let rows = sqlx::query(select_entries!(
            "WHERE sender = ? AND status = 'pending' ORDER BY id"
        ))
        .bind(sender.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut by_nonce: BTreeMap<u64, Vec<TxLogEntry>> = BTreeMap::new();
        for row in &rows {
            let entry = entry(row)?;
            by_nonce.entry(entry.nonce).or_default().push(entry);
        }
        Ok(by_nonce)
    }
}

fn nonce_column(nonce: u64) -> Result<i64, TxError> {
    i64::try_from(nonce).map_err(|_| TxError::Sign(format!("nonce {nonce} out of range")))
}

fn entry(row: &SqliteRow) -> Result<TxLogEntry, TxError> {
    fn corrupt(column: &str) -> TxError {
        TxError::Log(sqlx::Error::Decode(
            format!("malformed chain_txs.{column}").into(),
        ))
    }
    let job_id: Option<String> = row.try_get("job_id")?;
    let nonce: i64 = row.try_get("nonce")?;
    Ok(TxLogEntry {
        id: row.try_get("id")?,
        tx_hash: row
            .try_get::<String, _>("tx_hash")?
            .parse()
            .map_err(|_| corrupt("tx_hash"))?,
        sender: row
            .try_get::<String, _>("sender")?
            .parse()
            .map_err(|_| corrupt("sender"))?,
        nonce: u64::try_from(nonce).map_err(|_| corrupt("nonce"))?,
        kind: row.try_get("kind")?,
        job_id: job_id
            .map(|id| id.parse::<U256>().map_err(|_| corrupt("job_id")))
            .transpose()?,
        raw: Bytes::from(row.try_get::<Vec<u8>, _>("raw")?),
        max_fee_per_gas: row
            .try_get::<String, _>("max_fee_per_gas")?
            .parse()
            .map_err(|_| corrupt("max_fee_per_gas"))?,
        max_priority_fee_per_gas: row
            .try_get::<String, _>("max_priority_fee_per_gas")?
            .parse()
            .map_err(|_| corrupt("max_priority_fee_per_gas"))?,
        logged_at_ms: row.try_get("logged_at_ms")?,
        status: TxStatus::parse(&row.try_get::<String, _>("status")?)
            .ok_or_else(|| corrupt("status"))?,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A fee that replaces `old`: +12.5%, rounded up.
pub fn bumped(old: u128) -> u128 {
    old.saturating_add(old.div_ceil(8))
}

/// The final outcome logged for a (kind, job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// This hash was mined and succeeded.
    Mined(B256),
    /// This hash was mined and reverted.
    Reverted(B256),
    /// Its nonce was used by a transaction not in the log.
    Replaced,
}

#[derive(Debug)]
struct Inner {
    provider: DynProvider,
    signer: PrivateKeySigner,
    address: Address,
    chain_id: u64,
    log: TxLog,
    config: TxConfig,
    /// The next nonce to hand out; `None` until first synchronised with the node and the log.
    /// Held only while signing, logging and broadcasting.
    next_nonce: Mutex<Option<u64>>,
}

/// The transaction manager of one key. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TxManager {
    inner: Arc<Inner>,
    crash_after_broadcast: Option<Arc<str>>,
}

/// A transaction the node has (or, after a transient broadcast failure, the log has): await it with
/// [`PendingTx::confirmed`].
#[derive(Debug, Clone)]
pub struct PendingTx {
    /// What it is for.
    pub kind: String,
    /// The job it is for.
    pub job_id: Option<U256>,
    /// Its nonce.
    pub nonce: u64,
    /// The first hash logged for the nonce (a fee bump may be the one mined).
    pub first_hash: B256,
    inner: Arc<Inner>,
}

impl TxManager {
    /// Loads the log; does not contact the node and never waits for old transactions (that is
    /// [`TxManager::run`]'s first pass).
    ///
    /// # Errors
    /// [`TxError::Log`] when the log cannot be read.
    pub async fn new(
        provider: DynProvider,
        signer: PrivateKeySigner,
        chain_id: u64,
        log: TxLog,
        config: TxConfig,
    ) -> Result<Self, TxError> {
        let address = signer.address();
        let pending = log.pending(address).await?;
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len(),
                "transactions from before a restart; the background task takes them over"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                provider,
                signer,
                address,
                chain_id,
                log,
                config,
                next_nonce: Mutex::new(None),
            }),
            crash_after_broadcast: None,
        })
    }

    /// The sending address.
    pub fn address(&self) -> Address {
        self.inner.address
    }

    /// The log.
    pub fn log(&self) -> &TxLog {
        &self.inner.log
    }

    /// Estimates (decoding refusals), takes the nonce lock, signs, appends to the log, broadcasts
    /// and releases the lock. Returns as soon as the node has the transaction (or, when the
    /// broadcast failed transiently, once it is logged: the background task re-broadcasts it).
    ///
    /// # Errors
    /// [`TxError::Refused`] for a revert at estimation, [`TxError::InsufficientFunds`],
    /// [`TxError::Rejected`] for other refusals (nothing was consumed: the step may be sent again
    /// after fixing the cause), [`TxError::Rpc`] when the node could not be reached before
    /// anything was logged, [`TxError::Log`].
    pub async fn send(
        &self,
        kind: &str,
        job_id: Option<U256>,
        request: TransactionRequest,
    ) -> Result<PendingTx, TxError> {
        let inner = &self.inner;
        let mut request = request;
        request.from = Some(inner.address);
        request.chain_id = Some(inner.chain_id);
        request.nonce = None;
        request.gas_price = None;
        request.max_fee_per_gas = None;
        request.max_priority_fee_per_gas = None;
        request.transaction_type = None;
        let gas = match request.gas {
            Some(gas) => gas,
            None => {
                let estimate = inner
                    .provider
                    .estimate_gas(request.clone())
                    .await
                    .map_err(decode_refusal)?;
                estimate.saturating_mul(100 + inner.config.gas_headroom_percent) / 100
            }
        };
        request.gas = Some(gas);
        let (max_fee, priority_fee) = inner.fresh_fees().await?;

        let mut next = inner.next_nonce.lock().await;
        let mut nonce = match *next {
            Some(nonce) => nonce,
            None => inner.sync_nonce().await?,
        };
        for _ in 0..3 {
            let mut tx = request
                .clone()
                .nonce(nonce)
                .max_fee_per_gas(max_fee)
                .max_priority_fee_per_gas(priority_fee)
                .build_1559()
                .map_err(|e| TxError::Sign(e.to_string()))?;
            let entry = inner.sign_and_log(&mut tx, kind, job_id).await?;
            match inner.broadcast(&entry.raw).await {
                Ok(()) => {}
                Err(error) => match classify(&error) {
                    RpcErrorClass::Transient => {
                        tracing::warn!(
                            tx_hash = %entry.tx_hash, kind, job_id = ?job_id, nonce, error = %shown(&error),
                            "broadcast failed transiently; logged, the background task re-broadcasts it"
                        );
                    }
                    RpcErrorClass::NonceTooLow | RpcErrorClass::ReplacementUnderpriced => {
                        // Someone else used the key: skip past what the node knows.
                        inner
                            .log
                            .set_status(entry.tx_hash, TxStatus::Failed)
                            .await?;
                        let pending = inner
                            .provider
                            .get_transaction_count(inner.address)
                            .pending()
                            .await
                            .map_err(TxError::Rpc)?;
                        tracing::warn!(
                            tx_hash = %entry.tx_hash, kind, nonce, next = pending.max(nonce + 1),
                            "nonce taken outside the log; re-signing with the next one"
                        );
                        nonce = pending.max(nonce + 1);
                        *next = Some(nonce);
                        continue;
                    }
                    _ => {
                        inner
                            .log
                            .set_status(entry.tx_hash, TxStatus::Failed)
                            .await?;
                        return Err(TxError::from_rpc(error));
                    }
                },
            }
            *next = Some(nonce + 1);
            drop(next);
            tracing::debug!(tx_hash = %entry.tx_hash, kind, job_id = ?job_id, nonce, "transaction sent");
            if self.crash_after_broadcast.as_deref() == Some(kind) {
                tracing::error!(tx_hash = %entry.tx_hash, kind, "crash_after: aborting after broadcast (fault injection)");
                std::process::abort();
            }
            return Ok(PendingTx {
                kind: kind.to_owned(),
                job_id,
                nonce,
                first_hash: entry.tx_hash,
                inner: Arc::clone(inner),
            });
        }
        Err(TxError::Rejected(
            "the nonce kept being taken by transactions outside the log".into(),
        ))
    }

    /// A transaction of this kind for this job that is logged and not final yet (sent before a
    /// restart): await it instead of sending the step again.
    ///
    /// # Errors
    /// [`TxError::Log`].
    pub async fn in_flight(&self, kind: &str, job_id: U256) -> Result<Option<PendingTx>, TxError> {
        let inner = &self.inner;
        let row = sqlx::query(
            "SELECT nonce FROM chain_txs
             WHERE sender = ? AND kind = ? AND job_id = ? AND status = 'pending'
             ORDER BY id DESC LIMIT 1",
        )
        .bind(inner.address.to_string())
        .bind(kind)
        .bind(job_id.to_string())
        .fetch_optional(&inner.log.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let nonce: i64 = row.try_get(0)?;
        let nonce = u64::try_from(nonce)
            .map_err(|_| TxError::Log(sqlx::Error::Decode("negative nonce".into())))?;
        let entries = inner.log.nonce_entries(inner.address, nonce).await?;
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        Ok(Some(PendingTx {
            kind: kind.to_owned(),
            job_id: Some(job_id),
            nonce,
            first_hash: first.tx_hash,
            inner: Arc::clone(inner),
        }))
    }

    /// The transactions of `kind` sent for no job (registration: approve, stake, register, price)
    /// that are logged and not final yet, oldest nonce first: a restart awaits them (or skips
    /// sending) instead of sending the step again.
    ///
    /// # Errors
    /// [`TxError::Log`].
    pub async fn in_flight_kind(&self, kind: &str) -> Result<Vec<PendingTx>, TxError> {
        let inner = &self.inner;
        let rows = sqlx::query(
            "SELECT DISTINCT nonce FROM chain_txs
             WHERE sender = ? AND kind = ? AND job_id IS NULL AND status = 'pending'
             ORDER BY nonce",
        )
        .bind(inner.address.to_string())
        .bind(kind)
        .fetch_all(&inner.log.pool)
        .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let nonce: i64 = row.try_get(0)?;
            let nonce = u64::try_from(nonce)
                .map_err(|_| TxError::Log(sqlx::Error::Decode("negative nonce".into())))?;
            let entries = inner.log.nonce_entries(inner.address, nonce).await?;
            let Some(first) = entries.first() else {
                continue;
            };
            pending.push(PendingTx {
                kind: kind.to_owned(),
                job_id: None,
                nonce,
                first_hash: first.tx_hash,
                inner: Arc::clone(inner),
            });
        }
        Ok(pending)
    }

    /// The latest final outcome logged for (kind, job), so a step is never sent twice.
    ///
    /// # Errors
    /// [`TxError::Log`].
    pub async fn outcome(&self, kind: &str, job_id: U256) -> Result<Option<TxOutcome>, TxError> {
        let row = sqlx::query(
            "SELECT tx_hash, status FROM chain_txs
             WHERE sender = ? AND kind = ? AND job_id = ? AND status IN ('mined', 'reverted', 'replaced')
             ORDER BY id DESC LIMIT 1",
        )
        .bind(self.inner.address.to_string())
        .bind(kind)
        .bind(job_id.to_string())
        .fetch_optional(&self.inner.log.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let hash: B256 = row
            .try_get::<String, _>(0)?
            .parse()
            .map_err(|_| TxError::Log(sqlx::Error::Decode("malformed tx_hash".into())))?;
        let status: String = row.try_get(1)?;
        Ok(Some(match status.as_str() {
            "mined" => TxOutcome::Mined(hash),
            "reverted" => TxOutcome::Reverted(hash),
            _ => TxOutcome::Replaced,
        }))
    }

    /// Nonces with a logged transaction that is not final (for a `/metrics` gauge).
    ///
    /// # Errors
    /// [`TxError::Log`].
    pub async fn pending_count(&self) -> Result<u64, TxError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT nonce) FROM chain_txs WHERE sender = ? AND status = 'pending'",
        )
        .bind(self.inner.address.to_string())
        .fetch_one(&self.inner.log.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Re-broadcasts lost transactions, re-signs stuck ones at the same nonce with bumped fees,
    /// fills nonce gaps and settles the log, every `poll_interval`, until `shutdown` resolves.
    /// Its first pass is the startup recovery; [`TxManager::send`] works while it runs.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                result = self.inner.tick() => {
                    if let Err(error) = result {
                        tracing::warn!(error = %shown(&error), transient = error.is_transient(), "transaction keeper pass failed");
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
        tracing::debug!("transaction keeper stopped");
    }

    /// Fault injection for crash tests: abort the process right after broadcasting a transaction of
    /// `kind`.
    pub fn crash_after_broadcast(mut self, kind: Option<String>) -> Self {
        self.crash_after_broadcast = kind.map(Arc::from);
        self
    }
}

impl Inner {
    /// Next nonce = max(node's pending count, 1 + highest logged nonce that is not final).
    async fn sync_nonce(&self) -> Result<u64, TxError> {
        let pending = self
            .provider
            .get_transaction_count(self.address)
            .pending()
            .await
            .map_err(TxError::Rpc)?;
        let logged = self
            .log
            .pending(self.address)
            .await?
            .keys()
            .next_back()
            .map(|nonce| nonce + 1);
        Ok(pending.max(logged.unwrap_or(0)))
    }

    /// The node's fee estimate, capped.
    async fn fresh_fees(&self) -> Result<(u128, u128), TxError> {
        let estimate = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(TxError::from_rpc)?;
        let mut max_fee = estimate.max_fee_per_gas;
        if let Some(cap) = self.config.max_fee_per_gas_cap {
            max_fee = max_fee.min(cap);
        }
        Ok((max_fee, estimate.max_priority_fee_per_gas.min(max_fee)))
    }

    /// Signs `tx` and appends it to the log (pending) before anything is broadcast.
    async fn sign_and_log(
        &self,
        tx: &mut TxEip1559,
        kind: &str,
        job_id: Option<U256>,
    ) -> Result<TxLogEntry, TxError> {
        let signature = self
            .signer
            .sign_transaction_sync(tx)
            .map_err(|e| TxError::Sign(e.to_string()))?;
        let envelope = TxEnvelope::from(tx.clone().into_signed(signature));
        let entry = TxLogEntry {
            id: 0,
            tx_hash: *envelope.tx_hash(),
            sender: self.address,
            nonce: tx.nonce,
            kind: kind.to_owned(),
            job_id,
            raw: Bytes::from(envelope.encoded_2718()),
            max_fee_per_gas: tx.max_fee_per_gas,
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
            logged_at_ms: now_ms(),
            status: TxStatus::Pending,
        };
        self.log.append(&entry).await?;
        Ok(entry)
    }

    /// Broadcasts signed bytes; "already known" counts as success.
    async fn broadcast(&self, raw: &[u8]) -> Result<(), RpcError<TransportErrorKind>> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Ok(()),
            Err(error) if classify(&error) == RpcErrorClass::AlreadyKnown => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// One pass of the background task.
    async fn tick(&self) -> Result<(), TxError> {
        // Order matters: the next nonce, then the mined count, then the log. A nonce below `next`
        // was logged before `next` moved past it, and a hash mined before `latest` was read was
        // logged before it was broadcast, so the log read last holds both.
        let next = {
            let mut next = self.next_nonce.lock().await;
            match *next {
                Some(nonce) => nonce,
                None => {
                    let nonce = self.sync_nonce().await?;
                    *next = Some(nonce);
                    nonce
                }
            }
        };
        let latest = self
            .provider
            .get_transaction_count(self.address)
            .latest()
            .await
            .map_err(TxError::Rpc)?;
        let pending = self.log.pending(self.address).await?;
        for (&nonce, entries) in &pending {
            if nonce < latest {
                self.settle(nonce).await?;
            } else {
                self.keep_alive(nonce, entries).await?;
            }
        }
        if latest < next {
            let node_pending = self
                .provider
                .get_transaction_count(self.address)
                .pending()
                .await
                .map_err(TxError::Rpc)?;
            // Nonces the node neither mined nor holds ready, that nobody logged (a lost log, or
            // a transaction sent with this key outside the manager and dropped): fill them, or
            // every transaction behind them waits forever.
            for nonce in node_pending.max(latest)..next {
                if !pending.contains_key(&nonce) {
                    self.fill_gap_or_reorged(nonce).await?;
                }
            }
        }
        Ok(())
    }

    /// Settles a nonce the chain has used: finds which of our hashes was mined (after the
    /// configured confirmations) or marks them all replaced. Returns the outcome once final.
    async fn settle(
        &self,
        nonce: u64,
    ) -> Result<Option<Result<TransactionReceipt, TxError>>, TxError> {
        let entries = self.log.nonce_entries(self.address, nonce).await?;
        let kind = entries.first().map(|e| e.kind.clone()).unwrap_or_default();
        for entry in entries.iter().rev() {
            if entry.status == TxStatus::Failed {
                continue;
            }
            let Some(receipt) = self
                .provider
                .get_transaction_receipt(entry.tx_hash)
                .await
                .map_err(TxError::Rpc)?
            else {
                continue;
            };
            let block = receipt.block_number.unwrap_or_default();
            let head = self
                .provider
                .get_block_number()
                .await
                .map_err(TxError::Rpc)?;
            if head.saturating_add(1) < block.saturating_add(self.config.confirmations) {
                return Ok(None);
            }
            let status = if receipt.status() {
                TxStatus::Mined
            } else {
                TxStatus::Reverted
            };
            if entry.status != status {
                self.log
                    .settle_nonce(self.address, nonce, Some((entry.tx_hash, status)))
                    .await?;
                tracing::info!(
                    tx_hash = %entry.tx_hash, kind = entry.kind, job_id = ?entry.job_id, nonce, block,
                    status = status.as_str(), "transaction final"
                );
            }
            return Ok(Some(if receipt.status() {
                Ok(receipt)
            } else {
                Err(TxError::Reverted {
                    kind: entry.kind.clone(),
                    tx_hash: entry.tx_hash,
                    receipt: Box::new(receipt),
                })
            }));
        }
        if entries
            .iter()
            .any(|e| matches!(e.status, TxStatus::Mined | TxStatus::Reverted))
        {
            // Logged as mined but the node has no receipt (a reorg, a lagging node): wait.
            return Ok(None);
        }
        for entry in entries.iter().filter(|e| e.status != TxStatus::Failed) {
            let in_block = self
                .provider
                .get_transaction_by_hash(entry.tx_hash)
                .await
                .map_err(TxError::Rpc)?
                .is_some_and(|tx| tx.block_number.is_some());
            if in_block {
                // Ours was mined; this node's receipts lag (e.g. behind a load balancer): wait.
                return Ok(None);
            }
        }
        if entries.iter().any(|e| e.status == TxStatus::Pending) {
            tracing::warn!(kind, nonce, "nonce used by a transaction not in the log");
            self.log.settle_nonce(self.address, nonce, None).await?;
        }
        Ok(Some(Err(TxError::Replaced { kind, nonce })))
    }

    /// Keeps an unmined nonce moving: re-broadcasts it when the node lost it, re-signs it with
    /// bumped fees when it has waited `resubmit_after` since its newest signature.
    async fn keep_alive(&self, nonce: u64, entries: &[TxLogEntry]) -> Result<(), TxError> {
        let Some(newest) = entries.last() else {
            return Ok(());
        };
        let waited = now_ms().saturating_sub(newest.logged_at_ms);
        let stuck =
            u128::try_from(waited).unwrap_or_default() >= self.config.resubmit_after.as_millis();
        // Waiting long is a reason to re-bid only when the bid is below what the node now
        // estimates: more fees do not help a transaction the market already accepts (a halted
        // chain, a node that does not propagate) and would compound without bound.
        if stuck && self.underpriced(newest).await? && self.bump(newest).await? {
            return Ok(());
        }
        for entry in entries.iter().rev() {
            let known = self
                .provider
                .get_transaction_by_hash(entry.tx_hash)
                .await
                .map_err(TxError::Rpc)?;
            if known.is_some() {
                return Ok(());
            }
        }
        tracing::info!(tx_hash = %newest.tx_hash, kind = newest.kind, job_id = ?newest.job_id, nonce, "node lost the transaction; re-broadcasting");
        if let Err(error) = self.broadcast(&newest.raw).await {
            match classify(&error) {
                RpcErrorClass::ReplacementUnderpriced | RpcErrorClass::FeeBelowBaseFee => {
                    self.bump(newest).await?;
                }
                RpcErrorClass::Transient => return Err(TxError::Rpc(error)),
                // Nonce too low: mined meanwhile, the next pass settles it.
                class => {
                    tracing::warn!(tx_hash = %newest.tx_hash, nonce, ?class, error = %shown(&error), "re-broadcast refused");
                }
            }
        }
        Ok(())
    }

    /// Whether `entry` bids less than the node's current estimate (capped).
    async fn underpriced(&self, entry: &TxLogEntry) -> Result<bool, TxError> {
        let (max_fee, priority_fee) = self.fresh_fees().await?;
        Ok(entry.max_fee_per_gas < max_fee || entry.max_priority_fee_per_gas < priority_fee)
    }

    /// Re-signs `newest` at its nonce with fees of at least +12.5% and at least the node's current
    /// estimate; logs and broadcasts it. `false` when the cap leaves no room for a bump.
    async fn bump(&self, newest: &TxLogEntry) -> Result<bool, TxError> {
        let envelope = TxEnvelope::decode_2718(&mut newest.raw.as_ref())
            .map_err(|e| TxError::Sign(format!("logged transaction undecodable: {e}")))?;
        let TxEnvelope::Eip1559(signed) = envelope else {
            return Err(TxError::Sign("logged transaction is not EIP-1559".into()));
        };
        let mut tx = signed.strip_signature();
        let estimate = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(TxError::from_rpc)?;
        let min_max_fee = bumped(tx.max_fee_per_gas);
        let min_priority = bumped(tx.max_priority_fee_per_gas);
        let mut max_fee = min_max_fee.max(estimate.max_fee_per_gas);
        let priority = min_priority.max(estimate.max_priority_fee_per_gas);
        max_fee = max_fee.max(priority);
        if let Some(cap) = self.config.max_fee_per_gas_cap {
            max_fee = max_fee.min(cap);
        }
        let priority = priority.min(max_fee);
        if max_fee < min_max_fee || priority < min_priority {
            tracing::warn!(
                tx_hash = %newest.tx_hash, nonce = newest.nonce, max_fee, "fee cap leaves no room to replace a stuck transaction"
            );
            return Ok(false);
        }
        tx.max_fee_per_gas = max_fee;
        tx.max_priority_fee_per_gas = priority;
        let entry = self
            .sign_and_log(&mut tx, &newest.kind, newest.job_id)
            .await?;
        tracing::info!(
            tx_hash = %entry.tx_hash, replaces = %newest.tx_hash, kind = entry.kind, job_id = ?entry.job_id,
            nonce = entry.nonce, max_fee, priority, "re-signed a stuck transaction with bumped fees"
        );
        if let Err(error) = self.broadcast(&entry.raw).await {
            match classify(&error) {
                RpcErrorClass::Transient => return Err(TxError::Rpc(error)),
                class => {
                    tracing::warn!(tx_hash = %entry.tx_hash, nonce = entry.nonce, ?class, error = %shown(&error), "replacement refused");
                    // Never entered a mempool; the older hashes stay candidates.
                    self.log.set_status(entry.tx_hash, TxStatus::Failed).await?;
                }
            }
        }
        Ok(true)
    }

    /// A nonce the node neither mined nor holds, with no pending row: when the log says one of our
    /// hashes was mined there (a reorganisation took its block away), that hash is pending again
    /// and re-broadcast; otherwise nobody logged the nonce and a self-transfer fills it.
    async fn fill_gap_or_reorged(&self, nonce: u64) -> Result<(), TxError> {
        let entries = self.log.nonce_entries(self.address, nonce).await?;
        let Some(reorged) = entries
            .iter()
            .rev()
            .find(|e| matches!(e.status, TxStatus::Mined | TxStatus::Reverted))
        else {
            return self.fill_gap(nonce).await;
        };
        tracing::warn!(
            tx_hash = %reorged.tx_hash, kind = reorged.kind, job_id = ?reorged.job_id, nonce,
            "a mined transaction was reorganised away; re-broadcasting it"
        );
        self.log
            .set_status(reorged.tx_hash, TxStatus::Pending)
            .await?;
        if let Err(error) = self.broadcast(&reorged.raw).await {
            match classify(&error) {
                RpcErrorClass::Transient => return Err(TxError::Rpc(error)),
                // Underpriced now: the keeper bumps it on its next pass.
                class => {
                    tracing::warn!(tx_hash = %reorged.tx_hash, nonce, ?class, error = %shown(&error), "re-broadcast after a reorganisation refused");
                }
            }
        }
        Ok(())
    }

    /// Fills a nonce nobody logged with a 0-value self-transfer.
    async fn fill_gap(&self, nonce: u64) -> Result<(), TxError> {
        let (max_fee, priority_fee) = self.fresh_fees().await?;
        let mut tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority_fee,
            to: self.address.into(),
            value: U256::ZERO,
            ..TxEip1559::default()
        };
        let entry = self.sign_and_log(&mut tx, GAP_FILL_KIND, None).await?;
        tracing::warn!(tx_hash = %entry.tx_hash, nonce, "filling a nonce gap nobody logged");
        if let Err(error) = self.broadcast(&entry.raw).await {
            match classify(&error) {
                RpcErrorClass::Transient => return Err(TxError::Rpc(error)),
                class => {
                    tracing::warn!(tx_hash = %entry.tx_hash, nonce, ?class, error = %shown(&error), "gap filler refused");
                    self.log.set_status(entry.tx_hash, TxStatus::Failed).await?;
                }
            }
        }
        Ok(())
    }
}

impl PendingTx {
    /// Awaits inclusion of any hash logged for this nonce (a fee bump may be the one mined) and
    /// `confirmations` blocks. `Ok(receipt)` when it succeeded, [`TxError::Reverted`] when it
    /// reverted, [`TxError::Replaced`] when the nonce was used by a transaction not in the log.
    /// Transient node errors are waited out; never times out by itself.
    ///
    /// # Errors
    /// As above, and [`TxError::Log`].
    pub async fn confirmed(self) -> Result<TransactionReceipt, TxError> {
        loop {
            match self.poll().await {
                Ok(Some(outcome)) => return outcome,
                Ok(None) => {}
                Err(error) if error.is_transient() => {
                    tracing::debug!(nonce = self.nonce, error = %shown(&error), "receipt poll failed; retrying");
                }
                Err(error) => return Err(error),
            }
            tokio::time::sleep(self.inner.config.poll_interval).await;
        }
    }

    async fn poll(&self) -> Result<Option<Result<TransactionReceipt, TxError>>, TxError> {
        let inner = &self.inner;
        let latest = inner
            .provider
            .get_transaction_count(inner.address)
            .latest()
            .await
            .map_err(TxError::Rpc)?;
        if latest <= self.nonce {
            return Ok(None);
        }
        inner.settle(self.nonce).await
    }
}

/// Decodes a refusal at gas estimation: our contracts' custom errors, insufficient funds, a bare
/// revert, or a transient failure.
fn decode_refusal(error: RpcError<TransportErrorKind>) -> TxError {
    if classify(&error) == RpcErrorClass::InsufficientFunds {
        return TxError::InsufficientFunds(shown(&error));
    }
    match ChainError::from(alloy::contract::Error::TransportError(error)) {
        ChainError::Contract(alloy::contract::Error::TransportError(error)) => {
            TxError::from_rpc(error)
        }
        other => TxError::Refused(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error response as a node sends it (the payload type is inferred, `alloy::rpc::json_rpc`
    /// is not enabled).
    fn resp(code: i64, message: &str) -> RpcError<TransportErrorKind> {
        RpcError::ErrorResp(
            serde_json::from_value(serde_json::json!({ "code": code, "message": message }))
                .expect("a valid error payload"),
        )
    }

    #[test]
    fn classifies_node_errors() {
        let cases = [
            (
                resp(-32003, "Insufficient funds for gas * price + value"),
                RpcErrorClass::InsufficientFunds,
            ),
            (
                resp(
                    -32000,
                    "insufficient funds for gas * price + value: balance 0, tx cost 21000",
                ),
                RpcErrorClass::InsufficientFunds,
            ),
            (resp(-32003, "nonce too low"), RpcErrorClass::NonceTooLow),
            (
                resp(-32000, "nonce too low: next nonce 5, tx nonce 3"),
                RpcErrorClass::NonceTooLow,
            ),
            (
                resp(-32000, "replacement transaction underpriced"),
                RpcErrorClass::ReplacementUnderpriced,
            ),
            (resp(-32000, "already known"), RpcErrorClass::AlreadyKnown),
            (
                resp(-32003, "max fee per gas less than block base fee"),
                RpcErrorClass::FeeBelowBaseFee,
            ),
            (resp(3, "execution reverted"), RpcErrorClass::Reverted),
            (
                resp(-32000, "execution reverted: custom error 0x1234"),
                RpcErrorClass::Reverted,
            ),
            (
                resp(-32000, "intrinsic gas too low"),
                RpcErrorClass::Rejected,
            ),
            (resp(-32005, "limit exceeded"), RpcErrorClass::Transient),
            (resp(-32000, "header not found"), RpcErrorClass::Transient),
            (
                TransportErrorKind::http_error(429, "Too Many Requests".into()),
                RpcErrorClass::Transient,
            ),
            (
                TransportErrorKind::http_error(503, "unavailable".into()),
                RpcErrorClass::Transient,
            ),
            (
                TransportErrorKind::http_error(401, "unauthorized".into()),
                RpcErrorClass::Rejected,
            ),
            (
                TransportErrorKind::custom_str("connection refused"),
                RpcErrorClass::Transient,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(classify(&error), class, "{error}");
        }
    }

    #[test]
    fn typed_errors_are_permanent_except_rpc() {
        assert!(matches!(
            TxError::from_rpc(resp(-32003, "Insufficient funds for gas * price + value")),
            TxError::InsufficientFunds(_)
        ));
        assert!(matches!(
            TxError::from_rpc(resp(3, "execution reverted")),
            TxError::Refused(_)
        ));
        assert!(!TxError::from_rpc(resp(-32000, "intrinsic gas too low")).is_transient());
        assert!(
            TxError::from_rpc(TransportErrorKind::http_error(429, String::new())).is_transient()
        );
        assert!(matches!(
            decode_refusal(resp(-32003, "Insufficient funds for gas * price + value")),
            TxError::InsufficientFunds(_)
        ));
    }

    #[test]
    fn bump_is_an_eighth_rounded_up() {
        assert_eq!(bumped(8), 9);
        assert_eq!(bumped(1), 2);
        assert_eq!(bumped(1_000_000_000), 1_125_000_000);
        assert_eq!(bumped(1_000_000_001), 1_125_000_002);
        assert_eq!(bumped(u128::MAX), u128::MAX);
    }
}
