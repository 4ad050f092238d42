// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockSettlementToken
/// @notice A 6-decimal stand-in for a stablecoin, for devnets and tests only: anyone can mint.
contract MockSettlementToken is ERC20 {
    constructor() ERC20("Infera Test USD", "iUSD") {}

    /// @notice Mints `amount` base units to `to`. Devnet only: there is no access control.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @inheritdoc ERC20
    function decimals() public pure override returns (uint8) {
        return 6;
    }
}
