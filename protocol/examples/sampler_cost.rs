//! The verifiable sampler alone on logits of the default model's vocabulary size (151,936),
//! shaped like a language model's (a peaked head over a long tail), next to version 1 of the
//! sampler (`baseline/sampler_v1.rs`, the implementation before the portable rewrite). Prints
//! `key=value` lines: microseconds per call for greedy, top-p, top-k and full-vocabulary sampling,
//! for both versions, measured interleaved (the better of `ROUNDS` rounds of `CALLS` calls each),
//! and the new cost as a share of a 60 ms decode step of the default model on this CPU.

#[path = "baseline/sampler_v1.rs"]
mod sampler_v1;

use std::time::Instant;

use alloy_primitives::B256;
use infera_protocol::{Sampler, SamplingParams};

/// A decode step of the default model on the reference CPU (README), in microseconds.
const DECODE_STEP_US: f64 = 60_000.0;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// Microseconds per call of `sample` over `calls` positions.
fn time(calls: u32, mut sample: impl FnMut(u32)) -> f64 {
    let started = Instant::now();
    for t in 0..calls {
        sample(t);
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
}

fn main() {
    let vocab = 151_936;
    // Deterministic pseudo-logits: a tail around 0 and a few dozen tokens far above it.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let logits: Vec<f32> = (0..vocab)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let tail = (state >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0;
            if i % 5_000 == 11 { 18.0 + tail } else { tail }
        })
        .collect();
    let sampling = |temperature_ppm, top_k, top_p_ppm| SamplingParams {
        temperature_ppm,
        top_k,
        top_p_ppm,
    };
    let cases = [
        ("greedy", SamplingParams::GREEDY),
        ("top_p", sampling(700_000, 0, 950_000)),
        ("top_k", sampling(700_000, 40, 0)),
        ("full_vocab", sampling(1_000_000, 0, 0)),
        ("full_vocab_t07", sampling(700_000, 0, 0)),
    ];

    let calls = env("CALLS", 100);
    let rounds = env("ROUNDS", 5);
    let seed = B256::repeat_byte(7);
    for (name, params) in cases {
        let new = Sampler::new(params, seed);
        let old = sampler_v1::Sampler::new(params, seed);
        let (mut new_us, mut old_us) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..rounds {
            old_us = old_us.min(time(calls, |t| {
                std::hint::black_box(old.sample(t, std::hint::black_box(&logits)).ok());
            }));
            new_us = new_us.min(time(calls, |t| {
                std::hint::black_box(new.sample(t, std::hint::black_box(&logits)).ok());
            }));
        }
        println!("sampler_{name}_us_per_token={new_us:.1}");
        println!("sampler_v1_{name}_us_per_token={old_us:.1}");
        println!("sampler_{name}_over_v1={:.2}", new_us / old_us);
        println!(
            "sampler_{name}_share_of_decode_step={:.4}",
            new_us / DECODE_STEP_US
        );
    }
}
