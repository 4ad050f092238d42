//! Teacher-forced scoring with the real default model on CPU, on both numeric paths: the engine's
//! own (mistral.rs raw logits) and the dense scorer. Honest outputs the engine generated score as
//! picks equal to the claimed tokens (or near-ties); tampered ones show large margins.
//!
//! Needs the model in the cache (`scripts/setup` fetches it).

use std::path::PathBuf;

use alloy::primitives::B256;
use eyre::{Result, ensure, eyre};
use infera_engine::{
    DenseScorer, Engine, EngineConfig, EngineError, GenerateRequest, Output, ScorePath,
    ScoreRequest, Scores,
};
use infera_protocol::{
    FinishReason, Sampler, SamplingParams, models::DEFAULT_MODEL, prompt::Prompt,
};

/// Margin (nats) under which a disagreement between the generating and the scoring pass is
/// float noise on a near-tie. Honest maxima are printed; they sit far below this.
const NEAR_TIE: f64 = 1.0;
/// Margin (nats) a substituted token must exceed at its position.
const LARGE: f64 = 3.0;

fn config() -> Result<EngineConfig> {
    Ok(EngineConfig {
        max_running: 2,
        max_queued: 4,
        ..EngineConfig::new(
            infera_models::require_cached(&DEFAULT_MODEL)?,
            DEFAULT_MODEL.sha256,
            Some(DEFAULT_MODEL.size),
        )
    })
}

fn top_p(seed: u8) -> Sampler {
    Sampler::new(
        SamplingParams {
            temperature_ppm: 700_000,
            top_k: 0,
            top_p_ppm: 900_000,
        },
        B256::repeat_byte(seed),
    )
}

fn greedy() -> Sampler {
    Sampler::new(SamplingParams::GREEDY, B256::ZERO)
}

/// One generated job: its output and the sampler that produced it.
struct Job {
    name: String,
    output: Output,
    sampler: Sampler,
}

impl Job {
    fn request(&self) -> ScoreRequest<'_> {
        ScoreRequest {
            prompt_ids: &self.output.prompt_ids,
            output_ids: &self.output.output_ids,
            sampler: self.sampler,
        }
    }
}

async fn jobs(engine: &Engine) -> Result<Vec<Job>> {
    let prompts = [
        "Write a Rust function that reverses a string, with a short explanation.",
        "Explain what a hash map is in three sentences.",
    ];
    let mut jobs = Vec::new();
    for (n, prompt) in prompts.iter().enumerate() {
        let prompt_ids = engine.render(&Prompt::user(*prompt)).await?;
        for (kind, sampler) in [("greedy", greedy()), ("top_p", top_p(n as u8 + 1))] {
            let output = engine
                .generate_all(GenerateRequest {
                    prompt_ids: prompt_ids.clone(),
                    max_tokens: 40,
                    sampler,
                })
                .await?;
            jobs.push(Job {
                name: format!("prompt{n}_{kind}"),
                output,
                sampler,
            });
        }
    }
    Ok(jobs)
}

/// Every position scored, each pick the claimed token or a near-tie. Returns the largest margin.
fn honest(job: &Job, scores: &Scores, path: ScorePath) -> Result<f64> {
    ensure!(
        scores.positions.len() == job.output.output_ids.len(),
        "{path} {}: {} positions for {} tokens",
        job.name,
        scores.positions.len(),
        job.output.output_ids.len()
    );
    for (t, (p, &id)) in scores
        .positions
        .iter()
        .zip(&job.output.output_ids)
        .enumerate()
    {
        ensure!(
            p.claimed == id,
            "{path} {}: position {t} claims {}",
            job.name,
            p.claimed
        );
        ensure!(
            p.margin >= 0.0 && p.margin.is_finite(),
            "{path} {}: margin {} at {t}",
            job.name,
            p.margin
        );
        ensure!(
            p.pick == id || p.margin < NEAR_TIE,
            "{path} {}: position {t} picks {} over the claimed {id} by {} nats",
            job.name,
            p.pick,
            p.margin
        );
        ensure!((p.pick == id) == (p.margin == 0.0) || p.margin < 1e-6);
    }
    let max = scores.max_margin();
    println!(
        "{path} {}: tokens={} flips={} max_margin={max:.4} forward_ms={} sampling_ms={}",
        job.name,
        scores.positions.len(),
        scores.flips(),
        scores.forward.as_millis(),
        scores.sampling.as_millis()
    );
    Ok(max)
}

/// The output with one token replaced mid-way by a far-away id.
fn swapped(output_ids: &[u32]) -> (Vec<u32>, usize) {
    let at = output_ids.len() / 2;
    let mut ids = output_ids.to_vec();
    ids[at] = (ids[at] + 7_919) % 150_000;
    (ids, at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_accept_honest_outputs_and_catch_tampering() -> Result<()> {
    let config = config()?;
    let engine = Engine::load(config.clone()).await?;
    let dense = tokio::task::spawn_blocking(move || DenseScorer::load(&config)).await??;
    let jobs = jobs(&engine).await?;

    // A short answer ends on an end-of-sequence token the engine names.
    let eos = engine.eos_token_ids();
    ensure!(!eos.is_empty(), "no eos ids");
    let stop = engine
        .generate_all(GenerateRequest {
            prompt_ids: engine.render(&Prompt::user("Say OK.")).await?,
            max_tokens: 32,
            sampler: greedy(),
        })
        .await?;
    ensure!(stop.finish_reason == FinishReason::Stop, "{stop:?}");
    let last = *stop.output_ids.last().ok_or_else(|| eyre!("no output"))?;
    ensure!(eos.contains(&last), "stopped on {last}, eos ids {eos:?}");
    for id in stop.output_ids.iter().take(stop.output_ids.len() - 1) {
        ensure!(!eos.contains(id), "an eos id {id} mid-output");
    }

    let (mut engine_max, mut dense_max) = (0.0_f64, 0.0_f64);
    for job in &jobs {
        let by_engine = engine.score(job.request()).await?;
        engine_max = engine_max.max(honest(job, &by_engine, ScorePath::Engine)?);
        ensure!(
            by_engine.tokens_forwarded
                == job.output.prompt_ids.len() + job.output.output_ids.len() - 1
        );
        let by_dense = dense.score(job.request())?;
        dense_max = dense_max.max(honest(job, &by_dense, ScorePath::Dense)?);

        // One token swapped mid-output: a large margin there, on both paths.
        let (ids, at) = swapped(&job.output.output_ids);
        let request = ScoreRequest {
            output_ids: &ids,
            ..job.request()
        };
        for (path, scores) in [
            (ScorePath::Engine, engine.score(request).await?),
            (ScorePath::Dense, dense.score(request)?),
        ] {
            let p = scores.positions[at];
            println!(
                "{path} {}: swapped at {at}: margin {:.2}",
                job.name, p.margin
            );
            ensure!(
                p.pick != p.claimed && p.margin > LARGE,
                "{path} {}: a swapped token scores {p:?}",
                job.name
            );
            // Before the swap nothing changed.
            ensure!(scores.positions[..at].iter().all(|p| p.margin < NEAR_TIE));
        }
    }
    println!("engine_max_margin={engine_max:.4} dense_max_margin={dense_max:.4}");

    // Fabricated text: an unrelated sentence's tokens claimed as the answer to the first prompt.
    let fabricated = engine
        .render(&Prompt::user(
            "The migratory patterns of arctic terns span both poles every single year.",
        ))
        .await?;
    let fabricated = &fabricated[fabricated.len() / 3..fabricated.len() - 3];
    let sampler = jobs[1].sampler;
    let request = ScoreRequest {
        prompt_ids: &jobs[0].output.prompt_ids,
        output_ids: fabricated,
        sampler,
    };
    for (path, scores) in [
        (ScorePath::Engine, engine.score(request).await?),
        (ScorePath::Dense, dense.score(request)?),
    ] {
        let large = scores.positions.iter().filter(|p| p.margin > LARGE).count();
        println!(
            "{path} fabricated: {large} of {} positions above {LARGE} nats, max {:.2}",
            scores.positions.len(),
            scores.max_margin()
        );
        ensure!(
            large * 3 >= scores.positions.len(),
            "{path}: fabricated text passes ({large} large margins)"
        );
    }

    // Bad input on the engine path: nothing to score, an id outside the vocabulary, no prompt.
    let empty = engine
        .score(ScoreRequest {
            output_ids: &[],
            ..jobs[0].request()
        })
        .await?;
    ensure!(empty.positions.is_empty() && empty.tokens_forwarded == 0);
    let out_of_vocab = [u32::try_from(engine.vocab_size())?];
    ensure!(matches!(
        engine
            .score(ScoreRequest {
                output_ids: &out_of_vocab,
                ..jobs[0].request()
            })
            .await,
        Err(EngineError::InvalidRequest(_))
    ));
    ensure!(matches!(
        engine
            .score(ScoreRequest {
                prompt_ids: &[],
                ..jobs[0].request()
            })
            .await,
        Err(EngineError::InvalidRequest(_))
    ));
    // The engine still generates after scoring.
    ensure!(engine.in_flight() == 0);
    engine
        .generate_all(GenerateRequest {
            prompt_ids: jobs[0].output.prompt_ids.clone(),
            max_tokens: 2,
            sampler: greedy(),
        })
        .await?;
    Ok(())
}

fn request<'a>(prompt_ids: &'a [u32], output_ids: &'a [u32]) -> ScoreRequest<'a> {
    ScoreRequest {
        prompt_ids,
        output_ids,
        sampler: greedy(),
    }
}

/// Deterministic pseudo-random ids below `vocab` (xorshift).
fn ids(n: usize, vocab: u32, mut state: u64) -> Vec<u32> {
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % u64::from(vocab)) as u32
        })
        .collect()
}

#[test]
fn dense_windows_do_not_change_scores_and_bad_input_is_refused() -> Result<()> {
    let config = config()?;
    let mut scorer = DenseScorer::load(&config)?;
    let vocab = u32::try_from(scorer.vocab_size())?;
    // A transcript longer than several small windows, scored with windows of 16 and one window.
    let prompt = ids(40, 150_000, 1);
    let output = ids(90, 150_000, 2);
    let mut runs = Vec::new();
    for window in [16, 7, 4096] {
        scorer = scorer.with_window(window);
        ensure!(scorer.window() == window);
        for sampler in [greedy(), top_p(9)] {
            runs.push((
                window,
                sampler,
                scorer.score(ScoreRequest {
                    prompt_ids: &prompt,
                    output_ids: &output,
                    sampler,
                })?,
            ));
        }
    }
    for (window, sampler, scores) in &runs {
        let (_, _, reference) = runs
            .iter()
            .rev()
            .find(|(w, s, _)| *w == 4096 && s == sampler)
            .ok_or_else(|| eyre!("no reference"))?;
        ensure!(scores.positions.len() == output.len());
        ensure!(scores.tokens_forwarded == prompt.len() + output.len() - 1);
        for (t, (a, b)) in scores
            .positions
            .iter()
            .zip(&reference.positions)
            .enumerate()
        {
            let diff = (a.margin - b.margin).abs();
            ensure!(
                diff < 1e-3 * (1.0 + b.margin),
                "window {window}: margin {} vs {} at {t}",
                a.margin,
                b.margin
            );
            ensure!(
                a.pick == b.pick || b.margin < 1e-3,
                "window {window}: pick {} vs {} at {t}",
                a.pick,
                b.pick
            );
        }
        // Random ids are no honest output: most positions disagree, by a lot.
        ensure!(scores.flips() * 2 > output.len() && scores.max_margin() > LARGE);
    }

    // Nothing to score; ids outside the vocabulary; no prompt; too long for the context.
    let scores = scorer.score(request(&prompt, &[]))?;
    ensure!(scores.positions.is_empty() && scores.tokens_forwarded == 0);
    for bad in [vocab, u32::MAX] {
        ensure!(matches!(
            scorer.score(request(&prompt, &[bad])),
            Err(EngineError::InvalidRequest(_))
        ));
        ensure!(matches!(
            scorer.score(request(&[1, bad], &[1])),
            Err(EngineError::InvalidRequest(_))
        ));
    }
    ensure!(matches!(
        scorer.score(request(&[], &[1, 2])),
        Err(EngineError::InvalidRequest(_))
    ));
    let long = vec![1_u32; scorer.context_length() + 2];
    ensure!(matches!(
        scorer.score(request(&long, &[1])),
        Err(EngineError::ContextExceeded { .. })
    ));

    // The path names parse and print.
    for path in [ScorePath::Engine, ScorePath::Dense] {
        ensure!(path.to_string().parse::<ScorePath>()? == path);
    }
    ensure!("gpu".parse::<ScorePath>().is_err());
    ensure!(ScorePath::default() == ScorePath::Dense);
    Ok(())
}

#[test]
fn dense_refuses_other_architectures_and_unverified_files() -> Result<()> {
    use candle_core::quantized::gguf_file::{self, Value};

    let dir = std::env::temp_dir().join(format!("infera-dense-arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // A well-formed GGUF of another architecture, registered under its own hash.
    let path: PathBuf = dir.join("llama.gguf");
    {
        let mut file = std::fs::File::create(&path)?;
        let arch = Value::String("llama".into());
        gguf_file::write(&mut file, &[("general.architecture", &arch)], &[])?;
    }
    let sha256 = infera_models::sha256_file(&path)?;
    let error = DenseScorer::load(&EngineConfig::new(path.clone(), sha256, None))
        .err()
        .ok_or_else(|| eyre!("a llama GGUF loaded"))?;
    ensure!(
        matches!(&error, EngineError::Load(m) if m.contains("qwen2") && m.contains("llama")),
        "{error}"
    );
    // The same file under the default model's hash: refused before it is read.
    let error = DenseScorer::load(&EngineConfig::new(path, DEFAULT_MODEL.sha256, None))
        .err()
        .ok_or_else(|| eyre!("an unverified file loaded"))?;
    ensure!(matches!(error, EngineError::Model(_)), "{error}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
