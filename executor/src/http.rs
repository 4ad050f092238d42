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

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    sync::Arc,
};

use alloy::{
    primitives::{Address, B256, Bytes, Signature, U256},
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
use futures::Stream;
use infera_engine::{EngineError, Event, GenerateRequest, Output};
use infera_protocol::{
    CommitmentInput, SAMPLER_VERSION, Sampler, Transcript,
    prompt::{Message, Prompt},
    receipt::{GatewayRequest, Receipt, prompt_hash_of_messages, prompt_hash_of_tokens},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{jobs::Served, store::Store};

/// Largest request body accepted.
const MAX_BODY: usize = 2 << 20;

/// What the HTTP handlers share.
#[derive(Debug)]
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
        Some((generation, state, request, served)),
        |slot| async move {
            let (mut generation, state, request, served) = slot?;
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
                    Some((Ok(event), Some((generation, state, request, served))))
                }
                Some(Ok(Event::Done(output))) => {
                    let event = match receipt_event(&state, &request, &served, output) {
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
    })
}

async fn health(State(state): State<Arc<HttpState>>) -> Response {
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
    Json(json!({
        "status": "ok",
        "executor": state.signer.address(),
        "chain_id": state.chain_id,
        "models": models,
        "jobs": jobs,
    }))
    .into_response()
}

async fn metrics_text(State(state): State<Arc<HttpState>>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}
