//! Checks the Rust commitment encoding against the vectors in `contracts/test/vectors/commitment.json`,
//! which `scripts/gen-commitment-vectors` computed with Foundry's `cast` (forge checks Solidity
//! against the same file).

#[path = "support/commitment_vectors.rs"]
mod support;

use alloy_primitives::keccak256;
use infera_protocol::{
    COMMITMENT_TAG, CommitmentInput, Transcript, pack_tokens, tokens_hash, unpack_tokens,
};
use support::load;

#[test]
fn tag_matches() {
    assert_eq!(load().tag, COMMITMENT_TAG);
}

#[test]
fn vectors_match() {
    let file = load();
    assert!(file.vectors.len() >= 8, "expected at least 8 vectors");
    // The vectors cover a billed count other than the prompt's length and non-ASCII text.
    assert!(
        file.vectors
            .iter()
            .any(|v| v.input_tokens as usize != v.prompt_token_ids.len())
    );
    assert!(file.vectors.iter().any(|v| !v.output.is_ascii()));
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
        assert_eq!(
            keccak256(v.output.as_bytes()),
            v.output_text_hash,
            "{name}: text hash"
        );
        let packed = pack_tokens(&v.output_token_ids);
        assert_eq!(
            unpack_tokens(&packed).unwrap(),
            v.output_token_ids,
            "{name}: round trip"
        );

        let mut input = CommitmentInput::from_tokens(
            v.model_id,
            v.sampler_version,
            v.sampling(),
            v.seed,
            Transcript {
                prompt_token_ids: &v.prompt_token_ids,
                output_token_ids: &v.output_token_ids,
                output_text: v.output.as_bytes(),
                finish_reason: v.finish(),
            },
        )
        .unwrap();
        assert_eq!(input.input_tokens as usize, v.prompt_token_ids.len());
        assert_eq!(input.output_text_hash, v.output_text_hash, "{name}: text");
        // The billed count is committed as submitted, whatever the prompt's length.
        input.input_tokens = v.input_tokens;
        assert_eq!(input.commitment(), v.commitment, "{name}: commitment");
    }
}
