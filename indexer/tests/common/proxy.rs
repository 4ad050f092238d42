//! A JSON-RPC proxy in front of anvil that plays a load-balanced pool of nodes, some of them a
//! few blocks behind, with a rate limit. From a seeded generator, each request is:
//!
//! - refused for the rate limit (`rate_limit`): half as HTTP 429, half as a JSON-RPC error -32005
//!   "request rate exceeded" in an HTTP 200;
//! - answered by a node `1..=max_lag` blocks behind (`stale`): its `eth_blockNumber` is lower,
//!   blocks above its head are `null` by number and by receipts, an `eth_getLogs` range stops at
//!   its head (`[]` when it starts above), and a by-hash `eth_getLogs` for a block it lacks answers
//!   `[]` or "unknown block" (providers do both);
//! - for `eth_getLogs` only, answered by a node whose log index lags (`empty`): a range loses the
//!   logs of the newest `max_lag + 1` blocks, and a by-hash query answers `[]` whatever the
//!   block;
//! - otherwise forwarded as is.
//!
//! Finalized history (more than `max_lag + 1` blocks below the head) is answered truthfully: the
//! proxy models lagging nodes, not lying ones.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use eyre::{Result, eyre};
use serde_json::{Value, json};

/// How often each fault happens.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Seed of the generator (runs are not exactly reproducible: requests race).
    pub seed: u64,
    /// Share of requests refused for the rate limit.
    pub rate_limit: f64,
    /// Share of requests answered by a node behind.
    pub stale: f64,
    /// Share of `eth_getLogs` answered by a node whose log index lags.
    pub empty: f64,
    /// Most blocks a node is behind.
    pub max_lag: u64,
}

impl Faults {
    /// The seed from `INFERA_TEST_SEED` (or `default_seed`), 10% rate limits, 30% stale nodes up to
    /// 3 blocks behind, 20% empty log answers.
    pub fn from_env(default_seed: u64) -> Self {
        let seed = std::env::var("INFERA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_seed);
        Self {
            seed,
            rate_limit: 0.10,
            stale: 0.30,
            empty: 0.20,
            max_lag: 3,
        }
    }
}

/// What the proxy did, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    pub forwarded: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Answers that differ from the head node's: a lower head, a missing block, fewer logs.
    pub stale: AtomicU64,
    pub emptied: AtomicU64,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rng: Mutex<u64>,
    faults: Faults,
    counts: Arc<Counts>,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub url: String,
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: &str, faults: Faults) -> Result<Self> {
        eprintln!("flaky RPC proxy: seed {} (INFERA_TEST_SEED)", faults.seed);
        let counts = Arc::new(Counts::default());
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            client: reqwest::Client::new(),
            rng: Mutex::new(faults.seed),
            faults,
            counts: counts.clone(),
        });
        let app = Router::new().route("/", post(handle)).with_state(shared);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, counts, task })
    }
}

impl Shared {
    /// SplitMix64: a uniform draw in [0, 1).
    fn draw(&self) -> f64 {
        let mut state = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let answer: Value = self
            .client
            .post(&self.upstream)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await?
            .json()
            .await?;
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| eyre!("{method}: {answer}"))
    }

    async fn head(&self) -> Result<u64> {
        number(&self.call("eth_blockNumber", json!([])).await?)
            .ok_or_else(|| eyre!("bad eth_blockNumber"))
    }

    /// The number of the block with `hash`, if anvil has it.
    async fn number_of(&self, hash: &Value) -> Result<Option<u64>> {
        let block = self
            .call("eth_getBlockByHash", json!([hash, false]))
            .await?;
        Ok(block.get("number").and_then(number))
    }

    /// A block named by number, tag or hash (a string) or `{"blockHash": …}`.
    async fn resolve(&self, block: &Value, head: u64) -> Result<Option<u64>> {
        let block = block.get("blockHash").unwrap_or(block);
        match block.as_str() {
            Some("latest" | "pending") => Ok(Some(head)),
            Some(s) if s.len() == 66 => self.number_of(block).await,
            Some(_) => Ok(number(block)),
            None => Ok(None),
        }
    }

    async fn forward(&self, body: Bytes) -> Response {
        self.counts.forwarded.fetch_add(1, Ordering::Relaxed);
        match self
            .client
            .post(&self.upstream)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let bytes = answer.bytes().await.unwrap_or_default();
                (
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    [(header::CONTENT_TYPE, "application/json")],
                    bytes,
                )
                    .into_response()
            }
            Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
        }
    }

    async fn forward_json(&self, request: &Value) -> Response {
        self.forward(Bytes::from(request.to_string())).await
    }
}

fn number(value: &Value) -> Option<u64> {
    u64::from_str_radix(value.as_str()?.trim_start_matches("0x"), 16).ok()
}

fn result(id: &Value, result: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
    )
        .into_response()
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            .to_string(),
    )
        .into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match answer(&shared, body.clone()).await {
        Ok(response) => response,
        // The proxy's own bookkeeping failed (anvil busy): let the node answer.
        Err(_) => shared.forward(body).await,
    }
}

async fn answer(shared: &Shared, body: Bytes) -> Result<Response> {
    let request: Value = serde_json::from_slice(&body)?;
    let (Some(method), Some(id)) = (
        request.get("method").and_then(Value::as_str),
        request.get("id").cloned(),
    ) else {
        // A batch or something odd: not ours to play with.
        return Ok(shared.forward(body).await);
    };
    let faults = shared.faults;
    if shared.draw() < faults.rate_limit {
        shared.counts.rate_limited.fetch_add(1, Ordering::Relaxed);
        return Ok(if shared.draw() < 0.5 {
            (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response()
        } else {
            rpc_error(&id, -32005, "request rate exceeded, slow down")
        });
    }
    let lag = if shared.draw() < faults.stale {
        1 + (shared.draw() * faults.max_lag as f64) as u64
    } else {
        0
    };
    let empty = method == "eth_getLogs" && shared.draw() < faults.empty;
    if lag == 0 && !empty {
        return Ok(shared.forward(body).await);
    }
    let head = shared.head().await?;
    let visible = head.saturating_sub(lag);
    let params = request.get("params").cloned().unwrap_or(json!([]));
    let first = params.get(0).cloned().unwrap_or(Value::Null);
    let stale = |response: Response| {
        shared.counts.stale.fetch_add(1, Ordering::Relaxed);
        response
    };
    match method {
        "eth_blockNumber" => Ok(stale(result(&id, json!(format!("{visible:#x}"))))),
        "eth_getBlockByNumber" => match shared.resolve(&first, head).await? {
            Some(_) if first.as_str() == Some("latest") => {
                let mut request = request.clone();
                request["params"][0] = json!(format!("{visible:#x}"));
                Ok(stale(shared.forward_json(&request).await))
            }
            Some(n) if n > visible => Ok(stale(result(&id, Value::Null))),
            _ => Ok(shared.forward(body).await),
        },
        "eth_getBlockReceipts" => match shared.resolve(&first, head).await? {
            Some(n) if n > visible => Ok(stale(result(&id, Value::Null))),
            _ => Ok(shared.forward(body).await),
        },
        "eth_getLogs" => {
            if let Some(hash) = first.get("blockHash") {
                let n = shared.number_of(hash).await?;
                if empty {
                    shared.counts.emptied.fetch_add(1, Ordering::Relaxed);
                    return Ok(result(&id, json!([])));
                }
                return Ok(match n {
                    Some(n) if n > visible => {
                        if shared.draw() < 0.5 {
                            stale(result(&id, json!([])))
                        } else {
                            stale(rpc_error(&id, -32000, "unknown block"))
                        }
                    }
                    _ => shared.forward(body).await,
                });
            }
            // A range: it ends at what this node sees.
            let visible = if empty {
                shared.counts.emptied.fetch_add(1, Ordering::Relaxed);
                visible.min(head.saturating_sub(faults.max_lag + 1))
            } else {
                visible
            };
            let from = match first.get("fromBlock") {
                Some(block) => shared.resolve(block, head).await?.unwrap_or(0),
                None => head,
            };
            let to = match first.get("toBlock") {
                Some(block) => shared.resolve(block, head).await?.unwrap_or(head),
                None => head,
            };
            if to <= visible {
                return Ok(shared.forward(body).await);
            }
            if from > visible {
                return Ok(stale(result(&id, json!([]))));
            }
            let mut request = request.clone();
            request["params"][0]["toBlock"] = json!(format!("{visible:#x}"));
            Ok(stale(shared.forward_json(&request).await))
        }
        _ => Ok(shared.forward(body).await),
    }
}
