// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";

/// @notice Stands in for the dispute contract: forwards the calls only it may make.
contract MockDisputes {
    IJobEscrow public immutable escrow;
    IStaking public immutable staking;

    constructor(IJobEscrow escrow_, IStaking staking_) {
        escrow = escrow_;
        staking = staking_;
    }

    function freeze(uint256 jobId, IJobEscrow.Settlement calldata settlement) external {
        escrow.freeze(jobId, settlement);
    }

    function resolve(uint256 jobId, IJobEscrow.Settlement calldata settlement, bool executorFaulty) external {
        escrow.resolve(jobId, settlement, executorFaulty);
    }

    function payReward(address to, uint256 amount) external {
        escrow.payReward(to, amount);
    }

    function slash(address account, IStaking.Role role, uint256 amount, address to)
        external
        returns (uint256)
    {
        return staking.slash(account, role, amount, to);
    }
}
