// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {ITransferHook} from "./MaliciousTokens.sol";

/// @notice A requester/staker contract that, when the hook token notifies it of a transfer, re-enters
/// `target` with `payload`. With `bubble` the failure propagates; otherwise it is recorded.
contract ReentrantAttacker is ITransferHook {
    IJobEscrow public immutable escrow;
    IStaking public immutable staking;
    IERC20 public immutable token;

    address public target;
    bytes public payload;
    bool public bubble;
    bool public armed;

    uint256 public attempts;
    bool public lastSucceeded;
    bytes public lastError;

    constructor(IJobEscrow escrow_, IStaking staking_, IERC20 token_) {
        escrow = escrow_;
        staking = staking_;
        token = token_;
        token_.approve(address(escrow_), type(uint256).max);
        token_.approve(address(staking_), type(uint256).max);
    }

    function arm(address target_, bytes calldata payload_, bool bubble_) external {
        target = target_;
        payload = payload_;
        bubble = bubble_;
        armed = true;
    }

    function disarm() external {
        armed = false;
    }

    function onTokenTransfer(address, address, uint256) external {
        if (!armed) return;
        armed = false; // one attempt per arming
        attempts += 1;
        (bool ok, bytes memory ret) = target.call(payload);
        lastSucceeded = ok;
        lastError = ret;
        if (!ok && bubble) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    // ---- actions as a requester / staker

    function postJob(IJobEscrow.JobSpec calldata spec, bytes calldata prompt)
        external
        returns (uint256 jobId, IJobEscrow.Job memory job)
    {
        return escrow.postJob(spec, prompt);
    }

    function cancelJob(uint256 jobId, IJobEscrow.Job calldata job) external {
        escrow.cancelJob(jobId, job);
    }

    function withdraw() external {
        escrow.withdraw();
    }

    function stake(uint256 amount) external {
        staking.stake(IStaking.Role.Executor, amount);
    }

    function requestUnstake(uint256 amount) external {
        staking.requestUnstake(IStaking.Role.Executor, amount);
    }

    function withdrawStake() external {
        staking.withdraw(IStaking.Role.Executor);
    }
}
