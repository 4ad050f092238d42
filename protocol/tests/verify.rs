//! The verdict rules of `infera_protocol::verify` on synthetic evidence: an honest transcript
//! passes, and each rule fails alone when its part of the transcript or the evidence is wrong.

use alloy_primitives::B256;
use infera_protocol::{
    FinishReason, SamplingParams,
    models::DEFAULT_MODEL,
    sampler::SAMPLER_VERSION,
    verify::{
        Evidence, MIN_FLIPS, Outcome, PositionEvidence, Rule, Thresholds, Transcript, Verdict,
        WORST_POSITIONS, judge,
    },
};

/// The registry thresholds these tests judge against (fixed here: calibration may move the
/// defaults).
const THRESHOLDS: Thresholds = Thresholds {
    max_margin_ppm: 2_000_000,
    max_flip_rate_ppm: 50_000,
};

const EOS: u32 = 151_645;
const OTHER_EOS: u32 = 151_643;
const EOS_IDS: &[u32] = &[OTHER_EOS, EOS];
/// 40 ordinary tokens and the end-of-sequence token: one flip is 24,391 ppm, under the default
/// 50,000, so the margin and flip-rate rules can be made to fail one at a time.
const OUTPUT_LEN: usize = 41;

fn transcript() -> Transcript {
    let mut output_ids: Vec<u32> = (1_000..1_040).collect();
    output_ids.push(EOS);
    let mut t = Transcript {
        model_id: DEFAULT_MODEL.model_id(),
        sampler_version: SAMPLER_VERSION,
        sampling: SamplingParams {
            temperature_ppm: 700_000,
            top_k: 40,
            top_p_ppm: 950_000,
        },
        seed: B256::repeat_byte(0x5e),
        prompt: Some(
            r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]"#.into(),
        ),
        prompt_ids: vec![151_644, 8_948, 198, 3_430, 151_645, 198],
        output_ids,
        max_output_tokens: 64,
        finish_reason: FinishReason::Stop,
        text: "forty tokens of text".into(),
        input_tokens: 6,
        output_tokens: OUTPUT_LEN as u32,
        commitment: B256::ZERO,
    };
    t.seal();
    t
}

/// Evidence that agrees with `t`: every pick is the claimed token, margins 0.
struct Fixture {
    positions: Vec<PositionEvidence>,
    detokenized: String,
    rendered: Option<Vec<u32>>,
    eos: Vec<u32>,
}

impl Fixture {
    fn agreeing(t: &Transcript) -> Self {
        Self {
            positions: t
                .output_ids
                .iter()
                .map(|&id| PositionEvidence {
                    claimed: id,
                    pick: id,
                    margin: 0.0,
                })
                .collect(),
            detokenized: t.text.clone(),
            rendered: Some(t.prompt_ids.clone()),
            eos: EOS_IDS.to_vec(),
        }
    }

    fn evidence(&self) -> Evidence<'_> {
        Evidence {
            positions: &self.positions,
            detokenized: &self.detokenized,
            rendered_prompt_ids: self.rendered.as_deref(),
            eos_ids: &self.eos,
        }
    }

    fn judge(&self, t: &Transcript) -> Verdict {
        judge(t, &self.evidence(), THRESHOLDS)
    }

    fn flip(&mut self, position: usize, margin: f64) {
        let p = &mut self.positions[position];
        p.pick = p.claimed + 1;
        p.margin = margin;
    }
}

/// Asserts the verdict is fraud with exactly `rules` failed.
fn assert_fails(verdict: &Verdict, rules: &[Rule]) {
    assert_eq!(verdict.verdict, Outcome::Fraud, "{verdict:?}");
    assert_eq!(verdict.failed_rules, rules, "{verdict:?}");
}

#[test]
fn an_agreeing_transcript_is_honest() {
    let t = transcript();
    let mut f = Fixture::agreeing(&t);
    // Benign noise: small margins, one flip.
    f.positions[3].margin = 0.4;
    f.flip(7, 0.05);
    let v = f.judge(&t);
    assert_eq!(v.verdict, Outcome::Honest, "{v:?}");
    assert!(v.failed_rules.is_empty());
    assert!(v.is_honest());
    assert_eq!(v.positions_checked, OUTPUT_LEN);
    assert_eq!(v.max_margin, 0.4);
    assert_eq!(v.max_margin_threshold, 2.0);
    assert_eq!(v.flip_rate_ppm, 24_391); // ceil(1e6 / 41)
    assert_eq!(v.max_flip_rate_ppm, 50_000);
    assert!((v.mean_margin - 0.45 / 41.0).abs() < 1e-12);
    assert_eq!(
        v.worst_positions
            .iter()
            .map(|w| w.position)
            .collect::<Vec<_>>(),
        [3, 7]
    );
}

#[test]
fn sampler_version() {
    let mut t = transcript();
    t.sampler_version = SAMPLER_VERSION + 1;
    t.seal();
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::SamplerVersion]);
}

#[test]
fn input_token_count() {
    let mut t = transcript();
    // Over-billed input, committed to as submitted: only the count is wrong.
    t.input_tokens += 1;
    t.seal();
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::InputTokenCount]);
}

#[test]
fn output_token_count() {
    let mut t = transcript();
    t.output_tokens -= 1;
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::OutputTokenCount]);
}

#[test]
fn commitment() {
    let t = transcript();
    let f = Fixture::agreeing(&t);
    for change in [
        (|t: &mut Transcript| t.commitment = B256::repeat_byte(7)) as fn(&mut Transcript),
        |t| t.seed = B256::repeat_byte(0x5f),
        |t| t.model_id = B256::repeat_byte(1),
        |t| t.sampling.temperature_ppm = 0,
        |t| t.sampling.top_p_ppm = 0,
        |t| t.sampling.top_k = 0,
    ] {
        let mut changed = t.clone();
        change(&mut changed);
        assert_fails(&f.judge(&changed), &[Rule::Commitment]);
    }
}

#[test]
fn finish_reason_stop_needs_eos_last_and_only_last() {
    // Cut before the end-of-sequence token, still called stop.
    let mut t = transcript();
    t.output_ids.pop();
    t.output_tokens -= 1;
    t.seal();
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::FinishReason]);

    // An end-of-sequence token earlier (the other one of the model's two counts too).
    let mut t = transcript();
    t.output_ids[5] = OTHER_EOS;
    t.seal();
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::FinishReason]);

    // Nothing at all.
    let mut t = transcript();
    t.output_ids.clear();
    t.output_tokens = 0;
    t.seal();
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::FinishReason]);

    // A model without known end-of-sequence ids cannot confirm a stop.
    let t = transcript();
    let mut f = Fixture::agreeing(&t);
    f.eos.clear();
    assert_fails(&f.judge(&t), &[Rule::FinishReason]);
}

#[test]
fn finish_reason_length_needs_exactly_the_maximum_and_no_eos() {
    let length = |mut t: Transcript, max: u32| {
        t.finish_reason = FinishReason::Length;
        t.max_output_tokens = max;
        t.seal();
        t
    };
    let mut no_eos = transcript();
    no_eos.output_ids.pop();
    no_eos.output_tokens -= 1;

    // Honest: exactly the maximum, no end-of-sequence token.
    let t = length(no_eos.clone(), 40);
    assert!(Fixture::agreeing(&t).judge(&t).is_honest());
    // Short of the maximum (an output cut to change the bill).
    let t = length(no_eos.clone(), 41);
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::FinishReason]);
    // An end-of-sequence token suppressed... and then reported inside a length finish.
    let t = length(transcript(), OUTPUT_LEN as u32);
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::FinishReason]);
    // More ids than the maximum, whatever the reason.
    let t = length(no_eos, 39);
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::FinishReason]);
    let mut t = transcript();
    t.max_output_tokens = 40;
    t.seal();
    assert_fails(&Fixture::agreeing(&t).judge(&t), &[Rule::FinishReason]);
}

#[test]
fn text() {
    let mut t = transcript();
    t.text = "fabricated text".into();
    t.seal();
    let f = Fixture {
        detokenized: "forty tokens of text".into(),
        ..Fixture::agreeing(&t)
    };
    assert_fails(&f.judge(&t), &[Rule::Text]);
}

#[test]
fn prompt() {
    // The posted prompt renders to other ids than those generated from (a dropped system prompt).
    let t = transcript();
    let mut f = Fixture::agreeing(&t);
    f.rendered = Some(vec![151_644, 3_430, 151_645, 198]);
    assert_fails(&f.judge(&t), &[Rule::Prompt]);

    // No posted prompt to render (token-id prompts): nothing to compare.
    f.rendered = None;
    assert!(f.judge(&t).is_honest());
}

#[test]
fn prompt_ids_left_out_are_rendered_from_the_prompt() {
    let full = transcript();
    let mut t = full.clone();
    t.prompt_ids.clear();
    let f = Fixture::agreeing(&full);
    // The commitment and the count are checked against the rendered ids.
    assert!(f.judge(&t).is_honest());
    let mut other = Fixture::agreeing(&full);
    other.rendered = Some(vec![151_644, 3_430, 151_645, 198]);
    assert_fails(&other.judge(&t), &[Rule::InputTokenCount, Rule::Commitment]);
    // Without a prompt either, nothing matches.
    let mut none = Fixture::agreeing(&full);
    none.rendered = None;
    assert_fails(&none.judge(&t), &[Rule::InputTokenCount, Rule::Commitment]);
}

#[test]
fn margin() {
    let t = transcript();
    let mut f = Fixture::agreeing(&t);
    // Exactly at the threshold passes; above it fails.
    f.flip(10, 2.0);
    let v = f.judge(&t);
    assert!(v.is_honest(), "{v:?}");
    f.flip(10, 2.000_001);
    let v = f.judge(&t);
    assert_fails(&v, &[Rule::Margin]);
    assert_eq!(v.max_margin, 2.000_001);
    assert_eq!(v.worst_positions[0].position, 10);

    // A claimed token the sampler can never choose, and broken (NaN) numbers.
    for margin in [f64::INFINITY, f64::NAN] {
        let mut f = Fixture::agreeing(&t);
        f.flip(0, margin);
        let v = f.judge(&t);
        assert_fails(&v, &[Rule::Margin]);
        assert_eq!(v.max_margin, f64::INFINITY);
    }

    // A stricter registry threshold catches a smaller margin.
    let mut f = Fixture::agreeing(&t);
    f.flip(10, 0.6);
    let strict = Thresholds {
        max_margin_ppm: 500_000,
        ..THRESHOLDS
    };
    assert!(f.judge(&t).is_honest());
    assert_fails(&judge(&t, &f.evidence(), strict), &[Rule::Margin]);
}

#[test]
fn flip_rate() {
    let t = transcript();
    let mut f = Fixture::agreeing(&t);
    f.flip(1, 0.01);
    f.flip(2, 0.01);
    f.flip(3, 0.01);
    let v = f.judge(&t);
    // 3 / 41 = 73,171 ppm is above 5%, but fewer than MIN_FLIPS flips never fail the rule.
    assert!(v.is_honest(), "{v:?}");
    assert_eq!(v.flip_rate_ppm, 73_171);
    assert_eq!(MIN_FLIPS, 4);
    f.flip(4, 0.01);
    let v = f.judge(&t);
    assert_fails(&v, &[Rule::FlipRate]); // 4 / 41 = 97,561 ppm
    assert_eq!(v.flip_rate_ppm, 97_561);

    // The boundary is exact: 4 of 40 positions is 100,000 ppm, allowed at 100,000.
    let mut t = transcript();
    t.output_ids.remove(0);
    t.output_tokens -= 1;
    t.seal();
    let mut f = Fixture::agreeing(&t);
    for position in 1..=4 {
        f.flip(position, 0.01);
    }
    let at = Thresholds {
        max_flip_rate_ppm: 100_000,
        ..THRESHOLDS
    };
    let v = judge(&t, &f.evidence(), at);
    assert!(v.is_honest(), "{v:?}");
    assert_eq!(v.flip_rate_ppm, 100_000);
    let stricter = Thresholds {
        max_flip_rate_ppm: 99_999,
        ..THRESHOLDS
    };
    assert_fails(&judge(&t, &f.evidence(), stricter), &[Rule::FlipRate]);
}

#[test]
fn positions() {
    let t = transcript();
    // One position short.
    let mut f = Fixture::agreeing(&t);
    f.positions.pop();
    assert_fails(&f.judge(&t), &[Rule::Positions]);
    // Scored on other ids than claimed.
    let mut f = Fixture::agreeing(&t);
    f.positions[4].claimed += 1;
    f.positions[4].pick += 1;
    assert_fails(&f.judge(&t), &[Rule::Positions]);
    // None at all.
    let mut f = Fixture::agreeing(&t);
    f.positions.clear();
    let v = f.judge(&t);
    assert_fails(&v, &[Rule::Positions]);
    assert_eq!(v.positions_checked, 0);
}

#[test]
fn a_swapped_token_fails_several_rules_at_once_in_rule_order() {
    let mut t = transcript();
    t.output_ids[20] += 1; // the executor's claim changed after committing
    let mut f = Fixture::agreeing(&transcript());
    f.flip(20, 9.5);
    f.detokenized = "forty tokens of texT".into();
    assert_fails(
        &f.judge(&t),
        &[Rule::Commitment, Rule::Text, Rule::Margin, Rule::Positions],
    );
}

#[test]
fn worst_positions_are_the_largest_margins_first_and_at_most_eight() {
    let t = transcript();
    let mut f = Fixture::agreeing(&t);
    for position in 0..12 {
        f.positions[position].margin = position as f64 / 10.0;
    }
    let v = f.judge(&t);
    assert_eq!(v.worst_positions.len(), WORST_POSITIONS);
    let order: Vec<usize> = v.worst_positions.iter().map(|w| w.position).collect();
    assert_eq!(order, [11, 10, 9, 8, 7, 6, 5, 4]);
    assert!(v.worst_positions.iter().all(|w| w.claimed == w.pick));
}

#[test]
fn the_default_thresholds_tolerate_benign_flips_in_a_short_output() {
    // 2 positions, one near-tie flip (50 %): not fraud, whatever the rate threshold.
    let mut t = transcript();
    t.output_ids.drain(..39);
    t.output_tokens = t.output_ids.len() as u32;
    t.seal();
    let mut f = Fixture::agreeing(&t);
    f.flip(0, 0.05);
    let v = judge(
        &t,
        &f.evidence(),
        infera_protocol::verify::DEFAULT_THRESHOLDS,
    );
    assert!(v.is_honest(), "{v:?}");
    assert_eq!(v.flip_rate_ppm, 500_000);

    // 19 positions: three flips pass, a fourth (21 %) fails.
    let mut t = transcript();
    t.output_ids.drain(..22);
    t.output_tokens = t.output_ids.len() as u32;
    t.seal();
    let mut f = Fixture::agreeing(&t);
    for position in [2, 6, 9] {
        f.flip(position, 0.05);
    }
    let defaults = infera_protocol::verify::DEFAULT_THRESHOLDS;
    assert!(judge(&t, &f.evidence(), defaults).is_honest());
    f.flip(12, 0.05);
    assert_fails(&judge(&t, &f.evidence(), defaults), &[Rule::FlipRate]);
    // A margin within the default threshold, but above the 2 nats of these tests.
    let mut f = Fixture::agreeing(&t);
    f.flip(3, 2.72);
    assert!(judge(&t, &f.evidence(), defaults).is_honest());
    assert_fails(&f.judge(&t), &[Rule::Margin]);
}
