//! `infera verify`: checks results by hand. It reads transcripts (the JSON `infera job --json` prints
//! and the executor's receipt event carries; see [`infera_protocol::verify::Transcript`]) from a
//! file or stdin, scores each one teacher-forced with the local model, and prints one JSON verdict
//! per transcript on stdout (one line each).
//!
//! Exit status: 0 when every transcript is honest, 3 when one is fraud, 2 for bad input
//! (unreadable JSON, a model id this check does not run, a transcript that cannot be scored), 1
//! when the check itself failed (the model cannot be loaded). Several transcripts may follow each
//! other in the input (JSON lines, or values one after another): the model is loaded once.

use std::{
    io::{Read, Write},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use alloy::primitives::B256;
use infera_engine::{DenseScorer, Engine, EngineConfig, EngineError, ScorePath, check::check};
use infera_protocol::{
    models::DEFAULT_MODEL,
    verify::{DEFAULT_THRESHOLDS, Thresholds, Transcript, Verdict},
};

/// Exit status when every transcript is honest.
pub const EXIT_HONEST: u8 = 0;
/// Exit status when the check itself failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status for bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit status when a transcript is fraud.
pub const EXIT_FRAUD: u8 = 3;

/// The command line of `infera verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The transcript file (JSON; several transcripts may follow each other); `-` or none: stdin.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The numeric path that scores: `dense` (fast, CPU) or `engine` (mistral.rs, as generated).
    #[arg(long, default_value_t = ScorePath::Dense)]
    pub path: ScorePath,
    /// Largest margin tolerated at one position, in nats × 1e6 (the registry's maxMarginPpm).
    #[arg(long, default_value_t = DEFAULT_THRESHOLDS.max_margin_ppm)]
    pub max_margin_ppm: u32,
    /// Largest share of positions (× 1e6) whose pick may differ (the registry's maxFlipRatePpm).
    #[arg(long, default_value_t = DEFAULT_THRESHOLDS.max_flip_rate_ppm)]
    pub max_flip_rate_ppm: u32,
    /// The model file (default: the cached default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// sha256 the model file must have (default: the default model's).
    #[arg(long, default_value_t = DEFAULT_MODEL.sha256)]
    pub model_sha256: B256,
    /// The registry id of the model the file holds (default: the default model's); transcripts
    /// of another model are refused as bad input.
    #[arg(long, default_value_t = DEFAULT_MODEL.model_id())]
    pub model_id: B256,
}

impl VerifyArgs {
    /// Defaults: stdin, the dense path, the default thresholds and model.
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            file,
            path: ScorePath::Dense,
            max_margin_ppm: DEFAULT_THRESHOLDS.max_margin_ppm,
            max_flip_rate_ppm: DEFAULT_THRESHOLDS.max_flip_rate_ppm,
            model: None,
            model_sha256: DEFAULT_MODEL.sha256,
            model_id: DEFAULT_MODEL.model_id(),
        }
    }

    /// The thresholds the verdicts are judged against.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_margin_ppm: self.max_margin_ppm,
            max_flip_rate_ppm: self.max_flip_rate_ppm,
        }
    }
}

/// Why `infera verify` could not decide.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The input is not transcripts this check can score.
    #[error("bad input: {0}")]
    BadInput(String),
    /// The model could not be loaded or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The verdict could not be written.
    #[error("writing the verdict: {0}")]
    Output(#[from] std::io::Error),
}

impl VerifyError {
    /// The exit status this error ends the command with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::BadInput(_) => EXIT_BAD_INPUT,
            Self::Engine(_) | Self::Output(_) => EXIT_FAILED,
        }
    }
}

/// Reads one or more transcripts: JSON values one after another (JSON lines, or pretty-printed
/// objects back to back).
///
/// # Errors
/// [`VerifyError::BadInput`] when the text is not transcripts, naming which one and where.
pub fn parse_transcripts(text: &str) -> Result<Vec<Transcript>, VerifyError> {
    let mut transcripts = Vec::new();
    for (n, value) in serde_json::Deserializer::from_str(text)
        .into_iter::<Transcript>()
        .enumerate()
    {
        let transcript = value.map_err(|e| {
            VerifyError::BadInput(format!(
                "transcript {} is not a valid transcript: {e}",
                n + 1
            ))
        })?;
        transcripts.push(transcript);
    }
    if transcripts.is_empty() {
        return Err(VerifyError::BadInput("no transcript in the input".into()));
    }
    Ok(transcripts)
}

/// Reads the input the arguments name.
fn read_input(file: Option<&std::path::Path>) -> Result<String, VerifyError> {
    let mut text = String::new();
    match file {
        Some(path) if path.as_os_str() != "-" => {
            text = std::fs::read_to_string(path)
                .map_err(|e| VerifyError::BadInput(format!("reading {}: {e}", path.display())))?;
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| VerifyError::BadInput(format!("reading stdin: {e}")))?;
        }
    }
    Ok(text)
}

/// The model loaded for checks.
#[derive(Debug)]
pub struct Checker {
    engine: Engine,
    dense: Option<Arc<DenseScorer>>,
    path: ScorePath,
}

impl Checker {
    /// Loads the model the arguments name: mistral.rs always (it renders prompts and
    /// detokenises), the dense scorer for the dense path.
    ///
    /// # Errors
    /// [`VerifyError::Engine`] when the file is missing, not the registered one, or fails to load.
    pub async fn load(args: &VerifyArgs) -> Result<Self, VerifyError> {
        let model = match &args.model {
            Some(path) => path.clone(),
            None => infera_models::require_cached(&DEFAULT_MODEL).map_err(EngineError::from)?,
        };
        let size = (args.model_sha256 == DEFAULT_MODEL.sha256).then_some(DEFAULT_MODEL.size);
        let config = EngineConfig {
            max_running: 1,
            max_queued: 1,
            ..EngineConfig::new(model, args.model_sha256, size)
        };
        let dense = match args.path {
            ScorePath::Dense => {
                let config = config.clone();
                let dense = tokio::task::spawn_blocking(move || DenseScorer::load(&config))
                    .await
                    .map_err(|e| EngineError::Load(e.to_string()))??;
                Some(Arc::new(dense))
            }
            ScorePath::Engine => None,
        };
        let engine = Engine::load(config).await?;
        Ok(Self {
            engine,
            dense,
            path: args.path,
        })
    }

    /// Checks one transcript.
    ///
    /// # Errors
    /// [`VerifyError::BadInput`] for a transcript that cannot be scored (no prompt, an id outside
    /// the vocabulary, longer than the model's context), [`VerifyError::Engine`] when the model
    /// fails.
    pub async fn check(
        &self,
        transcript: &Transcript,
        thresholds: Thresholds,
    ) -> Result<Verdict, VerifyError> {
        let started = Instant::now();
        let (verdict, scores) = check(
            &self.engine,
            self.dense.as_ref(),
            self.path,
            transcript,
            thresholds,
        )
        .await
        .map_err(|e| match e {
            EngineError::InvalidRequest(_)
            | EngineError::ContextExceeded { .. }
            | EngineError::Tokenize(_) => VerifyError::BadInput(e.to_string()),
            other => VerifyError::Engine(other),
        })?;
        tracing::info!(
            path = %self.path,
            positions = verdict.positions_checked,
            max_margin = verdict.max_margin,
            flip_rate_ppm = verdict.flip_rate_ppm,
            forward_ms = scores.forward.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            verdict = ?verdict.verdict,
            "checked"
        );
        Ok(verdict)
    }
}

/// Runs `infera verify`: verdicts (one JSON line each) to `out`, messages to stderr. Returns the
/// exit status.
pub async fn run(args: &VerifyArgs, out: &mut impl Write) -> u8 {
    match run_inner(args, out).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("infera verify: {error}");
            error.exit_code()
        }
    }
}

async fn run_inner(args: &VerifyArgs, out: &mut impl Write) -> Result<u8, VerifyError> {
    let transcripts = parse_transcripts(&read_input(args.file.as_deref())?)?;
    // Refused before the model loads: transcripts of another model.
    for (n, transcript) in transcripts.iter().enumerate() {
        if transcript.model_id != args.model_id {
            return Err(VerifyError::BadInput(format!(
                "transcript {}: unknown model id {} (this check runs {}; see --model, --model-id)",
                n + 1,
                transcript.model_id,
                args.model_id
            )));
        }
    }
    let checker = Checker::load(args).await?;
    let thresholds = args.thresholds();
    let (mut bad, mut fraud) = (false, false);
    for (n, transcript) in transcripts.iter().enumerate() {
        match checker.check(transcript, thresholds).await {
            Ok(verdict) => {
                fraud |= !verdict.is_honest();
                let line = serde_json::to_string(&verdict).map_err(std::io::Error::other)?;
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            Err(VerifyError::BadInput(message)) => {
                eprintln!("infera verify: transcript {}: {message}", n + 1);
                bad = true;
            }
            Err(other) => return Err(other),
        }
    }
    Ok(if bad {
        EXIT_BAD_INPUT
    } else if fraud {
        EXIT_FRAUD
    } else {
        EXIT_HONEST
    })
}
