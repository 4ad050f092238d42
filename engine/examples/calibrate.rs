//! Calibration of the teacher-forced check and its attack corpus (run by `scripts/calibrate`;
//! issue 10, DESIGN.md §4).
//!
//! 1. **Honest jobs**: varied chat prompts (some with a system message), temperatures, top-p,
//!    top-k, seeds and budgets, generated alone and concurrently (mistral.rs batches those, other
//!    numerics). Every transcript is checked on both scoring paths (`dense` and `engine`) at the
//!    thresholds in use: the margin distribution per path and the false positives.
//! 2. **Attacks**, each a realistic cheat with a consistent commitment and text, checked on the
//!    dense path at the same thresholds: fabricated output, an impostor model (a copy of the GGUF
//!    with a share of its weight blocks perturbed, written to a temporary directory), greedy
//!    instead of the job's temperature, one token swapped (for a random id, and for the model's
//!    second choice), EOS suppressed, output cut, inflated counts, a dropped or changed system
//!    prompt (claiming the posted prompt's ids, or the ids really used), a wrong seed.
//! 3. **A proposal**: the thresholds that keep every honest transcript with headroom, and which
//!    attack instances they would miss (re-judged from the same evidence).
//!
//! Prints `key=value` lines on stdout (progress goes to stderr). Options (or environment):
//! `--jobs N` (`CALIBRATE_JOBS`, default 24), `--attacks N` (`CALIBRATE_ATTACKS`, instances per
//! attack, default 3), `--max-margin-ppm N`, `--max-flip-rate-ppm N` (default: the protocol's
//! [`DEFAULT_THRESHOLDS`]), `--impostors random:0.1,random:0.02` (`CALIBRATE_IMPOSTORS`;
//! per impostor model the perturbation and the share of blocks; empty for none),
//! `--no-engine-path` (score honest jobs on the dense path only), `--batch-probe` (greedy jobs
//! alone and then batched: where they differ and their margins), `--diagnose N` (honest job `N`
//! alone, its worst position explained).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use alloy::primitives::{B256, keccak256};
use candle_core::{
    DType, Tensor,
    quantized::{GgmlDType, gguf_file},
};
use eyre::{Result, WrapErr, bail, eyre};
use infera_engine::{
    DenseScorer, Engine, EngineConfig, GenerateRequest, Output, ScorePath, Scores, check::check,
    greedy_completion,
};
use infera_protocol::{
    FinishReason, SAMPLER_VERSION, Sampler, SamplingParams,
    models::DEFAULT_MODEL,
    prompt::{Message, Prompt, Role},
    verify::{DEFAULT_THRESHOLDS, Evidence, PositionEvidence, Thresholds, Transcript, judge},
};
use mistralrs::{Request, Response, core::CustomLogitsProcessor};

/// Chat prompts of the honest jobs: (system message, user message). Some ask for one word or a
/// number, so that outputs end with the end-of-sequence token well inside the budget.
const PROMPTS: &[(Option<&str>, &str)] = &[
    (None, "Write a haiku about the sea."),
    (
        Some("You are a terse assistant. Answer in one short sentence."),
        "What is the capital of Australia?",
    ),
    (None, "Explain what a hash map is to a beginner programmer."),
    (
        Some("You are a helpful Rust expert."),
        "Write a Rust function that reverses a string.",
    ),
    (None, "List three uses of a paperclip."),
    (
        Some("You always answer in French."),
        "Describe your favourite season.",
    ),
    (
        None,
        "Answer with one word: what colour is the sky on a clear day?",
    ),
    (
        Some("You are a pirate. Stay in character."),
        "How do I make a cup of tea?",
    ),
    (None, "Write a SQL query that counts users by country."),
    (
        Some("Reply with a JSON object only."),
        "Give the name and age of a fictional cat.",
    ),
    (None, "What is 17 times 23? Reply with the number only."),
    (
        Some("You are a math tutor. Be concise."),
        "Why is the sum of two odd numbers even?",
    ),
    (
        None,
        "Translate 'good morning, friends' into Spanish and German.",
    ),
    (
        Some("You are a poet."),
        "Write two lines about autumn leaves.",
    ),
    (
        None,
        "Summarise the plot of Romeo and Juliet in two sentences.",
    ),
    (
        Some("Answer yes or no, then one sentence why."),
        "Is Python dynamically typed?",
    ),
];

/// Temperatures (ppm), top-p (ppm), top-k and output budgets the honest jobs cycle through.
const TEMPERATURES: [u32; 5] = [0, 300_000, 700_000, 1_000_000, 1_300_000];
const TOP_P: [u32; 3] = [1_000_000, 900_000, 500_000];
const TOP_K: [u32; 2] = [0, 40];
const MAX_TOKENS: [u32; 3] = [48, 64, 96];

/// The system message a cheater puts instead of the job's.
const CHANGED_SYSTEM: &str = "You are a helpful assistant.";

/// Ids below this are ordinary tokens in the default model's vocabulary (Qwen2.5: the special
/// tokens start at 151643); a random swap draws among them.
const ORDINARY_TOKENS: u32 = 151_643;

/// Requests run together for the concurrent honest jobs.
const BATCH: usize = 4;

#[derive(Debug, Clone)]
struct Options {
    jobs: usize,
    attacks: usize,
    thresholds: Thresholds,
    impostors: Vec<Impostor>,
    engine_path: bool,
    batch_probe: bool,
    diagnose: Option<usize>,
}

/// How an impostor model's chosen weight blocks are changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perturb {
    /// Every quant of the block moves one step up or down (at random): close to the real model.
    Step,
    /// Every quant of the block is replaced by a random value: those weights are lost.
    Random,
}

/// An impostor model: a copy of the GGUF with `share` of the layers' Q4_K/Q6_K blocks perturbed.
#[derive(Debug, Clone, Copy)]
struct Impostor {
    perturb: Perturb,
    share: f64,
}

impl Impostor {
    fn name(&self) -> String {
        let mode = match self.perturb {
            Perturb::Step => "step",
            Perturb::Random => "random",
        };
        format!("impostor_{mode}{}pct", (self.share * 100.0).round() as u64)
    }

    /// `random:0.1` or `step:0.3`.
    fn parse(spec: &str) -> Result<Self> {
        let (mode, share) = spec
            .split_once(':')
            .ok_or_else(|| eyre!("impostor {spec:?}: MODE:SHARE, e.g. random:0.1"))?;
        let perturb = match mode.trim() {
            "step" => Perturb::Step,
            "random" => Perturb::Random,
            other => bail!("impostor mode {other:?}: step or random"),
        };
        let share: f64 = share.trim().parse()?;
        if !(0.0..=1.0).contains(&share) {
            bail!("impostor share {share}: between 0 and 1");
        }
        Ok(Self { perturb, share })
    }
}

impl Options {
    fn parse() -> Result<Self> {
        let env_usize = |name: &str, default: usize| -> Result<usize> {
            std::env::var(name).ok().map_or(Ok(default), |v| {
                v.parse().wrap_err_with(|| format!("{name}={v}"))
            })
        };
        let mut options = Self {
            jobs: env_usize("CALIBRATE_JOBS", 24)?,
            attacks: env_usize("CALIBRATE_ATTACKS", 3)?,
            thresholds: DEFAULT_THRESHOLDS,
            impostors: parse_impostors(
                &std::env::var("CALIBRATE_IMPOSTORS")
                    .unwrap_or_else(|_| DEFAULT_IMPOSTORS.to_owned()),
            )?,
            engine_path: true,
            batch_probe: false,
            diagnose: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| eyre!("{arg} needs a value"));
            match arg.as_str() {
                "--jobs" => options.jobs = value()?.parse()?,
                "--attacks" => options.attacks = value()?.parse()?,
                "--max-margin-ppm" => options.thresholds.max_margin_ppm = value()?.parse()?,
                "--max-flip-rate-ppm" => options.thresholds.max_flip_rate_ppm = value()?.parse()?,
                "--impostors" => options.impostors = parse_impostors(&value()?)?,
                "--no-engine-path" => options.engine_path = false,
                "--batch-probe" => options.batch_probe = true,
                "--diagnose" => options.diagnose = Some(value()?.parse()?),
                other => bail!(
                    "unknown argument {other} (--jobs N, --attacks N, --max-margin-ppm N, \
                     --max-flip-rate-ppm N, --impostors MODE:SHARE,…, --no-engine-path, \
                     --batch-probe)"
                ),
            }
        }
        if options.jobs == 0 || options.attacks == 0 {
            bail!("--jobs and --attacks must be at least 1");
        }
        Ok(options)
    }
}

/// The impostor models made unless told otherwise.
const DEFAULT_IMPOSTORS: &str = "random:0.1,random:0.02";

fn parse_impostors(list: &str) -> Result<Vec<Impostor>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(Impostor::parse)
        .collect()
}

/// SplitMix64: a small deterministic generator for choices and perturbations.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One job's terms, as posted and accepted.
#[derive(Debug, Clone)]
struct Job {
    index: usize,
    prompt_index: usize,
    prompt: Prompt,
    prompt_json: String,
    prompt_ids: Vec<u32>,
    params: SamplingParams,
    seed: B256,
    max_tokens: u32,
    concurrent: bool,
}

impl Job {
    fn sampler(&self) -> Sampler {
        Sampler::new(self.params, self.seed)
    }

    fn has_system(&self) -> bool {
        self.prompt.messages.iter().any(|m| m.role == Role::System)
    }

    fn request(&self) -> GenerateRequest {
        GenerateRequest {
            prompt_ids: self.prompt_ids.clone(),
            max_tokens: self.max_tokens,
            sampler: self.sampler(),
        }
    }
}

/// An honest job and what the engine generated for it.
#[derive(Debug, Clone)]
struct Honest {
    job: Job,
    output: Output,
}

/// The transcript an executor submits for `job` with these output ids (commitment sealed).
fn transcript(job: &Job, output_ids: Vec<u32>, text: String, finish: FinishReason) -> Transcript {
    let mut transcript = Transcript {
        model_id: DEFAULT_MODEL.model_id(),
        sampler_version: SAMPLER_VERSION,
        sampling: job.params,
        seed: job.seed,
        prompt: Some(job.prompt_json.clone()),
        prompt_ids: job.prompt_ids.clone(),
        max_output_tokens: job.max_tokens,
        finish_reason: finish,
        text,
        input_tokens: job.prompt_ids.len() as u32,
        output_tokens: output_ids.len() as u32,
        output_ids,
        commitment: B256::ZERO,
    };
    transcript.seal();
    transcript
}

fn honest_transcript(honest: &Honest) -> Transcript {
    transcript(
        &honest.job,
        honest.output.output_ids.clone(),
        honest.output.text.clone(),
        honest.output.finish_reason,
    )
}

fn seed_of(tag: &str, index: usize) -> B256 {
    keccak256(format!("infera.calibrate.{tag}.{index}"))
}

fn prompt_of(index: usize) -> Prompt {
    let (system, user) = PROMPTS[index % PROMPTS.len()];
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(Message {
            role: Role::System,
            content: system.to_owned(),
        });
    }
    messages.push(Message {
        role: Role::User,
        content: user.to_owned(),
    });
    Prompt { messages }
}

async fn make_job(
    engine: &Engine,
    index: usize,
    prompt_index: usize,
    params: SamplingParams,
    max_tokens: u32,
    concurrent: bool,
) -> Result<Job> {
    let prompt = prompt_of(prompt_index);
    let prompt_ids = engine.render(&prompt).await?;
    let prompt_json = String::from_utf8(prompt.to_json())?;
    Ok(Job {
        index,
        prompt_index: prompt_index % PROMPTS.len(),
        prompt,
        prompt_json,
        prompt_ids,
        params,
        seed: seed_of("job", index),
        max_tokens,
        concurrent,
    })
}

/// The honest jobs: every combination of temperature and alone/concurrent appears within ten.
async fn honest_jobs(engine: &Engine, count: usize) -> Result<Vec<Job>> {
    let mut jobs = Vec::with_capacity(count);
    for index in 0..count {
        let params = SamplingParams {
            temperature_ppm: TEMPERATURES[index % TEMPERATURES.len()],
            top_p_ppm: TOP_P[(index / TEMPERATURES.len()) % TOP_P.len()],
            top_k: TOP_K[(index / (TEMPERATURES.len() * TOP_P.len())) % TOP_K.len()],
        };
        let max_tokens = MAX_TOKENS[index % MAX_TOKENS.len()];
        // Prompts advance by 5 (coprime with 16) so prompt and temperature vary independently.
        jobs.push(make_job(engine, index, index * 5, params, max_tokens, index % 2 == 1).await?);
    }
    Ok(jobs)
}

/// Generates the jobs: those marked alone one at a time, the others `BATCH` at once.
async fn generate_honest(engine: &Arc<Engine>, jobs: Vec<Job>) -> Result<Vec<Honest>> {
    let (concurrent, alone): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.concurrent);
    let mut done = Vec::new();
    for job in alone {
        let output = engine.generate_all(job.request()).await?;
        eprintln!(
            "calibrate: job {} alone: {} tokens, {:?}",
            job.index,
            output.output_ids.len(),
            output.finish_reason
        );
        done.push(Honest { job, output });
    }
    for group in concurrent.chunks(BATCH) {
        let mut tasks = tokio::task::JoinSet::new();
        for job in group.iter().cloned() {
            let engine = Arc::clone(engine);
            tasks.spawn(async move {
                let output = engine.generate_all(job.request()).await;
                (job, output)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (job, output) = joined?;
            let output = output?;
            eprintln!(
                "calibrate: job {} concurrent: {} tokens, {:?}",
                job.index,
                output.output_ids.len(),
                output.finish_reason
            );
            done.push(Honest { job, output });
        }
    }
    done.sort_by_key(|h| h.job.index);
    Ok(done)
}

/// A checked transcript: the verdict at the thresholds in use, and the evidence to judge it again.
#[derive(Debug, Clone)]
struct Checked {
    transcript: Transcript,
    positions: Vec<PositionEvidence>,
    detokenized: String,
    rendered: Option<Vec<u32>>,
    caught: bool,
    rules: Vec<String>,
    max_margin: f64,
    flip_rate_ppm: u32,
    scored_tokens: usize,
    elapsed: Duration,
}

impl Checked {
    fn flips(&self) -> usize {
        self.positions
            .iter()
            .filter(|p| p.pick != p.claimed)
            .count()
    }

    /// The verdict again at other thresholds (the same evidence).
    fn caught_at(&self, thresholds: Thresholds, eos_ids: &[u32]) -> (bool, Vec<String>) {
        let evidence = Evidence {
            positions: &self.positions,
            detokenized: &self.detokenized,
            rendered_prompt_ids: self.rendered.as_deref(),
            eos_ids,
        };
        let verdict = judge(&self.transcript, &evidence, thresholds);
        (
            !verdict.is_honest(),
            verdict.failed_rules.iter().map(|r| r.to_string()).collect(),
        )
    }
}

/// The whole check on `path`, as a validator runs it, keeping the evidence.
async fn run_check(
    engine: &Engine,
    dense: &Arc<DenseScorer>,
    path: ScorePath,
    transcript: Transcript,
    thresholds: Thresholds,
) -> Result<Checked> {
    let started = Instant::now();
    let (verdict, scores): (_, Scores) =
        check(engine, Some(dense), path, &transcript, thresholds).await?;
    let elapsed = started.elapsed();
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
    let rendered = match &transcript.prompt {
        Some(posted) => Some(engine.render(&Prompt::parse(posted.as_bytes())?).await?),
        None => None,
    };
    Ok(Checked {
        caught: !verdict.is_honest(),
        rules: verdict.failed_rules.iter().map(|r| r.to_string()).collect(),
        max_margin: verdict.max_margin,
        flip_rate_ppm: verdict.flip_rate_ppm,
        scored_tokens: scores.tokens_forwarded,
        transcript,
        positions,
        detokenized,
        rendered,
        elapsed,
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn nats(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.6}")
    } else {
        "inf".into()
    }
}

/// Prints the honest figures of one path.
fn report_path(name: &str, checked: &[Checked]) {
    let mut margins: Vec<f64> = checked
        .iter()
        .flat_map(|c| c.positions.iter().map(|p| p.margin))
        .collect();
    margins.sort_by(f64::total_cmp);
    let positions = margins.len();
    let nonzero = margins.iter().filter(|m| **m > 0.0).count();
    let flips: usize = checked
        .iter()
        .map(|c| c.positions.iter().filter(|p| p.pick != p.claimed).count())
        .sum();
    let false_positives = checked.iter().filter(|c| c.caught).count();
    let tokens: usize = checked.iter().map(|c| c.scored_tokens).sum();
    let seconds: f64 = checked.iter().map(|c| c.elapsed.as_secs_f64()).sum();
    println!("{name}_transcripts={}", checked.len());
    println!("{name}_positions={positions}");
    println!("{name}_false_positives={false_positives}");
    for c in checked.iter().filter(|c| c.caught) {
        println!(
            "{name}_false_positive_rules={} max_margin={} flip_rate_ppm={} flips={}/{}",
            c.rules.join(","),
            nats(c.max_margin),
            c.flip_rate_ppm,
            c.flips(),
            c.positions.len()
        );
    }
    println!("{name}_margin_p50={}", nats(percentile(&margins, 0.5)));
    println!("{name}_margin_p99={}", nats(percentile(&margins, 0.99)));
    println!("{name}_margin_p999={}", nats(percentile(&margins, 0.999)));
    println!(
        "{name}_margin_max={}",
        nats(margins.last().copied().unwrap_or(0.0))
    );
    println!(
        "{name}_margin_nonzero_share={:.6}",
        nonzero as f64 / positions.max(1) as f64
    );
    println!("{name}_flips={flips}");
    println!(
        "{name}_flip_rate_ppm={}",
        (flips as u64 * 1_000_000).div_ceil(positions.max(1) as u64)
    );
    println!(
        "{name}_flip_rate_max_ppm={}",
        checked.iter().map(|c| c.flip_rate_ppm).max().unwrap_or(0)
    );
    println!(
        "{name}_transcript_max_margins={}",
        checked
            .iter()
            .map(|c| format!("{:.4}", c.max_margin))
            .collect::<Vec<_>>()
            .join(",")
    );
    println!("{name}_score_s={seconds:.1}");
    println!(
        "{name}_score_tok_s={:.1}",
        tokens as f64 / seconds.max(1e-9)
    );
}

/// What a custom processor does at every position of a generation that is not the engine's own.
#[derive(Debug)]
struct Steer {
    sampler: Sampler,
    /// The length of the prompt the positions count from (the job's prompt).
    prompt_len: usize,
    /// Ids the sampler must never choose (a cheater's EOS ban).
    banned: Vec<u32>,
    /// Keep every step's raw logits.
    capture: bool,
    tokens: Mutex<Vec<u32>>,
    logits: Mutex<Vec<Vec<f32>>>,
}

impl Steer {
    fn new(sampler: Sampler, prompt_len: usize, banned: Vec<u32>, capture: bool) -> Arc<Self> {
        Arc::new(Self {
            sampler,
            prompt_len,
            banned,
            capture,
            tokens: Mutex::new(Vec::new()),
            logits: Mutex::new(Vec::new()),
        })
    }
}

struct SteerProcessor(Arc<Steer>);

impl CustomLogitsProcessor for SteerProcessor {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> candle_core::Result<Tensor> {
        let steer = &self.0;
        fn poisoned<T>(_: T) -> candle_core::Error {
            candle_core::Error::msg("poisoned lock")
        }
        let position = context
            .len()
            .checked_sub(steer.prompt_len)
            .ok_or_else(|| candle_core::Error::msg("context shorter than the prompt"))?;
        let mut values: Vec<f32> = logits.to_dtype(DType::F32)?.to_vec1()?;
        if steer.capture {
            steer.logits.lock().map_err(poisoned)?.push(values.clone());
        }
        for &id in &steer.banned {
            if let Some(v) = values.get_mut(id as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        let token = steer
            .sampler
            .sample(position as u32, &values)
            .map_err(candle_core::Error::msg)?
            .token;
        steer.tokens.lock().map_err(poisoned)?.push(token);
        values.fill(f32::NEG_INFINITY);
        values[token as usize] = 1.0;
        let len = values.len();
        Tensor::from_vec(values, len, logits.device())
    }
}

/// Generates through mistral.rs with `steer` choosing every token; returns the ids chosen.
async fn steered(
    engine: &Engine,
    prompt_ids: Vec<u32>,
    max_tokens: u32,
    steer: &Arc<Steer>,
) -> Result<Vec<u32>> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(max_tokens as usize + 4);
    let request = greedy_completion(
        prompt_ids,
        max_tokens,
        Some(Arc::new(SteerProcessor(Arc::clone(steer)))),
        tx,
    );
    engine
        .mistral()
        .inner()
        .get_sender(None)?
        .send(Request::Normal(Box::new(request)))
        .await
        .map_err(|_| eyre!("engine stopped"))?;
    while let Some(response) = rx.recv().await {
        match response {
            Response::CompletionChunk(chunk) => {
                if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                    break;
                }
            }
            Response::CompletionDone(_) => break,
            Response::InternalError(e) | Response::ValidationError(e) => bail!("{e}"),
            Response::CompletionModelError(e, _) | Response::ModelError(e, _) => bail!("{e}"),
            _ => bail!("unexpected response"),
        }
    }
    let tokens = steer
        .tokens
        .lock()
        .map_err(|_| eyre!("poisoned lock"))?
        .clone();
    Ok(tokens)
}

/// The model's second choice at output `position` of `honest` (the engine's logits after the
/// prompt and the output before it): among the 64 most likely tokens other than the sampler's
/// pick, the one with the least margin — the swap hardest to see.
async fn second_choice(engine: &Engine, honest: &Honest, position: usize) -> Result<u32> {
    let job = &honest.job;
    let mut context = job.prompt_ids.clone();
    context.extend_from_slice(&honest.output.output_ids[..position]);
    let steer = Steer::new(job.sampler(), job.prompt_ids.len(), Vec::new(), true);
    steered(engine, context, 1, &steer).await?;
    let logits = steer
        .logits
        .lock()
        .map_err(|_| eyre!("poisoned lock"))?
        .first()
        .cloned()
        .ok_or_else(|| eyre!("no logits captured"))?;
    let sampler = job.sampler();
    let pick = sampler.sample(position as u32, &logits)?.token;
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    ids.into_iter()
        .filter(|&id| id != pick && id < ORDINARY_TOKENS)
        .take(64)
        .map(|id| (id, sampler.margin(position as u32, &logits, id)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(id, _)| id)
        .ok_or_else(|| eyre!("no second choice"))
}

/// One attack instance: what was claimed and how the check judged it.
#[derive(Debug, Clone)]
struct Instance {
    label: String,
    /// The cheat's output equals the honest one: nothing to catch (and nothing gained).
    identical: bool,
    checked: Checked,
}

/// Perturbs a share of the Q4_K/Q6_K weight blocks of every layer tensor of a copy of `source`
/// (each quant of a chosen block one step up or down, or random: [`Perturb`]). Returns the copy's
/// path, the blocks perturbed and the blocks considered.
fn write_impostor(
    source: &Path,
    dir: &Path,
    impostor: Impostor,
    seed: u64,
) -> Result<(PathBuf, u64, u64)> {
    std::fs::create_dir_all(dir)?;
    let target = dir.join(format!("{}.gguf", impostor.name()));
    std::fs::copy(source, &target)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&target)?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| eyre!("{e}"))?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut rng = Rng(seed);
    let (mut perturbed, mut total) = (0u64, 0u64);
    for name in names {
        let info = &content.tensor_infos[name];
        // Which bytes of a block hold quants: Q4_K's `qs` after d, dmin and the scales; Q6_K's
        // low four bits `ql` first.
        let quants = match info.ggml_dtype {
            GgmlDType::Q4K => 16..144,
            GgmlDType::Q6K => 0..128,
            _ => continue,
        };
        if !name.starts_with("blk.") {
            continue;
        }
        let block_bytes = info.ggml_dtype.type_size();
        let blocks = info.shape.elem_count() / info.ggml_dtype.block_size();
        let mut data = vec![0u8; blocks * block_bytes];
        let start = content.tensor_data_offset + info.offset;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut data)?;
        for block in data.chunks_exact_mut(block_bytes) {
            total += 1;
            if rng.unit() >= impostor.share {
                continue;
            }
            perturbed += 1;
            for byte in &mut block[quants.clone()] {
                let bits = rng.next();
                *byte = match impostor.perturb {
                    Perturb::Step => {
                        let nudge = |q: u8, up: bool| {
                            if up {
                                (q + 1).min(15)
                            } else {
                                q.saturating_sub(1)
                            }
                        };
                        let low = nudge(*byte & 0x0f, bits & 1 == 1);
                        let high = nudge(*byte >> 4, bits & 2 == 2);
                        (high << 4) | low
                    }
                    Perturb::Random => bits as u8,
                };
            }
        }
        file.seek(SeekFrom::Start(start))?;
        file.write_all(&data)?;
    }
    file.flush()?;
    Ok((target, perturbed, total))
}

/// Checks a cheat's transcript on the dense path.
struct Judge<'a> {
    engine: &'a Engine,
    dense: &'a Arc<DenseScorer>,
    thresholds: Thresholds,
    results: BTreeMap<String, Vec<Instance>>,
}

impl Judge<'_> {
    async fn add(
        &mut self,
        attack: &str,
        label: String,
        transcript: Transcript,
        honest: Option<&[u32]>,
    ) -> Result<()> {
        let identical = honest.is_some_and(|h| h == transcript.output_ids.as_slice());
        let checked = run_check(
            self.engine,
            self.dense,
            ScorePath::Dense,
            transcript,
            self.thresholds,
        )
        .await?;
        eprintln!(
            "calibrate: attack {attack} {label}: caught={} rules={} max_margin={} flips={}ppm{}",
            checked.caught,
            checked.rules.join(","),
            nats(checked.max_margin),
            checked.flip_rate_ppm,
            if identical { " (identical output)" } else { "" }
        );
        self.results
            .entry(attack.to_owned())
            .or_default()
            .push(Instance {
                label,
                identical,
                checked,
            });
        Ok(())
    }
}

/// Picks `n` of `candidates` spread over the list (all when fewer).
fn spread<T: Clone>(candidates: &[T], n: usize) -> Vec<T> {
    if candidates.len() <= n {
        return candidates.to_vec();
    }
    (0..n)
        .map(|i| candidates[i * candidates.len() / n].clone())
        .collect()
}

fn temperature(job: &Job) -> f64 {
    f64::from(job.params.temperature_ppm) / 1e6
}

#[allow(clippy::too_many_lines)]
async fn attacks(
    engine: &Arc<Engine>,
    dense: &Arc<DenseScorer>,
    config: &EngineConfig,
    honest: &[Honest],
    options: &Options,
) -> Result<BTreeMap<String, Vec<Instance>>> {
    let n = options.attacks;
    let eos = engine.eos_token_ids().to_vec();
    let eos_id = *eos
        .first()
        .ok_or_else(|| eyre!("the model has no EOS id"))?;
    let mut judge = Judge {
        engine,
        dense,
        thresholds: options.thresholds,
        results: BTreeMap::new(),
    };
    let mut rng = Rng(0x5eed_ca11);
    let long: Vec<&Honest> = honest
        .iter()
        .filter(|h| h.output.output_ids.len() >= 16)
        .collect();
    // Longest outputs first: the cheats that change the distribution need positions to show.
    let mut by_length: Vec<&Honest> = honest.iter().collect();
    by_length.sort_by_key(|h| (std::cmp::Reverse(h.output.output_ids.len()), h.job.index));

    // fabricated: another prompt's honest output, claimed for this job.
    for (i, a) in spread(&honest.iter().collect::<Vec<_>>(), n)
        .into_iter()
        .enumerate()
    {
        let Some(b) = honest
            .iter()
            .cycle()
            .skip(a.job.index + 1)
            .take(honest.len())
            .find(|b| {
                b.job.prompt_index != a.job.prompt_index && b.job.max_tokens == a.job.max_tokens
            })
        else {
            continue;
        };
        let claim = transcript(
            &a.job,
            b.output.output_ids.clone(),
            b.output.text.clone(),
            b.output.finish_reason,
        );
        let label = format!("{i}:job{}<-job{}", a.job.index, b.job.index);
        judge
            .add("fabricated", label, claim, Some(&a.output.output_ids))
            .await?;
    }

    // greedy: generated at T=0, claimed at the job's temperature (same seed).
    let mut chosen: Vec<&Honest> = Vec::new();
    for t in [1_300_000, 1_000_000, 700_000, 300_000] {
        chosen.extend(
            by_length
                .iter()
                .filter(|h| h.job.params.temperature_ppm == t)
                .take(1),
        );
    }
    for (i, h) in chosen.into_iter().take(n.max(4)).enumerate() {
        let mut request = h.job.request();
        request.sampler = Sampler::new(SamplingParams::GREEDY, h.job.seed);
        let output = engine.generate_all(request).await?;
        let claim = transcript(&h.job, output.output_ids, output.text, output.finish_reason);
        let label = format!("{i}:job{}:T={}", h.job.index, temperature(&h.job));
        judge
            .add("greedy", label, claim, Some(&h.output.output_ids))
            .await?;
    }

    // wrong_seed: generated with another seed, claimed with the job's.
    let long_sampled: Vec<&Honest> = by_length
        .iter()
        .copied()
        .filter(|h| h.job.params.temperature_ppm > 0)
        .take(2 * n)
        .collect();
    for (i, h) in spread(&long_sampled, n).into_iter().enumerate() {
        let mut request = h.job.request();
        request.sampler = Sampler::new(h.job.params, keccak256(h.job.seed));
        let output = engine.generate_all(request).await?;
        let claim = transcript(&h.job, output.output_ids, output.text, output.finish_reason);
        let label = format!("{i}:job{}:T={}", h.job.index, temperature(&h.job));
        judge
            .add("wrong_seed", label, claim, Some(&h.output.output_ids))
            .await?;
    }

    // swap: one token mid-output replaced, by a random ordinary id and by the model's 2nd choice.
    for (i, h) in spread(&long, n).into_iter().enumerate() {
        let ids = &h.output.output_ids;
        let position = ids.len() / 2;
        let mut random = ids.clone();
        random[position] = loop {
            let id = rng.below(u64::from(ORDINARY_TOKENS)) as u32;
            if id != ids[position] {
                break id;
            }
        };
        let text = engine.detokenize(&random).await?;
        let claim = transcript(&h.job, random, text, h.output.finish_reason);
        let label = format!(
            "{i}:job{}:pos{position}:T={}",
            h.job.index,
            temperature(&h.job)
        );
        judge.add("swap_random", label, claim, None).await?;

        let second = second_choice(engine, h, position).await?;
        let mut swapped = ids.clone();
        swapped[position] = second;
        let text = engine.detokenize(&swapped).await?;
        let claim = transcript(&h.job, swapped, text, h.output.finish_reason);
        let label = format!(
            "{i}:job{}:pos{position}:T={}",
            h.job.index,
            temperature(&h.job)
        );
        judge.add("swap_second", label, claim, Some(ids)).await?;
    }

    // eos_suppressed: the same job generated with every EOS id banned, to the budget, claimed
    // `length` (billing up to max_tokens). Needs jobs that really stopped; more are made if the
    // honest set has too few.
    let mut stopped: Vec<Honest> = honest
        .iter()
        .filter(|h| {
            h.output.finish_reason == FinishReason::Stop
                && h.output.output_ids.len() < h.job.max_tokens as usize
        })
        .cloned()
        .collect();
    let mut extra = 0usize;
    while stopped.len() < n && extra < 4 * n {
        // Short-answer prompts (indices 1, 6, 10) at T = 0 and 0.7.
        let prompt_index = [1, 6, 10][extra % 3];
        let params = SamplingParams {
            temperature_ppm: if extra.is_multiple_of(2) { 0 } else { 700_000 },
            top_k: 0,
            top_p_ppm: 1_000_000,
        };
        let job = make_job(engine, 1000 + extra, prompt_index, params, 48, false).await?;
        let output = engine.generate_all(job.request()).await?;
        if output.finish_reason == FinishReason::Stop {
            stopped.push(Honest { job, output });
        }
        extra += 1;
    }
    for (i, h) in spread(&stopped, n).into_iter().enumerate() {
        let steer = Steer::new(h.job.sampler(), h.job.prompt_ids.len(), eos.clone(), false);
        let ids = steered(engine, h.job.prompt_ids.clone(), h.job.max_tokens, &steer).await?;
        let text = engine.detokenize(&ids).await?;
        let claim = transcript(&h.job, ids, text, FinishReason::Length);
        let label = format!(
            "{i}:job{}:stop@{}:T={}",
            h.job.index,
            h.output.output_ids.len(),
            temperature(&h.job)
        );
        judge.add("eos_suppressed", label, claim, None).await?;
    }

    // cut: output cut at half with an EOS appended, claimed `stop`.
    for (i, h) in spread(&long, n).into_iter().enumerate() {
        let cut = h.output.output_ids.len() / 2;
        let mut ids = h.output.output_ids[..cut].to_vec();
        ids.push(eos_id);
        let text = engine.detokenize(&ids).await?;
        let claim = transcript(&h.job, ids, text, FinishReason::Stop);
        let label = format!("{i}:job{}:cut@{cut}:T={}", h.job.index, temperature(&h.job));
        judge.add("cut", label, claim, None).await?;
    }

    // inflated_counts: billed counts above the ids (the commitment binds the billed input count).
    for (i, h) in spread(&honest.iter().collect::<Vec<_>>(), n)
        .into_iter()
        .enumerate()
    {
        let mut claim = honest_transcript(h);
        let (input, output) = match i % 3 {
            0 => (8, 0),
            1 => (0, 8),
            _ => (8, 8),
        };
        claim.input_tokens += input;
        claim.output_tokens += output;
        claim.seal();
        let label = format!("{i}:job{}:input+{input}:output+{output}", h.job.index);
        judge.add("inflated_counts", label, claim, None).await?;
    }

    // system_prompt: generated with the system message dropped or changed; claimed with the
    // posted prompt's ids (`system_prompt`) or with the ids really used (`system_prompt_ids`).
    let with_system: Vec<&Honest> = honest.iter().filter(|h| h.job.has_system()).collect();
    for (i, h) in spread(&with_system, n).into_iter().enumerate() {
        let mut used = h.job.prompt.clone();
        let how = if i % 2 == 0 {
            used.messages.retain(|m| m.role != Role::System);
            "dropped"
        } else {
            for m in used.messages.iter_mut().filter(|m| m.role == Role::System) {
                m.content = CHANGED_SYSTEM.to_owned();
            }
            "changed"
        };
        let used_ids = engine.render(&used).await?;
        let mut request = h.job.request();
        request.prompt_ids = used_ids.clone();
        let output = engine.generate_all(request).await?;
        let label = format!("{i}:job{}:{how}:T={}", h.job.index, temperature(&h.job));
        let claim = transcript(
            &h.job,
            output.output_ids.clone(),
            output.text.clone(),
            output.finish_reason,
        );
        judge
            .add(
                "system_prompt",
                label.clone(),
                claim,
                Some(&h.output.output_ids),
            )
            .await?;
        let mut claim = transcript(&h.job, output.output_ids, output.text, output.finish_reason);
        claim.prompt_ids = used_ids;
        claim.input_tokens = claim.prompt_ids.len() as u32;
        claim.seal();
        judge
            .add(
                "system_prompt_ids",
                label,
                claim,
                Some(&h.output.output_ids),
            )
            .await?;
    }

    // impostor: another model (the GGUF with perturbed blocks) generates; the claim is the
    // registered model.
    let dir = std::env::temp_dir().join(format!("infera-calibrate-{}", std::process::id()));
    for (v, &spec) in options.impostors.iter().enumerate() {
        let started = Instant::now();
        let (path, perturbed, total) = {
            let (source, dir) = (config.model_path.clone(), dir.clone());
            tokio::task::spawn_blocking(move || {
                write_impostor(&source, &dir, spec, 0x1a05 + v as u64)
            })
            .await??
        };
        let sha256 = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || infera_models::sha256_file(&path)).await??
        };
        let name = spec.name();
        println!("{name}_blocks_perturbed={perturbed}/{total}");
        let impostor = Engine::load(EngineConfig {
            max_running: 1,
            ..EngineConfig::new(path.clone(), sha256, None)
        })
        .await?;
        eprintln!(
            "calibrate: {name} written and loaded in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        // A mix of greedy and sampled jobs, the longest outputs first.
        let mut jobs: Vec<&Honest> = by_length
            .iter()
            .copied()
            .filter(|h| h.job.params.temperature_ppm == 0)
            .take(n.div_ceil(2))
            .collect();
        let greedy_taken = jobs.len();
        jobs.extend(
            by_length
                .iter()
                .copied()
                .filter(|h| h.job.params.temperature_ppm > 0)
                .take(n - greedy_taken.min(n)),
        );
        for (i, h) in jobs.into_iter().enumerate() {
            let output = impostor.generate_all(h.job.request()).await?;
            let claim = transcript(&h.job, output.output_ids, output.text, output.finish_reason);
            let label = format!("{i}:job{}:T={}", h.job.index, temperature(&h.job));
            judge
                .add(&name, label, claim, Some(&h.output.output_ids))
                .await?;
        }
        drop(impostor);
        std::fs::remove_file(&path)?;
    }
    let _ = std::fs::remove_dir(&dir);
    Ok(judge.results)
}

fn report_attacks(results: &BTreeMap<String, Vec<Instance>>) {
    for (name, instances) in results {
        let real: Vec<&Instance> = instances.iter().filter(|i| !i.identical).collect();
        let caught = real.iter().filter(|i| i.checked.caught).count();
        println!("attack_{name}_caught={caught}/{}", real.len());
        let identical = instances.len() - real.len();
        if identical > 0 {
            println!("attack_{name}_identical_to_honest={identical}");
        }
        let margins: Vec<f64> = real.iter().map(|i| i.checked.max_margin).collect();
        let min = margins.iter().copied().fold(f64::INFINITY, f64::min);
        let max = margins.iter().copied().fold(0.0, f64::max);
        if !margins.is_empty() {
            println!("attack_{name}_margin_min={}", nats(min));
            println!("attack_{name}_margin_max={}", nats(max));
        }
        let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &real {
            for rule in &i.checked.rules {
                *rules.entry(rule.as_str()).or_default() += 1;
            }
        }
        let mut line = String::new();
        for (rule, count) in rules {
            let _ = write!(
                line,
                "{}{rule}:{count}",
                if line.is_empty() { "" } else { "," }
            );
        }
        println!("attack_{name}_rules={line}");
        for i in instances {
            println!(
                "attack_{name}_instance={} caught={} rules={} max_margin={} flips={}/{}{}",
                i.label,
                i.checked.caught,
                if i.checked.rules.is_empty() {
                    "-".to_owned()
                } else {
                    i.checked.rules.join(",")
                },
                nats(i.checked.max_margin),
                i.checked.flips(),
                i.checked.positions.len(),
                if i.identical { " identical" } else { "" }
            );
        }
    }
}

/// A margin no float difference between the paths comes near: an honest transcript above it on
/// the dense path was generated wrong (see `--batch-probe`), not scored wrong.
const DEFECT_NATS: f64 = 5.0;

/// Whether a rule other than the two statistics fails, or the statistics at `margin_ppm` and a
/// flip rule that needs at least `min_flips` flips above `flip_ppm` (the rule as judged today is
/// `min_flips = 0`).
fn caught_with(
    c: &Checked,
    eos_ids: &[u32],
    margin_ppm: u32,
    flip_ppm: u32,
    min_flips: usize,
) -> bool {
    let by_margin = Thresholds {
        max_margin_ppm: margin_ppm,
        max_flip_rate_ppm: u32::MAX,
    };
    let flips = c.flips();
    let rate = (flips as u64 * 1_000_000).div_ceil(c.positions.len().max(1) as u64);
    c.caught_at(by_margin, eos_ids).0 || (flips >= min_flips && rate > u64::from(flip_ppm))
}

/// Thresholds with headroom over every honest transcript the engine generated right, what they
/// miss, and the same for a few alternatives.
fn propose(
    honest: &[Checked],
    results: &BTreeMap<String, Vec<Instance>>,
    eos_ids: &[u32],
    thresholds: Thresholds,
) {
    let clean: Vec<&Checked> = honest
        .iter()
        .filter(|c| c.max_margin <= DEFECT_NATS)
        .collect();
    let honest_margin = clean.iter().map(|c| c.max_margin).fold(0.0, f64::max);
    let honest_flip = clean.iter().map(|c| c.flip_rate_ppm).max().unwrap_or(0);
    let honest_flips = clean.iter().map(|c| c.flips()).max().unwrap_or(0);
    println!("honest_clean_checks={}", clean.len());
    println!("honest_clean_max_margin={}", nats(honest_margin));
    println!("honest_clean_max_flip_rate_ppm={honest_flip}");
    println!("honest_clean_max_flips={honest_flips}");
    // Margin: 2.5 times the largest honest margin and at least half a nat above it, rounded up
    // to a quarter nat. Flip rate: the rule is flips / positions, so one honest near-tie flip in
    // a two-token output is 500000 ppm: nothing lower is safe, and 500000 is the registry's cap.
    let margin = (honest_margin * 2.5).max(honest_margin + 0.5);
    let proposal = Thresholds {
        max_margin_ppm: ((margin * 4.0).ceil() / 4.0 * 1e6) as u32,
        max_flip_rate_ppm: 500_000,
    };
    println!("proposed_max_margin_ppm={}", proposal.max_margin_ppm);
    println!("proposed_max_flip_rate_ppm={}", proposal.max_flip_rate_ppm);
    let attacks: Vec<(&String, &Instance)> = results
        .iter()
        .flat_map(|(name, instances)| instances.iter().map(move |i| (name, i)))
        .filter(|(_, i)| !i.identical)
        .collect();
    let evaluate = |margin_ppm: u32, flip_ppm: u32, min_flips: usize| {
        let fp = clean
            .iter()
            .filter(|c| caught_with(c, eos_ids, margin_ppm, flip_ppm, min_flips))
            .count();
        let missed: Vec<String> = attacks
            .iter()
            .filter(|(_, i)| !caught_with(&i.checked, eos_ids, margin_ppm, flip_ppm, min_flips))
            .map(|(name, i)| {
                format!(
                    "{name}[{}]:margin={}:flips={}/{}",
                    i.label,
                    nats(i.checked.max_margin),
                    i.checked.flips(),
                    i.checked.positions.len()
                )
            })
            .collect();
        (fp, missed)
    };
    let (fp, missed) = evaluate(proposal.max_margin_ppm, proposal.max_flip_rate_ppm, 0);
    println!("proposed_false_positives={fp}");
    println!(
        "proposed_caught={}/{}",
        attacks.len() - missed.len(),
        attacks.len()
    );
    println!("proposed_missed={}", missed.join(" "));
    // Alternatives: (margin ppm, flip ppm, least flips the flip rule needs).
    for (margin_ppm, flip_ppm, min_flips) in [
        (thresholds.max_margin_ppm, thresholds.max_flip_rate_ppm, 0),
        (1_000_000, 250_000, 0),
        (1_000_000, 500_000, 0),
        (1_500_000, 250_000, 0),
        (1_500_000, 500_000, 0),
        (2_000_000, 500_000, 0),
        (1_000_000, 100_000, 4),
        (1_500_000, 100_000, 4),
        (1_500_000, 50_000, 4),
        (2_000_000, 100_000, 4),
    ] {
        let (fp, missed) = evaluate(margin_ppm, flip_ppm, min_flips);
        println!(
            "what_if_margin{margin_ppm}_flip{flip_ppm}_minflips{min_flips}=false_positives:{fp} caught:{}/{} missed:{}",
            attacks.len() - missed.len(),
            attacks.len(),
            missed.join(" ")
        );
    }
}

/// Honest job `index` generated alone, checked on the engine path, and its worst position
/// explained: the candidates around the claimed token and the pick at the engine's logits
/// (temperature-scaled mass in f64, for reading only).
async fn diagnose(engine: &Arc<Engine>, index: usize) -> Result<()> {
    let jobs = honest_jobs(engine, index + 1).await?;
    let job = jobs
        .into_iter()
        .nth(index)
        .ok_or_else(|| eyre!("no job {index}"))?;
    let output = engine.generate_all(job.request()).await?;
    let honest = Honest {
        job: job.clone(),
        output,
    };
    let claim = honest_transcript(&honest);
    let (verdict, _) = check(engine, None, ScorePath::Engine, &claim, DEFAULT_THRESHOLDS).await?;
    println!(
        "diagnose_job={index} params={:?} positions={} max_margin={}",
        job.params,
        claim.output_ids.len(),
        nats(verdict.max_margin)
    );
    let Some(worst) = verdict.worst_positions.first() else {
        println!("diagnose_worst=none");
        return Ok(());
    };
    let position = worst.position;
    let steer = Steer::new(job.sampler(), job.prompt_ids.len(), Vec::new(), true);
    let mut context = job.prompt_ids.clone();
    context.extend_from_slice(&honest.output.output_ids[..position]);
    steered(engine, context, 1, &steer).await?;
    let logits = steer
        .logits
        .lock()
        .map_err(|_| eyre!("poisoned lock"))?
        .first()
        .cloned()
        .ok_or_else(|| eyre!("no logits"))?;
    let sampler = job.sampler();
    let pick = sampler.sample(position as u32, &logits)?.token;
    let t = f64::from(job.params.temperature_ppm.max(1)) / 1e6;
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let max = f64::from(logits[order[0] as usize]);
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i as usize]) - max) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut mass = 0.0;
    println!(
        "diagnose_worst=position:{position} claimed:{} pick_at_check:{} margin:{} top_p:{} top_k:{}",
        worst.claimed,
        worst.pick,
        nats(worst.margin),
        f64::from(job.params.top_p_ppm) / 1e6,
        job.params.top_k
    );
    for (rank, (&id, w)) in order.iter().zip(&weights).take(12).enumerate() {
        mass += w / total;
        println!(
            "diagnose_rank{rank}=id:{id} logit:{:.5} cumulative_mass:{mass:.5} margin:{}{}{}",
            logits[id as usize],
            nats(sampler.margin(position as u32, &logits, id)),
            if id == worst.claimed { " CLAIMED" } else { "" },
            if id == pick { " PICK" } else { "" }
        );
    }
    Ok(())
}

/// The same greedy jobs generated alone and then `BATCH` at once: greedy outputs may differ only
/// at near-ties (other numerics), so a concurrent output with large margins is the engine's fault.
async fn batch_probe(
    engine: &Arc<Engine>,
    dense: &Arc<DenseScorer>,
    thresholds: Thresholds,
) -> Result<()> {
    let mut jobs = Vec::new();
    for i in 0..BATCH {
        jobs.push(make_job(engine, 2000 + i, i * 3, SamplingParams::GREEDY, 48, false).await?);
    }
    let mut alone = Vec::new();
    for job in &jobs {
        alone.push(engine.generate_all(job.request()).await?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, job) in jobs.iter().cloned().enumerate() {
        let engine = Arc::clone(engine);
        tasks.spawn(async move { (n, engine.generate_all(job.request()).await) });
    }
    let mut concurrent: Vec<Option<Output>> = vec![None; jobs.len()];
    while let Some(joined) = tasks.join_next().await {
        let (n, output) = joined?;
        concurrent[n] = Some(output?);
    }
    for ((job, alone), concurrent) in jobs.iter().zip(&alone).zip(concurrent) {
        let concurrent = concurrent.ok_or_else(|| eyre!("missing output"))?;
        let first_diff = alone
            .output_ids
            .iter()
            .zip(&concurrent.output_ids)
            .position(|(a, b)| a != b);
        let mut margins = Vec::new();
        for output in [alone, &concurrent] {
            let claim = transcript(
                job,
                output.output_ids.clone(),
                output.text.clone(),
                output.finish_reason,
            );
            let c = run_check(engine, dense, ScorePath::Dense, claim, thresholds).await?;
            margins.push(nats(c.max_margin));
        }
        println!(
            "batch_probe_job{}=prompt_tokens:{} alone_tokens:{} concurrent_tokens:{} first_difference:{} \
             alone_max_margin:{} concurrent_max_margin:{}",
            job.index,
            job.prompt_ids.len(),
            alone.output_ids.len(),
            concurrent.output_ids.len(),
            first_diff.map_or("none".into(), |p| p.to_string()),
            margins[0],
            margins[1]
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let options = Options::parse()?;
    let started = Instant::now();
    println!("max_margin_ppm={}", options.thresholds.max_margin_ppm);
    println!("max_flip_rate_ppm={}", options.thresholds.max_flip_rate_ppm);
    println!(
        "threads={}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let path = infera_models::require_cached(&DEFAULT_MODEL)?;
    let config = EngineConfig {
        max_running: BATCH,
        ..EngineConfig::new(path, DEFAULT_MODEL.sha256, Some(DEFAULT_MODEL.size))
    };
    let engine = Arc::new(Engine::load(config.clone()).await?);
    let dense = {
        let config = config.clone();
        Arc::new(tokio::task::spawn_blocking(move || DenseScorer::load(&config)).await??)
    };
    let eos = engine.eos_token_ids().to_vec();
    println!(
        "eos_ids={}",
        eos.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    );
    eprintln!(
        "calibrate: loaded in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    if options.batch_probe {
        return batch_probe(&engine, &dense, options.thresholds).await;
    }
    if let Some(index) = options.diagnose {
        return diagnose(&engine, index).await;
    }

    // 1. Honest jobs on both paths.
    let jobs = honest_jobs(&engine, options.jobs).await?;
    let generated = Instant::now();
    let honest = generate_honest(&engine, jobs).await?;
    println!("generate_s={:.1}", generated.elapsed().as_secs_f64());
    let mut paths = vec![ScorePath::Dense];
    if options.engine_path {
        paths.push(ScorePath::Engine);
    }
    let mut all_checked = Vec::new();
    let mut total_fp = 0;
    println!("honest_jobs={}", honest.len());
    println!(
        "honest_positions={}",
        honest
            .iter()
            .map(|h| h.output.output_ids.len())
            .sum::<usize>()
    );
    println!(
        "honest_stopped={}",
        honest
            .iter()
            .filter(|h| h.output.finish_reason == FinishReason::Stop)
            .count()
    );
    for path in paths {
        let mut checked = Vec::new();
        for h in &honest {
            let c = run_check(
                &engine,
                &dense,
                path,
                honest_transcript(h),
                options.thresholds,
            )
            .await?;
            eprintln!(
                "calibrate: honest job {} on {path}: {} positions, max_margin={} flips={}ppm{}",
                h.job.index,
                c.positions.len(),
                nats(c.max_margin),
                c.flip_rate_ppm,
                if c.caught {
                    format!(" FALSE POSITIVE ({})", c.rules.join(","))
                } else {
                    String::new()
                }
            );
            checked.push(c);
        }
        report_path(&path.to_string(), &checked);
        // Alone vs concurrent on this path.
        for (label, concurrent) in [("alone", false), ("concurrent", true)] {
            let max = checked
                .iter()
                .zip(&honest)
                .filter(|(_, h)| h.job.concurrent == concurrent)
                .map(|(c, _)| c.max_margin)
                .fold(0.0, f64::max);
            println!("{path}_{label}_margin_max={}", nats(max));
        }
        total_fp += checked.iter().filter(|c| c.caught).count();
        all_checked.extend(checked);
    }
    println!("false_positives={total_fp}");
    println!(
        "false_positives_excluding_defective={}",
        all_checked
            .iter()
            .filter(|c| c.caught && c.max_margin <= DEFECT_NATS)
            .count()
    );

    // 2. Attacks, on the dense path.
    // Attacks start from honest transcripts the engine generated right.
    let dense_checks = &all_checked[..honest.len()];
    let defective: Vec<usize> = honest
        .iter()
        .zip(dense_checks)
        .filter(|(_, c)| c.max_margin > DEFECT_NATS)
        .map(|(h, _)| h.job.index)
        .collect();
    println!(
        "honest_defective={} jobs={} (margins above {DEFECT_NATS} nats: generated wrong, not float noise)",
        defective.len(),
        defective
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    println!(
        "honest_defective_concurrent={}",
        honest
            .iter()
            .filter(|h| h.job.concurrent && defective.contains(&h.job.index))
            .count()
    );
    let bases: Vec<Honest> = honest
        .iter()
        .filter(|h| !defective.contains(&h.job.index))
        .cloned()
        .collect();
    let results = attacks(&engine, &dense, &config, &bases, &options).await?;
    report_attacks(&results);

    // 3. The proposal.
    propose(&all_checked, &results, &eos, options.thresholds);
    println!("elapsed_s={:.1}", started.elapsed().as_secs_f64());
    Ok(())
}
