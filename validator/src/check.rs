//! The model side of the validator: the loaded model (mistral.rs for rendering and detokenising,
//! the dense scorer for the fast path) and the teacher-forced check of a submitted job
//! ([`infera_engine::check::check`]). One [`Checker`] is loaded per process and shared (`Arc`) by
//! every validator in it.

use std::{path::PathBuf, sync::Arc};

use alloy::primitives::B256;
use infera_chain::bindings::IJobEscrow;
use infera_engine::{DenseScorer, Engine, EngineConfig, EngineError, ScorePath};
use infera_protocol::{
    FinishReason, unpack_tokens,
    verify::{Thresholds, Transcript, Verdict},
};

/// The loaded model and the numeric path checks run on.
#[derive(Debug)]
pub struct Checker {
    engine: Arc<Engine>,
    dense: Option<Arc<DenseScorer>>,
    path: ScorePath,
}

impl Checker {
    /// Loads the model at `model_path` (checked against `sha256`) for `path`: mistral.rs always
    /// (it renders prompts and detokenises), the dense scorer for [`ScorePath::Dense`].
    ///
    /// # Errors
    /// [`EngineError`] when the file is missing, does not match or cannot be loaded.
    pub async fn load(
        model_path: PathBuf,
        sha256: B256,
        size: Option<u64>,
        path: ScorePath,
    ) -> Result<Self, EngineError> {
        let config = EngineConfig {
            max_running: 1,
            max_queued: 8,
            ..EngineConfig::new(model_path, sha256, size)
        };
        let dense = match path {
            ScorePath::Dense => {
                let config = config.clone();
                Some(Arc::new(
                    tokio::task::spawn_blocking(move || DenseScorer::load(&config))
                        .await
                        .map_err(|e| EngineError::Load(e.to_string()))??,
                ))
            }
            ScorePath::Engine => None,
        };
        let engine = Arc::new(Engine::load(config).await?);
        Ok(Self {
            engine,
            dense,
            path,
        })
    }

    /// A checker over an engine and scorer loaded elsewhere.
    pub fn new(engine: Arc<Engine>, dense: Option<Arc<DenseScorer>>, path: ScorePath) -> Self {
        Self {
            engine,
            dense,
            path,
        }
    }

    /// The engine (rendering, detokenising).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The numeric path.
    pub fn path(&self) -> ScorePath {
        self.path
    }

    /// Scores and judges `transcript` ([`infera_engine::check::check`]).
    ///
    /// # Errors
    /// [`EngineError`] when scoring fails (not a verdict: nothing is decided).
    pub async fn check(
        &self,
        transcript: &Transcript,
        thresholds: Thresholds,
    ) -> Result<Verdict, EngineError> {
        let (verdict, scores) = infera_engine::check::check(
            &self.engine,
            self.dense.as_ref(),
            self.path,
            transcript,
            thresholds,
        )
        .await?;
        tracing::debug!(
            positions = scores.positions.len(),
            forward_ms = scores.forward.as_millis() as u64,
            "scored"
        );
        Ok(verdict)
    }
}

/// Why a job's transcript could not be built from its on-chain record.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The output ids are not whole uint32 words, or the finish reason is unknown: no honest
    /// executor submits that (the escrow refuses most of it already).
    #[error("malformed result: {0}")]
    Malformed(String),
}

/// The transcript of a submitted job, from its on-chain record: the job's terms and prompt, the
/// assignment's seed, the result and the settlement's commitment. The prompt ids are left to be
/// rendered from the prompt (the chain carries only their hash, which the commitment binds).
///
/// # Errors
/// [`TranscriptError`] for output ids or a finish reason that cannot be decoded.
pub fn transcript(
    job: &IJobEscrow::Job,
    prompt: &[u8],
    assignment: &IJobEscrow::Assignment,
    result: &IJobEscrow::Result,
    settlement: &IJobEscrow::Settlement,
) -> Result<Transcript, TranscriptError> {
    let output_ids = unpack_tokens(&result.outputTokens)
        .map_err(|e| TranscriptError::Malformed(e.to_string()))?;
    let finish_reason = FinishReason::try_from(result.finishReason)
        .map_err(|e| TranscriptError::Malformed(e.to_string()))?;
    Ok(Transcript {
        model_id: job.spec.modelId,
        sampler_version: job.samplerVersion,
        sampling: job.spec.sampling.clone().into(),
        seed: assignment.seed,
        prompt: Some(String::from_utf8_lossy(prompt).into_owned()),
        prompt_ids: Vec::new(),
        output_tokens: u32::try_from(output_ids.len()).unwrap_or(u32::MAX),
        output_ids,
        max_output_tokens: job.spec.maxOutputTokens,
        finish_reason,
        text: String::from_utf8_lossy(&result.output).into_owned(),
        input_tokens: result.inputTokens,
        commitment: settlement.commitment,
    })
}
