//! The executor's HTTP endpoint: signed inference requests from gateways (streamed back as
//! server-sent events and closed with an EIP-712 receipt), `/health` and `/metrics`.
//!
//! `POST /v1/generate` takes
//! ```json
//! {"request": {"requestId": "0x…", "payer": "0x…", "modelId": "0x…", "promptHash": "0x…",
//!              "maxTokens": 64, "temperature": 0, "topK": 0, "topP": 0, "seed": "0x…",
//!              "expiry": 1790000000},
//!  "prompt": {"token_ids": [151644, …]}  or  {"messages": [{"role": "user", "content": "…"}]},
//!  "signature": "0x…"}
//! ```
//! where `signature` is the gateway's EIP-712 signature of `request` (see
//! `infera_protocol::receipt`). The answer is an SSE stream of `token` events
//! (`{"index", "id", "text", "logprob"}`) ending with one `receipt` event (the signed receipt,
//! the commitment, the token ids and the text) or one `error` event. Refusals before any token are
//! plain HTTP errors with an OpenAI-style body. Dropping the connection cancels generation.
//! Gateway requests only take engine places nobody reserved: on-chain jobs the executor accepted
//! hold theirs (see `infera_engine::Reservation`), and a request that finds no free place gets
//! `503` (`overloaded_error`).
//!
//! `GET /health` answers `200` when the chain's node answers and every engine responds, `503`
//! otherwise, with what failed:
//! ```json
//! {"status": "ok", "executor": "0x…", "chain_id": 31337,
//!  "chain": {"ok": true, "block": 42, "latency_ms": 1, "next_block": 43, "scan_lag_blocks": 0},
//!  "engine": {"ok": true, "models": [{"model_id": "0x…", "ok": true, "latency_ms": 2,
//!             "in_flight": 1, "reserved": 0, "capacity": 4, …}]},
//!  "models": […], "jobs": {"finalized": 1, …}}
//! ```
//! `GET /metrics` renders Prometheus text; the gauges of [`crate::telemetry`] are refreshed first.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, B256, Bytes, Signature, U256},
    providers::{DynProvider, Provider},
    signers::{SignerSync, local::PrivateKeySigner},
    sol_types::Eip712Domain,
};
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::{Stream, future::BoxFuture};
use infera_chain::redact::redact_text;
use infera_engine::{EngineError, Event, GenerateRequest, Output};
use infera_protocol::{
    CommitmentInput, SAMPLER_VERSION, Sampler, Transcript,
    prompt::{Message, Prompt},
    receipt::{GatewayRequest, Receipt, prompt_hash_of_messages, prompt_hash_of_tokens},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{jobs::Served, store::Store, telemetry};

/// Largest request body accepted.
const MAX_BODY: usize = 2 << 20;

/// How long `/health` and `/metrics` wait for the node or an engine before calling it down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Counts the transactions sent and not final yet (the transaction manager's); `None` when it
/// cannot tell now.
pub type PendingCount = Arc<dyn Fn() -> BoxFuture<'static, Option<u64>> + Send + Sync>;

/// What the HTTP handlers share.
pub struct HttpState {
    /// Models served.
    pub served: HashMap<B256, Served>,
    /// Replay protection.
    pub store: Store,
    /// Signs receipts.
    pub signer: PrivateKeySigner,
    /// The domain receipts and requests are signed under.
    pub domain: Eip712Domain,
    /// Gateways whose requests are served.
    pub gateways: HashSet<Address>,
    /// Chain id (for /health).
    pub chain_id: u64,
    /// Renders /metrics.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The chain's node (for /health and the scan lag).
    pub provider: DynProvider,
    /// The pending transactions gauge's source; `None` leaves the gauge out.
    pub pending_transactions: Option<PendingCount>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("served", &self.served)
            .field("signer", &self.signer.address())
            .field("gateways", &self.gateways)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

/// The router.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/v1/generate", post(generate))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The prompt of a gateway request.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptInput {
    /// Token ids, already rendered by the gateway with the pinned template.
    TokenIds(Vec<u32>),
    /// Chat messages, rendered by the executor.
    Messages(Vec<Message>),
}

/// `POST /v1/generate` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GenerateBody {
    /// The signed fields.
    pub request: GatewayRequest,
    /// The prompt, hashing to `request.promptHash`.
    pub prompt: PromptInput,
    /// The gateway's EIP-712 signature of `request`.
    pub signature: Bytes,
}

/// The `receipt` event closing a stream.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ReceiptEvent {
    /// The signed receipt.
    pub receipt: Receipt,
    /// The executor's EIP-712 signature of it.
    pub signature: Bytes,
    /// What the payer owes for it, in token base units.
    pub cost: U256,
    /// The prompt ids generated from.
    pub prompt_ids: Vec<u32>,
    /// The output ids.
    pub output_ids: Vec<u32>,
    /// The output text.
    pub text: String,
    /// `stop` or `length`.
    pub finish_reason: String,
    /// Everything needed to check the result by hand: the JSON `infera verify` reads (its
    /// `prompt` is the messages' canonical JSON, or absent when the prompt came as token ids).
    pub transcript: infera_protocol::verify::Transcript,
}

/// The `token` event.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TokenEvent {
    /// Position in the output.
    pub index: u32,
    /// Token id.
    pub id: u32,
    /// Text it completes.
    pub text: String,
    /// Natural log-probability.
    pub logprob: f32,
}

/// An OpenAI-style error response.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(
            json!({"error": {"message": self.message, "type": self.kind, "code": self.status.as_u16()}}),
        );
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn generate(
    State(state): State<Arc<HttpState>>,
    body: Result<Json<GenerateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            e.body_text(),
        )
    })?;
    let request = body.request;
    // Who is asking: only allow-listed gateways, only with a valid signature.
    let signature = Signature::try_from(body.signature.as_ref()).map_err(|_| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "malformed signature",
        )
    })?;
    let signer = signature
        .recover_address_from_prehash(&request.signing_hash(&state.domain))
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "signature does not recover",
            )
        })?;
    if !state.gateways.contains(&signer) {
        metrics::counter!("infera_executor_gateway_requests_total", "outcome" => "refused")
            .increment(1);
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("{signer} is not an allowed gateway"),
        ));
    }
    if request.expiry < now() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "invalid_request_error",
            "request expired",
        ));
    }
    let served = state.served.get(&request.modelId).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model {} not served", request.modelId),
        )
    })?;
    // The prompt as the transcript shows it: the messages the request hash covers.
    let posted_prompt = match &body.prompt {
        PromptInput::TokenIds(_) => None,
        PromptInput::Messages(messages) => Some(
            String::from_utf8_lossy(
                &Prompt {
                    messages: messages.clone(),
                }
                .to_json(),
            )
            .into_owned(),
        ),
    };
    let prompt_ids = match &body.prompt {
        PromptInput::TokenIds(ids) => {
            if prompt_hash_of_tokens(ids) != request.promptHash {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "promptHash does not match the prompt",
                ));
            }
            ids.clone()
        }
        PromptInput::Messages(messages) => {
            let prompt = Prompt {
                messages: messages.clone(),
            };
            if prompt_hash_of_messages(&prompt.to_json()) != request.promptHash {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "promptHash does not match the prompt",
                ));
            }
            served.engine.render(&prompt).await.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    e.to_string(),
                )
            })?
        }
    };
    if !state
        .store
        .claim_request(request.requestId)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
        })?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "request id already used",
        ));
    }
    let generation = served
        .engine
        .generate(GenerateRequest {
            prompt_ids,
            max_tokens: request.maxTokens,
            sampler: Sampler::new(request.sampling(), request.seed),
        })
        .await
        .map_err(|error| match error {
            EngineError::Busy { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded_error",
                error.to_string(),
            ),
            EngineError::ContextExceeded { .. } | EngineError::InvalidRequest(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                error.to_string(),
            ),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                other.to_string(),
            ),
        })?;
    tracing::info!(request_id = %request.requestId, payer = %request.payer, gateway = %signer, "gateway request");
    metrics::counter!("infera_executor_gateway_requests_total", "outcome" => "served").increment(1);
    let served = served.clone();
    let stream = futures::stream::unfold(
        Some((generation, state, request, served, posted_prompt)),
        |slot| async move {
            let (mut generation, state, request, served, posted_prompt) = slot?;
            match generation.next().await {
                Some(Ok(Event::Token {
                    index,
                    id,
                    logprob,
                    text,
                })) => {
                    let event = sse(
                        "token",
                        &TokenEvent {
                            index,
                            id,
                            text,
                            logprob,
                        },
                    );
                    Some((
                        Ok(event),
                        Some((generation, state, request, served, posted_prompt)),
                    ))
                }
                Some(Ok(Event::Done(output))) => {
                    let event =
                        match receipt_event(&state, &request, &served, posted_prompt, output) {
                            Ok(receipt) => sse("receipt", &receipt),
                            Err(message) => sse("error", &json!({"message": message})),
                        };
                    Some((Ok(event), None))
                }
                Some(Err(error)) => Some((
                    Ok(sse("error", &json!({"message": error.to_string()}))),
                    None,
                )),
                None => None,
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn sse(name: &str, data: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| {
            SseEvent::default()
                .event("error")
                .data("unserialisable event")
        })
}

/// Signs the receipt of a finished request.
fn receipt_event(
    state: &HttpState,
    request: &GatewayRequest,
    served: &Served,
    prompt: Option<String>,
    output: Output,
) -> Result<ReceiptEvent, String> {
    let commitment = CommitmentInput::from_tokens(
        request.modelId,
        SAMPLER_VERSION,
        request.sampling(),
        request.seed,
        Transcript {
            prompt_token_ids: &output.prompt_ids,
            output_token_ids: &output.output_ids,
            output_text: output.text.as_bytes(),
            finish_reason: output.finish_reason,
        },
    )
    .map_err(|e| format!("cannot commit to the output: {e}"))?;
    let output_tokens = u32::try_from(output.output_ids.len())
        .map_err(|_| format!("{} output tokens", output.output_ids.len()))?;
    let receipt = Receipt {
        requestId: request.requestId,
        payer: request.payer,
        executor: state.signer.address(),
        modelId: request.modelId,
        // The billed count is the one committed to.
        inputTokens: commitment.input_tokens,
        outputTokens: output_tokens,
        inputPrice: served.input_price,
        outputPrice: served.output_price,
        commitment: commitment.commitment(),
    };
    let signature = state
        .signer
        .sign_hash_sync(&receipt.signing_hash(&state.domain))
        .map_err(|e| format!("signing the receipt failed: {e}"))?;
    metrics::counter!("infera_executor_output_tokens_total")
        .increment(output.output_ids.len() as u64);
    telemetry::record_generation(&output, "gateway");
    let transcript = infera_protocol::verify::Transcript {
        model_id: request.modelId,
        sampler_version: SAMPLER_VERSION,
        sampling: request.sampling(),
        seed: request.seed,
        prompt,
        prompt_ids: output.prompt_ids.clone(),
        output_ids: output.output_ids.clone(),
        max_output_tokens: request.maxTokens,
        finish_reason: output.finish_reason,
        text: output.text.clone(),
        input_tokens: receipt.inputTokens,
        output_tokens: receipt.outputTokens,
        commitment: receipt.commitment,
    };
    Ok(ReceiptEvent {
        cost: receipt.cost(),
        receipt,
        signature: Bytes::from(signature.as_bytes().to_vec()),
        prompt_ids: output.prompt_ids,
        output_ids: output.output_ids,
        text: output.text,
        finish_reason: match output.finish_reason {
            infera_protocol::FinishReason::Length => "length".into(),
            _ => "stop".into(),
        },
        transcript,
    })
}

/// What `/health` found out about the chain.
struct ChainHealth {
    /// The head, when the node answered.
    head: Option<u64>,
    json: serde_json::Value,
}

/// Asks the node for its head; `next_block` is where the job loop scans from next.
async fn chain_health(state: &HttpState) -> ChainHealth {
    let started = Instant::now();
    let answer = tokio::time::timeout(PROBE_TIMEOUT, state.provider.get_block_number()).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let next_block = state.store.next_block().await.ok().flatten();
    match answer {
        Ok(Ok(head)) => ChainHealth {
            head: Some(head),
            json: json!({
                "ok": true,
                "block": head,
                "latency_ms": latency_ms,
                "next_block": next_block,
                "scan_lag_blocks": next_block.map(|next| scan_lag(head, next)),
            }),
        },
        Ok(Err(error)) => ChainHealth {
            head: None,
            json: json!({
                "ok": false,
                // Transport errors quote the URL, which may carry an API key.
                "error": redact_text(&error.to_string()),
                "latency_ms": latency_ms,
                "next_block": next_block,
            }),
        },
        Err(_) => ChainHealth {
            head: None,
            json: json!({
                "ok": false,
                "error": format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()),
                "latency_ms": latency_ms,
                "next_block": next_block,
            }),
        },
    }
}

/// Blocks from `next_block` (the next one to scan) up to the head, the head included.
fn scan_lag(head: u64, next_block: u64) -> u64 {
    (head + 1).saturating_sub(next_block)
}

/// Whether every engine answers, and how loaded each is.
async fn engine_health(state: &HttpState) -> (bool, Vec<serde_json::Value>) {
    let mut ok = !state.served.is_empty();
    let mut models = Vec::with_capacity(state.served.len());
    for (id, served) in &state.served {
        let engine = &served.engine;
        let probe = tokio::time::timeout(PROBE_TIMEOUT, engine.probe()).await;
        let mut model = json!({
            "model_id": id,
            "in_flight": engine.in_flight(),
            "reserved": engine.reserved(),
            "capacity": engine.capacity(),
        });
        let (model_ok, detail) = match probe {
            Ok(Ok(latency)) => (true, json!({"latency_ms": latency.as_millis() as u64})),
            Ok(Err(error)) => (false, json!({"error": error.to_string()})),
            Err(_) => (
                false,
                json!({"error": format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())}),
            ),
        };
        ok &= model_ok;
        if let (Some(model), Some(detail)) = (model.as_object_mut(), detail.as_object()) {
            model.insert("ok".into(), json!(model_ok));
            model.extend(detail.clone());
        }
        models.push(model);
    }
    (ok, models)
}

async fn health(State(state): State<Arc<HttpState>>) -> Response {
    let (chain, (engine_ok, engines)) = tokio::join!(chain_health(&state), engine_health(&state));
    let jobs: serde_json::Map<String, serde_json::Value> = state
        .store
        .stage_counts()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(stage, count)| (stage, json!(count)))
        .collect();
    let models: Vec<_> = state
        .served
        .iter()
        .map(|(id, served)| {
            json!({
                "model_id": id,
                "input_price": served.input_price,
                "output_price": served.output_price,
                "in_flight": served.engine.in_flight(),
                "capacity": served.engine.capacity(),
            })
        })
        .collect();
    let ok = chain.head.is_some() && engine_ok;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !ok {
        tracing::warn!(
            chain_ok = chain.head.is_some(),
            engine_ok,
            "health check failed"
        );
    }
    (
        status,
        Json(json!({
            "status": if ok { "ok" } else { "unavailable" },
            "executor": state.signer.address(),
            "chain_id": state.chain_id,
            "chain": chain.json,
            "engine": {"ok": engine_ok, "models": engines},
            "models": models,
            "jobs": jobs,
        })),
    )
        .into_response()
}

/// Sets the gauges that are read rather than counted: the engines' queues and reservations, the
/// pending transactions and the scan lag (left as they were when the node does not answer).
async fn refresh_gauges(state: &HttpState) {
    let (queue, reserved) = state
        .served
        .values()
        .fold((0, 0), |(queue, reserved), served| {
            let engine = &served.engine;
            let held = engine.reserved();
            (
                queue + engine.in_flight().saturating_sub(held),
                reserved + held,
            )
        });
    metrics::gauge!(telemetry::ENGINE_QUEUE).set(queue as f64);
    metrics::gauge!(telemetry::ENGINE_RESERVED).set(reserved as f64);
    if let Some(pending) = &state.pending_transactions
        && let Some(count) = pending().await
    {
        metrics::gauge!(telemetry::PENDING_TRANSACTIONS).set(count as f64);
    }
    let head = tokio::time::timeout(PROBE_TIMEOUT, state.provider.get_block_number()).await;
    if let (Ok(Ok(head)), Ok(Some(next))) = (head, state.store.next_block().await) {
        metrics::gauge!(telemetry::SCAN_LAG).set(scan_lag(head, next) as f64);
    }
}

async fn metrics_text(State(state): State<Arc<HttpState>>) -> Response {
    match &state.metrics {
        Some(handle) => {
            refresh_gauges(&state).await;
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::scan_lag;

    #[test]
    fn scan_lag_counts_the_blocks_not_scanned_yet() {
        // Scanned up to the head: the next block to scan is the one after it.
        assert_eq!(scan_lag(100, 101), 0);
        assert_eq!(scan_lag(100, 100), 1);
        assert_eq!(scan_lag(100, 91), 10);
        // A cursor ahead of the head (a node behind the one that was scanned) is no lag.
        assert_eq!(scan_lag(100, 150), 0);
    }
}
