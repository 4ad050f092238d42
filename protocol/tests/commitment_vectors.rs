//! Checks the Rust commitment encoding against the vectors in `contracts/test/vectors/commitment.json`,
//! which `scripts/gen-commitment-vectors` computed with Foundry's `cast` (forge checks Solidity
//! against the same file).

use std::path::PathBuf;

use alloy::primitives::{Address, B256, Bytes, U256, aliases::U96, keccak256};
use infera_protocol::{
    COMMITMENT_TAG, CommitmentInput, FinishReason, SamplingParams, Transcript,
    bindings::IJobEscrow, pack_tokens, tokens_hash, unpack_tokens,
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
    input_tokens: u32,
    output: String,
    finish_reason: u8,
    prompt_tokens_hash: B256,
    output_tokens_hash: B256,
    output_text_hash: B256,
    commitment: B256,
}

impl Vector {
    fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature_ppm: self.temperature,
            top_k: self.top_k,
            top_p_ppm: self.top_p,
        }
    }

    fn finish(&self) -> FinishReason {
        FinishReason::try_from(self.finish_reason).expect("a known finish reason")
    }
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

/// The commitment of a submitted result, built from the on-chain structs as JobEscrow does, equals
/// each vector's: the seed comes from the assignment, the count and text from the result.
#[test]
fn results_commit_as_the_escrow_does() {
    for v in &load().vectors {
        let job = IJobEscrow::Job {
            spec: IJobEscrow::JobSpec {
                modelId: v.model_id,
                executor: Address::ZERO,
                callback: Address::ZERO,
                callbackGasLimit: 0,
                maxInputTokens: v.input_tokens,
                maxOutputTokens: u32::try_from(v.output_token_ids.len()).unwrap(),
                maxInputPrice: 1,
                maxOutputPrice: 1,
                deadline: 1,
                sampling: v.sampling().into(),
                salt: B256::repeat_byte(0x5a),
            },
            requester: Address::repeat_byte(1),
            promptHash: B256::ZERO,
            samplerVersion: v.sampler_version,
            rulesVersion: 1,
            minExecutorStake: U96::ZERO,
            validatorFeeBps: 500,
            collateralBps: 20_000,
            challengeWindow: 600,
            disputeWindow: 3_600,
            escrow: U256::from(1),
        };
        let assignment = IJobEscrow::Assignment {
            executor: Address::repeat_byte(2),
            inputPrice: 1,
            outputPrice: 1,
            collateral: U256::from(2),
            seed: v.seed,
        };
        let result = IJobEscrow::Result {
            inputTokens: v.input_tokens,
            finishReason: v.finish_reason,
            promptTokensHash: v.prompt_tokens_hash,
            outputTokens: Bytes::from(pack_tokens(&v.output_token_ids)),
            output: Bytes::from(v.output.clone().into_bytes()),
        };
        let input = CommitmentInput::of_result(&job, &assignment, &result).unwrap();
        assert_eq!(input.commitment(), v.commitment, "{}", v.name);
    }
}
