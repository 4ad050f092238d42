//! The executor's state in SQLite: the deployment it belongs to, the chain cursor, every job seen
//! and its stage, and the gateway request ids already served. The transaction manager
//! (`infera_chain::tx`) keeps its log of signed transactions in the same database ([`Store::pool`]).
//!
//! Job terms are kept exactly as the contracts emitted them (ABI-encoded), so every later step can
//! pass them back to the escrow unchanged.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    sol_types::SolValue,
};
use infera_chain::bindings::IJobEscrow;
use infera_indexer::Position;
use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("executor database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("executor database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (the file was changed by something else).
    #[error("executor database holds an unreadable {what} for job {job_id}")]
    Corrupt {
        /// What could not be read.
        what: &'static str,
        /// The job.
        job_id: String,
    },
    /// The database was created for another chain, other contracts or another executor key.
    #[error(
        "executor database {} belongs to {stored}, not to {configured}: configure another database file",
        path.display()
    )]
    OtherDeployment {
        /// The file.
        path: PathBuf,
        /// The deployment recorded in it.
        stored: Box<Fingerprint>,
        /// The deployment this executor runs against.
        configured: Box<Fingerprint>,
    },
    /// The default location could not be found or created.
    #[error("executor database directory {}: {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The platform has no per-user data directory: configure `database`.
    #[error(
        "no per-user data directory on this platform: set `database` in the executor's configuration"
    )]
    NoDataDir,
}

/// The deployment an executor database belongs to: the chain, the contracts and the executor's
/// address (public data only: no key, no URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// The chain id.
    pub chain_id: u64,
    /// JobEscrow.
    pub job_escrow: Address,
    /// Staking.
    pub staking: Address,
    /// ModelRegistry.
    pub model_registry: Address,
    /// The settlement token.
    pub token: Address,
    /// The executor's address (from its key).
    pub executor: Address,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "executor {} on chain {} (JobEscrow {}, Staking {}, ModelRegistry {}, token {})",
            self.executor,
            self.chain_id,
            self.job_escrow,
            self.staking,
            self.model_registry,
            self.token
        )
    }
}

/// The default database of `executor` on chain `chain_id`, in the user's data directory (never
/// relative to the working directory): `<data dir>/infera/executor/<chain id>-<address>.sqlite`
/// (e.g. `~/.local/share/infera/executor/31337-0x3c44….sqlite` on Linux).
///
/// # Errors
/// [`StoreError::NoDataDir`] when the platform has no data directory.
pub fn default_path(chain_id: u64, executor: Address) -> Result<PathBuf, StoreError> {
    let dir = dirs::data_dir().ok_or(StoreError::NoDataDir)?;
    Ok(dir
        .join("infera")
        .join("executor")
        .join(format!("{chain_id}-{executor:#x}.sqlite")))
}

/// Where a job is, from this executor's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Seen and possibly servable; not yet accepted.
    Posted,
    /// Accepted and bound to this executor.
    Accepted,
    /// Generated; the result waits to be submitted.
    Generated,
    /// Result on-chain; waits for its challenge window.
    Submitted,
    /// Paid (credited in the escrow).
    Finalized,
    /// Not for this executor (the reason says why).
    Ignored,
    /// Taken by another executor, cancelled or expired before this one got it.
    Closed,
    /// Could not be completed (the reason says why).
    Failed,
    /// Submitted, then ended on-chain without payment (rejected in a dispute; the reason says
    /// which status): nothing more to do.
    Lost,
}

impl Stage {
    /// Its name in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Posted => "posted",
            Self::Accepted => "accepted",
            Self::Generated => "generated",
            Self::Submitted => "submitted",
            Self::Finalized => "finalized",
            Self::Ignored => "ignored",
            Self::Closed => "closed",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }

    /// Whether nothing more will happen to the job.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Finalized | Self::Ignored | Self::Closed | Self::Failed | Self::Lost
        )
    }
}

impl FromStr for Stage {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "posted" => Self::Posted,
            "accepted" => Self::Accepted,
            "generated" => Self::Generated,
            "submitted" => Self::Submitted,
            "finalized" => Self::Finalized,
            "ignored" => Self::Ignored,
            "closed" => Self::Closed,
            "failed" => Self::Failed,
            "lost" => Self::Lost,
            _ => return Err(()),
        })
    }
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The escrow's job id.
    pub job_id: U256,
    /// Where it is.
    pub stage: Stage,
    /// Its terms as posted.
    pub job: IJobEscrow::Job,
    /// The prompt bytes as posted.
    pub prompt: Bytes,
    /// The assignment, once accepted: the executor, its prices, the collateral and the sampling
    /// seed (fixed at acceptance).
    pub assignment: Option<IJobEscrow::Assignment>,
    /// The result, once generated.
    pub result: Option<IJobEscrow::Result>,
    /// The settlement, once submitted.
    pub settlement: Option<IJobEscrow::Settlement>,
    /// Why it was ignored, closed or failed.
    pub reason: Option<String>,
    /// The block it was posted in.
    pub posted_block: u64,
}

impl JobRow {
    /// The sampling seed, fixed at acceptance (`Assignment.seed`); `None` before.
    pub fn seed(&self) -> Option<B256> {
        self.assignment.as_ref().map(|a| a.seed)
    }
}

/// A new job found on-chain.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The escrow's job id.
    pub job_id: U256,
    /// Its terms.
    pub job: IJobEscrow::Job,
    /// Its prompt.
    pub prompt: Bytes,
    /// The block it was posted in.
    pub block: u64,
    /// Its first stage: `Posted`, or `Ignored` with a reason.
    pub stage: Stage,
    /// Why it is ignored.
    pub reason: Option<String>,
}

/// The executor's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Store {
    /// Opens (creating it and its directory when missing) the database at `path` and migrates it.
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A job's stage must survive a crash the moment it is written.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            path: path.to_owned(),
        })
    }

    /// Opens the database at `path` for `deployment`: records it on first open, and refuses a
    /// database recorded for another chain, other contracts or another executor.
    ///
    /// # Errors
    /// [`StoreError::OtherDeployment`] naming both; [`StoreError`] when the file cannot be opened.
    pub async fn open_for(path: &Path, deployment: &Fingerprint) -> Result<Self, StoreError> {
        let store = Self::open(path).await?;
        store.check_deployment(deployment).await?;
        Ok(store)
    }

    /// Records `deployment` when none is, else checks it is the recorded one.
    ///
    /// # Errors
    /// [`StoreError::OtherDeployment`] naming both.
    pub async fn check_deployment(&self, deployment: &Fingerprint) -> Result<(), StoreError> {
        let text = |a: Address| format!("{a:#x}");
        sqlx::query(
            "INSERT INTO deployment (id, chain_id, job_escrow, staking, model_registry, token, executor, recorded_at)
             VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(deployment.chain_id as i64)
        .bind(text(deployment.job_escrow))
        .bind(text(deployment.staking))
        .bind(text(deployment.model_registry))
        .bind(text(deployment.token))
        .bind(text(deployment.executor))
        .bind(now())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT chain_id, job_escrow, staking, model_registry, token, executor FROM deployment WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?;
        let corrupt = || StoreError::Corrupt {
            what: "deployment",
            job_id: "-".into(),
        };
        let address = |i: usize| -> Result<Address, StoreError> {
            row.get::<String, _>(i).parse().map_err(|_| corrupt())
        };
        let stored = Fingerprint {
            chain_id: u64::try_from(row.get::<i64, _>(0)).map_err(|_| corrupt())?,
            job_escrow: address(1)?,
            staking: address(2)?,
            model_registry: address(3)?,
            token: address(4)?,
            executor: address(5)?,
        };
        if stored != *deployment {
            return Err(StoreError::OtherDeployment {
                path: self.path.clone(),
                stored: Box::new(stored),
                configured: Box::new(*deployment),
            });
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool, for the transaction manager's log (`infera_chain::tx::TxLog`), which
    /// lives in the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The next block to scan, if any was scanned: the block after the job loop's position.
    pub async fn next_block(&self) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT next_block FROM cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }

    /// Where the job loop stands in the indexer's feed: the last block read and, above finality,
    /// its hash; `None` before the first scan.
    pub async fn scan_position(&self) -> Result<Option<Position>, StoreError> {
        let row = sqlx::query("SELECT next_block, block_hash FROM cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let next_block = row.get::<i64, _>(0) as u64;
        let block_hash = row
            .get::<Option<String>, _>(1)
            .map(|hash| {
                hash.parse::<B256>().map_err(|_| StoreError::Corrupt {
                    what: "scan position",
                    job_id: "(none)".into(),
                })
            })
            .transpose()?;
        Ok(Some(Position {
            block_number: next_block.saturating_sub(1),
            block_hash,
        }))
    }

    /// Records what a scan found — new jobs, jobs closed by others — and moves the position to
    /// `read` (the last block read), all in one transaction: a crash either keeps all of it or
    /// none. Logs read again (after a restart or a reorganisation) change nothing, except a
    /// `JobPosted` whose id this store holds with other terms in a stage not taken on (posted,
    /// ignored, closed): job ids are sequential, so after a reorganisation the new branch's job
    /// takes the id of the void one, and replaces it.
    pub async fn record_scan(
        &self,
        jobs: &[NewJob],
        closed: &[(U256, String)],
        read: Position,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for job in jobs {
            sqlx::query(
                "INSERT INTO jobs (job_id, stage, job, prompt, reason, posted_block, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (job_id) DO UPDATE SET stage = excluded.stage, job = excluded.job,
                    prompt = excluded.prompt, reason = excluded.reason,
                    posted_block = excluded.posted_block, updated_at = excluded.updated_at
                 WHERE jobs.job <> excluded.job AND jobs.stage IN ('posted', 'ignored', 'closed')",
            )
            .bind(job.job_id.to_string())
            .bind(job.stage.as_str())
            .bind(job.job.abi_encode())
            .bind(job.prompt.to_vec())
            .bind(job.reason.as_deref())
            .bind(job.block as i64)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        for (job_id, reason) in closed {
            // Only jobs this executor has not taken can be closed by others' events.
            sqlx::query(
                "UPDATE jobs SET stage = 'closed', reason = ?, updated_at = ?
                 WHERE job_id = ? AND stage = 'posted'",
            )
            .bind(reason)
            .bind(now())
            .bind(job_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO cursor (id, next_block, block_hash) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET next_block = excluded.next_block,
                block_hash = excluded.block_hash",
        )
        .bind(read.block_number.saturating_add(1) as i64)
        .bind(read.block_hash.map(|hash| hash.to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Jobs in any of `stages`, oldest first.
    pub async fn jobs_in(&self, stages: &[Stage]) -> Result<Vec<JobRow>, StoreError> {
        let mut rows = Vec::new();
        for stage in stages {
            let found = sqlx::query(
                "SELECT job_id, stage, job, prompt, assignment, result, settlement, reason, posted_block
                 FROM jobs WHERE stage = ? ORDER BY posted_block, job_id",
            )
            .bind(stage.as_str())
            .fetch_all(&self.pool)
            .await?;
            for row in found {
                rows.push(decode_row(&row)?);
            }
        }
        rows.sort_by_key(|r| r.job_id);
        Ok(rows)
    }

    /// One job.
    pub async fn job(&self, job_id: U256) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(
            "SELECT job_id, stage, job, prompt, assignment, result, settlement, reason, posted_block
             FROM jobs WHERE job_id = ?",
        )
        .bind(job_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_row).transpose()
    }

    /// Moves a job to `stage` with an optional reason.
    pub async fn set_stage(
        &self,
        job_id: U256,
        stage: Stage,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET stage = ?, reason = ?, updated_at = ? WHERE job_id = ?")
            .bind(stage.as_str())
            .bind(reason)
            .bind(now())
            .bind(job_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores the assignment and moves the job to `Accepted`.
    pub async fn set_accepted(
        &self,
        job_id: U256,
        assignment: &IJobEscrow::Assignment,
    ) -> Result<(), StoreError> {
        self.advance(
            "UPDATE jobs SET assignment = ?, stage = 'accepted', reason = NULL, updated_at = ?
             WHERE job_id = ?",
            job_id,
            assignment.abi_encode(),
        )
        .await
    }

    /// Stores the result and moves the job to `Generated`.
    pub async fn set_generated(
        &self,
        job_id: U256,
        result: &IJobEscrow::Result,
    ) -> Result<(), StoreError> {
        self.advance(
            "UPDATE jobs SET result = ?, stage = 'generated', reason = NULL, updated_at = ?
             WHERE job_id = ?",
            job_id,
            result.abi_encode(),
        )
        .await
    }

    /// Stores the settlement and moves the job to `Submitted`.
    pub async fn set_submitted(
        &self,
        job_id: U256,
        settlement: &IJobEscrow::Settlement,
    ) -> Result<(), StoreError> {
        self.advance(
            "UPDATE jobs SET settlement = ?, stage = 'submitted', reason = NULL, updated_at = ?
             WHERE job_id = ?",
            job_id,
            settlement.abi_encode(),
        )
        .await
    }

    /// Runs one of the stage updates above: `sql` binds the value, the time and the job id.
    async fn advance(
        &self,
        sql: &'static str,
        job_id: U256,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        sqlx::query(sql)
            .bind(value)
            .bind(now())
            .bind(job_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Counts jobs per stage (for /health and metrics).
    pub async fn stage_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT stage, COUNT(*) FROM jobs GROUP BY stage ORDER BY stage")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect())
    }

    // ------------------------------------------------------------ gateway requests

    /// Claims a gateway request id; `false` when it was seen before.
    pub async fn claim_request(&self, request_id: B256) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO gateway_requests (request_id, received_at) VALUES (?, ?)
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn decode_row(row: &sqlx::sqlite::SqliteRow) -> Result<JobRow, StoreError> {
    let job_id: String = row.get(0);
    let corrupt = |what| StoreError::Corrupt {
        what,
        job_id: job_id.clone(),
    };
    fn blob<T: SolValue + From<<T::SolType as alloy::sol_types::SolType>::RustType>>(
        bytes: Option<Vec<u8>>,
    ) -> Result<Option<T>, ()> {
        bytes.map(|b| T::abi_decode(&b).map_err(|_| ())).transpose()
    }
    Ok(JobRow {
        job_id: U256::from_str(&job_id).map_err(|_| corrupt("job id"))?,
        stage: row
            .get::<String, _>(1)
            .parse()
            .map_err(|()| corrupt("stage"))?,
        job: blob(Some(row.get(2)))
            .ok()
            .flatten()
            .ok_or_else(|| corrupt("job"))?,
        prompt: Bytes::from(row.get::<Vec<u8>, _>(3)),
        assignment: blob(row.get(4)).map_err(|()| corrupt("assignment"))?,
        result: blob(row.get(5)).map_err(|()| corrupt("result"))?,
        settlement: blob(row.get(6)).map_err(|()| corrupt("settlement"))?,
        reason: row.get(7),
        posted_block: row.get::<i64, _>(8) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("infera-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("executor.db")).await.unwrap()
    }

    fn job(requester: u8) -> IJobEscrow::Job {
        IJobEscrow::Job {
            spec: IJobEscrow::JobSpec {
                modelId: B256::repeat_byte(1),
                executor: Address::ZERO,
                callback: Address::ZERO,
                callbackGasLimit: 0,
                maxInputTokens: 256,
                maxOutputTokens: 32,
                maxInputPrice: 1_000_000,
                maxOutputPrice: 2_000_000,
                deadline: 1_800_000_000,
                sampling: infera_protocol::SamplingParams::GREEDY.into(),
                salt: B256::repeat_byte(9),
            },
            requester: Address::repeat_byte(requester),
            promptHash: B256::repeat_byte(2),
            samplerVersion: infera_protocol::SAMPLER_VERSION,
            rulesVersion: 1,
            minExecutorStake: alloy::primitives::aliases::U96::from(100u64),
            validatorFeeBps: 500,
            collateralBps: 20_000,
            challengeWindow: 600,
            disputeWindow: 3_600,
            escrow: U256::from(1_024),
        }
    }

    fn new_job(id: u64, stage: Stage) -> NewJob {
        NewJob {
            job_id: U256::from(id),
            job: job(id as u8),
            prompt: Bytes::from_static(b"hi"),
            block: 10 + id,
            stage,
            reason: (stage == Stage::Ignored).then(|| "model not served".into()),
        }
    }

    #[tokio::test]
    async fn a_job_moves_through_its_stages_and_survives_reopening() {
        let store = store("stages").await;
        assert_eq!(store.next_block().await.unwrap(), None);
        store
            .record_scan(
                &[new_job(1, Stage::Posted), new_job(2, Stage::Ignored)],
                &[],
                Position::before(20),
            )
            .await
            .unwrap();
        assert_eq!(store.next_block().await.unwrap(), Some(20));
        let posted = store.jobs_in(&[Stage::Posted]).await.unwrap();
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].job, job(1));
        assert_eq!(posted[0].posted_block, 11);

        let assignment = IJobEscrow::Assignment {
            executor: Address::repeat_byte(3),
            inputPrice: 1,
            outputPrice: 2,
            collateral: U256::from(2_048),
            seed: B256::repeat_byte(0x5e),
        };
        store
            .set_accepted(U256::from(1), &assignment)
            .await
            .unwrap();
        let result = IJobEscrow::Result {
            inputTokens: 5,
            finishReason: 1,
            promptTokensHash: B256::repeat_byte(4),
            outputTokens: Bytes::from_static(&[0, 0, 0, 7]),
            output: Bytes::from_static(b"x"),
        };
        store.set_generated(U256::from(1), &result).await.unwrap();
        let row = store.job(U256::from(1)).await.unwrap().unwrap();
        assert_eq!(row.stage, Stage::Generated);
        assert_eq!(row.assignment, Some(assignment));
        // The seed the job is generated with is the one fixed at acceptance.
        assert_eq!(row.seed(), Some(B256::repeat_byte(0x5e)));
        assert_eq!(posted[0].seed(), None);
        assert_eq!(row.result, Some(result));

        // A second scan finding the same job again changes nothing; others' events close only
        // jobs this executor has not taken.
        store
            .record_scan(
                &[new_job(1, Stage::Posted), new_job(3, Stage::Posted)],
                &[
                    (U256::from(1), "cancelled".into()),
                    (U256::from(3), "accepted by 0x..".into()),
                ],
                Position::before(30),
            )
            .await
            .unwrap();
        assert_eq!(
            store.job(U256::from(1)).await.unwrap().unwrap().stage,
            Stage::Generated
        );
        let closed = store.job(U256::from(3)).await.unwrap().unwrap();
        assert_eq!(
            (closed.stage, closed.reason.as_deref()),
            (Stage::Closed, Some("accepted by 0x.."))
        );
        let ignored = store.job(U256::from(2)).await.unwrap().unwrap();
        assert_eq!(ignored.reason.as_deref(), Some("model not served"));
        let counts = store.stage_counts().await.unwrap();
        assert_eq!(
            counts,
            vec![
                ("closed".into(), 1),
                ("generated".into(), 1),
                ("ignored".into(), 1)
            ]
        );
    }

    /// Logs read again change nothing; after a reorganisation the new branch's job, which takes
    /// the void job's id (ids are sequential), replaces it unless this executor took it on; the
    /// position keeps the hash of the last block read and goes back to an ancestor.
    #[tokio::test]
    async fn a_reread_is_idempotent_and_a_reposted_id_replaces_a_void_job() {
        let store = store("reread").await;
        assert_eq!(store.scan_position().await.unwrap(), None);
        let tip = Position {
            block_number: 40,
            block_hash: Some(B256::repeat_byte(0x40)),
        };
        let first = [
            new_job(1, Stage::Posted),
            new_job(2, Stage::Posted),
            new_job(3, Stage::Ignored),
        ];
        store.record_scan(&first, &[], tip).await.unwrap();
        assert_eq!(store.scan_position().await.unwrap(), Some(tip));
        assert_eq!(store.next_block().await.unwrap(), Some(41));
        store
            .set_stage(U256::from(2), Stage::Closed, Some("on-chain status 0"))
            .await
            .unwrap();
        store.record_scan(&first, &[], tip).await.unwrap();
        let same = store.job(U256::from(2)).await.unwrap().unwrap();
        assert_eq!((same.stage, same.job), (Stage::Closed, job(2)));

        // A reorganisation: back to an ancestor trusted by number, then the new branch.
        store
            .record_scan(&[], &[], Position::before(31))
            .await
            .unwrap();
        assert_eq!(
            store.scan_position().await.unwrap(),
            Some(Position::before(31))
        );
        let accepted = IJobEscrow::Assignment {
            executor: Address::repeat_byte(3),
            inputPrice: 1,
            outputPrice: 2,
            collateral: U256::from(2_048),
            seed: B256::repeat_byte(0x5e),
        };
        store.set_accepted(U256::from(1), &accepted).await.unwrap();
        let reposted = |id: u64| NewJob {
            job: job(0x70 + id as u8),
            ..new_job(id, Stage::Posted)
        };
        store
            .record_scan(&[reposted(1), reposted(2), reposted(3)], &[], tip)
            .await
            .unwrap();
        for id in [2, 3] {
            let row = store.job(U256::from(id)).await.unwrap().unwrap();
            assert_eq!(
                (row.stage, row.job, row.reason),
                (Stage::Posted, job(0x70 + id as u8), None)
            );
        }
        // A job this executor took on keeps its terms.
        let taken = store.job(U256::from(1)).await.unwrap().unwrap();
        assert_eq!((taken.stage, taken.job), (Stage::Accepted, job(1)));
    }

    /// Jobs recorded for the v1 contracts (whose `Job` carried the seed) cannot be decoded: migration
    /// 0002 gives up those still open, so the job loop goes on with the others.
    #[tokio::test]
    async fn jobs_of_the_v1_contracts_are_given_up_by_the_migration() {
        let store = store("v1").await;
        store
            .record_scan(&[new_job(1, Stage::Posted)], &[], Position::before(20))
            .await
            .unwrap();
        assert_eq!(job(1).abi_encode().len(), 23 * 32);
        for (id, stage) in [(2, "accepted"), (3, "finalized")] {
            sqlx::query(
                "INSERT INTO jobs (job_id, stage, job, prompt, posted_block, updated_at)
                 VALUES (?, ?, ?, x'', 1, 0)",
            )
            .bind(id.to_string())
            .bind(stage)
            .bind(vec![0u8; 22 * 32])
            .execute(&store.pool)
            .await
            .unwrap();
        }
        sqlx::raw_sql(include_str!("../migrations/0002_contracts_v2.sql"))
            .execute(&store.pool)
            .await
            .unwrap();
        let open = store
            .jobs_in(&[Stage::Accepted, Stage::Generated, Stage::Posted])
            .await
            .unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].job, job(1));
        let stages: Vec<(String, String)> =
            sqlx::query_as("SELECT job_id, stage FROM jobs ORDER BY job_id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(
            stages,
            [("1", "posted"), ("2", "failed"), ("3", "finalized")]
                .map(|(id, stage)| (id.to_owned(), stage.to_owned()))
        );
    }

    fn fingerprint(chain_id: u64, executor: u8) -> Fingerprint {
        Fingerprint {
            chain_id,
            job_escrow: Address::repeat_byte(0xe5),
            staking: Address::repeat_byte(0x57),
            model_registry: Address::repeat_byte(0x6e),
            token: Address::repeat_byte(0x70),
            executor: Address::repeat_byte(executor),
        }
    }

    /// The first open records the deployment; the same file opened for another chain, other
    /// contracts or another executor is refused with both named; the recorded one reopens.
    #[tokio::test]
    async fn a_database_belongs_to_one_deployment() {
        let dir = std::env::temp_dir().join(format!("infera-store-fp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The directory is created with the file.
        let path = dir.join("nested").join("executor.sqlite");
        let ours = fingerprint(31_337, 0xaa);
        let store = Store::open_for(&path, &ours).await.unwrap();
        store
            .record_scan(&[new_job(1, Stage::Posted)], &[], Position::before(20))
            .await
            .unwrap();
        drop(store);

        let mut other_escrow = ours;
        other_escrow.job_escrow = Address::repeat_byte(0xe6);
        let others = [
            fingerprint(1, 0xaa),
            fingerprint(31_337, 0xbb),
            other_escrow,
            Fingerprint {
                token: Address::repeat_byte(0x71),
                ..ours
            },
        ];
        for other in others {
            let error = Store::open_for(&path, &other).await.unwrap_err();
            let StoreError::OtherDeployment {
                stored, configured, ..
            } = &error
            else {
                panic!("{error}");
            };
            assert_eq!((**stored, **configured), (ours, other));
            let text = error.to_string();
            assert!(
                text.contains(&ours.to_string()) && text.contains(&other.to_string()),
                "{text}"
            );
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        let store = Store::open_for(&path, &ours).await.unwrap();
        assert_eq!(store.next_block().await.unwrap(), Some(20));
    }

    #[test]
    fn the_default_path_is_absolute_and_names_the_chain_and_executor() {
        let path = default_path(31_337, Address::repeat_byte(0xab)).unwrap();
        assert!(path.is_absolute(), "{}", path.display());
        assert!(
            path.ends_with(format!(
                "infera/executor/31337-0x{}.sqlite",
                "ab".repeat(20)
            )),
            "{}",
            path.display()
        );
    }

    #[tokio::test]
    async fn a_gateway_request_id_is_served_once() {
        let store = store("requests").await;
        assert!(store.claim_request(B256::repeat_byte(1)).await.unwrap());
        assert!(!store.claim_request(B256::repeat_byte(1)).await.unwrap());
        assert!(store.claim_request(B256::repeat_byte(2)).await.unwrap());
    }
}
