// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice Sampling parameters of a job, in fixed point so they hash the same everywhere.
/// @param temperature Temperature × 1e6; 0 means greedy (argmax, lowest id on ties).
/// @param topK Keep the k most likely tokens; 0 disables the filter.
/// @param topP Nucleus mass × 1e6; 0 or 1e6 disables the filter.
struct SamplingParams {
    uint32 temperature;
    uint32 topK;
    uint32 topP;
}

/// @notice Why generation stopped. `None` is never a valid submitted value.
enum FinishReason {
    None,
    Stop,
    Length
}

/// @title Commitment
/// @notice The executor's commitment to a computation (DESIGN.md §4). One encoding shared with the Rust
/// `protocol` crate and pinned by `contracts/test/vectors/commitment.json`:
///
///     C = keccak256(abi.encode(
///           COMMITMENT_TAG, modelId, samplerVersion, temperature, topK, topP, seed,
///           keccak256(promptTokenIds packed as uint32 big-endian),
///           uint32(inputTokens),
///           keccak256(outputTokenIds packed as uint32 big-endian),
///           keccak256(output text),
///           uint8(finishReason)))
///
/// Everything that is billed (`inputTokens`, the output ids' count) or delivered (the text a callback
/// receives) is inside the commitment, so over-billing or delivering other text is a provable fault.
library Commitment {
    /// @notice Domain tag of version 2 of the encoding (v2 added the input count and the text's hash).
    bytes32 internal constant COMMITMENT_TAG = keccak256("infera.commitment.v2");

    /// @notice Bytes per token id in packed token arrays.
    uint256 internal constant TOKEN_BYTES = 4;

    /// @notice The commitment of a computation, given the hashes of its packed token arrays.
    function compute(
        bytes32 modelId,
        uint32 samplerVersion,
        SamplingParams memory sampling,
        bytes32 seed,
        bytes32 promptTokensHash,
        uint32 inputTokens,
        bytes32 outputTokensHash,
        bytes32 outputTextHash,
        FinishReason finishReason
    ) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                COMMITMENT_TAG,
                modelId,
                samplerVersion,
                sampling.temperature,
                sampling.topK,
                sampling.topP,
                seed,
                promptTokensHash,
                inputTokens,
                outputTokensHash,
                outputTextHash,
                uint8(finishReason)
            )
        );
    }

    /// @notice Packs token ids as consecutive 4-byte big-endian words, the form jobs carry them in.
    function pack(uint32[] memory ids) internal pure returns (bytes memory packed) {
        packed = new bytes(0);
        for (uint256 i = 0; i < ids.length; ++i) {
            packed = bytes.concat(packed, bytes4(ids[i]));
        }
    }
}
