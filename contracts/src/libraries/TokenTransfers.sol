// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title TokenTransfers
/// @notice Pulls tokens and insists that exactly the requested amount arrived. Fee-on-transfer,
/// rebasing-on-transfer and lying tokens are refused instead of silently breaking the accounting.
library TokenTransfers {
    using SafeERC20 for IERC20;

    /// @notice The token delivered a different amount than was transferred.
    error UnsupportedToken(uint256 expected, uint256 received);

    /// @notice Transfers exactly `amount` from `from` to this contract.
    function pullExact(IERC20 token, address from, uint256 amount) internal {
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(from, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert UnsupportedToken(amount, received);
    }
}
