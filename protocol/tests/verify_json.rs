//! The JSON of transcripts and verdicts is an interface (`infera job --json`, the executor's receipt
//! event, `infera verify`): pinned by golden files, round-tripped, and strict about what it reads.
//!
//! `INFERA_BLESS=1 cargo test --workspace --test verify_json` rewrites the golden files after a
//! deliberate change of the format.

use std::path::PathBuf;

use alloy_primitives::{B256, b256};
use infera_protocol::{
    FinishReason, SamplingParams,
    verify::{Evidence, Outcome, PositionEvidence, Rule, Thresholds, Transcript, Verdict, judge},
};

/// The registry thresholds these tests judge against (fixed here: calibration may move the
/// defaults).
const THRESHOLDS: Thresholds = Thresholds {
    max_margin_ppm: 2_000_000,
    max_flip_rate_ppm: 50_000,
};

fn golden_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    PathBuf::from(dir).join("tests").join("golden").join(name)
}

/// Compares `json` with the golden file `name` (or rewrites it when blessing).
fn assert_golden(name: &str, json: &str) {
    let path = golden_path(name);
    if std::env::var_os("INFERA_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("mkdir");
        std::fs::write(&path, format!("{json}\n")).expect("write golden");
    }
    let golden = std::fs::read_to_string(&path).expect("golden file (INFERA_BLESS=1 writes it)");
    assert_eq!(
        json,
        golden.trim_end(),
        "{name} differs from the golden file"
    );
}

fn transcript() -> Transcript {
    let mut t = Transcript {
        model_id: b256!("0x1c6d2a2c4ab0bc27a1b11e2ef4e2b6e6ec8e8c6a3b2c4f55b5b1bb6f1d1a9a2e"),
        sampler_version: 2,
        sampling: SamplingParams {
            temperature_ppm: 800_000,
            top_k: 40,
            top_p_ppm: 950_000,
        },
        seed: B256::repeat_byte(0xa5),
        prompt: Some(
            r#"[{"role":"system","content":"Réponds en français."},{"role":"user","content":"Hi"}]"#
                .into(),
        ),
        prompt_ids: vec![151_644, 8_948, 198, 151_645, 198],
        output_ids: vec![40_914, 0, 151_645],
        max_output_tokens: 16,
        finish_reason: FinishReason::Stop,
        text: "Salut!".into(),
        input_tokens: 5,
        output_tokens: 3,
        commitment: B256::ZERO,
    };
    t.seal();
    t
}

#[test]
fn transcript_json_is_golden_and_round_trips() {
    let t = transcript();
    let json = serde_json::to_string_pretty(&t).expect("serialise");
    assert_golden("transcript.json", &json);
    let back: Transcript = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, t);
    // The field names and shapes a user edits by hand.
    let value: serde_json::Value = serde_json::from_str(&json).expect("value");
    assert_eq!(value["finish_reason"], "stop");
    assert_eq!(value["sampling"]["top_p_ppm"], 950_000);
    assert_eq!(value["output_ids"][2], 151_645);
    assert!(value["seed"].as_str().expect("hex").starts_with("0xa5a5"));
}

#[test]
fn the_golden_transcript_still_commits_to_itself() {
    // Pins the commitment encoding through the transcript: the golden file's commitment is the
    // one `seal` computed when it was written.
    let golden: Transcript = serde_json::from_str(
        &std::fs::read_to_string(golden_path("transcript.json")).expect("read"),
    )
    .expect("parse");
    assert_eq!(
        golden.recompute_commitment(&golden.prompt_ids),
        golden.commitment
    );
    let positions: Vec<PositionEvidence> = golden
        .output_ids
        .iter()
        .map(|&id| PositionEvidence {
            claimed: id,
            pick: id,
            margin: 0.0,
        })
        .collect();
    let verdict = judge(
        &golden,
        &Evidence {
            positions: &positions,
            detokenized: &golden.text,
            rendered_prompt_ids: Some(&golden.prompt_ids),
            eos_ids: &[151_643, 151_645],
        },
        THRESHOLDS,
    );
    assert_eq!(verdict.verdict, Outcome::Honest, "{verdict:?}");
}

#[test]
fn verdict_json_is_golden_and_round_trips() {
    let t = transcript();
    let positions = [
        PositionEvidence {
            claimed: 40_914,
            pick: 40_914,
            margin: 0.0,
        },
        PositionEvidence {
            claimed: 0,
            pick: 11,
            margin: f64::INFINITY,
        },
        PositionEvidence {
            claimed: 151_645,
            pick: 13,
            margin: 0.25,
        },
    ];
    let verdict = judge(
        &t,
        &Evidence {
            positions: &positions,
            detokenized: "Salut !",
            rendered_prompt_ids: Some(&t.prompt_ids),
            eos_ids: &[151_643, 151_645],
        },
        THRESHOLDS,
    );
    assert_eq!(
        verdict.failed_rules,
        // Two flips of three: fewer than MIN_FLIPS, so the flip rule does not fail.
        [Rule::Text, Rule::Margin]
    );
    let json = serde_json::to_string_pretty(&verdict).expect("serialise");
    assert_golden("verdict.json", &json);
    let back: Verdict = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, verdict);
    let value: serde_json::Value = serde_json::from_str(&json).expect("value");
    assert_eq!(value["verdict"], "fraud");
    assert_eq!(value["failed_rules"][1], "margin");
    assert!(value["max_margin"].is_null(), "an infinite margin is null");
    assert_eq!(value["worst_positions"][0]["position"], 1);
}

#[test]
fn strict_reading() {
    let good = serde_json::to_value(transcript()).expect("value");
    let parse = |value: &serde_json::Value| serde_json::from_value::<Transcript>(value.clone());

    // prompt and prompt_ids may be left out.
    let mut minimal = good.clone();
    let object = minimal.as_object_mut().expect("object");
    object.remove("prompt");
    object.remove("prompt_ids");
    let t = parse(&minimal).expect("minimal transcript");
    assert!(t.prompt.is_none() && t.prompt_ids.is_empty());

    type Change = fn(&mut serde_json::Value);
    let broken: [(&str, Change); 7] = [
        ("unknown field", |v| v["temprature"] = 1.into()),
        ("unknown sampling field", |v| {
            v["sampling"]["top_q"] = 1.into()
        }),
        ("finish reason none", |v| v["finish_reason"] = "none".into()),
        ("finish reason as a number", |v| {
            v["finish_reason"] = 1.into()
        }),
        ("short seed", |v| v["seed"] = "0x1234".into()),
        ("negative id", |v| v["output_ids"][0] = (-1).into()),
        ("missing commitment", |v| {
            v.as_object_mut().expect("object").remove("commitment");
        }),
    ];
    for (name, change) in broken {
        let mut value = good.clone();
        change(&mut value);
        assert!(parse(&value).is_err(), "{name} was accepted");
    }
}
