//! The verifiable sampler (DESIGN.md §4), version [`SAMPLER_VERSION`].
//!
//! Executors generate with it and validators recompute it from their own logits: the randomness is
//! a pure function of the job's seed, the output position and the token id, so neither side chooses
//! it, and a claimed token can be checked position by position without regenerating.
//!
//! At output position `t`, with logits `l` and parameters `(T, k, p)`:
//!
//! 1. `T = 0`: the token is `argmax_i l_i`, the lowest id on ties. Nothing else applies.
//! 2. Otherwise `w_i = exp(l_i / T - max_j l_j / T)` (`f32`): the tempered probabilities up to
//!    their common normaliser. Candidates are ordered by `w` descending, then id ascending; `k > 0`
//!    keeps the first `k`; `0 < p < 1` then keeps the shortest prefix whose mass, renormalised over
//!    the candidates left, reaches `p` (at least one token).
//! 3. The token is `argmax_{i ∈ C} w_i / E_i`, the lowest id on ties, where `E_i = -ln(u_i)` is
//!    standard exponential noise, `u_i = ((x_i >> 9) + 0.5) / 2^23` and `x_i` is the `i`-th 32-bit
//!    word of the ChaCha8 stream keyed by `keccak256(abi.encode(SAMPLER_TAG, seed, uint256(t)))`
//!    (stream 0, little-endian words, as `rand_chacha` 0.9 `ChaCha8Rng::from_seed` produces it).
//!    This is the Gumbel-max trick (`argmax z_i + G_i` with `G_i = -ln E_i`) in the ratio form,
//!    which needs one logarithm per candidate. `protocol/tests/sampler_vectors.rs` pins it.
//!
//! Non-finite logits (NaN, ±∞) are never candidates. The reported log-probability of the chosen
//! token is its natural log-softmax under the model's own distribution (the raw logits, `T = 1`),
//! whatever the sampling parameters.
//!
//! Speed: a decode step of the default model reads 151,936 logits, so the passes over the whole
//! vocabulary (exponentials, logarithms, the noise) run eight lanes wide (`wide`), and top-p sorts
//! only the head of the distribution. `scripts/bench-executor` prints the cost per token.

use alloy::primitives::{B256, U256, b256, keccak256};
use alloy::sol_types::SolValue;
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};
use wide::{CmpGt, f32x8};

use crate::commitment::{PPM, SamplingParams};

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
pub fn noise_word(seed: B256, position: u32, id: u32) -> u32 {
    let mut rng = ChaCha8Rng::from_seed(noise_key(seed, position).0);
    rng.set_word_pos(u128::from(id));
    rng.next_u32()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: B256 = B256::repeat_byte(0x5e);

    fn params(temperature_ppm: u32, top_k: u32, top_p_ppm: u32) -> SamplingParams {
        SamplingParams {
            temperature_ppm,
            top_k,
            top_p_ppm,
        }
    }

    /// Logits shaped like a language model's: a few likely tokens over a long tail.
    fn lm_logits(vocab: usize, salt: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(salt);
        (0..vocab)
            .map(|i| {
                let noise = (rng.next_u32() as f32 / u32::MAX as f32) * 4.0;
                if i % 97 == 3 {
                    12.0 + noise
                } else {
                    noise - 2.0
                }
            })
            .collect()
    }

    /// The candidate set of step 2 computed the slow, obvious way: full sort, then prefixes.
    fn reference_candidates(logits: &[f32], p: SamplingParams) -> Vec<u32> {
        let stats = Stats::of(logits).unwrap();
        let inv_t = PPM as f32 / p.temperature_ppm as f32;
        let mut weights = vec![0.0; logits.len()];
        exp_scaled(logits, inv_t, stats.max * inv_t, Some(&mut weights));
        let mut all: Vec<(u32, f32)> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .map(|i| (i as u32, weights[i]))
            .collect();
        all.sort_by(by_weight_desc);
        if p.top_k > 0 {
            all.truncate(p.top_k as usize);
        }
        if p.top_p_ppm > 0 && p.top_p_ppm < PPM {
            let total: f64 = all.iter().map(|&(_, w)| f64::from(w)).sum();
            let mut mass = 0.0;
            let target = f64::from(p.top_p_ppm) / f64::from(PPM);
            let end = all
                .iter()
                .position(|&(_, w)| {
                    mass += f64::from(w) / total;
                    mass >= target
                })
                .map_or(all.len(), |n| n + 1);
            all.truncate(end);
        }
        let mut ids: Vec<u32> = all.into_iter().map(|(id, _)| id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn tag_is_keccak_of_name() {
        assert_eq!(SAMPLER_TAG, keccak256("infera.sampler.v1"));
    }

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let sampler = Sampler::new(SamplingParams::GREEDY, SEED);
        let sampled = sampler.sample(0, &[1.0, 3.0, 2.0, 3.0]).unwrap();
        assert_eq!(sampled.token, 1);
        assert_eq!(sampler.sample(7, &[f32::NAN, 0.5, 0.5]).unwrap().token, 1);
    }

    #[test]
    fn no_finite_logit_is_an_error() {
        for params in [SamplingParams::GREEDY, params(700_000, 0, 0)] {
            let sampler = Sampler::new(params, SEED);
            assert_eq!(
                sampler.sample(0, &[f32::NAN, f32::NEG_INFINITY]),
                Err(SamplerError::NoCandidate(2))
            );
            assert_eq!(sampler.sample(0, &[]), Err(SamplerError::NoCandidate(0)));
        }
    }

    #[test]
    fn non_finite_logits_are_never_chosen() {
        let mut logits = lm_logits(1000, 9);
        for i in (0..1000).step_by(3) {
            logits[i] = if i % 2 == 0 { f32::NAN } else { f32::INFINITY };
        }
        for p in [params(1_000_000, 0, 0), params(2_000_000, 50, 990_000)] {
            let sampler = Sampler::new(p, SEED);
            for t in 0..300 {
                let token = sampler.sample(t, &logits).unwrap().token as usize;
                assert!(logits[token].is_finite(), "chose a non-finite logit");
            }
        }
    }

    #[test]
    fn logprob_is_natural_log_softmax() {
        let logits = [0.0_f32, (2.0_f32).ln(), (5.0_f32).ln()]; // probabilities 1/8, 2/8, 5/8
        for p in [SamplingParams::GREEDY, params(1_000_000, 0, 0)] {
            let sampled = Sampler::new(p, SEED).sample(3, &logits).unwrap();
            let expected = [1.0_f32 / 8.0, 2.0 / 8.0, 5.0 / 8.0][sampled.token as usize].ln();
            assert!((sampled.logprob - expected).abs() < 1e-5, "{sampled:?}");
        }
    }

    #[test]
    fn same_seed_and_position_give_the_same_token_and_others_differ() {
        let logits = lm_logits(4096, 1);
        let p = params(1_000_000, 0, 0);
        let draw = |seed| -> Vec<u32> {
            (0..64)
                .map(|t| Sampler::new(p, seed).sample(t, &logits).unwrap().token)
                .collect()
        };
        let a = draw(SEED);
        assert_eq!(a, draw(SEED));
        assert_ne!(a, draw(B256::repeat_byte(1)));
        // Positions draw fresh noise: the 64 draws are not all the same token.
        assert!(a.iter().any(|&t| t != a[0]));
    }

    #[test]
    fn frequencies_follow_the_tempered_distribution() {
        // Three tokens with probabilities 0.5, 0.3, 0.2 at T = 1; 20k positions.
        let logits = [0.5_f32.ln(), 0.3_f32.ln(), 0.2_f32.ln()];
        let sampler = Sampler::new(params(1_000_000, 0, 0), SEED);
        let mut counts = [0u32; 3];
        let n = 20_000;
        for t in 0..n {
            counts[sampler.sample(t, &logits).unwrap().token as usize] += 1;
        }
        for (count, p) in counts.iter().zip([0.5, 0.3, 0.2]) {
            let freq = f64::from(*count) / f64::from(n);
            // 5 standard deviations of a binomial share at n = 20k is < 0.018.
            assert!((freq - p).abs() < 0.018, "{counts:?}");
        }
        // At T = 0.5 the distribution sharpens to 25:9:4.
        let sharp = Sampler::new(params(500_000, 0, 0), SEED);
        let top = (0..n)
            .filter(|&t| sharp.sample(t, &logits).unwrap().token == 0)
            .count();
        let freq = top as f64 / f64::from(n);
        assert!((freq - 25.0 / 38.0).abs() < 0.02, "{freq}");
        // Top-p 0.6 keeps tokens 0 and 1 (0.5 < 0.6 ≤ 0.8), renormalised to 5:3.
        let nucleus = Sampler::new(params(1_000_000, 0, 600_000), SEED);
        let mut counts = [0u32; 3];
        for t in 0..n {
            counts[nucleus.sample(t, &logits).unwrap().token as usize] += 1;
        }
        assert_eq!(counts[2], 0);
        let freq = f64::from(counts[0]) / f64::from(n);
        assert!((freq - 5.0 / 8.0).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn candidates_equal_the_full_sort_prefix() {
        let cases = [
            (3, params(700_000, 0, 500_000)),
            (4, params(700_000, 0, 900_000)),
            (5, params(1_300_000, 0, 990_000)),
            (6, params(700_000, 0, 999_999)),
            (7, params(700_000, 0, 1)),
            (8, params(700_000, 40, 0)),
            (9, params(700_000, 40, 950_000)),
            (10, params(700_000, 1, 0)),
        ];
        for (salt, p) in cases {
            let logits = lm_logits(5000, salt);
            // A token is a candidate exactly when its margin is finite.
            let sampler = Sampler::new(p, SEED);
            let ids: Vec<u32> = (0..logits.len() as u32)
                .filter(|&id| sampler.margin(0, &logits, id).is_finite())
                .collect();
            assert_eq!(ids, reference_candidates(&logits, p), "salt {salt} {p:?}");
        }
    }

    #[test]
    fn seeking_and_streaming_noise_agree() {
        let key = noise_key(SEED, 3);
        let mut bytes = vec![0u8; 4000];
        ChaCha8Rng::from_seed(key.0).fill_bytes(&mut bytes);
        for id in [0u32, 1, 2, 17, 500, 999, 3, 0] {
            let i = id as usize * 4;
            let streamed = u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
            assert_eq!(noise_word(SEED, 3, id), streamed, "id {id}");
        }
    }

    #[test]
    fn filtered_and_unfiltered_paths_score_alike() {
        // A top-k as large as the vocabulary keeps every token through the filtered path; it must
        // choose exactly what the unfiltered (streamed-noise) path chooses.
        let logits = lm_logits(3000, 11);
        let all = Sampler::new(params(900_000, 0, 0), SEED);
        let via_filter = Sampler::new(params(900_000, 2_999, 0), SEED);
        for t in 0..50 {
            let a = all.sample(t, &logits).unwrap().token;
            // The 3,000th token is the least likely one; it never wins against these odds.
            let b = via_filter.sample(t, &logits).unwrap().token;
            assert_eq!(a, b, "position {t}");
        }
    }

    #[test]
    fn noise_is_finite_and_positive_at_the_extremes() {
        for word in [0, 1, u32::MAX, u32::MAX >> 1] {
            let e = exponential(word);
            assert!(e.is_finite() && e > 0.0, "{word}: {e}");
        }
        assert!(exponential(0) > exponential(u32::MAX));
    }

    #[test]
    fn margin_is_zero_for_the_choice_and_positive_otherwise() {
        let logits = lm_logits(3000, 8);
        for p in [
            SamplingParams::GREEDY,
            params(800_000, 50, 950_000),
            params(800_000, 0, 0),
        ] {
            let sampler = Sampler::new(p, SEED);
            for t in 0..20 {
                let chosen = sampler.sample(t, &logits).unwrap().token;
                assert_eq!(sampler.margin(t, &logits, chosen), 0.0);
                let other = (chosen + 1) % 3000;
                assert!(sampler.margin(t, &logits, other) > 0.0);
            }
            assert_eq!(sampler.margin(0, &logits, 5000), f64::INFINITY);
        }
        // A token outside the top-k is not a candidate at all.
        let sampler = Sampler::new(params(800_000, 1, 0), SEED);
        let chosen = sampler.sample(0, &logits).unwrap().token;
        assert_eq!(
            sampler.margin(0, &logits, (chosen + 1) % 3000),
            f64::INFINITY
        );
    }
}
