// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @notice forge's selector filter for invariant targets (forge-std's `StdInvariant.FuzzSelector`): an
/// invariant contract returns these from `targetSelectors()` so only the handlers' actions are fuzzed.
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}
