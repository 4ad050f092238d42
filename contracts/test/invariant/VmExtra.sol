// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice Cheatcodes the invariant suites need beyond `utils/Vm.sol`, at the same cheatcode address.
interface VmExtra {
    /// @notice Sets `block.prevrandao` (the seed of an accepted job mixes it in).
    function prevrandao(bytes32 newPrevrandao) external;

    /// @notice Process environment: the only state that outlives a run's revert to the post-setUp
    /// snapshot, so coverage counters can add up over many runs (`Coverage`).
    function setEnv(string calldata name, string calldata value) external;

    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256 value);
}

VmExtra constant vmExtra = VmExtra(address(uint160(uint256(keccak256("hevm cheat code")))));
