// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {Base} from "./utils/Base.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";

/// @notice The happy path end to end, with every balance checked.
contract LifecycleTest is Base {
    function test_fullLifecycle_paysExecutorRefundsRequester() public {
        uint256 requesterBefore = token.balanceOf(requester);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Settlement memory s) = submittedJob(300, 200);

        // escrow = (512 * 1.0 + 256 * 2.0) tokens-per-million → (512*1e6 + 256*2e6)/1e6 = 1024 base units
        vm.assertEq(job.escrow, 1024, "escrow");
        // payment = (300 * 0.1e6 + 200 * 0.4e6) / 1e6 = 30 + 80 = 110
        vm.assertEq(s.payment, 110, "payment");
        vm.assertEq(staking.stakeOf(executor, IStaking.Role.Executor).locked, 2048, "collateral locked");

        finalizeAfterWindow(jobId, s);
        uint256 fee = 6; // 5% of 110 = 5.5, rounded up
        vm.assertEq(escrow.credits(executor), 110 - fee, "executor credit");
        vm.assertEq(fee, feeOf(110), "fee formula");
        vm.assertEq(escrow.rewardPool(), fee, "reward pool");
        vm.assertEq(escrow.credits(requester), 1024 - 110, "refund");
        vm.assertEq(staking.stakeOf(executor, IStaking.Role.Executor).locked, 0, "collateral released");
        vm.assertEq(staking.stakeOf(executor, IStaking.Role.Executor).jobsCompleted, 1, "reputation");

        vm.prank(executor);
        escrow.withdraw();
        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(executor), 110 - fee, "executor paid");
        vm.assertEq(token.balanceOf(requester), requesterBefore - 110, "requester net cost");
        vm.assertEq(token.balanceOf(address(escrow)), fee, "escrow holds only the pool");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "status");
    }
}
