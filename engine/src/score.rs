//! Teacher-forced scoring (DESIGN.md §4): the logits at every output position of a claimed
//! transcript in one pass, and the verifiable sampler recomputed on them.
//!
//! Two numeric paths compute the logits: [`Engine::score`] through mistral.rs (one raw-logits
//! prefill, the executor's own kernels) and [`crate::DenseScorer`] (dequantised weights, batched
//! dense matmuls, far cheaper on a CPU). Both end in [`score_rows`], so the sampler side is the
//! same code.

use std::{
    fmt,
    str::FromStr,
    time::{Duration, Instant},
};

use candle_core::{DType, Tensor};
use infera_protocol::Sampler;
use mistralrs::{
    NormalRequest, Request, Response, SamplingParams,
    core::{Constraint, RequestMessage},
};

use crate::{Engine, EngineError};

/// A transcript to score teacher-forced: the logits at output position `t` are those after
/// `prompt_ids ++ output_ids[..t]`, and the sampler (params + seed) is recomputed on them.
#[derive(Debug, Clone, Copy)]
pub struct ScoreRequest<'a> {
    /// The rendered prompt ids.
    pub prompt_ids: &'a [u32],
    /// The claimed output ids (the end-of-sequence token included when it was sampled).
    pub output_ids: &'a [u32],
    /// The job's sampler: parameters and seed.
    pub sampler: Sampler,
}

/// The check at one output position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositionScore {
    /// The claimed token.
    pub claimed: u32,
    /// The token the sampler picks from this path's logits (`Sampler::sample`).
    pub pick: u32,
    /// `Sampler::margin` of the claimed token: 0 when it is the pick, in nats otherwise.
    pub margin: f64,
}

/// The scores of a transcript and where the time went.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// One per output token, in order.
    pub positions: Vec<PositionScore>,
    /// Time computing logits (the model's forward passes).
    pub forward: Duration,
    /// Time in the sampler (picks and margins).
    pub sampling: Duration,
    /// Tokens run through the model (`prompt + output - 1`; 0 for an empty output).
    pub tokens_forwarded: usize,
}

impl Scores {
    /// The largest margin (0 for an empty output).
    pub fn max_margin(&self) -> f64 {
        self.positions.iter().map(|p| p.margin).fold(0.0, f64::max)
    }

    /// Positions whose pick is not the claimed token.
    pub fn flips(&self) -> usize {
        self.positions
            .iter()
            .filter(|p| p.pick != p.claimed)
            .count()
    }
}

/// Which numeric path computes the logits of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScorePath {
    /// mistral.rs, as the executor generated ([`Engine::score`]).
    Engine,
    /// The dense CPU path ([`crate::DenseScorer`]).
    #[default]
    Dense,
}

impl fmt::Display for ScorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Engine => "engine",
            Self::Dense => "dense",
        })
    }
}

/// A score path name that is neither `engine` nor `dense`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown score path {0:?} (engine or dense)")]
pub struct UnknownScorePath(pub String);

impl FromStr for ScorePath {
    type Err = UnknownScorePath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "engine" => Ok(Self::Engine),
            "dense" => Ok(Self::Dense),
            _ => Err(UnknownScorePath(s.to_owned())),
        }
    }
}

/// Checks a request before any work: ids in the vocabulary, a prompt, and (when known) the
/// context. Returns the number of tokens to forward (0 for an empty output).
pub(crate) fn validate(
    request: &ScoreRequest<'_>,
    vocab: usize,
    context: Option<usize>,
) -> Result<usize, EngineError> {
    if request.output_ids.is_empty() {
        return Ok(0);
    }
    if request.prompt_ids.is_empty() {
        return Err(EngineError::InvalidRequest("empty prompt"));
    }
    if request
        .prompt_ids
        .iter()
        .chain(request.output_ids)
        .any(|&id| id as usize >= vocab)
    {
        return Err(EngineError::InvalidRequest(
            "a token id is outside the model's vocabulary",
        ));
    }
    let tokens = request.prompt_ids.len() + request.output_ids.len() - 1;
    if let Some(context) = context
        && tokens > context
    {
        return Err(EngineError::ContextExceeded {
            prompt: request.prompt_ids.len(),
            max_tokens: u32::try_from(request.output_ids.len()).unwrap_or(u32::MAX),
            context,
        });
    }
    Ok(tokens)
}

/// The pick and margin at output positions `first..first + rows`, given their logits as a
/// `[rows, vocab]` tensor (any float dtype); positions are scored in parallel.
pub(crate) fn score_rows(
    sampler: Sampler,
    first: usize,
    claimed: &[u32],
    logits: &Tensor,
) -> Result<Vec<PositionScore>, EngineError> {
    use rayon::prelude::*;

    let logits = logits
        .to_dtype(DType::F32)
        .map_err(|e| EngineError::Generate(format!("reading logits: {e}")))?;
    let (rows, vocab) = logits
        .dims2()
        .map_err(|e| EngineError::Generate(format!("logits shape: {e}")))?;
    if rows != claimed.len() || vocab == 0 {
        return Err(EngineError::Generate(format!(
            "{rows} logit rows for {} positions",
            claimed.len()
        )));
    }
    // A bounded slice of rows at a time, so scoring a long transcript copies little at once.
    const ROWS: usize = 64;
    let mut scores = Vec::with_capacity(rows);
    for start in (0..rows).step_by(ROWS) {
        let len = ROWS.min(rows - start);
        let values: Vec<f32> = logits
            .narrow(0, start, len)
            .and_then(|l| l.flatten_all())
            .and_then(|l| l.to_vec1())
            .map_err(|e| EngineError::Generate(format!("reading logits: {e}")))?;
        let chunk: Vec<PositionScore> = values
            .par_chunks(vocab)
            .zip(claimed[start..start + len].par_iter())
            .enumerate()
            .map(|(row, (logits, &claimed))| {
                let position = u32::try_from(first + start + row)
                    .map_err(|_| EngineError::InvalidRequest("output too long"))?;
                let pick = sampler.sample(position, logits)?.token;
                // The margin of the pick is 0 by definition; only a disagreement needs the
                // margin pass.
                let margin = if pick == claimed {
                    0.0
                } else {
                    sampler.margin(position, logits, claimed)
                };
                Ok(PositionScore {
                    claimed,
                    pick,
                    margin,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        scores.extend(chunk);
    }
    Ok(scores)
}

impl Engine {
    /// Token ids that end a sequence for this model (end-of-sequence / end-of-turn), as
    /// generation stops on them. Sorted.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// The model's vocabulary size (rows of its token embedding): ids at or above it are invalid.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Scores through mistral.rs: one raw-logits prefill over `prompt ++ output[..n-1]` (the
    /// engine's own numeric path), then the sampler at every output position.
    ///
    /// The request runs alone: it waits until every running generation has ended and holds all
    /// of the engine's places while it runs (mistral.rs cannot batch a raw-logits prefill with
    /// others, and one request's cache must not shape another's numerics). Its logits for the
    /// whole transcript are in memory at once (`tokens × vocabulary × 4` bytes); the bounded
    /// path is [`crate::DenseScorer`].
    ///
    /// # Errors
    /// [`EngineError::InvalidRequest`] for an empty prompt or an id outside the vocabulary,
    /// [`EngineError::ContextExceeded`] when the transcript does not fit, and
    /// [`EngineError::Generate`] when mistral.rs fails.
    pub async fn score(&self, request: ScoreRequest<'_>) -> Result<Scores, EngineError> {
        let tokens = validate(&request, self.vocab_size, self.context)?;
        if tokens == 0 {
            return Ok(Scores::default());
        }
        let prompt_len = request.prompt_ids.len();
        let n = request.output_ids.len();
        let mut ids = Vec::with_capacity(tokens);
        ids.extend_from_slice(request.prompt_ids);
        ids.extend_from_slice(&request.output_ids[..n - 1]);

        let all = u32::try_from(self.capacity)
            .map_err(|_| EngineError::Generate("engine capacity out of range".into()))?;
        let alone = self
            .permits
            .acquire_many(all)
            .await
            .map_err(|_| EngineError::Generate("the engine has stopped".into()))?;

        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let requests = self
            .model
            .inner()
            .get_sender(None)
            .map_err(|e| EngineError::Generate(e.to_string()))?;
        requests
            .send(Request::Normal(Box::new(raw_logits_request(ids, tx))))
            .await
            .map_err(|_| EngineError::Generate("the engine has stopped".into()))?;
        let chunks = match rx.recv().await {
            Some(Response::Raw { logits_chunks, .. }) => logits_chunks,
            Some(Response::InternalError(e) | Response::ValidationError(e)) => {
                return Err(EngineError::Generate(e.to_string()));
            }
            Some(Response::CompletionModelError(e, _) | Response::ModelError(e, _)) => {
                return Err(EngineError::Generate(e));
            }
            Some(_) => return Err(EngineError::Generate("unexpected response kind".into())),
            None => return Err(EngineError::Generate("the engine has stopped".into())),
        };
        let forward = started.elapsed();
        drop(alone);

        // Row r of the logits predicts token r + 1: output position t is row prompt_len - 1 + t.
        let sampler = request.sampler;
        let claimed = request.output_ids.to_vec();
        let started = Instant::now();
        let positions = tokio::task::spawn_blocking(move || {
            let logits = concat_rows(&chunks, tokens)?;
            let rows = logits
                .narrow(0, prompt_len - 1, n)
                .map_err(|e| EngineError::Generate(format!("logits rows: {e}")))?;
            score_rows(sampler, 0, &claimed, &rows)
        })
        .await
        .map_err(|e| EngineError::Generate(e.to_string()))??;
        Ok(Scores {
            positions,
            forward,
            sampling: started.elapsed(),
            tokens_forwarded: tokens,
        })
    }
}

/// The raw-logits chunks as one `[tokens, vocab]` tensor.
fn concat_rows(chunks: &[Tensor], tokens: usize) -> Result<Tensor, EngineError> {
    let shape_error = |e: candle_core::Error| EngineError::Generate(format!("logits shape: {e}"));
    let rows: Vec<Tensor> = chunks
        .iter()
        .map(|chunk| {
            let vocab = chunk.dims().last().copied().unwrap_or(0);
            chunk.reshape(((), vocab))
        })
        .collect::<candle_core::Result<_>>()
        .map_err(shape_error)?;
    let logits = match rows.as_slice() {
        [one] => one.clone(),
        _ => Tensor::cat(&rows, 0).map_err(shape_error)?,
    };
    let (got, _) = logits.dims2().map_err(shape_error)?;
    if got != tokens {
        return Err(EngineError::Generate(format!(
            "mistral.rs returned logits for {got} of {tokens} positions"
        )));
    }
    Ok(logits)
}

/// A non-streaming completion of `ids` that returns the logits at every position and samples
/// nothing.
fn raw_logits_request(
    ids: Vec<u32>,
    response: tokio::sync::mpsc::Sender<Response>,
) -> NormalRequest {
    let mut sampling = SamplingParams::neutral();
    sampling.temperature = Some(0.0);
    sampling.max_len = Some(1);
    NormalRequest {
        messages: RequestMessage::CompletionTokens(ids),
        sampling_params: sampling,
        response,
        return_logprobs: false,
        is_streaming: false,
        id: 0,
        constraint: Constraint::None,
        suffix: None,
        tools: None,
        tool_choice: None,
        logits_processors: None,
        return_raw_logits: true,
        web_search_options: None,
        model_id: None,
        truncate_sequence: false,
    }
}
