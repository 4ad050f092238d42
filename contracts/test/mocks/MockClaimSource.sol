// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IClaimSource} from "../../src/interfaces/IClaimSource.sol";

/// @notice A claim source whose claims the test sets: windows any length, and an outcome callback that
/// records what it was told (and can be made to revert).
contract MockClaimSource is IClaimSource {
    mapping(uint256 claimId => Claim) public claims;
    mapping(uint256 claimId => bool) public frozen;
    uint256 public resolvedCalls;
    bool public lastFaulty;
    bool public revertOnResolve;

    function setClaim(uint256 claimId, Claim memory claim) external {
        claims[claimId] = claim;
    }

    function setRevertOnResolve(bool value) external {
        revertOnResolve = value;
    }

    function claimOf(uint256 claimId, bytes calldata) external view returns (Claim memory) {
        return claims[claimId];
    }

    function freezeClaim(uint256 claimId, bytes calldata) external returns (Claim memory) {
        frozen[claimId] = true;
        return claims[claimId];
    }

    function resolveClaim(uint256, bytes calldata, bool executorFaulty) external returns (uint256) {
        require(!revertOnResolve, "MockClaimSource: resolve refused");
        resolvedCalls += 1;
        lastFaulty = executorFaulty;
        return 0;
    }
}
