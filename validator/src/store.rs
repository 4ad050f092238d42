//! The validator's state in SQLite: the deployment it belongs to, its position in the chain's
//! events, the jobs it has seen with their audit, the disputes it takes part in (vote and salt
//! written before the commitment is sent) and its canaries. The transaction manager
//! (`infera_chain::tx`) keeps its log in the same database ([`Store::pool`]).

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
    #[error("validator database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("validator database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("validator database holds an unreadable {what} for {key}")]
    Corrupt {
        /// What could not be read.
        what: &'static str,
        /// The row.
        key: String,
    },
    /// The database was created for another chain, other contracts or another key.
    #[error(
        "validator database {} belongs to {stored}, not to {configured}: configure another database file",
        path.display()
    )]
    OtherDeployment {
        /// The file.
        path: PathBuf,
        /// The deployment recorded in it.
        stored: Box<Fingerprint>,
        /// The deployment this validator runs against.
        configured: Box<Fingerprint>,
    },
    /// The default location could not be created.
    #[error("validator database directory {}: {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The platform has no per-user data directory: configure `database`.
    #[error(
        "no per-user data directory on this platform: set `database` in the validator's configuration"
    )]
    NoDataDir,
}

/// The deployment a validator database belongs to (public data only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// The chain id.
    pub chain_id: u64,
    /// JobEscrow.
    pub job_escrow: Address,
    /// The dispute contract.
    pub disputes: Address,
    /// Staking.
    pub staking: Address,
    /// The settlement token.
    pub token: Address,
    /// The validator's address.
    pub validator: Address,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "validator {} on chain {} (JobEscrow {}, Disputes {}, Staking {}, token {})",
            self.validator, self.chain_id, self.job_escrow, self.disputes, self.staking, self.token
        )
    }
}

/// The default database of `validator` on chain `chain_id`:
/// `<data dir>/infera/validator/<chain id>-<address>.sqlite`.
///
/// # Errors
/// [`StoreError::NoDataDir`] when the platform has no data directory.
pub fn default_path(chain_id: u64, validator: Address) -> Result<PathBuf, StoreError> {
    let dir = dirs::data_dir().ok_or(StoreError::NoDataDir)?;
    Ok(dir
        .join("infera")
        .join("validator")
        .join(format!("{chain_id}-{validator:#x}.sqlite")))
}

/// What the validator did about a submitted job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audit {
    /// Not submitted yet.
    None,
    /// Not drawn for audit (nor flagged).
    Skipped,
    /// Drawn or flagged: the check is to run.
    Due,
    /// Checked and found honest.
    Honest,
    /// Checked and found faulty: a challenge is due.
    Fraud,
    /// Challenged.
    Challenged,
    /// Found faulty, but the challenge could not be made (window closed, someone else was first).
    Missed,
    /// The check could not run (the reason is in the verdict column).
    Failed,
    /// The validator's own canary (or a job it executed): never audited.
    Own,
}

impl Audit {
    /// Its name in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Skipped => "skipped",
            Self::Due => "due",
            Self::Honest => "honest",
            Self::Fraud => "fraud",
            Self::Challenged => "challenged",
            Self::Missed => "missed",
            Self::Failed => "failed",
            Self::Own => "own",
        }
    }
}

impl FromStr for Audit {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "none" => Self::None,
            "skipped" => Self::Skipped,
            "due" => Self::Due,
            "honest" => Self::Honest,
            "fraud" => Self::Fraud,
            "challenged" => Self::Challenged,
            "missed" => Self::Missed,
            "failed" => Self::Failed,
            "own" => Self::Own,
            _ => return Err(()),
        })
    }
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The escrow's job id.
    pub job_id: U256,
    /// Its terms as posted.
    pub job: IJobEscrow::Job,
    /// The prompt bytes as posted.
    pub prompt: Bytes,
    /// The block it was posted in.
    pub posted_block: u64,
    /// The assignment, once accepted.
    pub assignment: Option<IJobEscrow::Assignment>,
    /// The result as submitted.
    pub result: Option<IJobEscrow::Result>,
    /// The settlement, once submitted.
    pub settlement: Option<IJobEscrow::Settlement>,
    /// The block of the submission and its hash.
    pub submitted: Option<(u64, B256)>,
    /// The audit.
    pub audit: Audit,
    /// The check's verdict (JSON), once run.
    pub verdict: Option<String>,
}

/// A dispute this validator follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeRow {
    /// The dispute.
    pub dispute_id: U256,
    /// The claim (job) it is about.
    pub job_id: U256,
    /// Whether this validator challenged.
    pub challenger: bool,
    /// Whether this validator was drawn.
    pub juror: bool,
    /// The vote decided (1 honest, 2 faulty).
    pub vote: Option<u8>,
    /// The salt of the commitment.
    pub salt: Option<B256>,
    /// Commitment mined.
    pub committed: bool,
    /// Reveal mined.
    pub revealed: bool,
    /// Resolved on-chain.
    pub resolved: bool,
}

/// A canary as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRow {
    /// The validator's numbering.
    pub seq: u64,
    /// The job, once posted.
    pub job_id: Option<U256>,
    /// Where it is.
    pub stage: String,
    /// How it ended.
    pub outcome: Option<String>,
}

/// One event read from the chain, as the store records it.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// `JobPosted`.
    Posted {
        /// The job.
        job_id: U256,
        /// Its terms.
        job: IJobEscrow::Job,
        /// Its prompt.
        prompt: Bytes,
        /// The block.
        block: u64,
    },
    /// `JobAccepted`.
    Accepted {
        /// The job.
        job_id: U256,
        /// The assignment.
        assignment: IJobEscrow::Assignment,
    },
    /// `ResultSubmitted`, with the audit decided for it.
    Submitted {
        /// The job.
        job_id: U256,
        /// The result.
        result: IJobEscrow::Result,
        /// The settlement.
        settlement: IJobEscrow::Settlement,
        /// The block and its hash.
        block: u64,
        /// The block's hash.
        block_hash: B256,
        /// Skipped, Due or Own.
        audit: Audit,
    },
}

impl JobEvent {
    /// The job it is about.
    pub fn job_id(&self) -> U256 {
        match self {
            Self::Posted { job_id, .. }
            | Self::Accepted { job_id, .. }
            | Self::Submitted { job_id, .. } => *job_id,
        }
    }
}

/// The validator's database.
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

fn text(a: Address) -> String {
    format!("{a:#x}")
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
            // A salt must survive a crash the moment it is written.
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

    /// Opens the database at `path` for `deployment`: records it on first open, refuses a
    /// database recorded for another.
    ///
    /// # Errors
    /// [`StoreError::OtherDeployment`] naming both.
    pub async fn open_for(path: &Path, deployment: &Fingerprint) -> Result<Self, StoreError> {
        let store = Self::open(path).await?;
        sqlx::query(
            "INSERT INTO deployment (id, chain_id, job_escrow, disputes, staking, token, validator, recorded_at)
             VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(deployment.chain_id as i64)
        .bind(text(deployment.job_escrow))
        .bind(text(deployment.disputes))
        .bind(text(deployment.staking))
        .bind(text(deployment.token))
        .bind(text(deployment.validator))
        .bind(now())
        .execute(&store.pool)
        .await?;
        let row = sqlx::query(
            "SELECT chain_id, job_escrow, disputes, staking, token, validator FROM deployment WHERE id = 1",
        )
        .fetch_one(&store.pool)
        .await?;
        let corrupt = || StoreError::Corrupt {
            what: "deployment",
            key: "-".into(),
        };
        let address = |i: usize| -> Result<Address, StoreError> {
            row.get::<String, _>(i).parse().map_err(|_| corrupt())
        };
        let stored = Fingerprint {
            chain_id: u64::try_from(row.get::<i64, _>(0)).map_err(|_| corrupt())?,
            job_escrow: address(1)?,
            disputes: address(2)?,
            staking: address(3)?,
            token: address(4)?,
            validator: address(5)?,
        };
        if stored != *deployment {
            return Err(StoreError::OtherDeployment {
                path: store.path.clone(),
                stored: Box::new(stored),
                configured: Box::new(*deployment),
            });
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool (the transaction manager's log lives in the same database).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    // ------------------------------------------------------------ feed position and events

    /// Where the validator stands in the indexer's feed; `None` before the first read.
    pub async fn position(&self) -> Result<Option<Position>, StoreError> {
        let row = sqlx::query("SELECT block_number, block_hash FROM cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let block_hash = row
            .get::<Option<String>, _>(1)
            .map(|hash| {
                hash.parse::<B256>().map_err(|_| StoreError::Corrupt {
                    what: "cursor",
                    key: "-".into(),
                })
            })
            .transpose()?;
        Ok(Some(Position {
            block_number: row.get::<i64, _>(0) as u64,
            block_hash,
        }))
    }

    /// Records the events read and moves the position to `read`, in one transaction. Events read
    /// again (after a restart or a reorganisation) overwrite what they describe; a submission
    /// read again from another block keeps an audit already under way.
    pub async fn record(&self, events: &[JobEvent], read: Position) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for event in events {
            match event {
                JobEvent::Posted {
                    job_id,
                    job,
                    prompt,
                    block,
                } => {
                    sqlx::query(
                        "INSERT INTO jobs (job_id, job, prompt, posted_block, updated_at) VALUES (?, ?, ?, ?, ?)
                         ON CONFLICT (job_id) DO UPDATE SET job = excluded.job, prompt = excluded.prompt,
                            posted_block = excluded.posted_block, updated_at = excluded.updated_at
                         WHERE jobs.job <> excluded.job",
                    )
                    .bind(job_id.to_string())
                    .bind(job.abi_encode())
                    .bind(prompt.to_vec())
                    .bind(*block as i64)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                }
                JobEvent::Accepted { job_id, assignment } => {
                    sqlx::query("UPDATE jobs SET assignment = ?, updated_at = ? WHERE job_id = ?")
                        .bind(assignment.abi_encode())
                        .bind(now())
                        .bind(job_id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                JobEvent::Submitted {
                    job_id,
                    result,
                    settlement,
                    block,
                    block_hash,
                    audit,
                } => {
                    // The audit draw of a submission read again in another block is made again,
                    // unless the audit has gone past the draw.
                    sqlx::query(
                        "UPDATE jobs SET result = ?, settlement = ?, submitted_block = ?, submitted_hash = ?,
                            audit = CASE WHEN audit IN ('none', 'skipped', 'due') THEN ? ELSE audit END,
                            updated_at = ?
                         WHERE job_id = ?",
                    )
                    .bind(result.abi_encode())
                    .bind(settlement.abi_encode())
                    .bind(*block as i64)
                    .bind(block_hash.to_string())
                    .bind(audit.as_str())
                    .bind(now())
                    .bind(job_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        sqlx::query(
            "INSERT INTO cursor (id, block_number, block_hash) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET block_number = excluded.block_number, block_hash = excluded.block_hash",
        )
        .bind(read.block_number as i64)
        .bind(read.block_hash.map(|h| h.to_string()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a job read directly from the chain (a dispute about a job posted before the
    /// validator's start), all events at once.
    pub async fn put_job(&self, row: &JobRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jobs (job_id, job, prompt, posted_block, assignment, result, settlement,
                submitted_block, submitted_hash, audit, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (job_id) DO UPDATE SET job = excluded.job, prompt = excluded.prompt,
                assignment = excluded.assignment, result = excluded.result,
                settlement = excluded.settlement, submitted_block = excluded.submitted_block,
                submitted_hash = excluded.submitted_hash, updated_at = excluded.updated_at",
        )
        .bind(row.job_id.to_string())
        .bind(row.job.abi_encode())
        .bind(row.prompt.to_vec())
        .bind(row.posted_block as i64)
        .bind(row.assignment.as_ref().map(SolValue::abi_encode))
        .bind(row.result.as_ref().map(SolValue::abi_encode))
        .bind(row.settlement.as_ref().map(SolValue::abi_encode))
        .bind(row.submitted.map(|(block, _)| block as i64))
        .bind(row.submitted.map(|(_, hash)| hash.to_string()))
        .bind(row.audit.as_str())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One job.
    pub async fn job(&self, job_id: U256) -> Result<Option<JobRow>, StoreError> {
        let row = sqlx::query(SELECT_JOB)
            .bind(job_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_job).transpose()
    }

    /// Jobs whose audit is `audit`, oldest first.
    pub async fn jobs_with(&self, audit: Audit) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, job, prompt, posted_block, assignment, result, settlement, submitted_block,
                submitted_hash, audit, verdict FROM jobs WHERE audit = ? ORDER BY submitted_block, job_id",
        )
        .bind(audit.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_job).collect()
    }

    /// Records an audit's progress and, when given, the verdict.
    pub async fn set_audit(
        &self,
        job_id: U256,
        audit: Audit,
        verdict: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE jobs SET audit = ?, verdict = COALESCE(?, verdict), updated_at = ? WHERE job_id = ?",
        )
        .bind(audit.as_str())
        .bind(verdict)
        .bind(now())
        .bind(job_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a verdict without changing the audit's stage (a juror's check).
    pub async fn set_verdict(&self, job_id: U256, verdict: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET verdict = ?, updated_at = ? WHERE job_id = ?")
            .bind(verdict)
            .bind(now())
            .bind(job_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Audit counts (for logs and tests).
    pub async fn audit_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT audit, COUNT(*) FROM jobs GROUP BY audit ORDER BY audit")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect())
    }

    // ------------------------------------------------------------ disputes

    /// Starts following a dispute (idempotent; the roles only ever get set).
    pub async fn follow_dispute(
        &self,
        dispute_id: U256,
        job_id: U256,
        challenger: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO disputes (dispute_id, job_id, challenger, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (dispute_id) DO UPDATE SET job_id = excluded.job_id,
                challenger = MAX(disputes.challenger, excluded.challenger), updated_at = excluded.updated_at",
        )
        .bind(dispute_id.to_string())
        .bind(job_id.to_string())
        .bind(i64::from(challenger))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Disputes not resolved yet.
    pub async fn open_disputes(&self) -> Result<Vec<DisputeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT dispute_id, job_id, challenger, juror, vote, salt, committed, revealed, resolved
             FROM disputes WHERE resolved = 0 ORDER BY CAST(dispute_id AS INTEGER)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode_dispute).collect()
    }

    /// One dispute.
    pub async fn dispute(&self, dispute_id: U256) -> Result<Option<DisputeRow>, StoreError> {
        let row = sqlx::query(
            "SELECT dispute_id, job_id, challenger, juror, vote, salt, committed, revealed, resolved
             FROM disputes WHERE dispute_id = ?",
        )
        .bind(dispute_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode_dispute).transpose()
    }

    /// Marks this validator a juror of the dispute.
    pub async fn set_juror(&self, dispute_id: U256) -> Result<(), StoreError> {
        self.dispute_update(
            "UPDATE disputes SET juror = 1, updated_at = ? WHERE dispute_id = ?",
            dispute_id,
        )
        .await
    }

    /// Decides the vote and its salt — once: a vote decided before a restart is kept, so the
    /// commitment sent (or about to be) can be revealed. Returns the stored vote and salt.
    pub async fn decide_vote(
        &self,
        dispute_id: U256,
        vote: u8,
        salt: B256,
    ) -> Result<(u8, B256), StoreError> {
        sqlx::query(
            "UPDATE disputes SET vote = ?, salt = ?, updated_at = ?
             WHERE dispute_id = ? AND vote IS NULL",
        )
        .bind(i64::from(vote))
        .bind(salt.to_string())
        .bind(now())
        .bind(dispute_id.to_string())
        .execute(&self.pool)
        .await?;
        let row = self.dispute(dispute_id).await?;
        match row {
            Some(DisputeRow {
                vote: Some(vote),
                salt: Some(salt),
                ..
            }) => Ok((vote, salt)),
            _ => Err(StoreError::Corrupt {
                what: "vote",
                key: dispute_id.to_string(),
            }),
        }
    }

    /// Records the commitment mined.
    pub async fn set_committed(&self, dispute_id: U256) -> Result<(), StoreError> {
        self.dispute_update(
            "UPDATE disputes SET committed = 1, updated_at = ? WHERE dispute_id = ?",
            dispute_id,
        )
        .await
    }

    /// Records the reveal mined.
    pub async fn set_revealed(&self, dispute_id: U256) -> Result<(), StoreError> {
        self.dispute_update(
            "UPDATE disputes SET revealed = 1, updated_at = ? WHERE dispute_id = ?",
            dispute_id,
        )
        .await
    }

    /// Records the dispute resolved with `outcome`.
    pub async fn set_resolved(&self, dispute_id: U256, outcome: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE disputes SET resolved = 1, outcome = ?, updated_at = ? WHERE dispute_id = ?",
        )
        .bind(outcome)
        .bind(now())
        .bind(dispute_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dispute_update(&self, sql: &'static str, dispute_id: U256) -> Result<(), StoreError> {
        sqlx::query(sql)
            .bind(now())
            .bind(dispute_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ------------------------------------------------------------ canaries

    /// Starts a canary and returns its number.
    pub async fn new_canary(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("INSERT INTO canaries (stage, updated_at) VALUES ('planting', ?)")
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(done.last_insert_rowid() as u64)
    }

    /// Canaries, oldest first.
    pub async fn canaries(&self) -> Result<Vec<CanaryRow>, StoreError> {
        let rows = sqlx::query("SELECT seq, job_id, stage, outcome FROM canaries ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let seq = row.get::<i64, _>(0) as u64;
                let job_id = row
                    .get::<Option<String>, _>(1)
                    .map(|id| {
                        U256::from_str(&id).map_err(|_| StoreError::Corrupt {
                            what: "canary job id",
                            key: seq.to_string(),
                        })
                    })
                    .transpose()?;
                Ok(CanaryRow {
                    seq,
                    job_id,
                    stage: row.get(2),
                    outcome: row.get(3),
                })
            })
            .collect()
    }

    /// Moves a canary on.
    pub async fn set_canary(
        &self,
        seq: u64,
        job_id: Option<U256>,
        stage: &str,
        outcome: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE canaries SET job_id = COALESCE(?, job_id), stage = ?, outcome = COALESCE(?, outcome),
                updated_at = ? WHERE seq = ?",
        )
        .bind(job_id.map(|id| id.to_string()))
        .bind(stage)
        .bind(outcome)
        .bind(now())
        .bind(seq as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ------------------------------------------------------------ meta

    /// A stored value.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.get(0)))
    }

    /// Stores a value.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

const SELECT_JOB: &str = "SELECT job_id, job, prompt, posted_block, assignment, result, settlement,
    submitted_block, submitted_hash, audit, verdict FROM jobs WHERE job_id = ?";

fn decode_job(row: &sqlx::sqlite::SqliteRow) -> Result<JobRow, StoreError> {
    let job_id: String = row.get(0);
    let corrupt = |what| StoreError::Corrupt {
        what,
        key: job_id.clone(),
    };
    fn blob<T: SolValue + From<<T::SolType as alloy::sol_types::SolType>::RustType>>(
        bytes: Option<Vec<u8>>,
    ) -> Result<Option<T>, ()> {
        bytes.map(|b| T::abi_decode(&b).map_err(|_| ())).transpose()
    }
    let submitted = match (
        row.get::<Option<i64>, _>(7),
        row.get::<Option<String>, _>(8),
    ) {
        (Some(block), Some(hash)) => Some((
            block as u64,
            hash.parse().map_err(|_| corrupt("submission block"))?,
        )),
        _ => None,
    };
    Ok(JobRow {
        job_id: U256::from_str(&job_id).map_err(|_| corrupt("job id"))?,
        job: blob(Some(row.get(1)))
            .ok()
            .flatten()
            .ok_or_else(|| corrupt("job"))?,
        prompt: Bytes::from(row.get::<Vec<u8>, _>(2)),
        posted_block: row.get::<i64, _>(3) as u64,
        assignment: blob(row.get(4)).map_err(|()| corrupt("assignment"))?,
        result: blob(row.get(5)).map_err(|()| corrupt("result"))?,
        settlement: blob(row.get(6)).map_err(|()| corrupt("settlement"))?,
        submitted,
        audit: row
            .get::<String, _>(9)
            .parse()
            .map_err(|()| corrupt("audit"))?,
        verdict: row.get(10),
    })
}

fn decode_dispute(row: &sqlx::sqlite::SqliteRow) -> Result<DisputeRow, StoreError> {
    let dispute_id: String = row.get(0);
    let corrupt = |what| StoreError::Corrupt {
        what,
        key: dispute_id.clone(),
    };
    Ok(DisputeRow {
        dispute_id: U256::from_str(&dispute_id).map_err(|_| corrupt("dispute id"))?,
        job_id: U256::from_str(&row.get::<String, _>(1)).map_err(|_| corrupt("job id"))?,
        challenger: row.get::<i64, _>(2) != 0,
        juror: row.get::<i64, _>(3) != 0,
        vote: row
            .get::<Option<i64>, _>(4)
            .map(|v| u8::try_from(v).map_err(|_| corrupt("vote")))
            .transpose()?,
        salt: row
            .get::<Option<String>, _>(5)
            .map(|s| s.parse().map_err(|_| corrupt("salt")))
            .transpose()?,
        committed: row.get::<i64, _>(6) != 0,
        revealed: row.get::<i64, _>(7) != 0,
        resolved: row.get::<i64, _>(8) != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("infera-vstore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&dir.join("validator.db")).await.unwrap()
    }

    fn fingerprint(validator: u8) -> Fingerprint {
        Fingerprint {
            chain_id: 31_337,
            job_escrow: Address::repeat_byte(0xe5),
            disputes: Address::repeat_byte(0xd1),
            staking: Address::repeat_byte(0x57),
            token: Address::repeat_byte(0x70),
            validator: Address::repeat_byte(validator),
        }
    }

    /// The vote and salt are decided once: a second decision (after a restart, say) returns the
    /// first, so the commitment already sent can be revealed.
    #[tokio::test]
    async fn a_vote_is_decided_once_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("infera-vstore-vote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("v.sqlite");
        let store = Store::open_for(&path, &fingerprint(1)).await.unwrap();
        let (id, job) = (U256::from(3), U256::from(7));
        store.follow_dispute(id, job, false).await.unwrap();
        store.set_juror(id).await.unwrap();
        let first = store
            .decide_vote(id, 2, B256::repeat_byte(0xaa))
            .await
            .unwrap();
        assert_eq!(first, (2, B256::repeat_byte(0xaa)));
        let again = store
            .decide_vote(id, 1, B256::repeat_byte(0xbb))
            .await
            .unwrap();
        assert_eq!(again, first);
        store.set_committed(id).await.unwrap();
        drop(store);
        let store = Store::open_for(&path, &fingerprint(1)).await.unwrap();
        let open = store.open_disputes().await.unwrap();
        assert_eq!(
            open,
            vec![DisputeRow {
                dispute_id: id,
                job_id: job,
                challenger: false,
                juror: true,
                vote: Some(2),
                salt: Some(B256::repeat_byte(0xaa)),
                committed: true,
                revealed: false,
                resolved: false,
            }]
        );
        // Following it again as its challenger keeps the juror's state.
        store.follow_dispute(id, job, true).await.unwrap();
        let row = store.dispute(id).await.unwrap().unwrap();
        assert!(row.challenger && row.juror && row.committed);
        store.set_resolved(id, "faulty").await.unwrap();
        assert!(store.open_disputes().await.unwrap().is_empty());
        // Another key on the same file is refused.
        let error = Store::open_for(&path, &fingerprint(2)).await.unwrap_err();
        assert!(
            matches!(error, StoreError::OtherDeployment { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn canaries_and_meta_are_kept() {
        let store = store("canary").await;
        let seq = store.new_canary().await.unwrap();
        store
            .set_canary(seq, Some(U256::from(4)), "posted", None)
            .await
            .unwrap();
        store
            .set_canary(seq, None, "resolved", Some("faulty"))
            .await
            .unwrap();
        assert_eq!(
            store.canaries().await.unwrap(),
            vec![CanaryRow {
                seq,
                job_id: Some(U256::from(4)),
                stage: "resolved".into(),
                outcome: Some("faulty".into()),
            }]
        );
        assert_eq!(store.meta("k").await.unwrap(), None);
        store.set_meta("k", "1").await.unwrap();
        store.set_meta("k", "2").await.unwrap();
        assert_eq!(store.meta("k").await.unwrap().as_deref(), Some("2"));
    }

    #[test]
    fn the_default_path_names_the_chain_and_validator() {
        let path = default_path(31_337, Address::repeat_byte(0xab)).unwrap();
        assert!(path.is_absolute());
        assert!(path.ends_with(format!(
            "infera/validator/31337-0x{}.sqlite",
            "ab".repeat(20)
        )));
    }
}
