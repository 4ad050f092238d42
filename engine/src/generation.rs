//! One generation: the logits processor that applies the verifiable sampler inside mistral.rs, and
//! the stream of tokens it produces.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use candle_core::{DType, Tensor};
use infera_protocol::{FinishReason, Sampled, Sampler};
use mistralrs::{
    NormalRequest, Request, Response, SamplingParams,
    core::{Constraint, CustomLogitsProcessor, RequestMessage},
};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::{Engine, EngineError, GenerateRequest, Output, Timings};

/// What a generation yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One output token, as soon as it is sampled.
    Token {
        /// Its position in the output (0-based).
        index: u32,
        /// The token id.
        id: u32,
        /// Its natural log-probability under the model.
        logprob: f32,
        /// The text this token completes (may be empty, e.g. within a multi-byte character).
        text: String,
    },
    /// The generation ended; always the last event.
    Done(Output),
}

/// The tokens a request's sampler chose, in order; written by the logits processor (on the
/// engine's thread), read by the [`Generation`].
#[derive(Debug)]
struct Record {
    sampler: Sampler,
    prompt_len: usize,
    tokens: Mutex<Vec<Sampled>>,
    error: Mutex<Option<String>>,
    /// Time spent in the sampler, in nanoseconds.
    sampling_ns: std::sync::atomic::AtomicU64,
}

/// mistral.rs runs in greedy mode with this processor: it samples with the job's [`Sampler`] from
/// the raw logits, records the choice and hands back logits that are `-inf` everywhere else, so
/// mistral.rs can only pick exactly it (under any temperature, should one ever be set).
struct VerifiableProcessor(Arc<Record>);

impl VerifiableProcessor {
    fn choose(&self, logits: &Tensor, context: &[u32]) -> candle_core::Result<Tensor> {
        let record = &self.0;
        let position = context
            .len()
            .checked_sub(record.prompt_len)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| candle_core::Error::msg("sequence shorter than its prompt"))?;
        let mut values: Vec<f32> = logits.to_dtype(DType::F32)?.to_vec1()?;
        let started = Instant::now();
        let sampled = record
            .sampler
            .sample(position, &values)
            .map_err(candle_core::Error::msg)?;
        record.sampling_ns.fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Ok(mut tokens) = record.tokens.lock() {
            if tokens.len() != position as usize {
                return Err(candle_core::Error::msg(format!(
                    "sampled position {position} after {} tokens",
                    tokens.len()
                )));
            }
            tokens.push(sampled);
        }
        values.fill(f32::NEG_INFINITY);
        values[sampled.token as usize] = 1.0;
        let len = values.len();
        Tensor::from_vec(values, len, logits.device())
    }
}

impl CustomLogitsProcessor for VerifiableProcessor {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> candle_core::Result<Tensor> {
        self.choose(logits, context).inspect_err(|error| {
            if let Ok(mut slot) = self.0.error.lock() {
                slot.get_or_insert_with(|| error.to_string());
            }
        })
    }
}

/// The streaming, greedy token-completion request the engine sends to mistral.rs, with `processor`
/// deciding every token. Public for the side-by-side benchmark, which sends it without one.
pub fn greedy_completion(
    prompt_ids: Vec<u32>,
    max_tokens: u32,
    processor: Option<Arc<dyn CustomLogitsProcessor>>,
    response: mpsc::Sender<Response>,
) -> NormalRequest {
    let mut sampling = SamplingParams::neutral();
    // mistral.rs reads an unset temperature as 1.0 (sampling); 0 is its greedy argmax.
    sampling.temperature = Some(0.0);
    sampling.max_len = Some(max_tokens as usize);
    NormalRequest {
        messages: RequestMessage::CompletionTokens(prompt_ids),
        sampling_params: sampling,
        response,
        return_logprobs: false,
        is_streaming: true,
        id: 0,
        constraint: Constraint::None,
        suffix: None,
        tools: None,
        tool_choice: None,
        logits_processors: processor.map(|p| vec![p]),
        return_raw_logits: false,
        web_search_options: None,
        model_id: None,
        truncate_sequence: false,
    }
}

/// A running generation. Read it with [`Generation::next`] or [`Generation::finish`]; dropping it
/// cancels the request inside the engine and frees its place.
pub struct Generation {
    responses: mpsc::Receiver<Response>,
    requests: mpsc::Sender<Request>,
    record: Arc<Record>,
    prompt_ids: Vec<u32>,
    max_tokens: u32,
    emitted: usize,
    ready: std::collections::VecDeque<Event>,
    carry: String,
    finish: Option<String>,
    started: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    done: bool,
    /// The engine place this generation holds; given back when it ends or is dropped.
    permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("prompt_tokens", &self.prompt_ids.len())
            .field("max_tokens", &self.max_tokens)
            .field("emitted", &self.emitted)
            .finish_non_exhaustive()
    }
}

pub(crate) async fn start(
    engine: &Engine,
    request: GenerateRequest,
    permit: OwnedSemaphorePermit,
) -> Result<Generation, EngineError> {
    let record = Arc::new(Record {
        sampler: request.sampler,
        prompt_len: request.prompt_ids.len(),
        tokens: Mutex::new(Vec::with_capacity(request.max_tokens as usize)),
        error: Mutex::new(None),
        sampling_ns: std::sync::atomic::AtomicU64::new(0),
    });
    // One chunk per token at most: with room for all of them the engine never waits on a slow
    // reader, so one slow client cannot stall the batch.
    let (tx, rx) = mpsc::channel(request.max_tokens as usize + 4);
    let normal = greedy_completion(
        request.prompt_ids.clone(),
        request.max_tokens,
        Some(Arc::new(VerifiableProcessor(Arc::clone(&record)))),
        tx,
    );
    let requests = engine
        .mistral()
        .inner()
        .get_sender(None)
        .map_err(|e| EngineError::Generate(e.to_string()))?;
    let started = Instant::now();
    requests
        .send(Request::Normal(Box::new(normal)))
        .await
        .map_err(|_| EngineError::Generate("the engine has stopped".into()))?;
    Ok(Generation {
        responses: rx,
        requests,
        record,
        prompt_ids: request.prompt_ids,
        max_tokens: request.max_tokens,
        emitted: 0,
        ready: std::collections::VecDeque::new(),
        carry: String::new(),
        finish: None,
        started,
        first_token: None,
        last_token: None,
        done: false,
        permit: Some(permit),
    })
}

impl Generation {
    /// The next event; `None` after [`Event::Done`] or an error.
    pub async fn next(&mut self) -> Option<Result<Event, EngineError>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Some(finish) = self.finish.take() {
                return Some(self.complete(&finish).await);
            }
            match self.responses.recv().await {
                Some(Response::CompletionChunk(chunk)) => {
                    let choice = chunk.choices.into_iter().next();
                    self.finish = choice.as_ref().and_then(|c| c.finish_reason.clone());
                    self.take_tokens(choice.map(|c| c.text).unwrap_or_default());
                }
                Some(Response::CompletionDone(done)) => {
                    let choice = done.choices.into_iter().next();
                    self.finish = Some(choice.map(|c| c.finish_reason).unwrap_or_default());
                    self.take_tokens(String::new());
                }
                Some(Response::InternalError(e) | Response::ValidationError(e)) => {
                    return Some(Err(self.fail(e.to_string())));
                }
                Some(Response::CompletionModelError(e, _) | Response::ModelError(e, _)) => {
                    return Some(Err(self.fail(e)));
                }
                Some(_) => return Some(Err(self.fail("unexpected response kind".into()))),
                None => {
                    // mistral.rs sends no chunk for a token that completes no text; when that is
                    // the last one the stream just ends. The record says how it ended.
                    let tokens = self.take_tokens(String::new());
                    if tokens == 0 {
                        return Some(Err(self.fail("the engine has stopped".into())));
                    }
                    let ended_by_length = tokens == self.max_tokens as usize;
                    self.finish = Some(if ended_by_length { "length" } else { "stop" }.into());
                }
            }
        }
    }

    /// Reads to the end and returns the output.
    ///
    /// # Errors
    /// [`EngineError::Generate`] when generation failed.
    pub async fn finish(mut self) -> Result<Output, EngineError> {
        while let Some(event) = self.next().await {
            if let Event::Done(output) = event? {
                return Ok(output);
            }
        }
        Err(EngineError::Generate(
            "generation ended without output".into(),
        ))
    }

    /// Queues the recorded tokens not yet emitted; a chunk's `text` goes with the newest of them
    /// (the text of the stream, concatenated, is the text of the tokens). Returns the number of
    /// tokens recorded.
    fn take_tokens(&mut self, text: String) -> usize {
        let sampled: Vec<Sampled> = self
            .record
            .tokens
            .lock()
            .map(|t| t[self.emitted.min(t.len())..].to_vec())
            .unwrap_or_default();
        self.carry.push_str(&text);
        if !sampled.is_empty() {
            let now = Instant::now();
            self.first_token.get_or_insert(now);
            self.last_token = Some(now);
        }
        let last = sampled.len().saturating_sub(1);
        for (n, s) in sampled.into_iter().enumerate() {
            self.ready.push_back(Event::Token {
                index: self.emitted as u32,
                id: s.token,
                logprob: s.logprob,
                text: if n == last {
                    std::mem::take(&mut self.carry)
                } else {
                    String::new()
                },
            });
            self.emitted += 1;
        }
        self.emitted
    }

    fn fail(&mut self, message: String) -> EngineError {
        self.done = true;
        self.permit = None;
        let recorded = self.record.error.lock().ok().and_then(|e| e.clone());
        EngineError::Generate(recorded.unwrap_or(message))
    }

    async fn complete(&mut self, finish: &str) -> Result<Event, EngineError> {
        self.done = true;
        self.permit = None;
        let sampled: Vec<Sampled> = self
            .record
            .tokens
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        let finish_reason = match finish {
            "stop" => FinishReason::Stop,
            "length" if sampled.len() == self.max_tokens as usize => FinishReason::Length,
            "length" => {
                return Err(EngineError::Generate(format!(
                    "the model's context ended the output after {} of {} tokens",
                    sampled.len(),
                    self.max_tokens
                )));
            }
            other => return Err(EngineError::Generate(format!("generation {other}"))),
        };
        let output_ids: Vec<u32> = sampled.iter().map(|s| s.token).collect();
        let text = detokenize(&self.requests, output_ids.clone()).await?;
        let started = self.started;
        let elapsed = |at: Option<Instant>| at.map(|t| t - started).unwrap_or_default();
        Ok(Event::Done(Output {
            prompt_ids: std::mem::take(&mut self.prompt_ids),
            logprobs: sampled.iter().map(|s| s.logprob).collect(),
            output_ids,
            text,
            finish_reason,
            timings: Timings {
                time_to_first_token: elapsed(self.first_token),
                total: elapsed(self.last_token),
                sampling: std::time::Duration::from_nanos(
                    self.record
                        .sampling_ns
                        .load(std::sync::atomic::Ordering::Relaxed),
                ),
            },
        }))
    }
}

/// Detokenises through the engine's request channel (the [`Generation`] holds no model handle).
async fn detokenize(
    requests: &mpsc::Sender<Request>,
    tokens: Vec<u32>,
) -> Result<String, EngineError> {
    let (tx, mut rx) = mpsc::channel(1);
    requests
        .send(Request::Detokenize(
            mistralrs::core::DetokenizationRequest {
                tokens,
                skip_special_tokens: true,
                response: tx,
            },
        ))
        .await
        .map_err(|_| EngineError::Generate("the engine has stopped".into()))?;
    rx.recv()
        .await
        .ok_or_else(|| EngineError::Generate("the engine has stopped".into()))?
        .map_err(|e| EngineError::Tokenize(e.to_string()))
}
