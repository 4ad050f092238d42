//! The verifiable sampler (DESIGN.md §4), version [`SAMPLER_VERSION`].
//!
//! Executors generate with it and validators recompute it from their own logits: the randomness is
//! a pure function of the job's seed, the output position and the token id, so neither side chooses
//! it, and a claimed token can be checked position by position without regenerating.
//!
//! # Portability
//!
//! The chosen token and the margin are functions of the logits' bits alone: every floating-point
//! operation below is an IEEE-754 `binary32` or `binary64` addition, subtraction, multiplication,
//! division or comparison in round-to-nearest-even (no fused multiply-add, no library `exp`/`ln`),
//! in the order written, so any IEEE-754 machine and build (any `target-cpu`, any vector width)
//! gives the same bits. Subnormal numbers are never produced from normal inputs, so flush-to-zero
//! modes do not matter either (subnormal logits themselves are read as written; `DAZ` would change
//! them). `protocol/tests/sampler_vectors.rs` pins the outputs and `scripts/sampler-portability`
//! checks a native and a baseline x86-64 build against each other bit for bit.
//!
//! Notation: `f32(…)` and `f64(…)` evaluate in that format, each operation rounded, left to right
//! unless parenthesised; `exp32` and `ln32` are the functions [`exp32`] and [`ln32`] below, `V` is
//! the number of logits, `PPM = 1_000_000`.
//!
//! # Specification (version 2)
//!
//! At output position `t`, with logits `l_0 … l_{V-1}` (`f32`) and parameters `(T_ppm, k, p_ppm)`:
//!
//! 1. **Finite tokens.** A logit is finite when it is neither NaN nor ±∞; only finite tokens can
//!    be chosen, and none finite is an error. `M` is the largest finite logit and `a` the lowest
//!    id holding it.
//! 2. **Greedy** (`T_ppm = 0`): the token is `a`. Nothing else applies.
//! 3. **Tempered log-weights.** `s = f32(1_000_000 / T_ppm)` (both operands converted to `f32`
//!    first); for a finite token `x_i = f32(f32((l_i - M) * s) + 0.0)` (the `+ 0.0` makes a
//!    negative zero positive), raised to `X_MIN = -2^64` when it is
//!    below it (so it is finite even when `l_i - M` overflows). `x_i ≤ 0`, and `x_a = 0`.
//! 4. **Noise.** `w_i` is the `i`-th 32-bit word of the ChaCha8 stream keyed by
//!    `keccak256(abi.encode(SAMPLER_TAG, seed, uint256(t)))` (stream 0, little-endian words, as
//!    `rand_chacha` 0.9 `ChaCha8Rng::from_seed` produces it; see [`noise_word`]);
//!    `u_i = f32(f32(w_i >> 9) + 0.5) * 2^-23` (exact, `2^-24 ≤ u_i ≤ 1 - 2^-24`) and the Gumbel
//!    noise is `G_i = -ln32(-ln32(u_i))` (`-2.82 < G_i < 16.7`, finite for every word).
//!    The score of token `i` is `S_i = f32(x_i + G_i)`.
//! 5. **Candidates.** Finite tokens in the *candidate order*: `x` descending, then id ascending.
//!    With `k > 0` the first `k` are kept. With `0 < p_ppm < PPM` the shortest prefix of what is
//!    left whose mass reaches `p` is kept, where the weight of a token is `exp32(x_i)` and:
//!    - `target = f64(f64(p_ppm / 1_000_000) * total)`;
//!    - `total` is, with `k > 0`, the sum of the `k` kept weights in candidate order, sequentially
//!      in `f64`; with `k = 0` the sum over all finite tokens in *lane order*: eight `f64` partial
//!      sums, sum `j` adding the weights of the tokens `i ≡ j (mod 8)` in increasing `i` (non-finite
//!      tokens add `0`), then `((((((s_0 + s_1) + s_2) + s_3) + s_4) + s_5) + s_6) + s_7`;
//!    - the prefix mass `c_n` is the sum of the first `n` weights in candidate order, sequentially
//!      in `f64`; the cut keeps the first `n` candidates for the least `n` with `c_n ≥ target`, and
//!      all of them if there is none (`total` in lane order may exceed every `c_n` by a rounding).
//!
//!    The candidates left are the set `C`; when no filter applies `C` is every finite token.
//! 6. **Choice.** The token is `argmax_{i ∈ C} S_i`, the lowest id on ties. This is the Gumbel-max
//!    trick: the token is drawn from the tempered distribution restricted to `C`.
//!
//! The reported log-probability of the chosen token `c` is
//! `f32(f32(l_c - M) - ln32(f32(Z)))` with `Z` the lane-order sum (as in step 5) of
//! `exp32(f32(l_i - M))` over the finite tokens: its natural log-softmax under the model's own
//! distribution (the raw logits, temperature 1), whatever the sampling parameters. It is
//! informative only (not committed); it is deterministic all the same.
//!
//! # Margin
//!
//! [`Sampler::margin`] says how far a claimed token is from being the choice, in **nats of the
//! model's log-probability** (logit units) for greedy and sampled jobs alike: roughly, by how much
//! the claimed token's logit would have to rise, all else (the noise included) fixed, for the
//! sampler to choose it. It is `0` for the chosen token, `≥ 0` for every other (`0` only on an
//! exact tie lost on the id order), finite for every finite logit, and `+∞` only for a claimed id
//! that is out of range or whose logit is not finite (it can never be chosen). With
//! `τ = f64(T_ppm / 1_000_000)` and `W` the chosen token:
//!
//! - greedy: `f64(M) - f64(l_claimed)`, the log-softmax gap;
//! - `claimed ∈ C`: `τ · (S_W - S_claimed)` (in `f64`, from the `f32` scores): the Gumbel score gap
//!   scaled back from tempered units, since a logit rise of `δ` raises the score by `δ / T`;
//! - `claimed ∉ C`: `max(τ · (x_L - x_claimed), τ · (S_R - S_claimed), 0)` where `L` is the last
//!   candidate in candidate order (the boundary of the top-k/top-p cut, which the claimed token
//!   would have to pass to enter it) and `R` the best-scoring candidate other than `L` (entering
//!   the cut, the claimed token takes `L`'s place; with `C = {L}` the second term is `0`). A token
//!   that sits just outside the cut and carries the winning noise — an honest boundary flip between
//!   two builds — so has a small margin, not an infinite one.
//!
//! Every subtraction above is `f64` of two `f32` values, then the product with `τ` in `f64`.
//!
//! # The functions `exp32` and `ln32`
//!
//! Both are the Cephes single-precision algorithms (as in `sse_mathfun`), without branches:
//!
//! - [`exp32`]`(x)`, for `-87 ≤ x ≤ 88` (and `0` for `x < -87` or NaN; the result is then always
//!   a normal number): `n = f32(f32(x * LOG2E) + 1.5·2^23) - 1.5·2^23` (round to nearest even),
//!   `r = f32(f32(x - n * C1) - n * C2)` with `C1 = 0.693359375`, `C2 = -2.12194440e-4`;
//!   `q = P0`, then `q = f32(q * r + P_j)` for `j = 1 … 5` (`P0 = 1.9875691500e-4`,
//!   `P1 = 1.3981999507e-3`, `P2 = 8.3334519073e-3`, `P3 = 4.1665795894e-2`,
//!   `P4 = 1.6666665459e-1`, `P5 = 5.0000001201e-1`); `y = f32(f32(f32(q * (r * r)) + r) + 1)`;
//!   the result is `f32(y * 2^n)`.
//! - [`ln32`]`(x)`, for positive normal `x`: `x = m · 2^e` with `0.5 ≤ m < 1` (from the bits);
//!   if `m < SQRT_HALF` (`0.707106781186547524` as `f32`) then `e = e - 1`, `f = f32(f32(m + m) - 1)`,
//!   else `f = f32(m - 1)` (both exact); `z = f32(f * f)`; `q = Q0`, then `q = f32(q * f + Q_j)` for
//!   `j = 1 … 8` (`Q0 = 7.0376836292e-2`, `Q1 = -1.1514610310e-1`, `Q2 = 1.1676998740e-1`,
//!   `Q3 = -1.2420140846e-1`, `Q4 = 1.4249322787e-1`, `Q5 = -1.6668057665e-1`,
//!   `Q6 = 2.0000714765e-1`, `Q7 = -2.4999993993e-1`, `Q8 = 3.3333331174e-1`);
//!   `y = f32(f32(q * f) * z)`, `y = f32(y + f32(e * C2))`, `y = f32(y - f32(0.5 * z))`,
//!   and the result is `f32(f32(f + y) + f32(e * C1))`.
//!
//! Constants are the nearest `f32` to the decimals written (the code spells their bits). Against
//! `f64` references both are within `2^-23` relative error (under one unit in the last place) over
//! their whole domains, `exp32` is non-decreasing on `[-87, 88]` and `ln32` on the positive normal
//! numbers (the unit tests check a sample, and an ignored test every `f32`). So the candidate order
//! by `x` is also an order by weight, and `G` increases with `u`.
//!
//! # Speed
//!
//! A decode step of the default model reads 151,936 logits. The passes over the whole vocabulary
//! are written lane by lane over chunks of eight tokens so the compiler vectorises them (plain
//! IEEE operations, so the vector and scalar results are the same bits), and top-k/top-p sorts only
//! the head of the distribution. `cargo run --release -p infera-protocol --example sampler_cost`
//! prints the cost per token next to version 1's.

use alloy_primitives::{B256, U256, b256, keccak256};
use alloy_sol_types::SolValue;
use rand_chacha::{
    ChaCha8Rng,
    rand_core::{RngCore, SeedableRng},
};

use crate::commitment::{PPM, SamplingParams};

/// Version of the sampler this module implements, as registered for models and committed to.
pub const SAMPLER_VERSION: u32 = 2;

/// Domain tag of the noise derivation: `keccak256("infera.sampler.v2")`.
pub const SAMPLER_TAG: B256 =
    b256!("0xcee130209e0be4e17b14cd2a8aacb488b2157fa659aa4268bf01b53c2a6c323e");

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
        let (token, partition) = if self.params.is_greedy() {
            (stats.argmax, None)
        } else {
            let draw = self.draw(position, logits, &stats, None);
            (draw.best, draw.partition)
        };
        let partition = partition.unwrap_or_else(|| lane_sum_exp(logits, stats.max));
        let logprob = (logits[token as usize] - stats.max) - ln32(partition as f32);
        Ok(Sampled { token, logprob })
    }

    /// How far `claimed` is from being this sampler's choice at `position` given `logits`, in nats
    /// of the model's log-probability: `0` for the choice, `≥ 0` otherwise, finite for every finite
    /// logit, `+∞` when `claimed` is out of range or its logit is not finite (or no logit is).
    /// The module documentation defines it exactly; validators compare it with the model's
    /// threshold, and benign float differences only give small margins, also at the top-k/top-p
    /// boundary.
    pub fn margin(&self, position: u32, logits: &[f32], claimed: u32) -> f64 {
        let Ok(stats) = Stats::of(logits) else {
            return f64::INFINITY;
        };
        let Some(&claimed_logit) = logits.get(claimed as usize).filter(|l| is_finite(**l)) else {
            return f64::INFINITY;
        };
        if self.params.is_greedy() {
            return f64::from(stats.max) - f64::from(claimed_logit);
        }
        let draw = self.draw(position, logits, &stats, Some(claimed));
        if draw.best == claimed {
            return 0.0;
        }
        let tau = f64::from(self.params.temperature_ppm) / f64::from(PPM);
        let gap = |a: f32, b: f32| tau * (f64::from(a) - f64::from(b));
        if let Some(score) = draw.claimed_score {
            // A candidate: the Gumbel score gap.
            return gap(draw.best_score, score).max(0.0);
        }
        // Outside the cut: the candidates are listed (the full-vocabulary path has no outside).
        let Some(last) = draw.candidates.last() else {
            return f64::INFINITY;
        };
        let x = tempered(claimed_logit, stats.max, inv_temperature(self.params));
        let score = x + gumbel(noise_word(self.seed, position, claimed));
        let rival = draw
            .candidates
            .iter()
            .filter(|c| c.id != last.id)
            .map(|c| c.score)
            .reduce(f32::max);
        let to_enter = gap(last.x, x);
        let to_win = rival.map_or(0.0, |rival| gap(rival, score));
        to_enter.max(to_win).max(0.0)
    }

    /// Steps 3 to 6: the chosen token and its score; the score of `claimed` when it is a
    /// candidate; the candidates when a filter applied.
    fn draw(&self, position: u32, logits: &[f32], stats: &Stats, claimed: Option<u32>) -> Draw {
        let inv_t = inv_temperature(self.params);
        let finite = logits.len() - stats.non_finite;
        let top_k = (self.params.top_k as usize).min(finite);
        let top_p = self.params.top_p_ppm;
        let top_p = (top_p > 0 && top_p < PPM).then(|| f64::from(top_p) / f64::from(PPM));
        let key = noise_key(self.seed, position);
        if top_p.is_none() && (top_k == 0 || top_k == finite) {
            return full_vocabulary(logits, stats.max, inv_t, key, claimed);
        }
        let mut xs = vec![0.0_f32; logits.len()];
        for (x, &l) in xs.iter_mut().zip(logits) {
            *x = if is_finite(l) {
                tempered(l, stats.max, inv_t)
            } else {
                f32::NEG_INFINITY
            };
        }
        let mut partition = None;
        let ordered = match (top_k, top_p) {
            (0, Some(p)) => {
                let total = lane_sum_exp(&xs, 0.0);
                if inv_t == 1.0 {
                    // x = l - M exactly: the same sum as the log-probability's.
                    partition = Some(total);
                }
                nucleus(&xs, total, p)
            }
            (k, p) => {
                let mut head = top_by_x(&xs, k);
                if let Some(p) = p {
                    let total = head
                        .iter()
                        .fold(0.0, |sum, &(_, x)| sum + f64::from(exp32(x)));
                    head.truncate(prefix_reaching(&head, p * total).unwrap_or(head.len()));
                }
                head
            }
        };
        let mut noise = NoiseWindow::new(key);
        let mut candidates: Vec<Candidate> = ordered
            .into_iter()
            .map(|(id, x)| Candidate { id, x, score: 0.0 })
            .collect();
        // Ids in increasing order read the stream forwards, one block window at a time.
        let mut by_id: Vec<usize> = (0..candidates.len()).collect();
        by_id.sort_unstable_by_key(|&n| candidates[n].id);
        for n in by_id {
            let c = &mut candidates[n];
            c.score = c.x + gumbel(noise.word(c.id));
        }
        let (mut best, mut best_score) = (u32::MAX, f32::NEG_INFINITY);
        let mut claimed_score = None;
        for c in &candidates {
            if c.score > best_score || (c.score == best_score && c.id < best) {
                (best, best_score) = (c.id, c.score);
            }
            if claimed == Some(c.id) {
                claimed_score = Some(c.score);
            }
        }
        Draw {
            best,
            best_score,
            claimed_score,
            candidates,
            partition,
        }
    }
}

/// The outcome of steps 3 to 6.
#[derive(Debug, Clone)]
struct Draw {
    best: u32,
    best_score: f32,
    /// The score of the claimed token when it is a candidate.
    claimed_score: Option<f32>,
    /// The candidates in candidate order, when a filter applied (empty otherwise).
    candidates: Vec<Candidate>,
    /// `Z` of the log-probability when the pass computed it.
    partition: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u32,
    x: f32,
    score: f32,
}

/// `s = f32(1_000_000 / T_ppm)` of step 3.
fn inv_temperature(params: SamplingParams) -> f32 {
    PPM as f32 / params.temperature_ppm as f32
}

/// `x` of step 3 for a finite logit.
#[inline(always)]
fn tempered(logit: f32, max: f32, inv_t: f32) -> f32 {
    // `+ 0.0` turns `-0.0` (from a logit `-0.0` under a maximum `+0.0`) into `+0.0`, so the
    // candidate order's `total_cmp` agrees with IEEE comparison, where the two zeros are equal.
    let x = (logit - max) * inv_t + 0.0;
    if x < X_MIN { X_MIN } else { x }
}

/// The least tempered log-weight: `-2^64`.
const X_MIN: f32 = -18_446_744_073_709_551_616.0;

/// Neither NaN nor infinite, from the bits (vectorises without a library call).
#[inline(always)]
fn is_finite(value: f32) -> bool {
    value.to_bits() & 0x7f80_0000 != 0x7f80_0000
}

/// Tokens per block of the whole-vocabulary passes: a multiple of 8, so a token's lane is its id
/// modulo 8 in every block.
const BLOCK: usize = 1024;

/// Per-lane running maxima and the lowest id reaching each: token `i` goes to lane `i mod 8`.
struct ArgMax8 {
    best: [f32; 8],
    id: [u32; 8],
}

impl ArgMax8 {
    fn new() -> Self {
        Self {
            best: [f32::NEG_INFINITY; 8],
            id: [u32::MAX; 8],
        }
    }

    /// Offers `values`, the values of the tokens `first..`, `first` a multiple of 8; strictly
    /// greater replaces, so each lane keeps its lowest id among equals. `-∞` never enters.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lane-indexed, so it vectorises
    fn offer(&mut self, values: &[f32], first: u32) {
        let (body, tail) = values.as_chunks::<8>();
        for (n, chunk) in body.iter().enumerate() {
            let base = first + (n * 8) as u32;
            for lane in 0..8 {
                let better = chunk[lane] > self.best[lane];
                self.best[lane] = if better { chunk[lane] } else { self.best[lane] };
                self.id[lane] = if better {
                    base + lane as u32
                } else {
                    self.id[lane]
                };
            }
        }
        let base = first + (body.len() * 8) as u32;
        for (lane, &value) in tail.iter().enumerate() {
            if value > self.best[lane] {
                (self.best[lane], self.id[lane]) = (value, base + lane as u32);
            }
        }
    }

    /// The overall maximum and its lowest id, `None` when no value was above `-∞`.
    fn finish(&self) -> Option<(u32, f32)> {
        let mut winner: Option<(u32, f32)> = None;
        for lane in 0..8 {
            if self.id[lane] == u32::MAX {
                continue;
            }
            let candidate = (self.id[lane], self.best[lane]);
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

/// Eight `f64` partial sums, token `i` in sum `i mod 8`, added up in lane order (step 5).
struct LaneSum([f64; 8]);

impl LaneSum {
    /// Adds the values of the tokens `first..`, `first` a multiple of 8.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // lane-indexed, so it vectorises
    fn add(&mut self, values: &[f32]) {
        let (body, tail) = values.as_chunks::<8>();
        for chunk in body {
            for lane in 0..8 {
                self.0[lane] += f64::from(chunk[lane]);
            }
        }
        for (lane, &value) in tail.iter().enumerate() {
            self.0[lane] += f64::from(value);
        }
    }

    fn total(&self) -> f64 {
        self.0.iter().fold(0.0, |sum, &s| sum + s)
    }
}

/// Steps 3 to 6 when every finite token is a candidate, fused into one pass with the
/// log-probability's partition sum, a block of tokens at a time (each loop over a block is plain
/// lane-wise arithmetic, which the compiler vectorises).
fn full_vocabulary(logits: &[f32], max: f32, inv_t: f32, key: B256, claimed: Option<u32>) -> Draw {
    let mut rng = ChaCha8Rng::from_seed(key.0);
    let mut argmax = ArgMax8::new();
    let mut partition = LaneSum([0.0; 8]);
    let mut claimed_score = None;
    let mut bytes = [0u8; 4 * BLOCK];
    let mut scores = [0.0_f32; BLOCK];
    let mut weights = [0.0_f32; BLOCK];
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        let n = block.len();
        // The stream in order: word `i` for token `i`.
        rng.fill_bytes(&mut bytes[..4 * n]);
        let (words, _) = bytes[..4 * n].as_chunks::<4>();
        for (((&l, word), score), weight) in block
            .iter()
            .zip(words)
            .zip(&mut scores[..n])
            .zip(&mut weights[..n])
        {
            let finite = is_finite(l);
            let s = tempered(l, max, inv_t) + gumbel(u32::from_le_bytes(*word));
            *score = if finite { s } else { f32::NEG_INFINITY };
            let w = exp32(l - max);
            *weight = if finite { w } else { 0.0 };
        }
        let first = (b * BLOCK) as u32;
        partition.add(&weights[..n]);
        argmax.offer(&scores[..n], first);
        if let Some(id) = claimed.filter(|id| (first..first + n as u32).contains(id)) {
            claimed_score = Some(scores[(id - first) as usize]).filter(|s| *s > f32::NEG_INFINITY);
        }
    }
    let (best, best_score) = argmax.finish().unwrap_or((u32::MAX, f32::NEG_INFINITY));
    Draw {
        best,
        best_score,
        claimed_score,
        candidates: Vec::new(),
        partition: Some(partition.total()),
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
        let mut argmax = ArgMax8::new();
        let mut finite_count = 0;
        let mut values = [0.0_f32; BLOCK];
        for (b, block) in logits.chunks(BLOCK).enumerate() {
            let n = block.len();
            for (value, &l) in values[..n].iter_mut().zip(block) {
                *value = if is_finite(l) { l } else { f32::NEG_INFINITY };
            }
            finite_count += block.iter().filter(|&&l| is_finite(l)).count();
            argmax.offer(&values[..n], (b * BLOCK) as u32);
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

/// The lane-order sum (step 5) of `exp32(f32(v - offset))` over the finite `values`;
/// non-finite values add `0`.
fn lane_sum_exp(values: &[f32], offset: f32) -> f64 {
    let mut sum = LaneSum([0.0; 8]);
    let mut weights = [0.0_f32; BLOCK];
    for block in values.chunks(BLOCK) {
        let n = block.len();
        for (weight, &v) in weights[..n].iter_mut().zip(block) {
            let w = exp32(v - offset);
            *weight = if is_finite(v) { w } else { 0.0 };
        }
        sum.add(&weights[..n]);
    }
    sum.total()
}

/// Candidate order: higher `x` first, then lower id.
fn by_x_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The first `k` finite tokens in candidate order (`xs` holds `-∞` for the others), in that
/// order: one pass with a bounded min-heap (k is small next to the vocabulary).
fn top_by_x(xs: &[f32], k: usize) -> Vec<(u32, f32)> {
    use std::{cmp::Reverse, collections::BinaryHeap};
    /// Orders by `x`, then by *lower* id: the heap's minimum is the entry to evict first.
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
    for (i, &x) in xs.iter().enumerate() {
        if x == f32::NEG_INFINITY {
            continue;
        }
        if heap.len() < k {
            heap.push(Reverse(Entry(x, Reverse(i as u32))));
        } else if heap.peek().is_some_and(|Reverse(min)| x > min.0) {
            // Equal `x` never evicts: the heap holds the lower id already.
            heap.pop();
            heap.push(Reverse(Entry(x, Reverse(i as u32))));
        }
    }
    let mut head: Vec<(u32, f32)> = heap
        .into_iter()
        .map(|Reverse(Entry(x, Reverse(id)))| (id, x))
        .collect();
    head.sort_unstable_by(by_x_desc);
    head
}

/// The length of the shortest prefix of `ordered` whose mass (weights `exp32(x)` summed in order
/// in `f64`) reaches `target`.
fn prefix_reaching(ordered: &[(u32, f32)], target: f64) -> Option<usize> {
    let mut mass = 0.0_f64;
    ordered
        .iter()
        .position(|&(_, x)| {
            mass += f64::from(exp32(x));
            mass >= target
        })
        .map(|n| n + 1)
}

/// The nucleus of the finite tokens: the shortest prefix, in candidate order, whose mass reaches
/// `top_p · total`.
///
/// Sorting the whole vocabulary would cost more than the rest of a decode step's sampling, and
/// nucleus sets are small, so this sorts only the tokens with `x ≥ -θ`, `θ` doubling from 4 until
/// the sorted part holds the nucleus. `{x ≥ -θ}` is a prefix of the candidate order, so the result
/// is exactly the full sort's prefix; past `θ = 128` every remaining weight is `0`.
fn nucleus(xs: &[f32], total: f64, top_p: f64) -> Vec<(u32, f32)> {
    let target = top_p * total;
    let mut theta = 4.0_f32;
    loop {
        let floor = if theta > 128.0 { X_MIN } else { -theta };
        let mut head: Vec<(u32, f32)> = xs
            .iter()
            .enumerate()
            .filter(|&(_, &x)| x >= floor)
            .map(|(i, &x)| (i as u32, x))
            .collect();
        head.sort_unstable_by(by_x_desc);
        if let Some(len) = prefix_reaching(&head, target) {
            head.truncate(len);
            return head;
        }
        if floor == X_MIN {
            // Rounding kept the mass just below the target: the nucleus is every finite token.
            return head;
        }
        theta *= 2.0;
    }
}

/// Reads noise words by token id, generating one 64-word window of the stream at a time; cheap
/// when ids come in increasing order.
struct NoiseWindow {
    rng: ChaCha8Rng,
    window: u64,
    words: [u32; 64],
}

impl NoiseWindow {
    fn new(key: B256) -> Self {
        Self {
            rng: ChaCha8Rng::from_seed(key.0),
            window: u64::MAX,
            words: [0; 64],
        }
    }

    fn word(&mut self, id: u32) -> u32 {
        let window = u64::from(id / 64);
        if window != self.window {
            self.rng.set_word_pos(u128::from(window * 64));
            for word in &mut self.words {
                *word = self.rng.next_u32();
            }
            self.window = window;
        }
        self.words[(id % 64) as usize]
    }
}

/// The ChaCha8 key of the noise at `position`.
fn noise_key(seed: B256, position: u32) -> B256 {
    keccak256((SAMPLER_TAG, seed, U256::from(position)).abi_encode())
}

/// The noise word `w_i` of token `id` at `position` (step 4), for test vectors and other
/// implementations.
pub fn noise_word(seed: B256, position: u32, id: u32) -> u32 {
    let mut rng = ChaCha8Rng::from_seed(noise_key(seed, position).0);
    rng.set_word_pos(u128::from(id));
    rng.next_u32()
}

/// `u` of step 4: `((w >> 9) + 0.5) / 2^23`, exact, in `[2^-24, 1 - 2^-24]`.
#[inline(always)]
fn uniform(word: u32) -> f32 {
    // `w >> 9 < 2^23` converts exactly, through `i32` so it vectorises on every x86-64.
    (((word >> 9) as i32) as f32 + 0.5) * (1.0 / 8_388_608.0)
}

/// The Gumbel noise `G = -ln32(-ln32(u))` of a noise word (step 4).
#[inline(always)]
pub fn gumbel(word: u32) -> f32 {
    -ln32(-ln32(uniform(word)))
}

/// `log2(e)` as `f32`.
const LOG2E: f32 = f32::from_bits(0x3fb8_aa3b);
/// `1.5 · 2^23`: adding it rounds an `f32` of magnitude below `2^22` to an integer.
const ROUNDER: f32 = 12_582_912.0;
/// `ln 2 = C1 + C2`, `C1` with few enough bits that `n · C1` is exact.
const C1: f32 = f32::from_bits(0x3f31_8000); // 0.693359375
const C2: f32 = f32::from_bits(0xb95e_8083); // -2.12194440e-4
/// Below this `exp32` is `0`: its results stay normal numbers.
pub const EXP32_MIN: f32 = -87.0;
const EXP_P: [f32; 6] = [
    f32::from_bits(0x3950_6967), // 1.9875691500e-4
    f32::from_bits(0x3ab7_43ce), // 1.3981999507e-3
    f32::from_bits(0x3c08_8908), // 8.3334519073e-3
    f32::from_bits(0x3d2a_a9c1), // 4.1665795894e-2
    f32::from_bits(0x3e2a_aaaa), // 1.6666665459e-1
    f32::from_bits(0x3f00_0000), // 5.0000001201e-1
];
const SQRT_HALF: f32 = f32::from_bits(0x3f35_04f3); // 0.707106781186547524
const LN_Q: [f32; 9] = [
    f32::from_bits(0x3d90_21bb), // 7.0376836292e-2
    f32::from_bits(0xbdeb_d1b8), // -1.1514610310e-1
    f32::from_bits(0x3def_251a), // 1.1676998740e-1
    f32::from_bits(0xbdfe_5d4f), // -1.2420140846e-1
    f32::from_bits(0x3e11_e9bf), // 1.4249322787e-1
    f32::from_bits(0xbe2a_ae50), // -1.6668057665e-1
    f32::from_bits(0x3e4c_ceac), // 2.0000714765e-1
    f32::from_bits(0xbe7f_fffc), // -2.4999993993e-1
    f32::from_bits(0x3eaa_aaaa), // 3.3333331174e-1
];

/// The sampler's exponential (module doc): Cephes `expf` with plain IEEE operations, for
/// `-87 ≤ x ≤ 88`; `0` below `-87` and for NaN. Within a few ulps of `e^x`; always a normal
/// number or `0`.
#[inline(always)]
pub fn exp32(x: f32) -> f32 {
    let shifted = x * LOG2E + ROUNDER;
    let n = shifted - ROUNDER;
    // `shifted` is `ROUNDER + n` exactly, so its bits are `ROUNDER`'s plus `n`.
    let n_bits = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
    let r = x - n * C1 - n * C2;
    let mut q = EXP_P[0];
    q = q * r + EXP_P[1];
    q = q * r + EXP_P[2];
    q = q * r + EXP_P[3];
    q = q * r + EXP_P[4];
    q = q * r + EXP_P[5];
    let y = q * (r * r) + r + 1.0;
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    let value = y * scale;
    if x >= EXP32_MIN { value } else { 0.0 }
}

/// The sampler's natural logarithm (module doc): Cephes `logf` with plain IEEE operations, for
/// positive normal `x` (anything else gives an unspecified finite value or NaN). Within a few ulps
/// of `ln x`.
#[inline(always)]
pub fn ln32(x: f32) -> f32 {
    let bits = x.to_bits();
    // x = m · 2^e, 0.5 ≤ m < 1.
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < SQRT_HALF;
    let e = (if small { e - 1 } else { e }) as f32;
    let f = if small { (m + m) - 1.0 } else { m - 1.0 };
    let z = f * f;
    let mut q = LN_Q[0];
    for &coefficient in &LN_Q[1..] {
        q = q * f + coefficient;
    }
    let mut y = q * f * z;
    y += e * C2;
    y -= 0.5 * z;
    (f + y) + e * C1
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

    /// Steps 3 to 6 computed the slow, obvious way, straight from the module doc: every score by
    /// seeking, a full sort, then the prefixes. The candidate ids (in candidate order) and the
    /// chosen token.
    fn reference(logits: &[f32], p: SamplingParams, seed: B256, t: u32) -> (Vec<u32>, u32) {
        let finite: Vec<usize> = (0..logits.len())
            .filter(|&i| logits[i].is_finite())
            .collect();
        let max = finite
            .iter()
            .map(|&i| logits[i])
            .fold(f32::NEG_INFINITY, f32::max);
        let s = 1_000_000.0_f32 / p.temperature_ppm as f32;
        let x = |i: usize| ((logits[i] - max) * s).max(X_MIN);
        let mut all: Vec<(u32, f32)> = finite.iter().map(|&i| (i as u32, x(i))).collect();
        all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            all.truncate(p.top_k as usize);
        }
        if p.top_p_ppm > 0 && p.top_p_ppm < PPM {
            let total = if p.top_k > 0 {
                all.iter()
                    .fold(0.0, |sum, &(_, x)| sum + f64::from(exp32(x)))
            } else {
                let mut lanes = [0.0_f64; 8];
                for &i in &finite {
                    lanes[i % 8] += f64::from(exp32(x(i)));
                }
                lanes.iter().fold(0.0, |sum, &l| sum + l)
            };
            let target = f64::from(p.top_p_ppm) / 1e6 * total;
            let mut mass = 0.0;
            let end = all
                .iter()
                .position(|&(_, x)| {
                    mass += f64::from(exp32(x));
                    mass >= target
                })
                .map_or(all.len(), |n| n + 1);
            all.truncate(end);
        }
        let mut best = (u32::MAX, f32::NEG_INFINITY);
        for &(id, x) in &all {
            let score = x + gumbel(noise_word(seed, t, id));
            if score > best.1 || (score == best.1 && id < best.0) {
                best = (id, score);
            }
        }
        (all.into_iter().map(|(id, _)| id).collect(), best.0)
    }

    /// The candidates the fast path found, in candidate order (every finite token when no filter
    /// applied).
    fn candidates(sampler: &Sampler, logits: &[f32], t: u32) -> Vec<u32> {
        let stats = Stats::of(logits).unwrap();
        let draw = sampler.draw(t, logits, &stats, None);
        draw.candidates.iter().map(|c| c.id).collect()
    }

    #[test]
    fn tag_is_keccak_of_name() {
        assert_eq!(SAMPLER_TAG, keccak256("infera.sampler.v2"));
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
    fn candidates_and_choice_equal_the_reference() {
        let cases = [
            (3, params(700_000, 0, 500_000)),
            (4, params(700_000, 0, 900_000)),
            (5, params(1_300_000, 0, 990_000)),
            (6, params(700_000, 0, 999_999)),
            (7, params(700_000, 0, 1)),
            (8, params(700_000, 40, 0)),
            (9, params(700_000, 40, 950_000)),
            (10, params(700_000, 1, 0)),
            (11, params(1_000_000, 0, 950_000)),
            (12, params(1_000_000, 0, 0)),
            (13, params(250_000, 0, 0)),
        ];
        for (salt, p) in cases {
            let mut logits = lm_logits(5000, salt);
            logits[17] = f32::NAN;
            logits[4999] = f32::NEG_INFINITY;
            let sampler = Sampler::new(p, SEED);
            for t in 0..4 {
                let (ids, token) = reference(&logits, p, SEED, t);
                let fast = candidates(&sampler, &logits, t);
                if !fast.is_empty() {
                    assert_eq!(fast, ids, "salt {salt} {p:?}");
                } else {
                    assert_eq!(ids.len(), 4998, "salt {salt} {p:?}");
                }
                assert_eq!(
                    sampler.sample(t, &logits).unwrap().token,
                    token,
                    "{salt} {p:?}"
                );
            }
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
    fn gumbel_noise_is_finite_and_increasing_for_every_word() {
        // u takes 2^23 values: check them all.
        let mut previous = f32::NEG_INFINITY;
        for top in 0..1u32 << 23 {
            let word = top << 9;
            let e = -ln32(uniform(word));
            assert!(e.is_finite() && e > 0.0 && e.is_normal(), "{word}: {e}");
            let g = gumbel(word);
            assert!(
                g.is_finite() && g >= previous,
                "{word}: {g} after {previous}"
            );
            previous = g;
        }
        assert!(gumbel(0) > -2.82 && gumbel(u32::MAX) < 16.7);
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
        // Every finite token has a finite margin, also outside a top-k or top-p cut; non-finite
        // logits have an infinite one.
        let mut logits = logits;
        logits[7] = f32::NAN;
        logits[8] = f32::INFINITY;
        for p in [params(800_000, 1, 0), params(800_000, 0, 500_000)] {
            let sampler = Sampler::new(p, SEED);
            let chosen = sampler.sample(0, &logits).unwrap().token;
            for id in 0..3000 {
                let margin = sampler.margin(0, &logits, id);
                if id == 7 || id == 8 {
                    assert_eq!(margin, f64::INFINITY);
                } else if id == chosen {
                    assert_eq!(margin, 0.0);
                } else {
                    assert!(margin.is_finite() && margin > 0.0, "{id}: {margin}");
                }
            }
        }
    }

    /// Raises `claimed`'s logit by `delta`.
    fn raised(logits: &[f32], claimed: u32, delta: f64) -> Vec<f32> {
        let mut raised = logits.to_vec();
        raised[claimed as usize] = (f64::from(logits[claimed as usize]) + delta) as f32;
        raised
    }

    #[test]
    fn margin_is_the_logit_rise_that_makes_the_claim_win() {
        // The margin means the same for greedy and sampled jobs: raising the claimed logit by a
        // little more than the margin makes the sampler choose it, by a little less does not.
        // With top-k this holds outside the cut too (the claimed token takes the last one's place).
        let logits = lm_logits(2000, 21);
        let mut checked = 0;
        for p in [
            SamplingParams::GREEDY,
            params(700_000, 0, 0),
            params(1_300_000, 0, 0),
            params(700_000, 40, 0),
            params(1_000_000, 3, 0),
        ] {
            let sampler = Sampler::new(p, SEED);
            for t in 0..6 {
                let chosen = sampler.sample(t, &logits).unwrap().token;
                for claimed in (0..2000).step_by(97).chain(3..40) {
                    let margin = sampler.margin(t, &logits, claimed);
                    if claimed == chosen || margin == 0.0 {
                        continue;
                    }
                    let slack = 1e-3 + margin * 1e-3;
                    let above = raised(&logits, claimed, margin + slack);
                    let below = raised(&logits, claimed, margin - slack);
                    let pick = |l: &[f32]| sampler.sample(t, l).unwrap().token;
                    assert_eq!(
                        pick(&above),
                        claimed,
                        "{p:?} t {t} claimed {claimed} +{margin}"
                    );
                    if margin > slack {
                        assert_ne!(
                            pick(&below),
                            claimed,
                            "{p:?} t {t} claimed {claimed} +{margin}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "{checked}");
    }

    #[test]
    fn a_boundary_flip_has_a_small_margin() {
        // Token 40 sits a hair below token 39 at the top-k = 40 cut, so it is outside; where it
        // would have won inside the cut (a build whose logits put it a hair above), its margin is
        // the hair, not infinity (version 1's answer).
        let mut logits = lm_logits(1000, 5);
        for (i, l) in logits.iter_mut().enumerate().take(41) {
            *l = 20.0 - i as f32 * 0.01;
        }
        logits[40] = logits[39] - 1e-4;
        let cut = Sampler::new(params(1_000_000, 40, 0), SEED);
        let wider = Sampler::new(params(1_000_000, 41, 0), SEED);
        let mut flips = 0;
        for t in 0..200 {
            if wider.sample(t, &logits).unwrap().token != 40 {
                continue;
            }
            assert_ne!(cut.sample(t, &logits).unwrap().token, 40);
            let margin = cut.margin(t, &logits, 40);
            assert!(margin > 0.0 && margin <= 1.1e-4, "t {t}: {margin}");
            flips += 1;
        }
        assert!(flips > 0);
    }

    /// The worst relative error of `exp32` against `f64` `exp` and whether it decreases anywhere,
    /// over the `f32` values in `[-87, 88]` whose bits are a multiple of `stride` (and their
    /// successors, for monotonicity).
    fn exp32_error(stride: u32) -> (f64, u64) {
        let (mut worst, mut decreases) = (0.0_f64, 0);
        let check = |x: f32, worst: &mut f64| {
            let (y, exact) = (exp32(x), f64::from(x).exp());
            *worst = worst.max((f64::from(y) - exact).abs() / exact);
            y
        };
        // Negative values: bits from -0 up to -87 decrease in value.
        let mut bits = 0x8000_0000_u32;
        while bits < (-87.0_f32).to_bits() {
            let (a, b) = (f32::from_bits(bits + 1), f32::from_bits(bits));
            decreases += u64::from(check(b, &mut worst) < check(a, &mut worst));
            bits += stride;
        }
        let mut bits = 0_u32;
        while f32::from_bits(bits + 1) <= 88.0 {
            let (a, b) = (f32::from_bits(bits), f32::from_bits(bits + 1));
            decreases += u64::from(check(b, &mut worst) < check(a, &mut worst));
            bits += stride;
        }
        (worst, decreases)
    }

    /// The same for `ln32` over the positive normal numbers (absolute error near 1, where `ln`
    /// vanishes, relative elsewhere).
    fn ln32_error(stride: u32) -> (f64, u64) {
        let (mut worst, mut decreases) = (0.0_f64, 0);
        let mut bits = 0x0080_0000_u32;
        while bits + 1 < 0x7f80_0000 {
            let (a, b) = (f32::from_bits(bits), f32::from_bits(bits + 1));
            for x in [a, b] {
                let (y, exact) = (f64::from(ln32(x)), f64::from(x).ln());
                worst = worst.max((y - exact).abs() / exact.abs().max(1.0));
            }
            decreases += u64::from(ln32(b) < ln32(a));
            bits += stride;
        }
        (worst, decreases)
    }

    #[test]
    fn exp32_and_ln32_are_accurate_and_monotone() {
        let ulp = f64::from(f32::EPSILON); // 2^-23
        let (exp_error, exp_decreases) = exp32_error(61);
        assert!(exp_error < ulp, "exp32 relative error {exp_error:e}");
        assert_eq!(exp_decreases, 0);
        let (ln_error, ln_decreases) = ln32_error(67);
        assert!(ln_error < ulp, "ln32 error {ln_error:e}");
        assert_eq!(ln_decreases, 0);
        // Exact where it matters: exp32(0) = 1 (the top token's weight), ln32(1) = 0.
        assert_eq!(exp32(0.0), 1.0);
        assert_eq!(ln32(1.0), 0.0);
        // Below the domain and NaN give 0, and results are never subnormal.
        assert_eq!(exp32(-87.01), 0.0);
        assert_eq!(exp32(f32::NAN), 0.0);
        assert_eq!(exp32(f32::NEG_INFINITY), 0.0);
        assert!(exp32(-87.0).is_normal());
        // The constants are the decimals the module doc gives.
        for (value, decimal) in EXP_P.iter().zip([
            "1.9875691500e-4",
            "1.3981999507e-3",
            "8.3334519073e-3",
            "4.1665795894e-2",
            "1.6666665459e-1",
            "5.0000001201e-1",
        ]) {
            assert_eq!(*value, decimal.parse::<f32>().unwrap(), "{decimal}");
        }
        for (value, decimal) in LN_Q.iter().zip([
            "7.0376836292e-2",
            "-1.1514610310e-1",
            "1.1676998740e-1",
            "-1.2420140846e-1",
            "1.4249322787e-1",
            "-1.6668057665e-1",
            "2.0000714765e-1",
            "-2.4999993993e-1",
            "3.3333331174e-1",
        ]) {
            assert_eq!(*value, decimal.parse::<f32>().unwrap(), "{decimal}");
        }
        assert_eq!(C1, "0.693359375".parse::<f32>().unwrap());
        assert_eq!(C2, "-2.12194440e-4".parse::<f32>().unwrap());
        assert_eq!(SQRT_HALF, "0.707106781186547524".parse::<f32>().unwrap());
        assert_eq!(LOG2E, std::f32::consts::LOG2_E);
    }

    /// Every `f32` of both domains (about a minute at opt-level 3): run with `--ignored`.
    #[test]
    #[ignore = "exhaustive, about a minute"]
    fn exp32_and_ln32_exhaustively() {
        let (exp_error, exp_decreases) = exp32_error(1);
        let (ln_error, ln_decreases) = ln32_error(1);
        println!("exp32 {exp_error:e} {exp_decreases}; ln32 {ln_error:e} {ln_decreases}");
        assert!(exp_error < f64::from(f32::EPSILON) && ln_error < f64::from(f32::EPSILON));
        assert_eq!((exp_decreases, ln_decreases), (0, 0));
    }
}
