//! The whole teacher-forced check of a transcript (DESIGN.md §4), as a validator, a juror or
//! `infera verify` runs it: render the posted prompt again, score every output position on the
//! chosen numeric path, detokenise the output ids, and let [`infera_protocol::verify::judge`]
//! decide.

use std::sync::Arc;

use infera_protocol::{
    Sampler,
    prompt::Prompt,
    verify::{Evidence, PositionEvidence, Thresholds, Transcript, Verdict, judge},
};

use crate::{DenseScorer, Engine, EngineError, ScorePath, ScoreRequest, Scores};

/// Scores `transcript` on `path` and judges it: the whole check a validator or `infera verify`
/// runs.
///
/// The posted prompt, when the transcript has one, is rendered with the model's chat template
/// (as the executor renders a job's prompt) and compared with the prompt ids; transcripts without
/// prompt ids are scored on the rendered ones. A prompt that cannot be read renders to nothing,
/// so the prompt rule fails. [`ScorePath::Dense`] runs on `dense` in a blocking task; without a
/// dense scorer, or for [`ScorePath::Engine`], mistral.rs scores.
///
/// # Errors
/// [`EngineError::InvalidRequest`] for a transcript that cannot be scored at all (no prompt ids
/// and nothing to render, an id outside the vocabulary), [`EngineError::ContextExceeded`] when it
/// does not fit the model, and the engine's errors when rendering or scoring fails. An error is
/// no verdict: nothing is decided.
pub async fn check(
    engine: &Engine,
    dense: Option<&Arc<DenseScorer>>,
    path: ScorePath,
    transcript: &Transcript,
    thresholds: Thresholds,
) -> Result<(Verdict, Scores), EngineError> {
    let rendered = match &transcript.prompt {
        Some(prompt) => match Prompt::parse(prompt.as_bytes()) {
            Ok(prompt) => Some(engine.render(&prompt).await?),
            Err(_) => Some(Vec::new()),
        },
        None => None,
    };
    let prompt_ids = transcript.effective_prompt_ids(rendered.as_deref());
    if prompt_ids.is_empty() {
        return Err(EngineError::InvalidRequest(
            "the transcript has no prompt ids and no prompt that renders to any",
        ));
    }
    let sampler = Sampler::new(transcript.sampling, transcript.seed);
    let scores = match (path, dense) {
        (ScorePath::Dense, Some(dense)) => {
            let dense = Arc::clone(dense);
            let prompt_ids = prompt_ids.to_vec();
            let output_ids = transcript.output_ids.clone();
            tokio::task::spawn_blocking(move || {
                dense.score(ScoreRequest {
                    prompt_ids: &prompt_ids,
                    output_ids: &output_ids,
                    sampler,
                })
            })
            .await
            .map_err(|e| EngineError::Generate(format!("dense scoring task: {e}")))??
        }
        _ => {
            engine
                .score(ScoreRequest {
                    prompt_ids,
                    output_ids: &transcript.output_ids,
                    sampler,
                })
                .await?
        }
    };
    let positions: Vec<PositionEvidence> = scores
        .positions
        .iter()
        .map(|p| PositionEvidence {
            claimed: p.claimed,
            pick: p.pick,
            margin: p.margin,
        })
        .collect();
    let detokenized = engine.detokenize(&transcript.output_ids).await?;
    let verdict = judge(
        transcript,
        &Evidence {
            positions: &positions,
            detokenized: &detokenized,
            rendered_prompt_ids: rendered.as_deref(),
            eos_ids: engine.eos_token_ids(),
        },
        thresholds,
    );
    Ok((verdict, scores))
}
