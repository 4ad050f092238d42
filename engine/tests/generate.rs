//! The engine with the real default model on CPU: verification before loading, reproducible
//! generation with the verifiable sampler, streaming, cancellation and the busy queue.
//!
//! Needs the model in the cache (`scripts/setup` fetches it).

use std::path::PathBuf;

use alloy::primitives::B256;
use eyre::{Result, ensure, eyre};
use infera_engine::{Engine, EngineConfig, EngineError, Event, GenerateRequest, ModelError};
use infera_protocol::{
    FinishReason, Sampler, SamplingParams, models::DEFAULT_MODEL, prompt::Prompt,
};

fn model_path() -> Result<PathBuf> {
    Ok(infera_models::require_cached(&DEFAULT_MODEL)?)
}

async fn load(max_running: usize, max_queued: usize) -> Result<Engine> {
    let config = EngineConfig {
        max_running,
        max_queued,
        ..EngineConfig::new(
            model_path()?,
            DEFAULT_MODEL.sha256,
            Some(DEFAULT_MODEL.size),
        )
    };
    Ok(Engine::load(config).await?)
}

fn sampled(temperature_ppm: u32, seed: u8) -> Sampler {
    Sampler::new(
        SamplingParams {
            temperature_ppm,
            top_k: 0,
            top_p_ppm: 950_000,
        },
        B256::repeat_byte(seed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_is_reproducible_streamed_and_cancellable() -> Result<()> {
    let engine = load(2, 0).await?;
    let prompt_ids = engine
        .render(&Prompt::user(
            "Tell a short story about a lighthouse keeper.",
        ))
        .await?;
    ensure!(prompt_ids.len() > 10, "{} prompt tokens", prompt_ids.len());

    // Greedy: the same tokens every time, each the most likely (log-probability the highest).
    let greedy = |max_tokens| GenerateRequest {
        prompt_ids: prompt_ids.clone(),
        max_tokens,
        sampler: Sampler::new(SamplingParams::GREEDY, B256::ZERO),
    };
    let first = engine.generate_all(greedy(24)).await?;
    let second = engine.generate_all(greedy(24)).await?;
    ensure!(
        first.output_ids == second.output_ids,
        "greedy is not reproducible"
    );
    ensure!(first.output_ids.len() == 24 && first.finish_reason == FinishReason::Length);
    ensure!(first.logprobs.iter().all(|&l| l <= 0.0 && l.is_finite()));
    ensure!(first.text == engine.detokenize(&first.output_ids).await?);
    ensure!(!first.text.trim().is_empty(), "empty text");

    // Sampled: the same seed gives the same tokens, another seed other tokens.
    let request = |seed| GenerateRequest {
        prompt_ids: prompt_ids.clone(),
        max_tokens: 24,
        sampler: sampled(1_000_000, seed),
    };
    let a = engine.generate_all(request(1)).await?;
    let b = engine.generate_all(request(1)).await?;
    ensure!(a.output_ids == b.output_ids, "same seed, different tokens");
    // A confident model can pick the same 24 tokens under two seeds; four seeds that all agree
    // with the first would mean the seed is not reaching the sampler.
    let mut differs = false;
    for seed in 2..=5 {
        if engine.generate_all(request(seed)).await?.output_ids != a.output_ids {
            differs = true;
            break;
        }
    }
    ensure!(differs, "five seeds, the same tokens");

    // Streaming yields the tokens of the output, in order, then Done; texts concatenate to it.
    let mut generation = engine.generate(request(1)).await?;
    let mut ids = Vec::new();
    let mut text = String::new();
    let output = loop {
        match generation
            .next()
            .await
            .ok_or_else(|| eyre!("stream ended"))??
        {
            Event::Token {
                index,
                id,
                text: piece,
                ..
            } => {
                ensure!(index as usize == ids.len());
                ids.push(id);
                text.push_str(&piece);
            }
            Event::Done(output) => break output,
        }
    };
    ensure!(ids == a.output_ids && output.output_ids == a.output_ids);
    ensure!(
        text == output.text,
        "streamed {text:?}, output {:?}",
        output.text
    );
    ensure!(generation.next().await.is_none());

    // Dropping a generation cancels it and frees its place: three more run on two places.
    let mut cancelled = engine.generate(greedy(200)).await?;
    ensure!(matches!(
        cancelled.next().await,
        Some(Ok(Event::Token { .. }))
    ));
    drop(cancelled);
    for _ in 0..3 {
        engine.generate_all(greedy(4)).await?;
    }
    ensure!(engine.in_flight() == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_and_stops_end_with_eos() -> Result<()> {
    let engine = load(1, 0).await?;
    let prompt_ids = engine.render(&Prompt::user("Say OK.")).await?;
    let request = GenerateRequest {
        prompt_ids,
        max_tokens: 64,
        sampler: Sampler::new(SamplingParams::GREEDY, B256::ZERO),
    };
    let running = engine.generate(request.clone()).await?;
    match engine.generate(request.clone()).await {
        Err(EngineError::Busy { capacity: 1 }) => {}
        other => return Err(eyre!("expected busy, got {other:?}")),
    }
    let output = running.finish().await?;
    // A short answer ends on the end-of-sequence token, which is part of the output.
    ensure!(output.finish_reason == FinishReason::Stop, "{output:?}");
    ensure!(output.output_ids.len() < 64);
    let eos = *output.output_ids.last().ok_or_else(|| eyre!("no output"))?;
    // The end-of-sequence token is a special token: it detokenises to nothing.
    ensure!(
        engine.detokenize(&[eos]).await?.is_empty(),
        "last token {eos} is not special"
    );
    // The place is free again.
    engine.generate_all(request).await?;

    // Requests that cannot fit are refused before they start.
    let too_long = GenerateRequest {
        max_tokens: u32::MAX / 2,
        ..engine_request(&engine).await?
    };
    ensure!(matches!(
        engine.generate(too_long).await,
        Err(EngineError::ContextExceeded { .. })
    ));
    Ok(())
}

/// A reserved place is the reserver's: plain requests are busy while it is held, the reserver
/// generates in it, and a reservation waiting for a place gets the next one that frees up ahead
/// of any plain request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_places_cannot_be_taken_by_other_requests() -> Result<()> {
    use std::{future::Future, task::Poll};

    let engine = load(2, 0).await?;
    let request = GenerateRequest {
        prompt_ids: engine.render(&Prompt::user("Say OK.")).await?,
        max_tokens: 16,
        sampler: Sampler::new(SamplingParams::GREEDY, B256::ZERO),
    };
    let reservation = engine.try_reserve()?;
    ensure!(engine.reserved() == 1 && engine.in_flight() == 1);
    let running = engine.generate(request.clone()).await?;
    // Full: one place running, one reserved.
    ensure!(matches!(
        engine.generate(request.clone()).await,
        Err(EngineError::Busy { capacity: 2 })
    ));
    ensure!(matches!(
        engine.try_reserve(),
        Err(EngineError::Busy { .. })
    ));
    // A reservation asked for now waits, first in line.
    let mut waiting = std::pin::pin!(engine.reserve());
    let polled = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
    ensure!(polled.is_pending(), "no place was free");
    // The reserved place generates.
    let reserved = engine
        .generate_all_reserved(request.clone(), reservation)
        .await?;
    ensure!(!reserved.output_ids.is_empty());
    ensure!(engine.reserved() == 0);
    running.finish().await?;
    // Both places freed: the waiting reservation took one, a plain request takes the other and
    // no more.
    let next = waiting.await?;
    ensure!(engine.reserved() == 1 && engine.in_flight() == 1);
    let plain = engine.generate(request.clone()).await?;
    ensure!(matches!(
        engine.generate(request.clone()).await,
        Err(EngineError::Busy { .. })
    ));
    drop(plain);
    drop(next);
    ensure!(engine.reserved() == 0);
    // The engine answers its probe.
    engine.probe().await?;
    Ok(())
}

async fn engine_request(engine: &Engine) -> Result<GenerateRequest> {
    Ok(GenerateRequest {
        prompt_ids: engine.render(&Prompt::user("Hi")).await?,
        max_tokens: 1,
        sampler: Sampler::new(SamplingParams::GREEDY, B256::ZERO),
    })
}

#[tokio::test]
async fn a_corrupt_or_missing_model_is_refused_before_loading() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("infera-engine-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // A truncated copy: the first 4 MB of the real file.
    let truncated = dir.join(DEFAULT_MODEL.file_name);
    let bytes = std::fs::read(model_path()?)?;
    std::fs::write(&truncated, &bytes[..4 << 20])?;
    let error = Engine::load(EngineConfig::new(
        truncated.clone(),
        DEFAULT_MODEL.sha256,
        Some(DEFAULT_MODEL.size),
    ))
    .await
    .err()
    .ok_or_else(|| eyre!("a truncated model loaded"))?;
    ensure!(matches!(
        error,
        EngineError::Model(ModelError::WrongSize { .. })
    ));
    ensure!(
        error.to_string().contains("partial or wrong file"),
        "{error}"
    );

    // Same size, one flipped byte: only the hash can tell.
    let mut flipped = bytes;
    flipped[1 << 20] ^= 0xff;
    std::fs::write(&truncated, &flipped)?;
    let error = Engine::load(EngineConfig::new(
        truncated.clone(),
        DEFAULT_MODEL.sha256,
        Some(DEFAULT_MODEL.size),
    ))
    .await
    .err()
    .ok_or_else(|| eyre!("a corrupt model loaded"))?;
    ensure!(
        error.to_string().contains("corrupt or wrong file"),
        "{error}"
    );

    // A path that does not exist is an error naming it, never a hub download.
    let missing = dir.join("no-such-model.gguf");
    let error = Engine::load(EngineConfig::new(
        missing.clone(),
        DEFAULT_MODEL.sha256,
        None,
    ))
    .await
    .err()
    .ok_or_else(|| eyre!("a missing model loaded"))?;
    ensure!(matches!(error, EngineError::Model(ModelError::Missing(_))));
    ensure!(error.to_string().contains("no-such-model.gguf"), "{error}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
