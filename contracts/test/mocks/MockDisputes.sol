// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";

/// @notice Stands in for the dispute contract: forwards the calls only it may make.
contract MockDisputes {
    IJobEscrow public immutable escrow;
    IStaking public immutable staking;

    /// @notice What `riskHorizon` reports (IDisputes): settable, so tests can hold the unbonding period up.
    uint256 public horizon;

    constructor(IJobEscrow escrow_, IStaking staking_) {
        escrow = escrow_;
        staking = staking_;
    }

    function freeze(uint256 jobId, IJobEscrow.Settlement calldata settlement) external {
        escrow.freezeClaim(jobId, abi.encode(settlement));
    }

    function resolve(uint256 jobId, IJobEscrow.Settlement calldata settlement, bool executorFaulty) external {
        escrow.resolveClaim(jobId, abi.encode(settlement), executorFaulty);
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

    function setHorizon(uint256 horizon_) external {
        horizon = horizon_;
    }

    function riskHorizon() external view returns (uint256) {
        return horizon;
    }

    /// @notice As IDisputes: no jury draw is ever pending here.
    function pendingDraws() external pure returns (uint256) {
        return 0;
    }

    function lockStake(address validator, uint256 amount) external {
        staking.lockStake(validator, amount);
    }

    function unlockStake(address validator, uint256 amount) external {
        staking.unlockStake(validator, amount);
    }
}
