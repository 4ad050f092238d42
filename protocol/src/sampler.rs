//! The verifiable sampler (DESIGN.md §4), version [`SAMPLER_VERSION`].
//!
//! Executors generate with it and validators recompute it from their own logits: the randomness is
//! a pure function of the job's seed, the output position and the token id, so neither side chooses
//! it, and a claimed token can be checked position by position without regenerating.
//!
//! At output position `t`, with logits `l` and parameters `(T, k, p)`:
//!
//! 1. `T = 0`: the token is `argmax_i l_i`, the lowest id on ties. Nothing else applies.
//! 2. Otherwise `z_i = l_i / T` (in `f64`). Candidates are ordered by `z` descending, then id
//!    ascending; `k > 0` keeps the first `k`; `0 < p < 1` then keeps the shortest prefix whose
//!    probability mass, renormalised over the candidates left, reaches `p` (at least one token).
//! 3. The token is `argmax_{i ∈ C} (z_i + g_i)`, the lowest id on ties, where `g_i` is standard
//!    Gumbel noise `-ln(-ln(u_i))`, `u_i = ((x_i >> 12) + 0.5) / 2^52` and `x_i` is the `i`-th
//!    64-bit word (little-endian, words `2i` and `2i + 1`) of the ChaCha8 stream keyed by
//!    `keccak256(abi.encode(SAMPLER_TAG, seed, uint256(t)))` (stream 0, as `rand_chacha` 0.9
//!    `ChaCha8Rng::from_seed` produces it). The vectors in `protocol/tests/sampler_vectors.rs` pin
//!    it.
//!
//! Non-finite logits (NaN, ±∞) are never candidates. The reported log-probability of the chosen
//! token is its natural log-softmax under the model's own distribution (the raw logits, `T = 1`),
//! whatever the sampling parameters.

use alloy::primitives::{B256, U256, b256, keccak256};
use alloy::sol_types::SolValue;
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};

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
        let token = if self.params.is_greedy() {
            argmax_lowest(
                logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, f64::from(l))),
            )
        } else {
            let candidates = self.candidates(logits);
            let noise = Noise::new(self.seed, position, logits.len(), candidates.len());
            argmax_lowest(
                candidates
                    .iter()
                    .map(|&(id, z)| (id, z + gumbel(noise.word(id)))),
            )
        }
        .ok_or(SamplerError::NoCandidate(logits.len()))?;
        Ok(Sampled {
            token,
            logprob: log_softmax_at(logits, token),
        })
    }

    /// How far `claimed` is from being this sampler's choice at `position` given `logits`: the
    /// winning perturbed score minus the claimed token's (in units of `z = logit / T`, or of logits
    /// when greedy). Zero when `claimed` is the choice, infinite when it is not even a candidate.
    /// Validators compare it with the model's thresholds: benign float differences only flip
    /// near-ties.
    pub fn margin(&self, position: u32, logits: &[f32], claimed: u32) -> f64 {
        let Some(&claimed_logit) = logits.get(claimed as usize) else {
            return f64::INFINITY;
        };
        if !claimed_logit.is_finite() {
            return f64::INFINITY;
        }
        if self.params.is_greedy() {
            let best = logits
                .iter()
                .filter(|l| l.is_finite())
                .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
            return best - f64::from(claimed_logit);
        }
        let candidates = self.candidates(logits);
        let noise = Noise::new(self.seed, position, logits.len(), candidates.len());
        let mut best = f64::NEG_INFINITY;
        let mut claimed_score = None;
        for &(id, z) in &candidates {
            let score = z + gumbel(noise.word(id));
            best = best.max(score);
            if id == claimed {
                claimed_score = Some(score);
            }
        }
        claimed_score.map_or(f64::INFINITY, |score| best - score)
    }

    /// The candidate set of step 2 as `(id, z)` pairs, in no particular order.
    fn candidates(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        let temperature = f64::from(self.params.temperature_ppm) / f64::from(PPM);
        let mut candidates: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, f64::from(l) / temperature))
            .collect();
        let top_k = self.params.top_k as usize;
        if top_k > 0 && top_k < candidates.len() {
            candidates.select_nth_unstable_by(top_k - 1, by_score_desc);
            candidates.truncate(top_k);
        }
        let top_p = self.params.top_p_ppm;
        if top_p > 0 && top_p < PPM && candidates.len() > 1 {
            nucleus(&mut candidates, f64::from(top_p) / f64::from(PPM));
        }
        candidates
    }
}

/// Order of candidates: higher score first, then lower id.
fn by_score_desc(a: &(u32, f64), b: &(u32, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The id of the highest score, the lowest id on ties; `None` when no score is finite.
fn argmax_lowest(scores: impl Iterator<Item = (u32, f64)>) -> Option<u32> {
    let mut best: Option<(u32, f64)> = None;
    for (id, score) in scores {
        if !score.is_finite() {
            continue;
        }
        match best {
            Some((best_id, best_score))
                if score < best_score || (score == best_score && id > best_id) => {}
            _ => best = Some((id, score)),
        }
    }
    best.map(|(id, _)| id)
}

/// Keeps the shortest prefix (in [`by_score_desc`] order) whose renormalised mass reaches `top_p`.
///
/// Sorting the whole vocabulary costs more than a decode step's sampling budget, and nucleus sets
/// are small, so this sorts only the candidates whose probability is at least `p_max × 2^-s`, with
/// `s` widening until the sorted part holds the nucleus. The set `{p ≥ τ}` is a prefix of the full
/// order, so the result is exactly the full sort's prefix.
fn nucleus(candidates: &mut Vec<(u32, f64)>, top_p: f64) {
    let max = candidates
        .iter()
        .fold(f64::NEG_INFINITY, |m, &(_, z)| m.max(z));
    let total: f64 = candidates.iter().map(|&(_, z)| (z - max).exp()).sum();
    let mut shift = 4.0_f64;
    loop {
        // Probability ratio to the best candidate: exp(z - max) ≥ 2^-shift ⇔ z - max ≥ -shift·ln 2.
        let floor = -shift * std::f64::consts::LN_2;
        let split = partition_in_place(candidates, |&(_, z)| z - max >= floor);
        let head = &mut candidates[..split];
        head.sort_unstable_by(by_score_desc);
        let mut mass = 0.0;
        for (n, &(_, z)) in head.iter().enumerate() {
            mass += (z - max).exp() / total;
            if mass >= top_p {
                candidates.truncate(n + 1);
                return;
            }
        }
        if split == candidates.len() {
            // Rounding kept the cumulative mass just below `top_p`: the nucleus is everything.
            return;
        }
        shift *= 2.0;
    }
}

/// Moves the elements satisfying `keep` to the front; returns how many there are.
fn partition_in_place<T>(items: &mut [T], keep: impl Fn(&T) -> bool) -> usize {
    let mut split = 0;
    for i in 0..items.len() {
        if keep(&items[i]) {
            items.swap(split, i);
            split += 1;
        }
    }
    split
}

/// Natural log-softmax of `logits` at `token` (non-finite logits count as probability zero).
fn log_softmax_at(logits: &[f32], token: u32) -> f32 {
    let max = logits
        .iter()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| f64::from((l - max).exp()))
        .sum();
    let logit = logits.get(token as usize).copied().unwrap_or(f32::NAN);
    (f64::from(logit - max) - sum.ln()) as f32
}

/// Standard Gumbel noise from a 64-bit word: `-ln(-ln(u))`, `u` in the open interval (0, 1).
/// 52 bits keep `u` exact in an `f64` at both ends: `2^-53 ≤ u ≤ 1 - 2^-53`.
fn gumbel(word: u64) -> f64 {
    let u = ((word >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
    -(-u.ln()).ln()
}

/// The noise words of one position: the whole vocabulary generated in order when most of it is
/// needed, or single words by seeking the stream when the candidate set is small.
enum Noise {
    All(Vec<u64>),
    Seek(std::cell::RefCell<ChaCha8Rng>),
}

impl Noise {
    /// Below this share of the vocabulary, seeking per candidate is cheaper than generating all.
    const SEEK_BELOW: usize = 16;

    fn new(seed: B256, position: u32, vocab: usize, candidates: usize) -> Self {
        let key = keccak256((SAMPLER_TAG, seed, U256::from(position)).abi_encode());
        let mut rng = ChaCha8Rng::from_seed(key.0);
        if candidates * Self::SEEK_BELOW < vocab {
            Self::Seek(std::cell::RefCell::new(rng))
        } else {
            Self::All((0..vocab).map(|_| rng.next_u64()).collect())
        }
    }

    fn word(&self, id: u32) -> u64 {
        match self {
            Self::All(words) => words[id as usize],
            Self::Seek(rng) => {
                let mut rng = rng.borrow_mut();
                rng.set_word_pos(2 * u128::from(id));
                rng.next_u64()
            }
        }
    }
}

/// The noise word of token `id` at `position`, for test vectors and other implementations.
pub fn noise_word(seed: B256, position: u32, id: u32) -> u64 {
    Noise::new(seed, position, usize::MAX, 1).word(id)
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
    fn logprob_is_natural_log_softmax() {
        let logits = [0.0_f32, (2.0_f32).ln(), (5.0_f32).ln()]; // probabilities 1/8, 2/8, 5/8
        let sampled = Sampler::new(SamplingParams::GREEDY, SEED)
            .sample(0, &logits)
            .unwrap();
        assert_eq!(sampled.token, 2);
        assert!((sampled.logprob - (5.0_f32 / 8.0).ln()).abs() < 1e-6);
    }

    #[test]
    fn same_seed_and_position_give_the_same_token_and_others_differ() {
        let logits = lm_logits(4096, 1);
        let p = params(1_000_000, 0, 0);
        let a: Vec<u32> = (0..64)
            .map(|t| Sampler::new(p, SEED).sample(t, &logits).unwrap().token)
            .collect();
        let b: Vec<u32> = (0..64)
            .map(|t| Sampler::new(p, SEED).sample(t, &logits).unwrap().token)
            .collect();
        let other: Vec<u32> = (0..64)
            .map(|t| {
                Sampler::new(p, B256::repeat_byte(1))
                    .sample(t, &logits)
                    .unwrap()
                    .token
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, other);
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
    }

    #[test]
    fn top_k_and_top_p_restrict_the_candidates() {
        let logits = lm_logits(2048, 2);
        let mut order: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, f64::from(l)))
            .collect();
        order.sort_by(by_score_desc);
        let top3: Vec<u32> = order[..3].iter().map(|&(id, _)| id).collect();
        let sampler = Sampler::new(params(2_000_000, 3, 0), SEED);
        for t in 0..500 {
            assert!(top3.contains(&sampler.sample(t, &logits).unwrap().token));
        }
        // top_p tiny: only the single most likely token remains.
        let nucleus = Sampler::new(params(2_000_000, 0, 1), SEED);
        for t in 0..200 {
            assert_eq!(nucleus.sample(t, &logits).unwrap().token, order[0].0);
        }
    }

    #[test]
    fn nucleus_equals_the_full_sort_prefix() {
        for (salt, top_p) in [(3, 0.5), (4, 0.9), (5, 0.99), (6, 0.999_999), (7, 0.1)] {
            let logits = lm_logits(5000, salt);
            let mut all: Vec<(u32, f64)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, f64::from(l) / 0.7))
                .collect();
            let mut expected = all.clone();
            expected.sort_by(by_score_desc);
            let max = expected[0].1;
            let total: f64 = expected.iter().map(|&(_, z)| (z - max).exp()).sum();
            let mut mass = 0.0;
            let mut len = expected.len();
            for (n, &(_, z)) in expected.iter().enumerate() {
                mass += (z - max).exp() / total;
                if mass >= top_p {
                    len = n + 1;
                    break;
                }
            }
            expected.truncate(len);
            nucleus(&mut all, top_p);
            assert_eq!(all, expected, "salt {salt} top_p {top_p}");
        }
    }

    #[test]
    fn seeking_and_generating_noise_agree() {
        let all = Noise::new(SEED, 3, 1000, 1000);
        let seek = Noise::new(SEED, 3, 1000, 1);
        assert!(matches!(all, Noise::All(_)) && matches!(seek, Noise::Seek(_)));
        for id in [0, 1, 2, 17, 500, 999, 3, 0] {
            assert_eq!(all.word(id), seek.word(id), "id {id}");
        }
    }

    #[test]
    fn gumbel_is_finite_at_the_extremes() {
        for word in [0, 1, u64::MAX, u64::MAX >> 1] {
            assert!(gumbel(word).is_finite(), "{word}");
        }
        assert!(gumbel(0) < gumbel(u64::MAX));
    }

    #[test]
    fn margin_is_zero_for_the_choice_and_positive_otherwise() {
        let logits = lm_logits(3000, 8);
        for p in [SamplingParams::GREEDY, params(800_000, 50, 950_000)] {
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
