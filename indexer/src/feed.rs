//! The indexer's raw logs as a feed for other services (the executor, later the validator): they
//! follow the chain through one follower (this crate's, reorg-safe and complete) instead of a
//! second scan of their own.
//!
//! A consumer keeps a [`Position`] (a block number and, above finality, its hash) and calls
//! [`Store::feed`]. The answer is either the logs after that position, up to the indexer's cursor
//! (whole blocks only) and the next position, or [`Feed::Reorged`]: the consumer's block is no
//! longer canonical, every log it read above the returned position is void, and it reads again
//! from there. Everything is read in one snapshot, so a rollback committed meanwhile is seen
//! either entirely or not at all.
//!
//! Typical use: run an [`crate::Indexer`] on its own database (a SQLite file next to the
//! service's) with [`crate::Indexer::follow_until`] in a task, and poll [`Store::feed`].

use alloy::{
    primitives::{Address, B256, Bytes, LogData},
    rpc::types::Log,
};
use sqlx::Row;

use crate::{
    rows::{get_int, get_parsed},
    store::{Store, StoreError},
};

/// How far below an unverifiable position a consumer reads again: more than any chain's distance
/// between its head and its finalized block (Ethereum ~64-96 blocks, OP-stack chains a few
/// thousand), so the fork of a reorg that voided the position lies above it.
pub const REREAD_DEPTH: u64 = 16_384;

/// Where a consumer stands: the last block whose logs it has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The block.
    pub block_number: u64,
    /// Its hash; `None` for a block the consumer trusts by number (a start block, or a block at
    /// or below the finalized one, which no reorg can touch).
    pub block_hash: Option<B256>,
}

impl Position {
    /// Before `block`: the first read returns `block`'s logs onwards.
    pub fn before(block: u64) -> Self {
        Self {
            block_number: block.saturating_sub(1),
            block_hash: None,
        }
    }
}

/// One answer of [`Store::feed`].
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// The logs after the position (ordered by block and index) and the position after them.
    Logs {
        /// The logs, of whole blocks.
        logs: Vec<Log>,
        /// Where the consumer stands once it has handled them.
        next: Position,
    },
    /// The consumer's block was reorganised away: logs it read above `ancestor` are void.
    Reorged {
        /// Where to read again from ([`REREAD_DEPTH`] below an unverifiable position, or the
        /// indexer's cursor when it rolled
        /// back below the consumer).
        ancestor: Position,
    },
}

impl Store {
    /// The logs of `addresses` (all followed contracts when empty) whose first topic is one of
    /// `topics0` (any when empty), in at most `max_blocks` blocks after `after`; or a reorg
    /// signal. See the [module documentation](self).
    ///
    /// # Errors
    /// A database error, or [`StoreError::Corrupt`].
    pub async fn feed(
        &self,
        chain_id: u64,
        after: Position,
        addresses: &[Address],
        topics0: &[B256],
        max_blocks: u64,
    ) -> Result<Feed, StoreError> {
        let mut tx = self.pool().begin().await?;
        if self.backend() == crate::Backend::Postgres {
            // One snapshot for the cursor, the headers and the logs.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let corrupt = |table| move |source| StoreError::Corrupt { table, source };
        let cursor = sqlx::query(
            "SELECT block_number, block_hash, finalized FROM cursor WHERE chain_id = $1",
        )
        .bind(i64_of(chain_id))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cursor) = cursor else {
            return Ok(Feed::Logs {
                logs: Vec::new(),
                next: after,
            });
        };
        let cursor_number: u64 = get_int(&cursor, "block_number").map_err(corrupt("cursor"))?;
        let cursor_hash: B256 = get_parsed(&cursor, "block_hash").map_err(corrupt("cursor"))?;
        let finalized: u64 = get_int(&cursor, "finalized").map_err(corrupt("cursor"))?;
        let stored_hash = |number: u64| {
            sqlx::query("SELECT hash FROM blocks WHERE chain_id = $1 AND number = $2")
                .bind(i64_of(chain_id))
                .bind(i64_of(number))
        };
        // A position that carries a hash is checked against the header stored at its height
        // (the finalized block's and those above it are kept). One that cannot be checked — the
        // indexer rolled back below it, or finality passed it and its header was pruned — or
        // that does not match was on a branch the indexer may have left: the consumer reads
        // again from `REREAD_DEPTH` blocks below it, which is below the fork (a position is
        // handed out above the finalized block of its time, and a fork is never below that).
        if let Some(hash) = after.block_hash {
            let stored: Option<B256> = if after.block_number > cursor_number {
                None
            } else {
                stored_hash(after.block_number)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| get_parsed(&row, "hash"))
                    .transpose()
                    .map_err(corrupt("blocks"))?
            };
            if stored != Some(hash) {
                return Ok(Feed::Reorged {
                    ancestor: Position::before(after.block_number.saturating_sub(REREAD_DEPTH) + 1),
                });
            }
        } else if after.block_number > cursor_number {
            // Trusted by number, yet above the indexer: it rolled back below the consumer.
            return Ok(Feed::Reorged {
                ancestor: Position {
                    block_number: cursor_number,
                    block_hash: Some(cursor_hash),
                },
            });
        }

        let last = cursor_number.min(after.block_number.saturating_add(max_blocks.max(1)));
        if last == after.block_number {
            return Ok(Feed::Logs {
                logs: Vec::new(),
                next: after,
            });
        }
        let rows = sqlx::query(
            "SELECT block_hash, log_index, block_number, tx_hash, address, topics, data FROM logs \
             WHERE chain_id = $1 AND block_number > $2 AND block_number <= $3 \
             ORDER BY block_number, log_index",
        )
        .bind(i64_of(chain_id))
        .bind(i64_of(after.block_number))
        .bind(i64_of(last))
        .fetch_all(&mut *tx)
        .await?;
        let mut logs = Vec::with_capacity(rows.len());
        for row in &rows {
            let log = decode(row).map_err(corrupt("logs"))?;
            if (addresses.is_empty() || addresses.contains(&log.address()))
                && (topics0.is_empty() || log.topic0().is_some_and(|t| topics0.contains(t)))
            {
                logs.push(log);
            }
        }
        let next_hash = if last == cursor_number {
            Some(cursor_hash)
        } else if last > finalized {
            let row = stored_hash(last).fetch_optional(&mut *tx).await?;
            row.map(|row| get_parsed(&row, "hash"))
                .transpose()
                .map_err(corrupt("blocks"))?
        } else {
            None
        };
        tx.commit().await?;
        Ok(Feed::Logs {
            logs,
            next: Position {
                block_number: last,
                block_hash: next_hash,
            },
        })
    }
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn decode(row: &sqlx::any::AnyRow) -> Result<Log, crate::rows::DecodeError> {
    let bad = |column: &'static str| {
        move |e: sqlx::Error| crate::rows::DecodeError {
            column,
            reason: e.to_string(),
        }
    };
    let topics: Vec<u8> = row.try_get("topics").map_err(bad("topics"))?;
    let data: Vec<u8> = row.try_get("data").map_err(bad("data"))?;
    let topics: Vec<B256> = topics.chunks_exact(32).map(B256::from_slice).collect();
    let address: Address = get_parsed(row, "address")?;
    Ok(Log {
        inner: alloy::primitives::Log {
            address,
            data: LogData::new_unchecked(topics, Bytes::from(data)),
        },
        block_hash: Some(get_parsed(row, "block_hash")?),
        block_number: Some(get_int(row, "block_number")?),
        block_timestamp: None,
        transaction_hash: Some(get_parsed(row, "tx_hash")?),
        transaction_index: None,
        log_index: Some(get_int(row, "log_index")?),
        removed: false,
    })
}
