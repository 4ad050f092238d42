// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {Base} from "./utils/Base.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {ExampleConsumer} from "../src/examples/ExampleConsumer.sol";

contract ExampleConsumerTest is Base {
    ExampleConsumer internal dapp;
    address internal dappOwner = address(0xDA99);

    function setUp() public override {
        super.setUp();
        dapp = new ExampleConsumer(escrow, IERC20(address(token)), dappOwner);
        token.mint(address(dapp), 10_000);
    }

    function spec() internal view returns (IJobEscrow.JobSpec memory s) {
        s = defaultSpec();
        s.callback = address(dapp);
        s.callbackGasLimit = 100_000;
    }

    function test_askReceiveAndReclaim() public {
        vm.prank(dappOwner);
        uint256 jobId = dapp.ask(spec(), PROMPT);
        IJobEscrow.Job memory job = _postedJob(jobId);
        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        IJobEscrow.Result memory r = defaultResult(300, 200);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);

        vm.assertEq(dapp.resultHash(jobId), keccak256(r.output), "result delivered");
        vm.assertEq(dapp.finishReason(jobId), 1, "stop");
        vm.assertEq(uint256(dapp.state(jobId)), uint256(ExampleConsumer.State.Delivered), "provisional");
        vm.assertEq(dapp.finalResult(jobId), bytes32(0), "not final yet");

        finalizeAfterWindow(jobId, s);
        dapp.confirm(jobId);
        vm.assertEq(dapp.finalResult(jobId), keccak256(r.output), "final once finalized");
        vm.prank(dappOwner);
        dapp.reclaim(dappOwner);
        vm.assertEq(token.balanceOf(dappOwner), 10_000 - s.payment, "the dApp paid exactly the job");
        vm.assertEq(token.balanceOf(address(dapp)), 0, "nothing left behind");
    }

    function test_onlyOwnerAsksOnlyEscrowCallsBack() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotOwner.selector, stranger));
        dapp.ask(spec(), PROMPT);

        IJobEscrow.JobSpec memory s = spec();
        s.callback = stranger;
        vm.prank(dappOwner);
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.WrongCallback.selector, stranger));
        dapp.ask(s, PROMPT);

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotEscrow.selector, stranger));
        dapp.onJobResult(1, "forged", 1);

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotOwner.selector, stranger));
        dapp.reclaim(stranger);
    }

    /// @notice A job the dApp asked for expires: `reclaim` returns the escrow at once and the capped
    /// compensation once its unbonding period is over.
    function test_reclaim_expiredJobRefundNowCompensationAfterUnbonding() public {
        vm.prank(dappOwner);
        uint256 jobId = dapp.ask(spec(), PROMPT);
        IJobEscrow.Job memory job = _postedJob(jobId);
        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        vm.warp(job.spec.deadline + 1);
        escrow.expire(jobId, job, a);
        (uint256 locked, uint256 releaseAt) = escrow.lockedCreditOf(address(dapp));
        vm.assertEq(locked, compensationCap(job.escrow), "compensation locked for the dApp");

        vm.prank(dappOwner);
        dapp.reclaim(dappOwner);
        vm.assertEq(token.balanceOf(dappOwner), 10_000, "the whole escrow back at once");
        vm.warp(releaseAt - 1);
        vm.prank(dappOwner);
        dapp.reclaim(dappOwner);
        vm.assertEq(token.balanceOf(dappOwner), 10_000, "no compensation before release");
        vm.warp(releaseAt);
        vm.prank(dappOwner);
        dapp.reclaim(dappOwner);
        vm.assertEq(token.balanceOf(dappOwner), 10_000 + locked, "then the compensation");
        (locked,) = escrow.lockedCreditOf(address(dapp));
        vm.assertEq(locked, 0, "nothing left locked");
    }

    /// @dev Rebuilds the terms `JobPosted` carried, as an off-chain caller would read them.
    function _postedJob(uint256 jobId) private view returns (IJobEscrow.Job memory job) {
        job = IJobEscrow.Job({
            spec: spec(),
            requester: address(dapp),
            promptHash: keccak256(PROMPT),
            samplerVersion: 1,
            rulesVersion: 1,
            minExecutorStake: MIN_EXECUTOR_STAKE,
            validatorFeeBps: VALIDATOR_FEE_BPS,
            collateralBps: COLLATERAL_BPS,
            challengeWindow: uint32(CHALLENGE_WINDOW),
            disputeWindow: uint32(DISPUTE_WINDOW),
            escrow: escrow.maxCost(spec())
        });
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Posted), "posted");
    }
}
