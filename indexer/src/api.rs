//! The read API (HTTP, JSON) the gateway and operators use. Every row carries `block` (its last
//! change) and `finality`: `finalized`, `safe` or `latest`, from the node's tags at the last commit.
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /v1/status` | chain, indexed block, head, safe, finalized, lag |
//! | `GET /v1/models` | registered models and their terms |
//! | `GET /v1/models/{model_id}/rules` | every version of a model's verification rules (jobs name theirs) |
//! | `GET /v1/models/{model_id}/executors` | executors serving a model: prices, stake, reputation, endpoint |
//! | `GET /v1/executors/{address}` | one executor with its prices and stake |
//! | `GET /v1/accounts/{address}` | an account's JobEscrow credit and locked credit (with its release time) |
//! | `GET /v1/jobs/{job_id}` | a job's lifecycle |
//! | `GET /v1/disputes[?status=open\|drawing\|voting\|executor_faulty\|executor_honest]` | disputes (`open`: drawing or voting) |
//! | `GET /health` | 200 once the database answers |

use alloy::primitives::{Address, B256, U256};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    rows::{
        BalanceRow, DisputeRow, ExecutorRow, JobRow, ModelRow, PriceRow, ROLE_EXECUTOR, RulesRow,
        StakeRow,
    },
    store::{Cursor, Store, StoreError},
};

#[derive(Debug, Clone)]
struct Api {
    store: Store,
    chain_id: u64,
}

/// The read API's routes.
pub fn router(store: Store, chain_id: u64) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/models", get(models))
        .route("/v1/models/{model_id}/rules", get(model_rules))
        .route("/v1/models/{model_id}/executors", get(model_executors))
        .route("/v1/executors/{address}", get(executor))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/jobs/{job_id}", get(job))
        .route("/v1/disputes", get(disputes))
        .with_state(Api { store, chain_id })
}

#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Store(e) => {
                tracing::error!(error = %e, "read API: database error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "database error".to_owned(),
                )
            }
        };
        (status, Json(json!({ "error": { "message": message } }))).into_response()
    }
}

type ApiResult = Result<Json<serde_json::Value>, ApiError>;

/// How final a row is, given the block of its last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Finality {
    /// At or below the node's finalized block.
    Finalized,
    /// At or below the node's safe block.
    Safe,
    /// Above safe: may still be reorganised away.
    Latest,
}

impl Finality {
    /// The finality of a change in `block`.
    pub fn of(block: u64, cursor: &Cursor) -> Self {
        if block <= cursor.finalized {
            Self::Finalized
        } else if block <= cursor.safe {
            Self::Safe
        } else {
            Self::Latest
        }
    }
}

impl Api {
    async fn cursor(&self) -> Result<Cursor, ApiError> {
        self.store
            .cursor(self.chain_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("nothing indexed yet".into()))
    }
}

fn with_finality<T: Serialize>(row: &T, block: u64, cursor: &Cursor) -> serde_json::Value {
    let mut value = serde_json::to_value(row).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("finality".into(), json!(Finality::of(block, cursor)));
    }
    value
}

fn parse<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid {what}: {raw:?}")))
}

async fn health(State(api): State<Api>) -> Result<&'static str, ApiError> {
    api.store.cursor(api.chain_id).await?;
    Ok("ok")
}

async fn status(State(api): State<Api>) -> ApiResult {
    let cursor = api.cursor().await?;
    Ok(Json(json!({
        "chain_id": api.chain_id,
        "database": api.store.backend(),
        "indexed_block": cursor.block_number,
        "indexed_hash": cursor.block_hash,
        "head": cursor.head,
        "safe": cursor.safe,
        "finalized": cursor.finalized,
        "lag_blocks": cursor.head.saturating_sub(cursor.block_number),
        "updated_at_ms": cursor.updated_at_ms,
    })))
}

async fn models(State(api): State<Api>) -> ApiResult {
    let cursor = api.cursor().await?;
    let rows = api.store.all::<ModelRow>(api.chain_id).await?;
    Ok(Json(json!({
        "models": rows.iter().map(|m| with_finality(m, m.block, &cursor)).collect::<Vec<_>>()
    })))
}

async fn model_rules(State(api): State<Api>, Path(model_id): Path<String>) -> ApiResult {
    let model_id: B256 = parse("model id", &model_id)?;
    let cursor = api.cursor().await?;
    let rules: Vec<_> = api
        .store
        .all::<RulesRow>(api.chain_id)
        .await?
        .into_iter()
        .filter(|r| r.model_id == model_id)
        .map(|r| with_finality(&r, r.block, &cursor))
        .collect();
    if rules.is_empty() {
        return Err(ApiError::NotFound(format!("no model {model_id}")));
    }
    Ok(Json(json!({ "model_id": model_id, "rules": rules })))
}

/// An executor as the gateway routes to it.
#[derive(Debug, Serialize, Deserialize)]
struct ExecutorView {
    address: Address,
    endpoint: String,
    hardware: String,
    staked: U256,
    locked: U256,
    free_stake: U256,
    jobs_completed: u32,
    jobs_expired: u32,
    disputes_lost: u32,
    prices: Vec<PriceRow>,
    block: u64,
}

async fn executor_view(
    api: &Api,
    address: Address,
    prices: Vec<PriceRow>,
) -> Result<Option<ExecutorView>, ApiError> {
    let Some(profile) = api.store.get::<ExecutorRow>(api.chain_id, &address).await? else {
        return Ok(None);
    };
    let stake = api
        .store
        .get::<StakeRow>(api.chain_id, &(address, ROLE_EXECUTOR))
        .await?
        .unwrap_or_else(|| StakeRow::empty(address, ROLE_EXECUTOR, 0));
    let block = prices
        .iter()
        .map(|p| p.block)
        .chain([profile.block, stake.block])
        .max()
        .unwrap_or_default();
    Ok(Some(ExecutorView {
        address,
        endpoint: profile.endpoint,
        hardware: profile.hardware,
        free_stake: stake.staked.saturating_sub(stake.locked),
        staked: stake.staked,
        locked: stake.locked,
        jobs_completed: stake.jobs_completed,
        jobs_expired: stake.jobs_expired,
        disputes_lost: profile.disputes_lost,
        prices,
        block,
    }))
}

async fn model_executors(State(api): State<Api>, Path(model_id): Path<String>) -> ApiResult {
    let model_id: B256 = parse("model id", &model_id)?;
    let cursor = api.cursor().await?;
    let mut out = Vec::new();
    for price in api.store.all::<PriceRow>(api.chain_id).await? {
        if price.model_id != model_id || !price.active {
            continue;
        }
        if let Some(view) = executor_view(&api, price.executor, vec![price]).await? {
            out.push(with_finality(&view, view.block, &cursor));
        }
    }
    Ok(Json(json!({ "model_id": model_id, "executors": out })))
}

async fn executor(State(api): State<Api>, Path(address): Path<String>) -> ApiResult {
    let address: Address = parse("address", &address)?;
    let cursor = api.cursor().await?;
    let prices = api
        .store
        .all::<PriceRow>(api.chain_id)
        .await?
        .into_iter()
        .filter(|p| p.executor == address)
        .collect();
    let view = executor_view(&api, address, prices)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no executor {address}")))?;
    Ok(Json(with_finality(&view, view.block, &cursor)))
}

async fn account(State(api): State<Api>, Path(address): Path<String>) -> ApiResult {
    let address: Address = parse("address", &address)?;
    let cursor = api.cursor().await?;
    let row = api
        .store
        .get::<BalanceRow>(api.chain_id, &address)
        .await?
        .unwrap_or_else(|| BalanceRow::empty(address, 0));
    let mut value = with_finality(&row, row.block, &cursor);
    value["indexed_block"] = json!(cursor.block_number);
    Ok(Json(value))
}

async fn job(State(api): State<Api>, Path(job_id): Path<String>) -> ApiResult {
    let job_id: u64 = parse("job id", &job_id)?;
    let cursor = api.cursor().await?;
    let row = api
        .store
        .get::<JobRow>(api.chain_id, &job_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no job {job_id} (indexed up to block {})",
                cursor.block_number
            ))
        })?;
    Ok(Json(with_finality(&row, row.block, &cursor)))
}

#[derive(Debug, Deserialize)]
struct DisputeFilter {
    status: Option<String>,
}

async fn disputes(State(api): State<Api>, Query(filter): Query<DisputeFilter>) -> ApiResult {
    let cursor = api.cursor().await?;
    let rows: Vec<_> = api
        .store
        .all::<DisputeRow>(api.chain_id)
        .await?
        .into_iter()
        .filter(|d| match filter.status.as_deref() {
            None => true,
            Some("open") => d.is_open(),
            Some(status) => status == d.status,
        })
        .map(|d| with_finality(&d, d.block, &cursor))
        .collect();
    Ok(Json(json!({ "disputes": rows })))
}
