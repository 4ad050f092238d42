// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {Base, bound} from "./utils/Base.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {Commitment, FinishReason, SamplingParams} from "../src/libraries/Commitment.sol";

/// @notice The commitment encoding, pinned by contracts/test/vectors/commitment.json, which the Rust
/// `protocol` crate checks too.
contract CommitmentTest is Base {
    struct Vector {
        string name;
        bytes32 modelId;
        uint32 samplerVersion;
        SamplingParams sampling;
        bytes32 seed;
        uint32[] promptTokenIds;
        uint32[] outputTokenIds;
        bytes32 promptTokensHash;
        bytes32 outputTokensHash;
        uint32 inputTokens;
        bytes32 outputTextHash;
        FinishReason finishReason;
        bytes32 commitment;
    }

    function readVectors() internal view returns (string memory) {
        return vm.readFile(string.concat(vm.projectRoot(), "/contracts/test/vectors/commitment.json"));
    }

    function toUint32s(uint256[] memory xs) internal pure returns (uint32[] memory ys) {
        ys = new uint32[](xs.length);
        for (uint256 i = 0; i < xs.length; ++i) {
            require(xs[i] <= type(uint32).max, "token id above uint32");
            ys[i] = uint32(xs[i]);
        }
    }

    function u32(string memory json, string memory key) internal pure returns (uint32) {
        uint256 x = vm.parseJsonUint(json, key);
        require(x <= type(uint32).max, "above uint32");
        return uint32(x);
    }

    function vectorAt(string memory json, uint256 i) internal pure returns (Vector memory v) {
        string memory p = string.concat(".vectors[", vm.toString(i), "]");
        v.name = vm.parseJsonString(json, string.concat(p, ".name"));
        v.modelId = vm.parseJsonBytes32(json, string.concat(p, ".modelId"));
        v.samplerVersion = u32(json, string.concat(p, ".samplerVersion"));
        v.sampling = SamplingParams({
            temperature: u32(json, string.concat(p, ".temperature")),
            topK: u32(json, string.concat(p, ".topK")),
            topP: u32(json, string.concat(p, ".topP"))
        });
        v.seed = vm.parseJsonBytes32(json, string.concat(p, ".seed"));
        v.promptTokenIds = toUint32s(vm.parseJsonUintArray(json, string.concat(p, ".promptTokenIds")));
        v.outputTokenIds = toUint32s(vm.parseJsonUintArray(json, string.concat(p, ".outputTokenIds")));
        v.promptTokensHash = vm.parseJsonBytes32(json, string.concat(p, ".promptTokensHash"));
        v.outputTokensHash = vm.parseJsonBytes32(json, string.concat(p, ".outputTokensHash"));
        v.inputTokens = u32(json, string.concat(p, ".inputTokens"));
        v.outputTextHash = vm.parseJsonBytes32(json, string.concat(p, ".outputTextHash"));
        uint256 fr = vm.parseJsonUint(json, string.concat(p, ".finishReason"));
        require(fr <= uint256(type(FinishReason).max), "finish reason out of range");
        v.finishReason = FinishReason(fr);
        v.commitment = vm.parseJsonBytes32(json, string.concat(p, ".commitment"));
    }

    function vectorCount(string memory json) internal view returns (uint256 n) {
        while (vm.keyExistsJson(json, string.concat(".vectors[", vm.toString(n), "]"))) ++n;
    }

    /// @notice The encoding as DESIGN.md §4 and the library's NatSpec state it, written out independently
    /// of `Commitment.compute`.
    function specCommitment(Vector memory v) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("infera.commitment.v2"),
                v.modelId,
                uint256(v.samplerVersion),
                uint256(v.sampling.temperature),
                uint256(v.sampling.topK),
                uint256(v.sampling.topP),
                v.seed,
                keccak256(packBigEndian(v.promptTokenIds)),
                uint256(v.inputTokens),
                keccak256(packBigEndian(v.outputTokenIds)),
                v.outputTextHash,
                uint256(uint8(v.finishReason))
            )
        );
    }

    /// @notice Big-endian packing written with shifts, independent of `Commitment.pack`.
    function packBigEndian(uint32[] memory ids) internal pure returns (bytes memory out) {
        out = new bytes(ids.length * 4);
        for (uint256 i = 0; i < ids.length; ++i) {
            out[4 * i] = bytes1(uint8(ids[i] >> 24));
            out[4 * i + 1] = bytes1(uint8(ids[i] >> 16));
            out[4 * i + 2] = bytes1(uint8(ids[i] >> 8));
            out[4 * i + 3] = bytes1(uint8(ids[i]));
        }
    }

    function test_vectors_tag() public view {
        string memory json = readVectors();
        vm.assertEq(vm.parseJsonBytes32(json, ".tag"), Commitment.COMMITMENT_TAG, "tag");
        vm.assertEq(Commitment.COMMITMENT_TAG, keccak256("infera.commitment.v2"), "tag preimage");
    }

    function test_vectors_allMatch() public view {
        string memory json = readVectors();
        uint256 n = vectorCount(json);
        vm.assertGe(n, 1, "at least one vector");
        for (uint256 i = 0; i < n; ++i) {
            Vector memory v = vectorAt(json, i);
            string memory at = string.concat(" [", v.name, "]");
            bytes memory prompt = Commitment.pack(v.promptTokenIds);
            bytes memory output = Commitment.pack(v.outputTokenIds);
            vm.assertEq(
                prompt.length, v.promptTokenIds.length * 4, string.concat("prompt packing length", at)
            );
            vm.assertEq(prompt, packBigEndian(v.promptTokenIds), string.concat("prompt packing", at));
            vm.assertEq(output, packBigEndian(v.outputTokenIds), string.concat("output packing", at));
            vm.assertEq(keccak256(prompt), v.promptTokensHash, string.concat("promptTokensHash", at));
            vm.assertEq(keccak256(output), v.outputTokensHash, string.concat("outputTokensHash", at));
            bytes32 c = Commitment.compute(
                v.modelId,
                v.samplerVersion,
                v.sampling,
                v.seed,
                v.promptTokensHash,
                v.inputTokens,
                v.outputTokensHash,
                v.outputTextHash,
                v.finishReason
            );
            vm.assertEq(c, v.commitment, string.concat("commitment", at));
            vm.assertEq(specCommitment(v), v.commitment, string.concat("commitment per the spec", at));
        }
    }

    function test_vectors_coverEdgeCases() public view {
        string memory json = readVectors();
        uint256 n = vectorCount(json);
        bool emptyOutput;
        bool lengthFinish;
        bool greedy;
        bool maxTokenId;
        for (uint256 i = 0; i < n; ++i) {
            Vector memory v = vectorAt(json, i);
            if (v.outputTokenIds.length == 0) emptyOutput = true;
            if (v.finishReason == FinishReason.Length) lengthFinish = true;
            if (v.sampling.temperature == 0) greedy = true;
            for (uint256 j = 0; j < v.outputTokenIds.length; ++j) {
                if (v.outputTokenIds[j] == type(uint32).max) maxTokenId = true;
            }
        }
        vm.assertTrue(emptyOutput, "an empty output vector");
        vm.assertTrue(lengthFinish, "a Length vector");
        vm.assertTrue(greedy, "a greedy vector");
        vm.assertTrue(maxTokenId, "a max token id vector");
    }

    /// @notice The escrow's on-chain commitment is the vector encoding: a job run with a vector's token
    /// ids and sampling parameters settles with exactly the commitment recomputed per the spec.
    function test_escrowCommitmentMatchesVectorEncoding() public {
        string memory json = readVectors();
        Vector memory v = vectorAt(json, 0);
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.sampling = v.sampling;
        spec.maxInputTokens = uint32(v.promptTokenIds.length);
        spec.maxOutputTokens = uint32(v.outputTokenIds.length);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = acceptedJob(spec);

        string memory text = vm.parseJsonString(json, ".vectors[0].output");
        vm.assertEq(keccak256(bytes(text)), v.outputTextHash, "vector text hash");
        IJobEscrow.Result memory r = IJobEscrow.Result({
            inputTokens: v.inputTokens,
            finishReason: v.finishReason,
            promptTokensHash: keccak256(Commitment.pack(v.promptTokenIds)),
            outputTokens: Commitment.pack(v.outputTokenIds),
            output: bytes(text)
        });
        vm.assertEq(r.promptTokensHash, v.promptTokensHash, "same prompt hash as the vector");
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);

        // The on-chain job differs from the vector only in model id, sampler version and seed.
        Vector memory onChain = abi.decode(abi.encode(v), (Vector));
        onChain.modelId = modelId;
        onChain.samplerVersion = job.samplerVersion;
        onChain.seed = a.seed;
        vm.assertEq(s.commitment, specCommitment(onChain), "escrow commitment = spec encoding");
        // And with the vector's own model, version and seed, the same function gives the vector's value.
        vm.assertEq(specCommitment(v), v.commitment, "vector");
    }

    function testFuzz_pack_bigEndianFourBytes(uint32[] memory ids) public pure {
        bytes memory packed = Commitment.pack(ids);
        vm.assertEq(packed.length, ids.length * Commitment.TOKEN_BYTES, "length");
        vm.assertEq(packed, packBigEndian(ids), "big-endian");
    }

    function testFuzz_pack_matchesBaseHelper(uint256 n) public pure {
        n = bound(n, 0, 300);
        uint32[] memory ids = new uint32[](n);
        for (uint256 i = 0; i < n; ++i) {
            ids[i] = uint32(i + 1);
        }
        vm.assertEq(Commitment.pack(ids), tokens(n), "the escrow tests' packing");
    }

    function testFuzz_commitment_bindsEveryField(bytes32 salt, uint8 which) public pure {
        Vector memory v;
        v.modelId = keccak256(abi.encode(salt, 1));
        v.samplerVersion = 1;
        v.sampling = SamplingParams(700_000, 40, 950_000);
        v.seed = keccak256(abi.encode(salt, 2));
        v.promptTokenIds = new uint32[](2);
        v.outputTokenIds = new uint32[](1);
        v.finishReason = FinishReason.Stop;
        v.inputTokens = 2;
        v.outputTextHash = keccak256("text");
        bytes32 base = specCommitment(v);
        uint256 field = bound(which, 0, 11);
        if (field == 0) v.modelId = bytes32(uint256(v.modelId) ^ 1);
        else if (field == 1) v.samplerVersion = 2;
        else if (field == 2) v.sampling.temperature += 1;
        else if (field == 3) v.sampling.topK += 1;
        else if (field == 4) v.sampling.topP += 1;
        else if (field == 5) v.seed = bytes32(uint256(v.seed) ^ 1);
        else if (field == 6) v.promptTokenIds[1] = 1;
        else if (field == 7) v.outputTokenIds[0] = 1;
        else if (field == 8) v.finishReason = FinishReason.Length;
        else if (field == 9) v.inputTokens += 1; // over-billed input, same prompt ids
        else if (field == 10) v.outputTextHash = keccak256("other text"); // other text, same ids
        else v.promptTokenIds = new uint32[](3); // one more (zero) token
        vm.assertNotEq(specCommitment(v), base, "every field changes the commitment");
        vm.assertEq(
            Commitment.compute(
                v.modelId,
                v.samplerVersion,
                v.sampling,
                v.seed,
                keccak256(Commitment.pack(v.promptTokenIds)),
                v.inputTokens,
                keccak256(Commitment.pack(v.outputTokenIds)),
                v.outputTextHash,
                v.finishReason
            ),
            specCommitment(v),
            "library = spec"
        );
    }
}
