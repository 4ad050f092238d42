// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {DisputesBase} from "./utils/DisputesBase.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IDisputes} from "../src/interfaces/IDisputes.sol";

/// @notice Gas of each lifecycle step as a transaction (isolation mode: cold storage, the 21,000 base
/// cost and calldata included), in steady state (a requester and an executor that have used the
/// market before). The figures are written to snapshots/GasTest.json by
/// `snapshotGasLastCall`; CI runs `FORGE_SNAPSHOT_CHECK=true forge test --match-contract GasTest`,
/// which fails when any of them drifts from the committed file. scripts/bench-gas measures the same
/// steps from real receipts on anvil and splits off the calldata.
/// The dispute path (challenge, draw of a 3-seat jury among 4 eligible validators, one commit, one reveal,
/// a faulty resolution that slashes nobody, a withdrawal) is measured the same way.
contract GasTest is DisputesBase {
    function setUp() public override {
        super.setUp();
        // Warm up: one full job so balances, credits and counters are non-zero, as on a live market.
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        finalizeAfterWindow(jobId, s);
    }

    /// forge-config: default.isolate = true
    /// forge-config: ci.isolate = true
    function test_gas_lifecycle() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.deadline = uint64(block.timestamp + 1 hours);

        vm.prank(requester);
        (uint256 jobId, IJobEscrow.Job memory job) = escrow.postJob(spec, PROMPT);
        uint256 postGas = vm.snapshotGasLastCall("postJob");

        vm.prank(executor);
        IJobEscrow.Assignment memory assignment = escrow.acceptJob(jobId, job);
        uint256 acceptGas = vm.snapshotGasLastCall("acceptJob");

        IJobEscrow.Result memory result = defaultResult(300, 256);
        vm.prank(executor);
        IJobEscrow.Settlement memory s = escrow.submitResult(jobId, job, assignment, result);
        uint256 submitGas = vm.snapshotGasLastCall("submitResult_256_tokens");

        vm.warp(s.challengeEnd);
        escrow.finalize(jobId, s);
        uint256 finalizeGas = vm.snapshotGasLastCall("finalize");

        vm.prank(executor);
        escrow.withdraw();
        vm.snapshotGasLastCall("withdraw");

        vm.snapshotValue(
            "lifecycle_post_accept_submit_finalize", postGas + acceptGas + submitGas + finalizeGas
        );
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "finalized");
    }

    /// forge-config: default.isolate = true
    /// forge-config: ci.isolate = true
    function test_gas_cancel() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.prank(requester);
        escrow.cancelJob(jobId, job);
        vm.snapshotGasLastCall("cancelJob");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Cancelled), "cancelled");
    }

    /// forge-config: default.isolate = true
    /// forge-config: ci.isolate = true
    function test_gas_expire() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        IJobEscrow.Assignment memory assignment = accept(executor, jobId, job);
        vm.warp(job.spec.deadline + 1);
        escrow.expire(jobId, job, assignment);
        vm.snapshotGasLastCall("expire");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Expired), "expired");
    }

    /// forge-config: default.isolate = true
    /// forge-config: ci.isolate = true
    function test_gas_dispute() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 256);
        vm.prank(challenger);
        uint256 id = disputes.challenge(escrow, jobId, abi.encode(s));
        vm.snapshotGasLastCall("dispute_challenge");

        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.roll(uint256(d.drawBlock) + 1);
        vm.setBlockhash(d.drawBlock, keccak256("gas draw"));
        disputes.drawJury(id);
        vm.snapshotGasLastCall("dispute_drawJury");
        address[] memory jurors = disputes.jurorsOf(id);
        vm.assertEq(jurors.length, JURY, "full jury");

        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.prank(jurors[i]);
            disputes.commitVote(id, commitmentOf(id, jurors[i], IDisputes.Vote.Faulty));
            if (i == 0) vm.snapshotGasLastCall("dispute_commitVote");
        }
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.prank(jurors[i]);
            disputes.revealVote(id, IDisputes.Vote.Faulty, saltOf(jurors[i]));
            if (i == 0) vm.snapshotGasLastCall("dispute_revealVote");
        }
        disputes.resolve(id, abi.encode(s));
        vm.snapshotGasLastCall("dispute_resolve_faulty_3_jurors");
        vm.prank(challenger);
        disputes.withdraw();
        vm.snapshotGasLastCall("dispute_withdraw");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Rejected), "rejected");
    }
}
