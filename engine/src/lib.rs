//! Infera's inference engine: mistral.rs running a GGUF model with the verifiable sampler.
//!
//! This is the only crate that links mistralrs. It
//! - loads a model from a local file only, after resolving its real path and checking its size and
//!   sha256 against the registry entry ([`infera_models::verify`]); no token source, no hub;
//! - renders prompts with the model's pinned chat template into prompt token ids;
//! - generates with mistral.rs in greedy mode and a custom logits processor that applies the
//!   [`Sampler`] of the job, so the output ids, their log-probabilities and the seed are ours and
//!   reproducible (DESIGN.md §4);
//! - streams tokens as they are produced, stops when the [`Generation`] is dropped, and serves
//!   several requests at once (mistral.rs batches them) behind a bounded queue that answers
//!   [`EngineError::Busy`] when full; places in it can be reserved ahead ([`Reservation`]) for
//!   requests that must not be crowded out;
//! - scores claimed transcripts teacher-forced for validators ([`Engine::score`] through
//!   mistral.rs, [`DenseScorer`] on dequantised weights), with the same sampler as generation.
//!
//! # Scoring cost (measured 2026-12-01, 2 cores, dev profile, machine shared with other jobs)
//!
//! `PROFILE=dev scripts/bench-validator` (3 jobs, 128 output tokens each, T = 0.7, top-p 0.95):
//! generating took 106.6 s, checking on the dense path 30.9 s (`check_over_generate=0.290`, dense
//! prefill 17.3 tok/s at window 128) and through mistral.rs 131.8 s (`1.236`, 3.9 tok/s); the
//! largest honest margin was 1.10 nats on both paths, one top-p position where both scoring
//! passes agreed with each other and not with decoding. Under load the absolute speeds are
//! 3–4× below an idle machine's; the ratios are what the benchmark reports.

pub mod check;
mod dense;
mod generation;
mod gguf;
mod score;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::primitives::B256;
use infera_protocol::{
    FinishReason, Sampler, SamplerError,
    prompt::{Prompt, Role},
};
use mistralrs::{
    GgufModelBuilder, Model, TextMessageRole, TextMessages,
    core::{DeviceMapSetting, TokenSource},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use dense::{DEFAULT_WINDOW, DenseScorer};
pub use generation::{Event, Generation, greedy_completion};
pub use infera_models::ModelError;
pub use score::{PositionScore, ScorePath, ScoreRequest, Scores, UnknownScorePath};

/// Why the engine refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file is missing or does not match the registry.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// mistral.rs could not load the model.
    #[error("loading the model failed: {0}")]
    Load(String),
    /// Every slot and queue place is taken; try later or elsewhere.
    #[error("engine busy: {capacity} requests already running or queued")]
    Busy {
        /// Running plus queued requests the engine accepts.
        capacity: usize,
    },
    /// The prompt could not be rendered or tokenized.
    #[error("tokenizing failed: {0}")]
    Tokenize(String),
    /// Prompt plus output would not fit the model's context.
    #[error("{prompt} prompt tokens + {max_tokens} output tokens exceed the context of {context}")]
    ContextExceeded {
        /// Prompt tokens.
        prompt: usize,
        /// Requested output tokens.
        max_tokens: u32,
        /// The model's context length.
        context: usize,
    },
    /// A request asked for nothing.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The sampler failed (no finite logit).
    #[error("sampler failed: {0}")]
    Sampler(#[from] SamplerError),
    /// mistral.rs failed while generating.
    #[error("generation failed: {0}")]
    Generate(String),
}

/// The device the model runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// The CPU (the default everywhere).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Its sha256 as the model registry pins it.
    pub sha256: B256,
    /// Its size in bytes, when known (a cheaper first check than the hash).
    pub size: Option<u64>,
    /// Requests generated together (mistral.rs batch size). Keep it at 1: with mistral.rs 0.8.1
    /// on CPU, requests decoded in one batch got wrong tokens (teacher-forced margins of 14–22 nats
    /// at positions 3–9, greedy jobs included; `scripts/calibrate --batch-probe` reproduces it), and
    /// a result that is not what the model computes is slashed. Others still queue (`max_queued`).
    pub max_running: usize,
    /// Requests that may wait for a slot beyond those; more are refused as busy.
    pub max_queued: usize,
    /// Where to run.
    pub device: DeviceKind,
}

impl EngineConfig {
    /// Defaults for `model_path`: 1 running (see `max_running`), 16 queued, on the CPU.
    pub fn new(model_path: PathBuf, sha256: B256, size: Option<u64>) -> Self {
        Self {
            model_path,
            sha256,
            size,
            max_running: 1,
            max_queued: 16,
            device: DeviceKind::Cpu,
        }
    }
}

/// A generation request: rendered prompt ids, the sampler and the output budget.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt token ids (the chat template already applied).
    pub prompt_ids: Vec<u32>,
    /// Most output tokens (the end-of-sequence token included).
    pub max_tokens: u32,
    /// The verifiable sampler (parameters and seed).
    pub sampler: Sampler,
}

/// What a finished generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The prompt ids generated from.
    pub prompt_ids: Vec<u32>,
    /// Every sampled token, the end-of-sequence token included when the finish reason is `Stop`.
    pub output_ids: Vec<u32>,
    /// Natural log-probability of each output token under the model.
    pub logprobs: Vec<f32>,
    /// The detokenised output ids (special tokens skipped).
    pub text: String,
    /// Stop (end-of-sequence) or Length (`max_tokens` reached).
    pub finish_reason: FinishReason,
    /// Where the time went.
    pub timings: Timings,
}

/// Timings of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// From the request to the first output token (queueing and prefill included).
    pub time_to_first_token: Duration,
    /// From the request to the last output token.
    pub total: Duration,
    /// Time spent in the verifiable sampler, all tokens together.
    pub sampling: Duration,
}

impl Timings {
    /// Decode throughput: output tokens after the first, per second of decoding.
    pub fn decode_tokens_per_second(&self, output_tokens: usize) -> Option<f64> {
        let decode = self.total.checked_sub(self.time_to_first_token)?;
        (output_tokens > 1 && !decode.is_zero())
            .then(|| (output_tokens - 1) as f64 / decode.as_secs_f64())
    }
}

/// A place in the engine held for a request that must run (an on-chain job already accepted):
/// requests without one ([`Engine::generate`]) can only take the places nobody reserved, so they
/// cannot crowd it out. Use it with [`Engine::generate_reserved`]; dropping it gives the place back.
#[derive(Debug)]
pub struct Reservation {
    /// Always `Some` until the reservation is used.
    permit: Option<OwnedSemaphorePermit>,
    reserved: Arc<AtomicUsize>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Used or given back, it no longer counts as reserved.
        self.reserved.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A loaded model, shareable across tasks (clone the `Arc`).
pub struct Engine {
    model: Model,
    permits: Arc<Semaphore>,
    reserved: Arc<AtomicUsize>,
    capacity: usize,
    context: Option<usize>,
    model_path: PathBuf,
    /// Token ids generation stops on (from the GGUF header, as mistral.rs derives them).
    eos_token_ids: Vec<u32>,
    /// Rows of the token embedding.
    vocab_size: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model_path", &self.model_path)
            .field("capacity", &self.capacity)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Verifies the model file and loads it.
    ///
    /// # Errors
    /// [`EngineError::Model`] when the file is missing, partial or not the registered one (nothing
    /// is loaded then), [`EngineError::Load`] when mistral.rs fails.
    pub async fn load(config: EngineConfig) -> Result<Self, EngineError> {
        let (path, eos_token_ids, vocab_size) = {
            let (path, size, sha256) = (config.model_path.clone(), config.size, config.sha256);
            tokio::task::spawn_blocking(move || {
                let path = infera_models::verify(&path, size, sha256)?;
                let (header, _) = gguf::Header::read(&path)?;
                Ok::<_, EngineError>((path, header.eos_token_ids()?, header.vocab_size()?))
            })
            .await
            .map_err(|e| EngineError::Load(e.to_string()))??
        };
        let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
            return Err(EngineError::Load(format!(
                "{} has no parent directory",
                path.display()
            )));
        };
        let started = std::time::Instant::now();
        let mut builder = GgufModelBuilder::new(
            dir.to_string_lossy(),
            vec![file.to_string_lossy().into_owned()],
        )
        .with_token_source(TokenSource::None)
        .with_device_mapping(DeviceMapSetting::dummy())
        // Prefix caching would let one request's cache shape another's numerics.
        .with_prefix_cache_n(None)
        .with_max_num_seqs(config.max_running.max(1));
        builder = match config.device {
            DeviceKind::Cpu => builder.with_force_cpu(),
            DeviceKind::Cuda(ordinal) => builder.with_device(
                mistralrs::Device::new_cuda(ordinal)
                    .map_err(|e| EngineError::Load(e.to_string()))?,
            ),
        };
        let model = builder
            .build()
            .await
            .map_err(|e| EngineError::Load(format!("{e:#}")))?;
        let context = model.max_sequence_length().ok().flatten();
        tracing::info!(
            model = %path.display(),
            load_ms = started.elapsed().as_millis() as u64,
            context,
            "model loaded"
        );
        let capacity = config.max_running.max(1) + config.max_queued;
        Ok(Self {
            model,
            permits: Arc::new(Semaphore::new(capacity)),
            reserved: Arc::new(AtomicUsize::new(0)),
            capacity,
            context,
            model_path: path,
            eos_token_ids,
            vocab_size,
        })
    }

    /// The verified model file.
    pub fn model_path(&self) -> &std::path::Path {
        &self.model_path
    }

    /// The model's context length, when it declares one.
    pub fn context_length(&self) -> Option<usize> {
        self.context
    }

    /// Places taken now: requests running or queued, and reservations not used yet.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }

    /// Reservations held and not used yet (part of [`Engine::in_flight`]).
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Reserves a place if one is free now.
    ///
    /// # Errors
    /// [`EngineError::Busy`] when every place is taken or reserved.
    pub fn try_reserve(&self) -> Result<Reservation, EngineError> {
        Ok(self.reservation(self.free_place()?))
    }

    /// A place free now (neither running, queued nor reserved), or [`EngineError::Busy`].
    fn free_place(&self) -> Result<OwnedSemaphorePermit, EngineError> {
        Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| EngineError::Busy {
                capacity: self.capacity,
            })
    }

    /// Reserves the next place that frees up, waiting for it: places are handed out in the order
    /// they were asked for, so a request without a reservation cannot take it first.
    ///
    /// # Errors
    /// [`EngineError::Generate`] when the engine has stopped.
    pub async fn reserve(&self) -> Result<Reservation, EngineError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Generate("the engine has stopped".into()))?;
        Ok(self.reservation(permit))
    }

    fn reservation(&self, permit: OwnedSemaphorePermit) -> Reservation {
        self.reserved.fetch_add(1, Ordering::Relaxed);
        Reservation {
            permit: Some(permit),
            reserved: Arc::clone(&self.reserved),
        }
    }

    /// Checks that the engine answers: a round trip through mistral.rs's request loop (a
    /// one-token detokenisation). Returns how long it took.
    ///
    /// # Errors
    /// [`EngineError::Tokenize`] when the engine does not answer (its loop has stopped).
    pub async fn probe(&self) -> Result<Duration, EngineError> {
        let started = Instant::now();
        self.detokenize(&[0]).await?;
        Ok(started.elapsed())
    }

    /// Running plus queued requests the engine accepts before answering busy.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Renders `prompt` with the model's chat template (generation prompt appended) into ids.
    ///
    /// # Errors
    /// [`EngineError::Tokenize`] when the template or tokenizer fails.
    pub async fn render(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        let mut messages = TextMessages::new();
        for message in &prompt.messages {
            let role = match message.role {
                Role::System => TextMessageRole::System,
                Role::User => TextMessageRole::User,
                Role::Assistant => TextMessageRole::Assistant,
            };
            messages = messages.add_message(role, &message.content);
        }
        self.model
            .tokenize(either::Either::Left(messages), None, true, true, None)
            .await
            .map_err(|e| EngineError::Tokenize(e.to_string()))
    }

    /// Detokenises `ids`, skipping special tokens.
    ///
    /// # Errors
    /// [`EngineError::Tokenize`] when the tokenizer fails.
    pub async fn detokenize(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.model
            .detokenize(ids.to_vec(), true)
            .await
            .map_err(|e| EngineError::Tokenize(e.to_string()))
    }

    /// Starts generating; tokens stream from the returned [`Generation`]. Dropping it cancels.
    ///
    /// # Errors
    /// [`EngineError::Busy`] when the queue is full, [`EngineError::ContextExceeded`] when the
    /// request cannot fit, [`EngineError::InvalidRequest`] for an empty prompt or budget.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        self.check(&request)?;
        let permit = self.free_place()?;
        generation::start(self, request, permit).await
    }

    /// [`Engine::generate`] in a place reserved before ([`Engine::try_reserve`],
    /// [`Engine::reserve`]): never busy. The reservation is used up, whatever the outcome.
    ///
    /// # Errors
    /// As [`Engine::generate`], busy excepted.
    pub async fn generate_reserved(
        &self,
        request: GenerateRequest,
        mut reservation: Reservation,
    ) -> Result<Generation, EngineError> {
        self.check(&request)?;
        let permit = reservation
            .permit
            .take()
            .ok_or_else(|| EngineError::Generate("reservation already used".into()))?;
        drop(reservation);
        generation::start(self, request, permit).await
    }

    /// [`Engine::generate_reserved`] to the end.
    ///
    /// # Errors
    /// As [`Engine::generate_reserved`], and [`EngineError::Generate`] when generation fails.
    pub async fn generate_all_reserved(
        &self,
        request: GenerateRequest,
        reservation: Reservation,
    ) -> Result<Output, EngineError> {
        self.generate_reserved(request, reservation)
            .await?
            .finish()
            .await
    }

    /// Refuses requests that cannot run.
    fn check(&self, request: &GenerateRequest) -> Result<(), EngineError> {
        if request.prompt_ids.is_empty() {
            return Err(EngineError::InvalidRequest("empty prompt"));
        }
        if request.max_tokens == 0 {
            return Err(EngineError::InvalidRequest("max_tokens is 0"));
        }
        if let Some(context) = self.context
            && request.prompt_ids.len() + request.max_tokens as usize > context
        {
            return Err(EngineError::ContextExceeded {
                prompt: request.prompt_ids.len(),
                max_tokens: request.max_tokens,
                context,
            });
        }
        Ok(())
    }

    /// Generates to the end and returns the output.
    ///
    /// # Errors
    /// As [`Engine::generate`], and [`EngineError::Generate`] when generation fails.
    pub async fn generate_all(&self, request: GenerateRequest) -> Result<Output, EngineError> {
        self.generate(request).await?.finish().await
    }

    /// The underlying mistral.rs model, for tools that compare against plain mistral.rs (the
    /// benchmark). Requests sent through it bypass the verifiable sampler and the queue.
    pub fn mistral(&self) -> &Model {
        &self.model
    }
}
