//! The verdict on a result (DESIGN.md §4): everything a validator, a juror or a user with
//! `infera verify` decides once the model's numbers are in.
//!
//! - [`Transcript`]: what anyone needs to check a result by hand, as JSON — the job's terms (model,
//!   sampler version, sampling parameters, seed, the prompt as posted), the claimed prompt and
//!   output token ids, the text, the billed counts, the finish reason and the commitment.
//!   `infera job --json` prints it, the executor's receipt event carries it, `infera verify` reads it.
//! - [`Evidence`]: what a model gives: per output position the sampler's pick and the claimed
//!   token's margin (teacher-forced: the logits after `prompt ++ output[..t]`), the detokenised
//!   output ids, the prompt rendered again from the posted prompt, the model's end-of-sequence ids.
//! - [`judge`]: the rules (each a [`Rule`] that fails by name) and the [`Verdict`].
//!
//! The rules need no model beyond the evidence: counts, the commitment (recomputed with
//! [`CommitmentInput`], the encoding the executor and `JobEscrow` use), the finish reason (an
//! end-of-sequence token really last, or the length really reached), the text, the prompt, and a
//! statistic over all positions — the largest margin and the share of positions where the pick
//! differs from the claimed token — against the model registry's `VerificationThresholds`.
//!
//! # JSON
//!
//! Hashes and ids are `0x`-hex strings, counts and token ids numbers, the sampling parameters an
//! object `{"temperature_ppm", "top_k", "top_p_ppm"}`, the finish reason `"stop"` or `"length"`.
//! Unknown fields are refused (a misspelt field must not be ignored). `prompt_ids` may be left out
//! (`[]`) when only the posted `prompt` is known — the chain carries only the prompt ids' hash —
//! and are then rendered from `prompt`. A margin that is infinite (a claimed id the sampler can
//! never choose) is written `null`.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::{
    commitment::{CommitmentInput, FinishReason, PPM, SamplingParams},
    sampler::SAMPLER_VERSION,
};

/// The sampling parameters as a transcript writes them: `{"temperature_ppm", "top_k", "top_p_ppm"}`.
pub type SamplingParamsJson = SamplingParams;

/// The finish reason as a transcript writes it: `"stop"` or `"length"`.
pub type FinishReasonJson = FinishReason;

/// Worst positions a [`Verdict`] lists.
pub const WORST_POSITIONS: usize = 8;

/// The default model's thresholds, as `infera deploy` registers them (`maxMarginPpm`,
/// `maxFlipRatePpm`) and `infera verify` uses unless told otherwise; the registry on-chain is the
/// authority for a posted job. Set from `scripts/calibrate` (84 honest transcripts generated one at a
/// time — greedy and sampled, T 0.3–1.3, top-p 0.5–1, top-k 0/40 — each scored on the dense and the
/// engine path, 0 false positives; 32 of 38 attack instances caught):
///
/// - **7 nats** of margin at one position: honest near-ties score up to ~0.5 nats, but a token that
///   left or entered a top-p cut because the mass ahead of it sat within a hair of `p` scores the raw
///   logit gap to the cut (2.72 nats seen at T=1.3, top-p 0.5); substitutions, fabricated text, cut or
///   extended outputs and dropped system prompts score 5.4–24 nats.
/// - **5 %** of positions flipping, counted only from [`MIN_FLIPS`] flips on: greedy output claimed as
///   sampled, impostor weights and wrong seeds flip 6–17 % of a 64–96-token output at margins too
///   small for the margin rule, while honest outputs flip at most 3 positions (1 in 2 tokens is 50 %:
///   a rate alone would convict short honest outputs).
pub const DEFAULT_THRESHOLDS: Thresholds = Thresholds {
    max_margin_ppm: 7_000_000,
    max_flip_rate_ppm: 50_000,
};

/// Flips the flip-rate rule ignores: a transcript fails it only with at least this many positions
/// where the validator's pick differs from the claimed token, and more than the threshold's share.
/// Honest transcripts showed at most 3 (near-ties between numeric paths).
pub const MIN_FLIPS: usize = 4;

/// What anyone needs to check a result by hand; the JSON `infera verify` reads and
/// `infera job --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    /// Model registry id.
    pub model_id: B256,
    /// Version of the verifiable sampler the result claims.
    pub sampler_version: u32,
    /// Sampling parameters of the job.
    #[serde(with = "SamplingParamsDef")]
    pub sampling: SamplingParams,
    /// Sampling seed (an on-chain job's is fixed at acceptance).
    pub seed: B256,
    /// The prompt as posted (chat messages as JSON, or plain text); rendered again with the
    /// model's chat template when present. `None` when the prompt was sent as token ids.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The prompt token ids generated from; empty when unknown (then rendered from `prompt`).
    #[serde(default)]
    pub prompt_ids: Vec<u32>,
    /// The output token ids, the end-of-sequence token included when the finish reason is stop.
    pub output_ids: Vec<u32>,
    /// The job's most output tokens.
    pub max_output_tokens: u32,
    /// Why generation stopped.
    #[serde(with = "finish_reason_json")]
    pub finish_reason: FinishReason,
    /// The output text delivered.
    pub text: String,
    /// Prompt tokens billed.
    pub input_tokens: u32,
    /// Output tokens billed.
    pub output_tokens: u32,
    /// The commitment submitted (or signed in a receipt).
    pub commitment: B256,
}

impl Transcript {
    /// The prompt ids to check: the transcript's own, or `rendered` when it has none.
    pub fn effective_prompt_ids<'a>(&'a self, rendered: Option<&'a [u32]>) -> &'a [u32] {
        match rendered {
            Some(rendered) if self.prompt_ids.is_empty() => rendered,
            _ => &self.prompt_ids,
        }
    }

    /// The commitment this transcript's fields hash to, with the prompt ids `prompt_ids` and the
    /// billed input count as claimed (as `JobEscrow` computes it from a submitted result).
    pub fn recompute_commitment(&self, prompt_ids: &[u32]) -> B256 {
        let input = CommitmentInput::from_tokens(
            self.model_id,
            self.sampler_version,
            self.sampling,
            self.seed,
            crate::commitment::Transcript {
                prompt_token_ids: prompt_ids,
                output_token_ids: &self.output_ids,
                output_text: self.text.as_bytes(),
                finish_reason: self.finish_reason,
            },
        );
        match input {
            Ok(mut input) => {
                input.input_tokens = self.input_tokens;
                input.commitment()
            }
            // More than u32::MAX prompt ids: nothing can have committed to them.
            Err(_) => B256::ZERO,
        }
    }

    /// Recomputes and stores the commitment (for tools that build or edit transcripts).
    pub fn seal(&mut self) {
        self.commitment = self.recompute_commitment(&self.prompt_ids);
    }
}

/// The model registry's `VerificationThresholds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Thresholds {
    /// Largest margin tolerated at one position, in nats × 1e6.
    pub max_margin_ppm: u32,
    /// Largest share of positions (× 1e6) where the pick may differ from the claimed token.
    pub max_flip_rate_ppm: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        DEFAULT_THRESHOLDS
    }
}

impl Thresholds {
    /// The margin threshold in nats.
    pub fn max_margin(&self) -> f64 {
        f64::from(self.max_margin_ppm) / f64::from(PPM)
    }
}

/// The model's judgement of one output position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PositionEvidence {
    /// The claimed token id scored at this position.
    pub claimed: u32,
    /// The sampler's choice from the checker's logits.
    pub pick: u32,
    /// `Sampler::margin` of the claimed token, in nats (`+∞` when it can never be chosen).
    pub margin: f64,
}

/// What the checker's model gives for a transcript.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence<'a> {
    /// One entry per output position, in order (teacher-forced on the claimed ids).
    pub positions: &'a [PositionEvidence],
    /// The output ids detokenised (special tokens skipped), as the executor makes the text.
    pub detokenized: &'a str,
    /// The posted prompt rendered again with the model's chat template, when there is one.
    pub rendered_prompt_ids: Option<&'a [u32]>,
    /// The ids that end a sequence for the model.
    pub eos_ids: &'a [u32],
}

/// A rule of the check; each fails by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The sampler version is not the one this checker implements.
    SamplerVersion,
    /// The billed input count is not the number of prompt ids.
    InputTokenCount,
    /// The billed output count is not the number of output ids.
    OutputTokenCount,
    /// The commitment does not hash the transcript.
    Commitment,
    /// Stop without an end-of-sequence token last (or with one earlier); length without exactly
    /// the maximum count of ids (or with an end-of-sequence token among them).
    FinishReason,
    /// The text is not the detokenised output ids.
    Text,
    /// The prompt ids are not the posted prompt rendered with the model's template.
    Prompt,
    /// A margin above the threshold.
    Margin,
    /// Too many positions where the checker's pick differs from the claimed token.
    FlipRate,
    /// The evidence does not cover every output position with the claimed ids.
    Positions,
}

impl Rule {
    /// The rule's name, as JSON writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SamplerVersion => "sampler_version",
            Self::InputTokenCount => "input_token_count",
            Self::OutputTokenCount => "output_token_count",
            Self::Commitment => "commitment",
            Self::FinishReason => "finish_reason",
            Self::Text => "text",
            Self::Prompt => "prompt",
            Self::Margin => "margin",
            Self::FlipRate => "flip_rate",
            Self::Positions => "positions",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Honest or fraud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every rule holds.
    Honest,
    /// At least one rule fails.
    Fraud,
}

/// One of the worst positions of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WorstPosition {
    /// Output position (0-based).
    pub position: usize,
    /// The claimed token.
    pub claimed: u32,
    /// The checker's pick.
    pub pick: u32,
    /// The claimed token's margin in nats (`null` in JSON when infinite).
    #[serde(with = "margin_json")]
    pub margin: f64,
}

/// The verdict, as `infera verify` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Honest or fraud.
    pub verdict: Outcome,
    /// The rules that failed, in the order of [`Rule`] (empty when honest).
    pub failed_rules: Vec<Rule>,
    /// Output positions the evidence scored.
    pub positions_checked: usize,
    /// The largest margin, in nats (`null` in JSON when infinite).
    #[serde(with = "margin_json")]
    pub max_margin: f64,
    /// Its threshold, in nats.
    pub max_margin_threshold: f64,
    /// The share of positions whose pick differs from the claimed token, × 1e6, rounded up.
    pub flip_rate_ppm: u32,
    /// Its threshold.
    pub max_flip_rate_ppm: u32,
    /// Up to [`WORST_POSITIONS`] positions with the largest margins (only those with a margin
    /// above zero or a pick that differs), largest first.
    pub worst_positions: Vec<WorstPosition>,
    /// The mean margin over the positions checked, in nats (`null` in JSON when infinite).
    #[serde(with = "margin_json")]
    pub mean_margin: f64,
}

impl Verdict {
    /// Whether every rule held.
    pub fn is_honest(&self) -> bool {
        self.verdict == Outcome::Honest
    }

    /// Whether `rule` failed.
    pub fn failed(&self, rule: Rule) -> bool {
        self.failed_rules.contains(&rule)
    }
}

/// Applies every rule to `transcript` given the checker's `evidence`.
pub fn judge(transcript: &Transcript, evidence: &Evidence<'_>, thresholds: Thresholds) -> Verdict {
    let mut failed = Vec::new();
    let prompt_ids = transcript.effective_prompt_ids(evidence.rendered_prompt_ids);
    let output = &transcript.output_ids;

    if transcript.sampler_version != SAMPLER_VERSION {
        failed.push(Rule::SamplerVersion);
    }
    if transcript.input_tokens as usize != prompt_ids.len() {
        failed.push(Rule::InputTokenCount);
    }
    if transcript.output_tokens as usize != output.len() {
        failed.push(Rule::OutputTokenCount);
    }
    if transcript.recompute_commitment(prompt_ids) != transcript.commitment {
        failed.push(Rule::Commitment);
    }
    if !finish_reason_holds(transcript, evidence.eos_ids) {
        failed.push(Rule::FinishReason);
    }
    if transcript.text != evidence.detokenized {
        failed.push(Rule::Text);
    }
    if let Some(rendered) = evidence.rendered_prompt_ids
        && rendered != prompt_ids
    {
        failed.push(Rule::Prompt);
    }

    let positions = evidence.positions;
    let covered = positions.len() == output.len()
        && positions.iter().zip(output).all(|(p, &id)| p.claimed == id);
    let max_margin = positions
        .iter()
        .map(|p| nan_to_inf(p.margin))
        .fold(0.0_f64, f64::max);
    let threshold = thresholds.max_margin();
    if max_margin > threshold {
        failed.push(Rule::Margin);
    }
    let flips = positions.iter().filter(|p| p.pick != p.claimed).count();
    let flip_rate_ppm = flip_rate_ppm(flips, positions.len());
    if flips >= MIN_FLIPS && flip_rate_ppm > thresholds.max_flip_rate_ppm {
        failed.push(Rule::FlipRate);
    }
    if !covered {
        failed.push(Rule::Positions);
    }

    let mean_margin = if positions.is_empty() {
        0.0
    } else {
        positions.iter().map(|p| nan_to_inf(p.margin)).sum::<f64>() / positions.len() as f64
    };
    let mut worst: Vec<WorstPosition> = positions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.pick != p.claimed || p.margin > 0.0 || p.margin.is_nan())
        .map(|(position, p)| WorstPosition {
            position,
            claimed: p.claimed,
            pick: p.pick,
            margin: nan_to_inf(p.margin),
        })
        .collect();
    worst.sort_by(|a, b| {
        b.margin
            .total_cmp(&a.margin)
            .then(a.position.cmp(&b.position))
    });
    worst.truncate(WORST_POSITIONS);

    failed.sort();
    Verdict {
        verdict: if failed.is_empty() {
            Outcome::Honest
        } else {
            Outcome::Fraud
        },
        failed_rules: failed,
        positions_checked: positions.len(),
        max_margin,
        max_margin_threshold: threshold,
        flip_rate_ppm,
        max_flip_rate_ppm: thresholds.max_flip_rate_ppm,
        worst_positions: worst,
        mean_margin,
    }
}

/// Stop: the last id is an end-of-sequence id and none comes earlier. Length: exactly the maximum
/// count of ids and no end-of-sequence id among them. Never more ids than the maximum.
fn finish_reason_holds(transcript: &Transcript, eos_ids: &[u32]) -> bool {
    let output = &transcript.output_ids;
    let is_eos = |id: &u32| eos_ids.contains(id);
    if output.len() > transcript.max_output_tokens as usize {
        return false;
    }
    match transcript.finish_reason {
        FinishReason::Stop => match output.split_last() {
            Some((last, before)) => is_eos(last) && !before.iter().any(is_eos),
            None => false,
        },
        FinishReason::Length => {
            output.len() == transcript.max_output_tokens as usize && !output.iter().any(is_eos)
        }
        FinishReason::None => false,
    }
}

/// `ceil(flips × 1e6 / positions)`; 0 for no positions. Exceeds a threshold exactly when
/// `flips / positions` does.
fn flip_rate_ppm(flips: usize, positions: usize) -> u32 {
    if positions == 0 {
        return 0;
    }
    let scaled = (flips as u128) * u128::from(PPM);
    let rate = scaled.div_ceil(positions as u128);
    u32::try_from(rate).unwrap_or(u32::MAX)
}

/// A NaN margin counts as infinite: it can only come from broken logits.
fn nan_to_inf(margin: f64) -> f64 {
    if margin.is_nan() {
        f64::INFINITY
    } else {
        margin
    }
}

/// The serde shape of [`SamplingParams`].
#[derive(Serialize, Deserialize)]
#[serde(remote = "SamplingParams", deny_unknown_fields)]
struct SamplingParamsDef {
    temperature_ppm: u32,
    top_k: u32,
    top_p_ppm: u32,
}

/// [`FinishReason`] as `"stop"` or `"length"`.
mod finish_reason_json {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::commitment::FinishReason;

    pub(super) fn serialize<S: Serializer>(
        reason: &FinishReason,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match reason {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::None => "none",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<FinishReason, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.as_str() {
            "stop" => Ok(FinishReason::Stop),
            "length" => Ok(FinishReason::Length),
            other => Err(D::Error::custom(format!(
                "finish_reason must be \"stop\" or \"length\", not {other:?}"
            ))),
        }
    }
}

/// A margin: a number, or `null` for `+∞` (JSON has no infinity).
mod margin_json {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(margin: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if margin.is_finite() {
            serializer.serialize_f64(*margin)
        } else {
            serializer.serialize_none()
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::INFINITY))
    }
}
