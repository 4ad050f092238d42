//! Side-by-side decode benchmark on this machine (run by `scripts/bench-executor`):
//! plain mistral.rs greedy decoding against the engine decoding with the verifiable sampler, on the
//! same model, prompt and token budget, interleaved round by round; plus the sampler's own cost per
//! token on logits of the model's vocabulary size. Prints `key=value` lines.

use std::time::{Duration, Instant};

use alloy::primitives::B256;
use eyre::{Result, eyre};
use infera_engine::{Engine, EngineConfig, Event, GenerateRequest, greedy_completion};
use infera_protocol::{Sampler, SamplingParams, models::DEFAULT_MODEL, prompt::Prompt};
use mistralrs::{Request, Response};

/// One measured generation.
#[derive(Debug, Clone, Copy)]
struct Run {
    tokens: usize,
    ttft: Duration,
    decode: Duration,
    /// Time in the verifiable sampler (zero for plain mistral.rs).
    sampling: Duration,
}

impl Run {
    fn tok_s(&self) -> f64 {
        (self.tokens.saturating_sub(1)) as f64 / self.decode.as_secs_f64()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Plain mistral.rs: the same prompt ids, greedy, no logits processor, streamed.
async fn raw(engine: &Engine, prompt_ids: &[u32], max_tokens: usize) -> Result<Run> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(max_tokens + 4);
    let request = greedy_completion(prompt_ids.to_vec(), max_tokens as u32, None, tx);
    let started = Instant::now();
    engine
        .mistral()
        .inner()
        .get_sender(None)?
        .send(Request::Normal(Box::new(request)))
        .await
        .map_err(|_| eyre!("engine stopped"))?;
    let (mut first, mut last, mut tokens) = (None, started, 0usize);
    while let Some(response) = rx.recv().await {
        match response {
            Response::CompletionChunk(chunk) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                tokens += 1;
                if chunk.choices.iter().any(|c| c.finish_reason.is_some()) {
                    break;
                }
            }
            Response::CompletionDone(_) => break,
            Response::InternalError(e) | Response::ValidationError(e) => return Err(eyre!("{e}")),
            _ => return Err(eyre!("unexpected response")),
        }
    }
    let first = first.ok_or_else(|| eyre!("no tokens"))?;
    Ok(Run {
        tokens,
        ttft: first - started,
        decode: last - first,
        sampling: Duration::ZERO,
    })
}

/// The engine with the verifiable sampler.
async fn ours(
    engine: &Engine,
    prompt_ids: &[u32],
    max_tokens: usize,
    sampler: Sampler,
) -> Result<Run> {
    let started = Instant::now();
    let mut generation = engine
        .generate(GenerateRequest {
            prompt_ids: prompt_ids.to_vec(),
            max_tokens: max_tokens as u32,
            sampler,
        })
        .await?;
    let (mut first, mut last, mut tokens) = (None, started, 0usize);
    let mut sampling = Duration::ZERO;
    while let Some(event) = generation.next().await {
        match event? {
            Event::Token { .. } => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                tokens += 1;
            }
            Event::Done(output) => {
                sampling = output.timings.sampling;
                break;
            }
        }
    }
    let first = first.ok_or_else(|| eyre!("no tokens"))?;
    Ok(Run {
        tokens,
        ttft: first - started,
        decode: last - first,
        sampling,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let max_tokens: usize = std::env::var("BENCH_MAX_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let path = infera_models::cached_path(&DEFAULT_MODEL)?;
    let engine = Engine::load(EngineConfig {
        max_running: 1,
        ..EngineConfig::new(path, DEFAULT_MODEL.sha256, Some(DEFAULT_MODEL.size))
    })
    .await?;
    let prompt_ids = engine
        .render(&Prompt::user(
            "Write a long, detailed Rust tutorial about iterators, with many code examples.",
        ))
        .await?;
    // Temperature 0 keeps raw and ours on the same tokens; T = 0.7, top-p 0.95 is the sampled case.
    let greedy = Sampler::new(SamplingParams::GREEDY, B256::ZERO);
    let sampled = Sampler::new(
        SamplingParams {
            temperature_ppm: 700_000,
            top_k: 0,
            top_p_ppm: 950_000,
        },
        B256::repeat_byte(0x5e),
    );
    // Warm-up (first-run allocations, page cache).
    raw(&engine, &prompt_ids, 8).await?;
    ours(&engine, &prompt_ids, 8, greedy).await?;

    // T = 1 without filters: every token is a candidate (the sampler's most expensive case).
    let full = Sampler::new(
        SamplingParams {
            temperature_ppm: 1_000_000,
            top_k: 0,
            top_p_ppm: 0,
        },
        B256::repeat_byte(0x5f),
    );
    let (mut raw_runs, mut greedy_runs, mut sampled_runs, mut full_runs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw_runs.push(raw(&engine, &prompt_ids, max_tokens).await?);
        greedy_runs.push(ours(&engine, &prompt_ids, max_tokens, greedy).await?);
        sampled_runs.push(ours(&engine, &prompt_ids, max_tokens, sampled).await?);
        full_runs.push(ours(&engine, &prompt_ids, max_tokens, full).await?);
    }
    let tok_s = |runs: &[Run]| median(runs.iter().map(Run::tok_s).collect());
    let ttft_ms = |runs: &[Run]| median(runs.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect());
    let tokens = |runs: &[Run]| median(runs.iter().map(|r| r.tokens as f64).collect());
    let (raw_tok_s, greedy_tok_s, sampled_tok_s) =
        (tok_s(&raw_runs), tok_s(&greedy_runs), tok_s(&sampled_runs));

    // The sampler's own time per token, measured inside the real generations.
    let sampler_us = |runs: &[Run]| {
        median(
            runs.iter()
                .map(|r| r.sampling.as_secs_f64() * 1e6 / r.tokens as f64)
                .collect(),
        )
    };
    let (greedy_us, sampled_us, full_us) = (
        sampler_us(&greedy_runs),
        sampler_us(&sampled_runs),
        sampler_us(&full_runs),
    );

    println!("prompt_tokens={}", prompt_ids.len());
    println!("max_tokens={max_tokens}");
    println!("rounds={rounds}");
    println!(
        "threads={}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("raw_tokens={}", tokens(&raw_runs));
    println!("engine_tokens={}", tokens(&sampled_runs));
    println!("raw_tok_s={raw_tok_s:.2}");
    println!("engine_greedy_tok_s={greedy_tok_s:.2}");
    println!("engine_tok_s={sampled_tok_s:.2}");
    println!("engine_over_raw={:.3}", sampled_tok_s / raw_tok_s);
    println!("engine_greedy_over_raw={:.3}", greedy_tok_s / raw_tok_s);
    println!("engine_full_vocab_tok_s={:.2}", tok_s(&full_runs));
    println!("raw_ttft_ms={:.1}", ttft_ms(&raw_runs));
    println!("engine_ttft_ms={:.1}", ttft_ms(&sampled_runs));
    println!("sampler_greedy_us_per_token={greedy_us:.1}");
    println!("sampler_top_p_us_per_token={sampled_us:.1}");
    println!("sampler_full_vocab_us_per_token={full_us:.1}");
    println!("vocab=151936");
    println!(
        "sampler_share_of_decode={:.4}",
        sampled_us / 1e6 * sampled_tok_s
    );
    Ok(())
}
