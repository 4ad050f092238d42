//! Version 1 of the verifiable sampler, as `protocol/src/sampler.rs` had it before the portable
//! rewrite (commit 1434b73): `wide`'s `exp`/`ln` on the full-vocabulary path, std `ln` on the
//! top-k/top-p path. Kept only as the baseline `sampler_cost` measures the new sampler against.
#![allow(dead_code, clippy::all, clippy::pedantic, clippy::unwrap_used)]

use alloy_primitives::{B256, U256, b256, keccak256};
use alloy_sol_types::SolValue;
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};
use wide::{CmpGt, f32x8};

use infera_protocol::commitment::{PPM, SamplingParams};

/// Version of the sampler this module implements, as registered for models and committed to.
pub const SAMPLER_VERSION: u32 = 1;

/// Domain tag of the noise derivation: `keccak256("infera.sampler.v1")`.
pub const SAMPLER_TAG: B256 =
    b256!("0x1cf6309eced40c871c203039cf1bbf3ab431a41aed80e3bbd4a8fe9fa617ed2e");

/// Errors of the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SamplerError {
    /// No logit was finite: there is nothing to choose from.
    #[error("no finite logit among {0}")]
    NoCandidate(usize),
}

/// One sampled token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    /// The chosen token id.
    pub token: u32,
    /// Its natural log-probability under the model's distribution (raw logits, temperature 1).
    pub logprob: f32,
}

/// The verifiable sampler of one job (or gateway request): its parameters and seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    params: SamplingParams,
    seed: B256,
}

impl Sampler {
    /// A sampler for `params` and `seed`.
    pub const fn new(params: SamplingParams, seed: B256) -> Self {
        Self { params, seed }
    }

    /// The sampling parameters.
    pub const fn params(&self) -> SamplingParams {
        self.params
    }

    /// The seed.
    pub const fn seed(&self) -> B256 {
        self.seed
    }

    /// Chooses the token at output `position` from `logits`.
    ///
    /// # Errors
    /// [`SamplerError::NoCandidate`] when no logit is finite.
    pub fn sample(&self, position: u32, logits: &[f32]) -> Result<Sampled, SamplerError> {
        let stats = Stats::of(logits)?;
        let (token, sum) = if self.params.is_greedy() {
            (stats.argmax, None)
        } else {
            let choice = self.choose(position, logits, &stats, None);
            (choice.best, choice.untempered_sum)
        };
        let sum = sum.unwrap_or_else(|| exp_scaled(logits, 1.0, stats.max, None));
        let logprob = logits[token as usize] - stats.max - sum.ln() as f32;
        Ok(Sampled { token, logprob })
    }

    /// How far `claimed` is from being this sampler's choice at `position` given `logits`: the log
    /// of the winning score over the claimed token's (in units of `z = logit / T`; for greedy, the
    /// logit difference). Zero when `claimed` is the choice, infinite when it is not a candidate.
    /// Validators compare it with the model's thresholds: benign float differences only flip
    /// near-ties.
    pub fn margin(&self, position: u32, logits: &[f32], claimed: u32) -> f64 {
        let Ok(stats) = Stats::of(logits) else {
            return f64::INFINITY;
        };
        let Some(&claimed_logit) = logits.get(claimed as usize).filter(|l| l.is_finite()) else {
            return f64::INFINITY;
        };
        if self.params.is_greedy() {
            return f64::from(stats.max) - f64::from(claimed_logit);
        }
        let choice = self.choose(position, logits, &stats, Some(claimed));
        match choice.claimed_score {
            Some(score) if score > 0.0 => f64::from(choice.best_score).ln() - f64::from(score).ln(),
            _ => f64::INFINITY,
        }
    }

    /// Steps 2 and 3: the winning candidate, its score and (when asked) the score of `claimed`
    /// (`None` when it is not a candidate).
    fn choose(&self, position: u32, logits: &[f32], stats: &Stats, claimed: Option<u32>) -> Choice {
        let inv_t = PPM as f32 / self.params.temperature_ppm as f32;
        let finite = logits.len() - stats.non_finite;
        let top_k = (self.params.top_k as usize).min(finite);
        let top_p = self.params.top_p_ppm;
        let top_p = (top_p > 0 && top_p < PPM).then(|| f64::from(top_p) / f64::from(PPM));
        let key = noise_key(self.seed, position);
        if top_p.is_none() && (top_k == 0 || top_k == finite) {
            // Every finite token is a candidate: one fused pass over the vocabulary.
            let mut choice = full_vocabulary(logits, inv_t, stats.max * inv_t, key, claimed);
            if self.params.temperature_ppm != PPM {
                choice.untempered_sum = None;
            }
            return choice;
        }
        let mut weights = vec![0.0_f32; logits.len()];
        let total = exp_scaled(logits, inv_t, stats.max * inv_t, Some(&mut weights));
        let candidates = match (top_k, top_p) {
            (0, Some(p)) => nucleus(&weights, logits, total, p),
            (k, p) => {
                let mut head = top_weights(&weights, logits, k);
                if let Some(p) = p {
                    let total = head.iter().map(|&(_, w)| f64::from(w)).sum();
                    head.truncate(prefix_reaching(&head, total, p).unwrap_or(head.len()));
                }
                head
            }
        };
        let mut rng = ChaCha8Rng::from_seed(key.0);
        let mut choice = Choice {
            best: u32::MAX,
            best_score: 0.0,
            claimed_score: None,
            untempered_sum: None,
        };
        for (id, w) in candidates {
            rng.set_word_pos(u128::from(id));
            let score = w / exponential(rng.next_u32());
            if score > choice.best_score || (score == choice.best_score && id < choice.best) {
                (choice.best, choice.best_score) = (id, score);
            }
            if claimed == Some(id) {
                choice.claimed_score = Some(score);
            }
        }
        choice
    }
}

/// The outcome of steps 2 and 3.
#[derive(Debug, Clone, Copy)]
struct Choice {
    best: u32,
    best_score: f32,
    claimed_score: Option<f32>,
    /// `Σ exp(l - max)` when the pass computed it at temperature 1 (saves the log-softmax pass).
    untempered_sum: Option<f64>,
}

/// Lane ids 0..8, to track where per-lane maxima are.
const LANES: [f32; 8] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];

/// Per-lane running maxima and the lowest id reaching each (ids are exact in `f32` below 2^24).
struct ArgMax8 {
    best: f32x8,
    id: f32x8,
}

impl ArgMax8 {
    fn new(floor: f32) -> Self {
        Self {
            best: f32x8::splat(floor),
            id: f32x8::splat(f32::MAX),
        }
    }

    /// Offers the 8 values of the tokens `base..base + 8`; strictly greater replaces, so each lane
    /// keeps its lowest id among equals.
    fn offer(&mut self, values: f32x8, base: usize) {
        let better = values.cmp_gt(self.best);
        self.best = better.blend(values, self.best);
        self.id = better.blend(f32x8::from(LANES) + f32x8::splat(base as f32), self.id);
    }

    /// The overall maximum and its lowest id, `None` when nothing beat the floor.
    fn finish(&self) -> Option<(u32, f32)> {
        let (best, id) = (self.best.to_array(), self.id.to_array());
        let mut winner: Option<(u32, f32)> = None;
        for lane in 0..8 {
            if id[lane] == f32::MAX {
                continue;
            }
            let candidate = (id[lane] as u32, best[lane]);
            winner = match winner {
                Some(w) if w.1 > candidate.1 || (w.1 == candidate.1 && w.0 < candidate.0) => {
                    Some(w)
                }
                _ => Some(candidate),
            };
        }
        winner
    }
}

/// Steps 2–3 when every finite token is a candidate, fused into one pass: weights, noise, ratios
/// and the running maximum, eight tokens at a time.
fn full_vocabulary(
    logits: &[f32],
    inv_t: f32,
    offset: f32,
    key: B256,
    claimed: Option<u32>,
) -> Choice {
    let (scale8, offset8) = (f32x8::splat(inv_t), f32x8::splat(offset));
    let mut rng = ChaCha8Rng::from_seed(key.0);
    let mut argmax = ArgMax8::new(0.0);
    let mut claimed_score = None;
    let (body, tail) = logits.as_chunks::<8>();
    let mut last = [f32::NEG_INFINITY; 8];
    last[..tail.len()].copy_from_slice(tail);
    let chunks = body.iter().chain((!tail.is_empty()).then_some(&last));
    let mut sum = 0.0_f64;
    let mut acc = f32x8::splat(0.0);
    for (n, chunk) in chunks.enumerate() {
        // exp of a non-finite input is 0 in `wide`, and so is anything below e^-87.
        let weights = (f32x8::from(*chunk) * scale8 - offset8).exp();
        acc += weights;
        if n % 256 == 255 {
            sum += f64::from(acc.reduce_add());
            acc = f32x8::splat(0.0);
        }
        // Words past the vocabulary are drawn but belong to no token.
        let u: [f32; 8] = std::array::from_fn(|_| uniform(rng.next_u32()));
        let ratios = weights / -f32x8::from(u).ln();
        let base = n * 8;
        argmax.offer(ratios, base);
        if let Some(id) = claimed
            .map(|id| id as usize)
            .filter(|id| (base..base + 8).contains(id))
        {
            claimed_score = Some(ratios.to_array()[id - base]);
        }
    }
    sum += f64::from(acc.reduce_add());
    let (best, best_score) = argmax.finish().unwrap_or((u32::MAX, 0.0));
    Choice {
        best,
        best_score,
        claimed_score,
        untempered_sum: Some(sum),
    }
}

/// What one pass over the logits tells: the maximum and its lowest id, how many are not finite.
#[derive(Debug, Clone, Copy)]
struct Stats {
    max: f32,
    argmax: u32,
    non_finite: usize,
}

impl Stats {
    fn of(logits: &[f32]) -> Result<Self, SamplerError> {
        let neg_inf = f32x8::splat(f32::NEG_INFINITY);
        let mut argmax = ArgMax8::new(f32::NEG_INFINITY);
        let (body, tail) = logits.as_chunks::<8>();
        let mut last = [f32::NAN; 8];
        last[..tail.len()].copy_from_slice(tail);
        let chunks = body.iter().chain((!tail.is_empty()).then_some(&last));
        let mut finite_count = 0;
        for (n, chunk) in chunks.enumerate() {
            let v = f32x8::from(*chunk);
            let finite = v.is_finite();
            finite_count += (finite.move_mask() as u32).count_ones() as usize;
            argmax.offer(finite.blend(v, neg_inf), n * 8);
        }
        let (argmax, max) = argmax
            .finish()
            .ok_or(SamplerError::NoCandidate(logits.len()))?;
        Ok(Self {
            max,
            argmax,
            non_finite: logits.len() - finite_count,
        })
    }
}

/// `exp(l_i * scale - offset)` for every logit (zero for non-finite ones), written to `out` when
/// given; returns their sum. Eight lanes at a time, summed in `f64` every 256 vectors.
fn exp_scaled(logits: &[f32], scale: f32, offset: f32, mut out: Option<&mut [f32]>) -> f64 {
    let (scale8, offset8) = (f32x8::splat(scale), f32x8::splat(offset));
    // exp of a non-finite input is 0 in `wide`, and so is anything below e^-87.
    let exp8 = |chunk: [f32; 8]| (f32x8::from(chunk) * scale8 - offset8).exp();
    let (body, tail) = logits.as_chunks::<8>();
    let mut sum = 0.0_f64;
    let mut acc = f32x8::splat(0.0);
    for (n, chunk) in body.iter().enumerate() {
        let values = exp8(*chunk);
        acc += values;
        if n % 256 == 255 {
            sum += f64::from(acc.reduce_add());
            acc = f32x8::splat(0.0);
        }
        if let Some(out) = out.as_deref_mut() {
            out[n * 8..n * 8 + 8].copy_from_slice(&values.to_array());
        }
    }
    sum += f64::from(acc.reduce_add());
    if !tail.is_empty() {
        let mut lanes = [f32::NEG_INFINITY; 8];
        lanes[..tail.len()].copy_from_slice(tail);
        let values = exp8(lanes).to_array();
        sum += f64::from(values.iter().sum::<f32>());
        if let Some(out) = out {
            let start = body.len() * 8;
            out[start..].copy_from_slice(&values[..tail.len()]);
        }
    }
    sum
}

/// Standard exponential noise `-ln(u)` from a 32-bit word, `u` in the open interval (0, 1):
/// 23 bits keep `u` exact in an `f32` at both ends (`2^-24 ≤ u ≤ 1 - 2^-24`).
fn exponential(word: u32) -> f32 {
    -uniform(word).ln()
}

fn uniform(word: u32) -> f32 {
    ((word >> 9) as f32 + 0.5) * (1.0 / (1u32 << 23) as f32)
}

/// The `k` first finite tokens in the order (w desc, id asc), in that order: one pass with a
/// bounded min-heap (k is small next to the vocabulary).
fn top_weights(weights: &[f32], logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    use std::{cmp::Reverse, collections::BinaryHeap};
    /// Orders by weight, then by *lower* id: the heap's minimum is the entry to evict first.
    #[derive(PartialEq)]
    struct Entry(f32, Reverse<u32>);
    impl Eq for Entry {}
    impl PartialOrd for Entry {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Entry {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
        }
    }
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::with_capacity(k + 1);
    for (i, (&w, l)) in weights.iter().zip(logits).enumerate() {
        if !l.is_finite() {
            continue;
        }
        let entry = Entry(w, Reverse(i as u32));
        if heap.len() < k {
            heap.push(Reverse(entry));
        } else if heap.peek().is_some_and(|Reverse(min)| entry > *min) {
            heap.pop();
            heap.push(Reverse(entry));
        }
    }
    let mut head: Vec<(u32, f32)> = heap
        .into_iter()
        .map(|Reverse(Entry(w, Reverse(id)))| (id, w))
        .collect();
    head.sort_unstable_by(by_weight_desc);
    head
}

/// The finite tokens whose weight passes `keep`, in id order.
fn candidates_from(weights: &[f32], logits: &[f32], keep: impl Fn(f32) -> bool) -> Vec<(u32, f32)> {
    weights
        .iter()
        .zip(logits)
        .enumerate()
        .filter(|&(_, (&w, l))| l.is_finite() && keep(w))
        .map(|(i, (&w, _))| (i as u32, w))
        .collect()
}

/// The length of the shortest prefix of `sorted` whose mass over `total` reaches `top_p`.
fn prefix_reaching(sorted: &[(u32, f32)], total: f64, top_p: f64) -> Option<usize> {
    let mut mass = 0.0;
    sorted
        .iter()
        .position(|&(_, w)| {
            mass += f64::from(w) / total;
            mass >= top_p
        })
        .map(|n| n + 1)
}

/// Order of candidates: higher weight first, then lower id.
fn by_weight_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The nucleus of the finite tokens: the shortest prefix, in the order (w desc, id asc), whose
/// mass over `total` reaches `top_p`.
///
/// Sorting the whole vocabulary would cost more than the rest of a decode step's sampling, and
/// nucleus sets are small, so this sorts only the tokens whose weight is at least `2^-s` (the top
/// weight is 1), with `s` widening until the sorted part holds the nucleus. The set `{w ≥ τ}` is a
/// prefix of the full order, so the result is exactly the full sort's prefix.
fn nucleus(weights: &[f32], logits: &[f32], total: f64, top_p: f64) -> Vec<(u32, f32)> {
    let finite = logits.iter().filter(|l| l.is_finite()).count();
    let mut shift = 4;
    loop {
        let floor = if shift >= 128 {
            0.0
        } else {
            (-(shift as f32)).exp2()
        };
        let mut head = candidates_from(weights, logits, |w| w >= floor);
        head.sort_unstable_by(by_weight_desc);
        if let Some(len) = prefix_reaching(&head, total, top_p) {
            head.truncate(len);
            return head;
        }
        if head.len() == finite {
            // Rounding kept the cumulative mass just below `top_p`: the nucleus is everything.
            return head;
        }
        shift *= 2;
    }
}

/// The ChaCha8 key of the noise at `position`.
fn noise_key(seed: B256, position: u32) -> B256 {
    keccak256((SAMPLER_TAG, seed, U256::from(position)).abi_encode())
}

/// The noise word of token `id` at `position`, for test vectors and other implementations.
fn noise_word(seed: B256, position: u32, id: u32) -> u32 {
    let mut rng = ChaCha8Rng::from_seed(noise_key(seed, position).0);
    rng.set_word_pos(u128::from(id));
    rng.next_u32()
}
