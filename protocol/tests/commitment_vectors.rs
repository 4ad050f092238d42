//! Checks the Rust commitment encoding against the vectors in `contracts/test/vectors/commitment.json`,
//! which `scripts/gen-commitment-vectors` computed with Foundry's `cast` (forge checks Solidity
//! against the same file).

use std::path::PathBuf;

use alloy::primitives::B256;
use infera_protocol::{
    COMMITMENT_TAG, CommitmentInput, FinishReason, SamplingParams, pack_tokens, tokens_hash,
    unpack_tokens,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct VectorFile {
    tag: B256,
    vectors: Vec<Vector>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Vector {
    name: String,
    model_id: B256,
    sampler_version: u32,
    temperature: u32,
    top_k: u32,
    top_p: u32,
    seed: B256,
    prompt_token_ids: Vec<u32>,
    output_token_ids: Vec<u32>,
    finish_reason: u8,
    prompt_tokens_hash: B256,
    output_tokens_hash: B256,
    commitment: B256,
}

fn load() -> VectorFile {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts/test/vectors/commitment.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

#[test]
fn tag_matches() {
    assert_eq!(load().tag, COMMITMENT_TAG);
}

#[test]
fn vectors_match() {
    let file = load();
    assert!(file.vectors.len() >= 6, "expected at least 6 vectors");
    for v in &file.vectors {
        let name = &v.name;
        assert_eq!(
            tokens_hash(&v.prompt_token_ids),
            v.prompt_tokens_hash,
            "{name}: prompt hash"
        );
        assert_eq!(
            tokens_hash(&v.output_token_ids),
            v.output_tokens_hash,
            "{name}: output hash"
        );
        let packed = pack_tokens(&v.output_token_ids);
        assert_eq!(
            unpack_tokens(&packed).unwrap(),
            v.output_token_ids,
            "{name}: round trip"
        );

        let input = CommitmentInput::from_tokens(
            v.model_id,
            v.sampler_version,
            SamplingParams {
                temperature_ppm: v.temperature,
                top_k: v.top_k,
                top_p_ppm: v.top_p,
            },
            v.seed,
            &v.prompt_token_ids,
            &v.output_token_ids,
            FinishReason::try_from(v.finish_reason).unwrap(),
        );
        assert_eq!(input.commitment(), v.commitment, "{name}: commitment");
    }
}
