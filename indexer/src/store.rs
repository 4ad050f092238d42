//! The database: SQLite (a file, the default) or PostgreSQL (a URL, shared by several instances),
//! both through sqlx's `Any` driver with one set of `$n`-placeholder statements.
//!
//! Everything a batch of blocks changes — raw logs, typed rows, undo images, block headers and the
//! cursor — is written in one transaction, and the cursor only moves from the position the writer
//! read: a second writer (another instance, or a restarted one racing an old one) fails its
//! transaction instead of indexing a block twice.

use std::{collections::HashMap, time::Duration};

use alloy::{primitives::B256, rpc::types::Log};
use infera_chain::redact::{redact_text, redact_url};
use serde::Serialize;
// Statements are built from the constant table and column names of `Table` impls only; values are
// always bound, never formatted in.
use sqlx::{
    AnyConnection, AnyPool, AssertSqlSafe, Executor, Row,
    any::{AnyArguments, AnyPoolOptions, AnyRow},
    query::Query,
};

use crate::rows::{
    BalanceRow, DecodeError, DisputeRow, ExecutorRow, JobRow, ModelRow, PriceRow, RulesRow,
    StakeRow, Table, Value, hex, int,
};

/// Database errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused a statement. The message is shown with credentials in URLs masked.
    #[error("database: {}", redact_text(&.0.to_string()))]
    Sql(#[from] sqlx::Error),
    /// The database could not be reached or opened.
    #[error("cannot open database {url}: {}", redact_text(&.source.to_string()))]
    Connect {
        /// The database URL, credentials masked.
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported database (the URL is kept with credentials masked).
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://…")]
    UnsupportedUrl(String),
    /// A stored row does not read back as its type.
    #[error("corrupt row in {table}: {source}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        source: DecodeError,
    },
    /// Another writer moved the cursor since this one read it.
    #[error(
        "the cursor of chain {chain_id} moved under this writer (expected block {expected}): another indexer writes to this database"
    )]
    CursorMoved {
        /// The chain.
        chain_id: u64,
        /// Where this writer expected it.
        expected: u64,
    },
    /// The database was created for other contracts.
    #[error(
        "this database indexes contracts {stored} on chain {chain_id}, not {configured}: use another database"
    )]
    OtherContracts {
        /// The chain.
        chain_id: u64,
        /// What it holds.
        stored: String,
        /// What was configured.
        configured: String,
    },
}

/// Which database is behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The backend a URL names.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// Where the indexer stands on a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cursor {
    /// The chain.
    pub chain_id: u64,
    /// Last block whose logs are committed.
    pub block_number: u64,
    /// Its hash.
    pub block_hash: B256,
    /// The node's head at the last commit.
    pub head: u64,
    /// The node's `safe` block at the last commit.
    pub safe: u64,
    /// The node's `finalized` block at the last commit.
    pub finalized: u64,
    /// Wall-clock time of the last commit, unix milliseconds.
    pub updated_at_ms: u64,
}

/// A block header as far as reorg detection needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
}

/// The node's view when a batch is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tip {
    /// Latest block.
    pub head: u64,
    /// `safe` block.
    pub safe: u64,
    /// `finalized` block.
    pub finalized: u64,
}

/// An undo image recorded while applying a batch.
#[derive(Debug, Clone)]
pub(crate) struct UndoEntry {
    pub block: u64,
    pub table: &'static str,
    pub key: String,
    pub image: Option<String>,
}

/// A connection pool and the backend behind it.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Largest number of bound parameters in one statement (SQLite allows 32,766, PostgreSQL 65,535).
const MAX_PARAMS: usize = 30_000;

impl Store {
    /// Connects (creating a SQLite file when missing) and runs the migrations.
    ///
    /// # Errors
    /// [`StoreError`] when the URL is unsupported, the database unreachable or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers (the API) never block the writer; NORMAL sync is safe
                        // against process crashes, which is what kill -9 tests.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact_url(&url),
                source,
            })?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for read queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The cursor of `chain_id`, creating it at `start` (the block before the first one to index)
    /// when the database is new. Refuses a database made for other contracts.
    ///
    /// # Errors
    /// [`StoreError::OtherContracts`], or a database error.
    pub async fn open_cursor(
        &self,
        chain_id: u64,
        contracts: &str,
        start: BlockRef,
    ) -> Result<Cursor, StoreError> {
        let mut tx = self.pool.begin().await?;
        bind_all(
            sqlx::query(
                "INSERT INTO cursor (chain_id, contracts, block_number, block_hash, head, safe, \
                 finalized, updated_at_ms) VALUES ($1, $2, $3, $4, 0, 0, 0, $5) \
                 ON CONFLICT (chain_id) DO NOTHING",
            ),
            vec![
                int(chain_id),
                Value::Text(contracts.to_owned()),
                int(start.number),
                hex(start.hash),
                int(now_ms()),
            ],
        )
        .execute(&mut *tx)
        .await?;
        bind_all(
            sqlx::query(
                "INSERT INTO blocks (chain_id, number, hash, parent_hash) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (chain_id, number) DO NOTHING",
            ),
            vec![
                int(chain_id),
                int(start.number),
                hex(start.hash),
                hex(start.parent_hash),
            ],
        )
        .execute(&mut *tx)
        .await?;
        let stored: String = sqlx::query("SELECT contracts FROM cursor WHERE chain_id = $1")
            .bind(int_i64(chain_id))
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        if stored != contracts {
            return Err(StoreError::OtherContracts {
                chain_id,
                stored,
                configured: contracts.to_owned(),
            });
        }
        self.cursor(chain_id).await?.ok_or(StoreError::CursorMoved {
            chain_id,
            expected: start.number,
        })
    }

    /// The cursor of `chain_id`, if it exists.
    ///
    /// # Errors
    /// A database error.
    pub async fn cursor(&self, chain_id: u64) -> Result<Option<Cursor>, StoreError> {
        let row = sqlx::query(
            "SELECT block_number, block_hash, head, safe, finalized, updated_at_ms \
             FROM cursor WHERE chain_id = $1",
        )
        .bind(int_i64(chain_id))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let corrupt = |source| StoreError::Corrupt {
                table: "cursor",
                source,
            };
            Ok(Cursor {
                chain_id,
                block_number: crate::rows::get_int(&row, "block_number").map_err(corrupt)?,
                block_hash: crate::rows::get_parsed(&row, "block_hash").map_err(corrupt)?,
                head: crate::rows::get_int(&row, "head").map_err(corrupt)?,
                safe: crate::rows::get_int(&row, "safe").map_err(corrupt)?,
                finalized: crate::rows::get_int(&row, "finalized").map_err(corrupt)?,
                updated_at_ms: crate::rows::get_int(&row, "updated_at_ms").map_err(corrupt)?,
            })
        })
        .transpose()
    }

    /// Stored headers of `chain_id`, newest first, at or above `from`: where a reorg search walks.
    ///
    /// # Errors
    /// A database error.
    pub async fn blocks_desc(&self, chain_id: u64, from: u64) -> Result<Vec<BlockRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, hash, parent_hash FROM blocks WHERE chain_id = $1 AND number >= $2 \
             ORDER BY number DESC",
        )
        .bind(int_i64(chain_id))
        .bind(int_i64(from))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let corrupt = |source| StoreError::Corrupt {
                    table: "blocks",
                    source,
                };
                Ok(BlockRef {
                    number: crate::rows::get_int(row, "number").map_err(corrupt)?,
                    hash: crate::rows::get_parsed(row, "hash").map_err(corrupt)?,
                    parent_hash: crate::rows::get_parsed(row, "parent_hash").map_err(corrupt)?,
                })
            })
            .collect()
    }

    /// Begins a write transaction that first moves the cursor from `from` to `to`: it fails with
    /// [`StoreError::CursorMoved`] when another writer got there first.
    pub(crate) async fn begin_advance(
        &self,
        chain_id: u64,
        from: &Cursor,
        to: BlockRef,
        tip: Tip,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = bind_all(
            sqlx::query(
                "UPDATE cursor SET block_number = $1, block_hash = $2, head = $3, safe = $4, \
                 finalized = $5, updated_at_ms = $6 \
                 WHERE chain_id = $7 AND block_number = $8 AND block_hash = $9",
            ),
            vec![
                int(to.number),
                hex(to.hash),
                int(tip.head),
                int(tip.safe),
                int(tip.finalized),
                int(now_ms()),
                int(chain_id),
                int(from.block_number),
                hex(from.block_hash),
            ],
        )
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(StoreError::CursorMoved {
                chain_id,
                expected: from.block_number,
            });
        }
        Ok(tx)
    }

    /// Reverts everything above `ancestor` in one transaction: typed rows back to their images as
    /// of `ancestor`, logs, undo entries and headers above it deleted, the cursor moved back.
    ///
    /// # Errors
    /// [`StoreError::CursorMoved`] when another writer moved the cursor, or a database error.
    pub async fn rollback(
        &self,
        chain_id: u64,
        from: &Cursor,
        ancestor: BlockRef,
        tip: Tip,
    ) -> Result<RollbackReport, StoreError> {
        let mut tx = self.begin_advance(chain_id, from, ancestor, tip).await?;
        let mut restored = 0;
        restored += restore::<ModelRow>(&mut tx, chain_id, ancestor.number).await?;
        restored += restore::<RulesRow>(&mut tx, chain_id, ancestor.number).await?;
        restored += restore::<ExecutorRow>(&mut tx, chain_id, ancestor.number).await?;
        restored += restore::<PriceRow>(&mut tx, chain_id, ancestor.number).await?;
        restored += restore::<StakeRow>(&mut tx, chain_id, ancestor.number).await?;
        restored += restore::<JobRow>(&mut tx, chain_id, ancestor.number).await?;
        restored += restore::<DisputeRow>(&mut tx, chain_id, ancestor.number).await?;
        restored += restore::<BalanceRow>(&mut tx, chain_id, ancestor.number).await?;
        let mut removed_logs = 0;
        for (table, column) in [
            ("undo", "block_number"),
            ("logs", "block_number"),
            ("blocks", "number"),
        ] {
            let done = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE chain_id = $1 AND {column} > $2"
            )))
            .bind(int_i64(chain_id))
            .bind(int_i64(ancestor.number))
            .execute(&mut *tx)
            .await?;
            if table == "logs" {
                removed_logs = done.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(RollbackReport {
            rows_restored: restored,
            logs_removed: removed_logs,
        })
    }

    /// After a long backfill: folds SQLite's write-ahead log back into the database file and
    /// truncates it, so that following commits (each of which would try) and reads stay cheap.
    /// Nothing to do on PostgreSQL.
    ///
    /// # Errors
    /// A database error.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Counts the rows of a table for one chain (tests and status).
    ///
    /// # Errors
    /// A database error.
    pub async fn count(&self, chain_id: u64, table: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE chain_id = $1"
        )))
        .bind(int_i64(chain_id))
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every row of a derived table, ordered by key (tests compare databases with it).
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn all<R: Table>(&self, chain_id: u64) -> Result<Vec<R>, StoreError> {
        let keys = R::COLUMNS[..R::KEY_COLUMNS].join(", ");
        let sql = format!(
            "SELECT {} FROM {} WHERE chain_id = $1 ORDER BY {keys}",
            R::COLUMNS.join(", "),
            R::NAME
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(int_i64(chain_id))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                R::from_row(row).map_err(|source| StoreError::Corrupt {
                    table: R::NAME,
                    source,
                })
            })
            .collect()
    }

    /// One row of a derived table.
    ///
    /// # Errors
    /// A database error or a corrupt row.
    pub async fn get<R: Table>(
        &self,
        chain_id: u64,
        key: &R::Key,
    ) -> Result<Option<R>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        select_one::<R>(&mut conn, chain_id, key).await
    }
}

/// What a rollback undid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RollbackReport {
    /// Typed rows restored or removed.
    pub rows_restored: usize,
    /// Raw logs removed.
    pub logs_removed: u64,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn int_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn bind_all(
    mut query: Query<'_, sqlx::Any, AnyArguments>,
    values: Vec<Value>,
) -> Query<'_, sqlx::Any, AnyArguments> {
    for value in values {
        query = match value {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::NullInt => query.bind(None::<i64>),
            Value::NullText => query.bind(None::<String>),
        };
    }
    query
}

/// Placeholders for `rows` rows of `columns` values each: `(?,?),(?,?)` on SQLite, `($1,$2),($3,$4)`
/// on PostgreSQL. SQLite looks a named parameter (`$n`) up by scanning a list, which makes binding
/// a statement of many of them quadratic; anonymous ones bind in order.
fn values_sql(conn: &AnyConnection, rows: usize, columns: usize) -> String {
    let anonymous = conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME;
    let mut sql = String::with_capacity(rows * columns * 6);
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push(',');
            }
            n += 1;
            if anonymous {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
        }
        sql.push(')');
    }
    sql
}

fn key_condition<R: Table>(first: usize) -> String {
    R::COLUMNS[..R::KEY_COLUMNS]
        .iter()
        .enumerate()
        .map(|(i, column)| format!(" AND {column} = ${}", first + i))
        .collect()
}

pub(crate) async fn select_one<R: Table>(
    conn: &mut AnyConnection,
    chain_id: u64,
    key: &R::Key,
) -> Result<Option<R>, StoreError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE chain_id = $1{}",
        R::COLUMNS.join(", "),
        R::NAME,
        key_condition::<R>(2)
    );
    let mut values = vec![int(chain_id)];
    values.extend(R::key_values(key));
    let row: Option<AnyRow> = bind_all(sqlx::query(AssertSqlSafe(sql)), values)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| {
        R::from_row(&row).map_err(|source| StoreError::Corrupt {
            table: R::NAME,
            source,
        })
    })
    .transpose()
}

async fn delete_one<R: Table>(
    conn: &mut AnyConnection,
    chain_id: u64,
    key: &R::Key,
) -> Result<(), StoreError> {
    let sql = format!(
        "DELETE FROM {} WHERE chain_id = $1{}",
        R::NAME,
        key_condition::<R>(2)
    );
    let mut values = vec![int(chain_id)];
    values.extend(R::key_values(key));
    bind_all(sqlx::query(AssertSqlSafe(sql)), values)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts or replaces `rows`, in statements of as many rows as the parameter limit allows.
pub(crate) async fn upsert<R: Table>(
    conn: &mut AnyConnection,
    chain_id: u64,
    rows: &[R],
) -> Result<(), StoreError> {
    let columns = R::COLUMNS.len() + 1;
    let keys = R::COLUMNS[..R::KEY_COLUMNS].join(", ");
    let updates = R::COLUMNS[R::KEY_COLUMNS..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    for chunk in rows.chunks(MAX_PARAMS / columns) {
        let sql = format!(
            "INSERT INTO {} (chain_id, {}) VALUES {} ON CONFLICT (chain_id, {keys}) DO UPDATE SET {updates}",
            R::NAME,
            R::COLUMNS.join(", "),
            values_sql(conn, chunk.len(), columns)
        );
        let mut values = Vec::with_capacity(chunk.len() * columns);
        for row in chunk {
            values.push(int(chain_id));
            values.extend(row.values());
        }
        bind_all(sqlx::query(AssertSqlSafe(sql)), values)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Inserts raw logs; a duplicate is an error (the cursor guard makes one impossible).
pub(crate) async fn insert_logs(
    conn: &mut AnyConnection,
    chain_id: u64,
    logs: &[Log],
) -> Result<(), StoreError> {
    const COLUMNS: usize = 8;
    for chunk in logs.chunks(MAX_PARAMS / COLUMNS) {
        let sql = format!(
            "INSERT INTO logs (chain_id, block_hash, log_index, block_number, tx_hash, address, topics, data) VALUES {}",
            values_sql(conn, chunk.len(), COLUMNS)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for log in chunk {
            let topics: Vec<u8> = log.topics().iter().flat_map(|t| t.0).collect();
            query = query
                .bind(int_i64(chain_id))
                .bind(format!("{:#x}", log.block_hash.unwrap_or_default()))
                .bind(int_i64(log.log_index.unwrap_or_default()))
                .bind(int_i64(log.block_number.unwrap_or_default()))
                .bind(format!("{:#x}", log.transaction_hash.unwrap_or_default()))
                .bind(format!("{:#x}", log.address()))
                .bind(topics)
                .bind(log.data().data.to_vec());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

pub(crate) async fn insert_undo(
    conn: &mut AnyConnection,
    chain_id: u64,
    entries: &[UndoEntry],
) -> Result<(), StoreError> {
    const COLUMNS: usize = 6;
    for (c, chunk) in entries.chunks(MAX_PARAMS / COLUMNS).enumerate() {
        let sql = format!(
            "INSERT INTO undo (chain_id, block_number, seq, tbl, row_key, image) VALUES {}",
            values_sql(conn, chunk.len(), COLUMNS)
        );
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for (i, entry) in chunk.iter().enumerate() {
            values.extend([
                int(chain_id),
                int(entry.block),
                int((c * (MAX_PARAMS / COLUMNS) + i) as u64),
                Value::Text(entry.table.into()),
                Value::Text(entry.key.clone()),
                entry.image.clone().map_or(Value::NullText, Value::Text),
            ]);
        }
        bind_all(sqlx::query(AssertSqlSafe(sql)), values)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Stores the headers of unfinalized blocks and forgets those below `finalized` (keeping `keep`,
/// the cursor's block). The finalized block's own header stays: it is the deepest common ancestor
/// a reorg may roll back to.
pub(crate) async fn save_blocks(
    conn: &mut AnyConnection,
    chain_id: u64,
    blocks: &[BlockRef],
    finalized: u64,
    keep: u64,
) -> Result<(), StoreError> {
    const COLUMNS: usize = 4;
    for chunk in blocks.chunks(MAX_PARAMS / COLUMNS) {
        let sql = format!(
            "INSERT INTO blocks (chain_id, number, hash, parent_hash) VALUES {} \
             ON CONFLICT (chain_id, number) DO UPDATE SET hash = excluded.hash, parent_hash = excluded.parent_hash",
            values_sql(conn, chunk.len(), COLUMNS)
        );
        let mut values = Vec::with_capacity(chunk.len() * COLUMNS);
        for block in chunk {
            values.extend([
                int(chain_id),
                int(block.number),
                hex(block.hash),
                hex(block.parent_hash),
            ]);
        }
        bind_all(sqlx::query(AssertSqlSafe(sql)), values)
            .execute(&mut *conn)
            .await?;
    }
    // Headers are kept `REREAD_DEPTH` blocks below finalized, so a feed consumer's position that
    // finality passed can still be checked against its block (instead of being re-read).
    sqlx::query("DELETE FROM blocks WHERE chain_id = $1 AND number < $2 AND number <> $3")
        .bind(int_i64(chain_id))
        .bind(int_i64(finalized.saturating_sub(crate::feed::REREAD_DEPTH)))
        .bind(int_i64(keep))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM undo WHERE chain_id = $1 AND block_number <= $2")
        .bind(int_i64(chain_id))
        .bind(int_i64(finalized))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Restores the rows of `R` changed above `ancestor` to their earliest image above it.
async fn restore<R: Table>(
    conn: &mut AnyConnection,
    chain_id: u64,
    ancestor: u64,
) -> Result<usize, StoreError> {
    let rows = sqlx::query(
        "SELECT row_key, image FROM undo WHERE chain_id = $1 AND tbl = $2 AND block_number > $3 \
         ORDER BY block_number, seq",
    )
    .bind(int_i64(chain_id))
    .bind(R::NAME)
    .bind(int_i64(ancestor))
    .fetch_all(&mut *conn)
    .await?;
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "undo",
        source: DecodeError {
            column: "image",
            reason,
        },
    };
    let mut earliest: HashMap<String, Option<String>> = HashMap::new();
    for row in &rows {
        let key: String = row.try_get("row_key")?;
        let image: Option<String> = row.try_get("image")?;
        earliest.entry(key).or_insert(image);
    }
    let mut images = Vec::new();
    for (key, image) in &earliest {
        let key: R::Key = serde_json::from_str(key).map_err(|e| corrupt(e.to_string()))?;
        delete_one::<R>(conn, chain_id, &key).await?;
        if let Some(image) = image {
            images.push(serde_json::from_str::<R>(image).map_err(|e| corrupt(e.to_string()))?);
        }
    }
    upsert(conn, chain_id, &images).await?;
    Ok(earliest.len())
}

#[cfg(test)]
mod tests {
    /// Every migration, as (file name, SQLite text, PostgreSQL text).
    const MIGRATIONS: &[(&str, &str, &str)] = &[
        (
            "0001_init.sql",
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/postgres/0001_init.sql"),
        ),
        (
            "0002_contracts_v2.sql",
            include_str!("../migrations/sqlite/0002_contracts_v2.sql"),
            include_str!("../migrations/postgres/0002_contracts_v2.sql"),
        ),
        (
            "0003_disputes.sql",
            include_str!("../migrations/sqlite/0003_disputes.sql"),
            include_str!("../migrations/postgres/0003_disputes.sql"),
        ),
    ];

    /// The two dialects of the schema are one schema: PostgreSQL's is SQLite's with its types
    /// renamed, migration by migration. A column added to one file and not the other fails here.
    #[test]
    fn migrations_are_one_schema_in_two_dialects() {
        for (name, sqlite, postgres) in MIGRATIONS {
            let translated = sqlite
                .replace("INTEGER", "BIGINT")
                .replace("BLOB", "BYTEA")
                .replace("(SQLite)", "(PostgreSQL)");
            assert_eq!(&translated, postgres, "{name}");
        }
    }

    /// A database that refuses the connection is named, without its password (the test server
    /// answers at once that the role does not exist; without a server the pool gives up after its
    /// acquire timeout).
    #[tokio::test]
    async fn connect_errors_name_the_database_without_its_password() {
        let err = super::Store::connect("postgres://no_such_role:hunter2@127.0.0.1:5432/test")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, super::StoreError::Connect { .. }), "{text}");
        assert!(
            text.contains("postgres://no_such_role:***@127.0.0.1:5432/test"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    /// Every migration file of either dialect is listed above (and so compared).
    #[test]
    fn every_migration_is_compared() {
        for dialect in ["sqlite", "postgres"] {
            let dir = std::env::var_os("CARGO_MANIFEST_DIR")
                .map_or_else(
                    || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
                    std::path::PathBuf::from,
                )
                .join("migrations")
                .join(dialect);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<&str> = MIGRATIONS.iter().map(|(name, _, _)| *name).collect();
            assert_eq!(files, listed, "{dialect}");
        }
    }
}
