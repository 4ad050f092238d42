//! Typed rows of the derived tables and how they map to SQL columns.
//!
//! Addresses and hashes are stored as 0x-prefixed lowercase hex, token amounts as decimal strings of
//! base units (a uint256 does not fit an integer column), counters and block numbers as integers.
//! The same mapping serves SQLite and PostgreSQL through sqlx's `Any` driver.

use std::{fmt::Debug, hash::Hash, str::FromStr};

use alloy::primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::{Row, any::AnyRow};

/// A value bound to or read from a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer column.
    Int(i64),
    /// A text column.
    Text(String),
    /// SQL NULL in an integer column.
    NullInt,
    /// SQL NULL in a text column (PostgreSQL wants NULLs typed like their column).
    NullText,
}

/// A row that cannot be read back as its type: the database was changed outside the indexer.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct DecodeError {
    /// The column.
    pub column: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl From<sqlx::Error> for DecodeError {
    fn from(error: sqlx::Error) -> Self {
        Self {
            column: "?",
            reason: error.to_string(),
        }
    }
}

/// One derived table: its name, columns (key columns first, `block` last, `chain_id` implied) and
/// the conversions of its row type.
pub trait Table:
    Debug + Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The primary key within a chain.
    type Key: Debug + Clone + Eq + Hash + Serialize + DeserializeOwned + Send + Sync;
    /// Table name.
    const NAME: &'static str;
    /// Column names without `chain_id`, key columns first.
    const COLUMNS: &'static [&'static str];
    /// How many of `COLUMNS` form the key.
    const KEY_COLUMNS: usize;
    /// The row's key.
    fn key(&self) -> Self::Key;
    /// The key's column values.
    fn key_values(key: &Self::Key) -> Vec<Value>;
    /// All column values, in `COLUMNS` order.
    fn values(&self) -> Vec<Value>;
    /// Reads a row selected with `COLUMNS`.
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError>;
    /// The block of the row's last change.
    fn block(&self) -> u64;
}

// ---------------------------------------------------------------- column conversions

pub(crate) fn hex<T: std::fmt::LowerHex>(value: T) -> Value {
    Value::Text(format!("{value:#x}"))
}

pub(crate) fn amount(value: U256) -> Value {
    Value::Text(value.to_string())
}

pub(crate) fn int(value: u64) -> Value {
    Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

pub(crate) fn opt_int<T: Into<u64>>(value: Option<T>) -> Value {
    value.map_or(Value::NullInt, |v| int(v.into()))
}

pub(crate) fn opt_text<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    value.map_or(Value::NullText, f)
}

fn bad(column: &'static str, reason: impl ToString) -> DecodeError {
    DecodeError {
        column,
        reason: reason.to_string(),
    }
}

pub(crate) fn get_int(row: &AnyRow, column: &'static str) -> Result<u64, DecodeError> {
    let value: i64 = row.try_get(column).map_err(|e| bad(column, e))?;
    u64::try_from(value).map_err(|e| bad(column, e))
}

pub(crate) fn get_opt_int(row: &AnyRow, column: &'static str) -> Result<Option<u64>, DecodeError> {
    let value: Option<i64> = row.try_get(column).map_err(|e| bad(column, e))?;
    value
        .map(|v| u64::try_from(v).map_err(|e| bad(column, e)))
        .transpose()
}

pub(crate) fn get_text(row: &AnyRow, column: &'static str) -> Result<String, DecodeError> {
    row.try_get(column).map_err(|e| bad(column, e))
}

pub(crate) fn get_parsed<T: FromStr>(row: &AnyRow, column: &'static str) -> Result<T, DecodeError>
where
    T::Err: std::fmt::Display,
{
    get_text(row, column)?.parse().map_err(|e| bad(column, e))
}

pub(crate) fn get_opt_parsed<T: FromStr>(
    row: &AnyRow,
    column: &'static str,
) -> Result<Option<T>, DecodeError>
where
    T::Err: std::fmt::Display,
{
    let value: Option<String> = row.try_get(column).map_err(|e| bad(column, e))?;
    value
        .map(|v| v.parse().map_err(|e| bad(column, e)))
        .transpose()
}

fn narrow<T: TryFrom<u64>>(column: &'static str, value: u64) -> Result<T, DecodeError> {
    T::try_from(value).map_err(|_| bad(column, "out of range"))
}

// ---------------------------------------------------------------- tables

/// A model in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRow {
    /// `keccak256(name)`.
    pub model_id: B256,
    /// Registry name.
    pub name: String,
    /// sha256 of the GGUF.
    pub weights_sha256: B256,
    /// Hash of the tokenizer.
    pub tokenizer_hash: B256,
    /// Whether jobs may be posted for it.
    pub active: bool,
    /// Verifiable sampler version.
    pub sampler_version: u32,
    /// Longest context.
    pub max_context: u32,
    /// Share of jobs audited, ppm.
    pub audit_rate_ppm: u32,
    /// Least executor stake, base units.
    pub min_executor_stake: U256,
    /// Teacher-forced check: largest tolerated margin, ppm.
    pub max_margin_ppm: u32,
    /// Teacher-forced check: largest tolerated flip rate, ppm.
    pub max_flip_rate_ppm: u32,
    /// Current version of its verification rules (audit rate and thresholds, see [`RulesRow`]);
    /// jobs posted now are judged by it.
    #[serde(default)]
    pub rules_version: u32,
    /// Block of the last change.
    pub block: u64,
}

impl Table for ModelRow {
    type Key = B256;
    const NAME: &'static str = "models";
    const COLUMNS: &'static [&'static str] = &[
        "model_id",
        "name",
        "weights_sha256",
        "tokenizer_hash",
        "active",
        "sampler_version",
        "max_context",
        "audit_rate_ppm",
        "min_executor_stake",
        "max_margin_ppm",
        "max_flip_rate_ppm",
        "rules_version",
        "block",
    ];
    const KEY_COLUMNS: usize = 1;

    fn key(&self) -> B256 {
        self.model_id
    }
    fn key_values(key: &B256) -> Vec<Value> {
        vec![hex(key)]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            hex(self.model_id),
            Value::Text(self.name.clone()),
            hex(self.weights_sha256),
            hex(self.tokenizer_hash),
            int(u64::from(self.active)),
            int(self.sampler_version.into()),
            int(self.max_context.into()),
            int(self.audit_rate_ppm.into()),
            amount(self.min_executor_stake),
            int(self.max_margin_ppm.into()),
            int(self.max_flip_rate_ppm.into()),
            int(self.rules_version.into()),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        Ok(Self {
            model_id: get_parsed(row, "model_id")?,
            name: get_text(row, "name")?,
            weights_sha256: get_parsed(row, "weights_sha256")?,
            tokenizer_hash: get_parsed(row, "tokenizer_hash")?,
            active: get_int(row, "active")? != 0,
            sampler_version: narrow("sampler_version", get_int(row, "sampler_version")?)?,
            max_context: narrow("max_context", get_int(row, "max_context")?)?,
            audit_rate_ppm: narrow("audit_rate_ppm", get_int(row, "audit_rate_ppm")?)?,
            min_executor_stake: get_parsed(row, "min_executor_stake")?,
            max_margin_ppm: narrow("max_margin_ppm", get_int(row, "max_margin_ppm")?)?,
            max_flip_rate_ppm: narrow("max_flip_rate_ppm", get_int(row, "max_flip_rate_ppm")?)?,
            rules_version: narrow("rules_version", get_int(row, "rules_version")?)?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// One version of a model's verification rules, as the registry snapshotted it
/// (`RulesVersioned`, `ModelRegistry.rulesAt`): a job is judged by the version it was posted under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesRow {
    /// The model.
    pub model_id: B256,
    /// The version (from 1).
    pub version: u32,
    /// Share of jobs audited, ppm.
    pub audit_rate_ppm: u32,
    /// Teacher-forced check: largest tolerated margin, ppm.
    pub max_margin_ppm: u32,
    /// Teacher-forced check: largest tolerated flip rate, ppm.
    pub max_flip_rate_ppm: u32,
    /// Block it was recorded in.
    pub block: u64,
}

impl Table for RulesRow {
    type Key = (B256, u32);
    const NAME: &'static str = "model_rules";
    const COLUMNS: &'static [&'static str] = &[
        "model_id",
        "version",
        "audit_rate_ppm",
        "max_margin_ppm",
        "max_flip_rate_ppm",
        "block",
    ];
    const KEY_COLUMNS: usize = 2;

    fn key(&self) -> (B256, u32) {
        (self.model_id, self.version)
    }
    fn key_values(key: &(B256, u32)) -> Vec<Value> {
        vec![hex(key.0), int(key.1.into())]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            hex(self.model_id),
            int(self.version.into()),
            int(self.audit_rate_ppm.into()),
            int(self.max_margin_ppm.into()),
            int(self.max_flip_rate_ppm.into()),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        Ok(Self {
            model_id: get_parsed(row, "model_id")?,
            version: narrow("version", get_int(row, "version")?)?,
            audit_rate_ppm: narrow("audit_rate_ppm", get_int(row, "audit_rate_ppm")?)?,
            max_margin_ppm: narrow("max_margin_ppm", get_int(row, "max_margin_ppm")?)?,
            max_flip_rate_ppm: narrow("max_flip_rate_ppm", get_int(row, "max_flip_rate_ppm")?)?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// An executor's registered profile and the reputation counter kept with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRow {
    /// The executor.
    pub address: Address,
    /// URL gateways reach it at.
    pub endpoint: String,
    /// Hardware profile it declared.
    pub hardware: String,
    /// Disputes it lost.
    pub disputes_lost: u32,
    /// Block of the last change.
    pub block: u64,
}

impl Table for ExecutorRow {
    type Key = Address;
    const NAME: &'static str = "executors";
    const COLUMNS: &'static [&'static str] =
        &["address", "endpoint", "hardware", "disputes_lost", "block"];
    const KEY_COLUMNS: usize = 1;

    fn key(&self) -> Address {
        self.address
    }
    fn key_values(key: &Address) -> Vec<Value> {
        vec![hex(key)]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            hex(self.address),
            Value::Text(self.endpoint.clone()),
            Value::Text(self.hardware.clone()),
            int(self.disputes_lost.into()),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        Ok(Self {
            address: get_parsed(row, "address")?,
            endpoint: get_text(row, "endpoint")?,
            hardware: get_text(row, "hardware")?,
            disputes_lost: narrow("disputes_lost", get_int(row, "disputes_lost")?)?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// What an executor charges for a model (per million tokens, base units).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRow {
    /// The executor.
    pub executor: Address,
    /// The model.
    pub model_id: B256,
    /// Whether it serves the model now.
    pub active: bool,
    /// Price per million input tokens.
    pub input_per_million: u64,
    /// Price per million output tokens.
    pub output_per_million: u64,
    /// Block of the last change.
    pub block: u64,
}

impl Table for PriceRow {
    type Key = (Address, B256);
    const NAME: &'static str = "prices";
    const COLUMNS: &'static [&'static str] = &[
        "executor",
        "model_id",
        "active",
        "input_per_million",
        "output_per_million",
        "block",
    ];
    const KEY_COLUMNS: usize = 2;

    fn key(&self) -> (Address, B256) {
        (self.executor, self.model_id)
    }
    fn key_values(key: &(Address, B256)) -> Vec<Value> {
        vec![hex(key.0), hex(key.1)]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            hex(self.executor),
            hex(self.model_id),
            int(u64::from(self.active)),
            int(self.input_per_million),
            int(self.output_per_million),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        Ok(Self {
            executor: get_parsed(row, "executor")?,
            model_id: get_parsed(row, "model_id")?,
            active: get_int(row, "active")? != 0,
            input_per_million: get_int(row, "input_per_million")?,
            output_per_million: get_int(row, "output_per_million")?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// Staking role, as the contract numbers it.
pub const ROLE_EXECUTOR: u8 = 0;
/// Staking role, as the contract numbers it.
pub const ROLE_VALIDATOR: u8 = 1;

/// Stake of one account in one role, mirroring `Staking.stakeOf` and `unbondingOf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeRow {
    /// The staker.
    pub account: Address,
    /// [`ROLE_EXECUTOR`] or [`ROLE_VALIDATOR`].
    pub role: u8,
    /// Bonded stake (includes what backs open jobs).
    pub staked: U256,
    /// Collateral of open jobs: at most `staked`, except after a slash reached it (the difference is
    /// a deficit new jobs and unstaking must cover first).
    pub locked: U256,
    /// Stake waiting out the unbonding period (still slashable).
    pub unbonding: U256,
    /// When the unbonding stake may be withdrawn (unix seconds).
    pub release_at: u64,
    /// Jobs finalized (executors).
    pub jobs_completed: u32,
    /// Jobs that expired unserved (executors).
    pub jobs_expired: u32,
    /// Block of the last change.
    pub block: u64,
}

impl StakeRow {
    pub(crate) fn empty(account: Address, role: u8, block: u64) -> Self {
        Self {
            account,
            role,
            staked: U256::ZERO,
            locked: U256::ZERO,
            unbonding: U256::ZERO,
            release_at: 0,
            jobs_completed: 0,
            jobs_expired: 0,
            block,
        }
    }
}

impl Table for StakeRow {
    type Key = (Address, u8);
    const NAME: &'static str = "stakes";
    const COLUMNS: &'static [&'static str] = &[
        "account",
        "role",
        "staked",
        "locked",
        "unbonding",
        "release_at",
        "jobs_completed",
        "jobs_expired",
        "block",
    ];
    const KEY_COLUMNS: usize = 2;

    fn key(&self) -> (Address, u8) {
        (self.account, self.role)
    }
    fn key_values(key: &(Address, u8)) -> Vec<Value> {
        vec![hex(key.0), int(key.1.into())]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            hex(self.account),
            int(self.role.into()),
            amount(self.staked),
            amount(self.locked),
            amount(self.unbonding),
            int(self.release_at),
            int(self.jobs_completed.into()),
            int(self.jobs_expired.into()),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        Ok(Self {
            account: get_parsed(row, "account")?,
            role: narrow("role", get_int(row, "role")?)?,
            staked: get_parsed(row, "staked")?,
            locked: get_parsed(row, "locked")?,
            unbonding: get_parsed(row, "unbonding")?,
            release_at: get_int(row, "release_at")?,
            jobs_completed: narrow("jobs_completed", get_int(row, "jobs_completed")?)?,
            jobs_expired: narrow("jobs_expired", get_int(row, "jobs_expired")?)?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// Where a job is in its lifecycle (the contract's `JobStatus`, by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for an executor.
    Posted,
    /// Bound to an executor.
    Accepted,
    /// Result on-chain, challenge window open.
    Submitted,
    /// Challenged.
    Disputed,
    /// Paid out.
    Finalized,
    /// Withdrawn by the requester before acceptance.
    Cancelled,
    /// Deadline passed without a result.
    Expired,
    /// Judged faulty.
    Rejected,
}

impl JobStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Posted => "posted",
            Self::Accepted => "accepted",
            Self::Submitted => "submitted",
            Self::Disputed => "disputed",
            Self::Finalized => "finalized",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        }
    }

    /// The contract's enum value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Posted => 1,
            Self::Accepted => 2,
            Self::Submitted => 3,
            Self::Disputed => 4,
            Self::Finalized => 5,
            Self::Cancelled => 6,
            Self::Expired => 7,
            Self::Rejected => 8,
        }
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "posted" => Self::Posted,
            "accepted" => Self::Accepted,
            "submitted" => Self::Submitted,
            "disputed" => Self::Disputed,
            "finalized" => Self::Finalized,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            "rejected" => Self::Rejected,
            other => return Err(format!("unknown job status {other:?}")),
        })
    }
}

/// A job and everything its lifecycle events revealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRow {
    /// Escrow job id.
    pub job_id: u64,
    /// Lifecycle state.
    pub status: JobStatus,
    /// Who posted it.
    pub requester: Address,
    /// The model asked for.
    pub model_id: B256,
    /// keccak256 of the prompt bytes.
    pub prompt_hash: B256,
    /// The requester's contribution to the seed (`JobSpec.salt`).
    #[serde(default)]
    pub salt: B256,
    /// The model's rules version the job is judged by (snapshotted at posting).
    #[serde(default)]
    pub rules_version: u32,
    /// The sampling seed, fixed at acceptance (`Assignment.seed`).
    pub seed: Option<B256>,
    /// Largest prompt, tokens.
    pub max_input_tokens: u32,
    /// Largest output, tokens.
    pub max_output_tokens: u32,
    /// Largest input price accepted, per million tokens.
    pub max_input_price: u64,
    /// Largest output price accepted, per million tokens.
    pub max_output_price: u64,
    /// Deadline (unix seconds).
    pub deadline: u64,
    /// Escrowed maximum cost.
    pub escrow: U256,
    /// The executor bound at acceptance.
    pub executor: Option<Address>,
    /// Its input price.
    pub input_price: Option<u64>,
    /// Its output price.
    pub output_price: Option<u64>,
    /// Collateral it locked.
    pub collateral: Option<U256>,
    /// Prompt tokens counted.
    pub input_tokens: Option<u32>,
    /// Output tokens produced.
    pub output_tokens: Option<u32>,
    /// 1 stop, 2 length.
    pub finish_reason: Option<u8>,
    /// The executor's commitment.
    pub commitment: Option<B256>,
    /// What the tokens cost at its prices.
    pub payment: Option<U256>,
    /// Part of the payment for the validator pool.
    pub validator_fee: Option<U256>,
    /// End of the challenge window.
    pub challenge_end: Option<u64>,
    /// End of the dispute window.
    pub dispute_end: Option<u64>,
    /// Refunded to the requester at the end.
    pub refund: Option<U256>,
    /// Collateral seized from the executor (what staking actually gave up).
    pub collateral_seized: Option<U256>,
    /// Of an expired job's seized collateral: the requester's compensation, locked until the
    /// unbonding period passes.
    #[serde(default)]
    pub compensation: Option<U256>,
    /// Of an expired job's seized collateral: what went to the validator reward pool.
    #[serde(default)]
    pub to_reward_pool: Option<U256>,
    /// Block it was posted in.
    pub posted_block: u64,
    /// Transaction that posted it.
    pub posted_tx: B256,
    /// Block of the last change.
    pub block: u64,
}

impl Table for JobRow {
    type Key = u64;
    const NAME: &'static str = "jobs";
    const COLUMNS: &'static [&'static str] = &[
        "job_id",
        "status",
        "requester",
        "model_id",
        "prompt_hash",
        "salt",
        "rules_version",
        "seed",
        "max_input_tokens",
        "max_output_tokens",
        "max_input_price",
        "max_output_price",
        "deadline",
        "escrow",
        "executor",
        "input_price",
        "output_price",
        "collateral",
        "input_tokens",
        "output_tokens",
        "finish_reason",
        "commitment",
        "payment",
        "validator_fee",
        "challenge_end",
        "dispute_end",
        "refund",
        "collateral_seized",
        "compensation",
        "to_reward_pool",
        "posted_block",
        "posted_tx",
        "block",
    ];
    const KEY_COLUMNS: usize = 1;

    fn key(&self) -> u64 {
        self.job_id
    }
    fn key_values(key: &u64) -> Vec<Value> {
        vec![int(*key)]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            int(self.job_id),
            Value::Text(self.status.as_str().into()),
            hex(self.requester),
            hex(self.model_id),
            hex(self.prompt_hash),
            hex(self.salt),
            int(self.rules_version.into()),
            opt_text(self.seed, hex),
            int(self.max_input_tokens.into()),
            int(self.max_output_tokens.into()),
            int(self.max_input_price),
            int(self.max_output_price),
            int(self.deadline),
            amount(self.escrow),
            opt_text(self.executor, hex),
            opt_int(self.input_price),
            opt_int(self.output_price),
            opt_text(self.collateral, amount),
            opt_int(self.input_tokens),
            opt_int(self.output_tokens),
            opt_int(self.finish_reason),
            opt_text(self.commitment, hex),
            opt_text(self.payment, amount),
            opt_text(self.validator_fee, amount),
            opt_int(self.challenge_end),
            opt_int(self.dispute_end),
            opt_text(self.refund, amount),
            opt_text(self.collateral_seized, amount),
            opt_text(self.compensation, amount),
            opt_text(self.to_reward_pool, amount),
            int(self.posted_block),
            hex(self.posted_tx),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        let opt32 = |column| -> Result<Option<u32>, DecodeError> {
            get_opt_int(row, column)?
                .map(|v| narrow(column, v))
                .transpose()
        };
        Ok(Self {
            job_id: get_int(row, "job_id")?,
            status: get_parsed(row, "status")?,
            requester: get_parsed(row, "requester")?,
            model_id: get_parsed(row, "model_id")?,
            prompt_hash: get_parsed(row, "prompt_hash")?,
            salt: get_parsed(row, "salt")?,
            rules_version: narrow("rules_version", get_int(row, "rules_version")?)?,
            seed: get_opt_parsed(row, "seed")?,
            max_input_tokens: narrow("max_input_tokens", get_int(row, "max_input_tokens")?)?,
            max_output_tokens: narrow("max_output_tokens", get_int(row, "max_output_tokens")?)?,
            max_input_price: get_int(row, "max_input_price")?,
            max_output_price: get_int(row, "max_output_price")?,
            deadline: get_int(row, "deadline")?,
            escrow: get_parsed(row, "escrow")?,
            executor: get_opt_parsed(row, "executor")?,
            input_price: get_opt_int(row, "input_price")?,
            output_price: get_opt_int(row, "output_price")?,
            collateral: get_opt_parsed(row, "collateral")?,
            input_tokens: opt32("input_tokens")?,
            output_tokens: opt32("output_tokens")?,
            finish_reason: get_opt_int(row, "finish_reason")?
                .map(|v| narrow("finish_reason", v))
                .transpose()?,
            commitment: get_opt_parsed(row, "commitment")?,
            payment: get_opt_parsed(row, "payment")?,
            validator_fee: get_opt_parsed(row, "validator_fee")?,
            challenge_end: get_opt_int(row, "challenge_end")?,
            dispute_end: get_opt_int(row, "dispute_end")?,
            refund: get_opt_parsed(row, "refund")?,
            collateral_seized: get_opt_parsed(row, "collateral_seized")?,
            compensation: get_opt_parsed(row, "compensation")?,
            to_reward_pool: get_opt_parsed(row, "to_reward_pool")?,
            posted_block: get_int(row, "posted_block")?,
            posted_tx: get_parsed(row, "posted_tx")?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// A juror's seat in a dispute and its ballot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JurorBallot {
    /// The juror (a validator).
    pub juror: Address,
    /// Whether it committed a vote.
    pub committed: bool,
    /// Its revealed vote: `honest` or `faulty`; `None` until revealed (and for good if it never was).
    pub vote: Option<String>,
}

/// A dispute of the Disputes contract: the claim it judges, its parties, jury and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeRow {
    /// Its id in the Disputes contract.
    pub dispute_id: u64,
    /// The claim source (JobEscrow for on-chain jobs).
    pub source: Address,
    /// The claim in the source (the job id for JobEscrow).
    pub claim_id: U256,
    /// The validator who challenged and posted the bond.
    pub challenger: Address,
    /// The executor whose result is disputed.
    pub executor: Address,
    /// The challenger's bond.
    pub bond: U256,
    /// `drawing` (jury not drawn yet), `voting`, `executor_faulty` or `executor_honest`.
    pub status: String,
    /// The block whose hash draws the jury.
    pub draw_block: u64,
    /// Votes are committed before this time (unix seconds).
    pub commit_end: u64,
    /// Votes are revealed before this time.
    pub reveal_end: u64,
    /// The jury, in seat order, with the ballots.
    pub jurors: Vec<JurorBallot>,
    /// Revealed votes saying the executor was faulty.
    pub faulty_votes: u32,
    /// Revealed votes saying it was honest.
    pub honest_votes: u32,
    /// Collateral the claim source sent to Disputes (a faulty executor's).
    pub collateral_seized: Option<U256>,
    /// Tokens burned at resolution.
    pub burned: Option<U256>,
    /// Block the dispute opened in.
    pub opened_block: u64,
    /// Block it was resolved in.
    pub resolved_block: Option<u64>,
    /// Block of the last change.
    pub block: u64,
}

impl DisputeRow {
    /// Whether the dispute is still open (its jury not drawn or still voting).
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "drawing" | "voting")
    }
}

impl Table for DisputeRow {
    type Key = u64;
    const NAME: &'static str = "disputes";
    const COLUMNS: &'static [&'static str] = &[
        "dispute_id",
        "source",
        "claim_id",
        "challenger",
        "executor",
        "bond",
        "status",
        "draw_block",
        "commit_end",
        "reveal_end",
        "jurors",
        "faulty_votes",
        "honest_votes",
        "collateral_seized",
        "burned",
        "opened_block",
        "resolved_block",
        "block",
    ];
    const KEY_COLUMNS: usize = 1;

    fn key(&self) -> u64 {
        self.dispute_id
    }
    fn key_values(key: &u64) -> Vec<Value> {
        vec![int(*key)]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            int(self.dispute_id),
            hex(self.source),
            amount(self.claim_id),
            hex(self.challenger),
            hex(self.executor),
            amount(self.bond),
            Value::Text(self.status.clone()),
            int(self.draw_block),
            int(self.commit_end),
            int(self.reveal_end),
            // A Vec of plain structs always serialises.
            Value::Text(serde_json::to_string(&self.jurors).unwrap_or_else(|_| "[]".into())),
            int(self.faulty_votes.into()),
            int(self.honest_votes.into()),
            opt_text(self.collateral_seized, amount),
            opt_text(self.burned, amount),
            int(self.opened_block),
            opt_int(self.resolved_block),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        Ok(Self {
            dispute_id: get_int(row, "dispute_id")?,
            source: get_parsed(row, "source")?,
            claim_id: get_parsed(row, "claim_id")?,
            challenger: get_parsed(row, "challenger")?,
            executor: get_parsed(row, "executor")?,
            bond: get_parsed(row, "bond")?,
            status: get_text(row, "status")?,
            draw_block: get_int(row, "draw_block")?,
            commit_end: get_int(row, "commit_end")?,
            reveal_end: get_int(row, "reveal_end")?,
            jurors: serde_json::from_str(&get_text(row, "jurors")?)
                .map_err(|e| bad("jurors", e))?,
            faulty_votes: narrow("faulty_votes", get_int(row, "faulty_votes")?)?,
            honest_votes: narrow("honest_votes", get_int(row, "honest_votes")?)?,
            collateral_seized: get_opt_parsed(row, "collateral_seized")?,
            burned: get_opt_parsed(row, "burned")?,
            opened_block: get_int(row, "opened_block")?,
            resolved_block: get_opt_int(row, "resolved_block")?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// An account's pull-payment credit in JobEscrow (`credits(account)`) and its locked credit
/// (`lockedCreditOf(account)`: no-show compensation, withdrawable from `locked_release_at` on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRow {
    /// The account.
    pub account: Address,
    /// Withdrawable now.
    pub credit: U256,
    /// Withdrawn so far (credits and released locked credits).
    pub withdrawn: U256,
    /// Credited but locked until `locked_release_at`.
    #[serde(default)]
    pub locked_credit: U256,
    /// When the locked credit is released (unix seconds; 0 when none is locked).
    #[serde(default)]
    pub locked_release_at: u64,
    /// Block of the last change.
    pub block: u64,
}

impl BalanceRow {
    /// An account nothing was credited to yet.
    pub fn empty(account: Address, block: u64) -> Self {
        Self {
            account,
            credit: U256::ZERO,
            withdrawn: U256::ZERO,
            locked_credit: U256::ZERO,
            locked_release_at: 0,
            block,
        }
    }
}

impl Table for BalanceRow {
    type Key = Address;
    const NAME: &'static str = "balances";
    const COLUMNS: &'static [&'static str] = &[
        "account",
        "credit",
        "withdrawn",
        "locked_credit",
        "locked_release_at",
        "block",
    ];
    const KEY_COLUMNS: usize = 1;

    fn key(&self) -> Address {
        self.account
    }
    fn key_values(key: &Address) -> Vec<Value> {
        vec![hex(key)]
    }
    fn values(&self) -> Vec<Value> {
        vec![
            hex(self.account),
            amount(self.credit),
            amount(self.withdrawn),
            amount(self.locked_credit),
            int(self.locked_release_at),
            int(self.block),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, DecodeError> {
        Ok(Self {
            account: get_parsed(row, "account")?,
            credit: get_parsed(row, "credit")?,
            withdrawn: get_parsed(row, "withdrawn")?,
            locked_credit: get_parsed(row, "locked_credit")?,
            locked_release_at: get_int(row, "locked_release_at")?,
            block: get_int(row, "block")?,
        })
    }
    fn block(&self) -> u64 {
        self.block
    }
}

/// Names of every derived table, for rollbacks and comparisons.
pub const TABLES: &[&str] = &[
    ModelRow::NAME,
    RulesRow::NAME,
    ExecutorRow::NAME,
    PriceRow::NAME,
    StakeRow::NAME,
    JobRow::NAME,
    DisputeRow::NAME,
    BalanceRow::NAME,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_prefixed() {
        let a: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
            .parse()
            .unwrap();
        assert_eq!(
            hex(a),
            Value::Text("0x70997970c51812dc3a010c7d01b50e0d17dc79c8".into())
        );
        assert_eq!(
            "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
                .parse::<Address>()
                .unwrap(),
            a
        );
    }

    /// Undo images written before migration 0002 (a job's seed set at posting, no salt, rules
    /// version or expiry split; a balance without locked credit) still restore.
    #[test]
    fn images_from_before_the_v2_contracts_still_read() {
        let job: JobRow = serde_json::from_value(serde_json::json!({
            "job_id": 3, "status": "expired",
            "requester": "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            "model_id": format!("0x{}", "11".repeat(32)),
            "prompt_hash": format!("0x{}", "22".repeat(32)),
            "seed": format!("0x{}", "33".repeat(32)),
            "max_input_tokens": 256, "max_output_tokens": 16,
            "max_input_price": 1_000_000, "max_output_price": 2_000_000,
            "deadline": 1_800_000_000u64, "escrow": "0x120",
            "executor": null, "input_price": null, "output_price": null, "collateral": null,
            "input_tokens": null, "output_tokens": null, "finish_reason": null,
            "commitment": null, "payment": null, "validator_fee": null,
            "challenge_end": null, "dispute_end": null,
            "refund": "0x120", "collateral_seized": "0x240",
            "posted_block": 7, "posted_tx": format!("0x{}", "44".repeat(32)), "block": 9,
        }))
        .unwrap();
        assert_eq!(job.seed, Some(B256::repeat_byte(0x33)));
        assert_eq!((job.salt, job.rules_version), (B256::ZERO, 0));
        assert_eq!((job.compensation, job.to_reward_pool), (None, None));
        let balance: BalanceRow = serde_json::from_value(serde_json::json!({
            "account": "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            "credit": "0x5", "withdrawn": "0x0", "block": 9,
        }))
        .unwrap();
        assert_eq!(
            (
                balance.credit,
                balance.locked_credit,
                balance.locked_release_at
            ),
            (U256::from(5), U256::ZERO, 0)
        );
    }

    #[test]
    fn every_table_has_its_key_first_and_block_last() {
        fn check<T: Table>() {
            assert!(T::KEY_COLUMNS >= 1 && T::KEY_COLUMNS < T::COLUMNS.len());
            assert_eq!(T::COLUMNS.last(), Some(&"block"), "{}", T::NAME);
        }
        check::<ModelRow>();
        check::<RulesRow>();
        check::<ExecutorRow>();
        check::<PriceRow>();
        check::<StakeRow>();
        check::<JobRow>();
        check::<DisputeRow>();
        check::<BalanceRow>();
        for status in ["posted", "accepted", "rejected"] {
            assert_eq!(status.parse::<JobStatus>().unwrap().as_str(), status);
        }
    }
}
