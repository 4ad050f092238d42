//! The commitment JobEscrow computes from its structs (`Job`, `Assignment`, `Result`), rebuilt by
//! [`commitment_input`], equals each vector of `contracts/test/vectors/commitment.json`.

#[path = "../../protocol/tests/support/commitment_vectors.rs"]
mod support;

use alloy::primitives::{Address, B256, Bytes, U256, aliases::U96};
use infera_chain::bindings::{IJobEscrow, commitment_input};
use infera_protocol::pack_tokens;
use support::load;

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
        let input = commitment_input(&job, &assignment, &result).unwrap();
        assert_eq!(input.commitment(), v.commitment, "{}", v.name);
    }
}
