//! The verifiable sampler alone on logits of the default model's vocabulary size (151,936),
//! shaped like a language model's (a peaked head over a long tail). Prints `key=value` lines:
//! microseconds per call for greedy, top-p and full-vocabulary sampling.

use std::time::Instant;

use alloy::primitives::B256;
use infera_protocol::{Sampler, SamplingParams};

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
    let cases = [
        ("greedy", SamplingParams::GREEDY),
        (
            "top_p",
            SamplingParams {
                temperature_ppm: 700_000,
                top_k: 0,
                top_p_ppm: 950_000,
            },
        ),
        (
            "top_k",
            SamplingParams {
                temperature_ppm: 700_000,
                top_k: 40,
                top_p_ppm: 0,
            },
        ),
        (
            "full_vocab",
            SamplingParams {
                temperature_ppm: 1_000_000,
                top_k: 0,
                top_p_ppm: 0,
            },
        ),
    ];

    let calls: u32 = std::env::var("CALLS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    for (name, params) in cases {
        let sampler = Sampler::new(params, B256::repeat_byte(7));
        let started = Instant::now();
        for t in 0..calls {
            std::hint::black_box(sampler.sample(t, std::hint::black_box(&logits)).ok());
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / f64::from(calls);
        println!("sampler_{name}_us_per_token={us:.1}");
    }
}
#[allow(dead_code)]
fn calibrate(logits: &[f32]) {
    let started = Instant::now();
    let mut total = 0.0f32;
    for _ in 0..200 {
        total += std::hint::black_box(logits)
            .iter()
            .map(|x| x.exp())
            .sum::<f32>();
    }
    println!(
        "calib_scalar_exp_us={:.1} {total}",
        started.elapsed().as_secs_f64() * 1e6 / 200.0
    );
    let started = Instant::now();
    for _ in 0..200 {
        total += std::hint::black_box(logits).iter().sum::<f32>();
    }
    println!(
        "calib_sum_us={:.1} {total}",
        started.elapsed().as_secs_f64() * 1e6 / 200.0
    );
}
