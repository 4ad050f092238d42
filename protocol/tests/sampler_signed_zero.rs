//! Found by the audit of sampler v2 (issue 9), against its own specification (step 5:
//! "Finite tokens in the candidate order: `x` descending, then id ascending"). `x` is compared as
//! IEEE numbers there, where `-0.0 == +0.0`; the code orders candidates with `f32::total_cmp`,
//! which puts `+0.0` before `-0.0`. `x_i = f32((l_i - M) * s)` is `-0.0` exactly when
//! `l_i = -0.0` and `M = +0.0` (the lowest id holding the maximum is a `+0.0`), so a second
//! implementation written from the specification (or the unit tests' own `reference`, which sorts
//! with `partial_cmp`) would cut a different top-p prefix and choose other tokens. Step 3 now adds
//! `+ 0.0`, so `x` is never `-0.0`.

use alloy_primitives::B256;
use infera_protocol::{Sampler, SamplingParams};

#[test]
fn candidate_order_treats_signed_zeros_as_the_spec_says() {
    // M = +0.0 (id 0). x = [+0, -0, +0]: equal, so the candidate order is 0, 1, 2 (ids).
    // Weights are all 1, total 3, top-p 0.5: target 1.5, the nucleus is the first two: {0, 1}.
    let logits = [0.0_f32, -0.0, 0.0];
    let params = SamplingParams {
        temperature_ppm: 1_000_000,
        top_k: 0,
        top_p_ppm: 500_000,
    };
    let mut chosen = [0usize; 3];
    for s in 0..64u8 {
        let sampler = Sampler::new(params, B256::repeat_byte(s));
        let token = sampler.sample(0, &logits).expect("finite logits").token;
        chosen[token as usize] += 1;
    }
    eprintln!("tokens chosen over 64 seeds: {chosen:?}");
    assert_eq!(
        chosen[2], 0,
        "token 2 is outside the specified nucleus {{0, 1}} yet was chosen {} times; token 1 (inside) {} times",
        chosen[2], chosen[1]
    );
}
