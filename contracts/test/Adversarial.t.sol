// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm, Vm} from "./utils/Vm.sol";
import {Base} from "./utils/Base.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";
import {IInferaConsumer} from "../src/interfaces/IInferaConsumer.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {Staking} from "../src/Staking.sol";
import {JobEscrow} from "../src/JobEscrow.sol";
import {TokenTransfers} from "../src/libraries/TokenTransfers.sol";
import {FinishReason} from "../src/libraries/Commitment.sol";
import {FeeOnTransferToken, NoReturnToken, FalseReturnToken, HookToken} from "./mocks/MaliciousTokens.sol";
import {
    GoodConsumer,
    RevertingConsumer,
    GasBurnerConsumer,
    ReturnBombConsumer,
    ReentrantConsumer,
    StarvationProbe
} from "./mocks/Consumers.sol";
import {ReentrantAttacker} from "./mocks/Reentrant.sol";

/// @notice A second protocol stack on an arbitrary token.
abstract contract StackBase is Base {
    struct Stack {
        ModelRegistry registry;
        Staking staking;
        JobEscrow escrow;
        bytes32 modelId;
    }

    function deployStack(address tok) internal returns (Stack memory st) {
        st.registry = new ModelRegistry(governance);
        st.staking = new Staking(IERC20(tok), st.registry, governance, UNBONDING_PERIOD);
        st.escrow = newEscrow(IERC20(tok), st.staking, st.registry);
        vm.startPrank(governance);
        st.staking.setJobEscrow(address(st.escrow));
        st.modelId = st.registry.registerModel(defaultModel());
        vm.stopPrank();
        vm.assertEq(st.modelId, modelId, "same model id as the main stack");
    }

    function registerOn(Stack memory st, address who, uint256 stakeAmount) internal {
        vm.startPrank(who);
        st.staking.stake(IStaking.Role.Executor, stakeAmount);
        st.staking.registerExecutor("http://127.0.0.1/executor", "cpu");
        st.staking.setPrice(st.modelId, INPUT_PRICE, OUTPUT_PRICE);
        vm.stopPrank();
    }

    function countLogs(Vm.Log[] memory logs, bytes32 topic0, address emitter)
        internal
        pure
        returns (uint256 n)
    {
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == emitter && logs[i].topics.length > 0 && logs[i].topics[0] == topic0) ++n;
        }
    }
}

// =================================================================== tokens

contract AdversarialTokenTest is StackBase {
    function test_feeOnTransferToken_postAndStakeRejected() public {
        FeeOnTransferToken fot = new FeeOnTransferToken();
        Stack memory st = deployStack(address(fot));
        fot.mint(requester, 1e12);
        fot.mint(executor, 1e12);
        vm.prank(requester);
        fot.approve(address(st.escrow), type(uint256).max);
        vm.prank(executor);
        fot.approve(address(st.staking), type(uint256).max);

        uint256 cost = st.escrow.maxCost(defaultSpec());
        vm.assertGt(fot.feeOf(cost), 0, "a fee is charged");
        // (Expected errors are computed first: an external call would consume the prank.)
        bytes memory postError =
            abi.encodeWithSelector(TokenTransfers.UnsupportedToken.selector, cost, cost - fot.feeOf(cost));
        bytes memory stakeError = abi.encodeWithSelector(
            TokenTransfers.UnsupportedToken.selector, 1_000e6, 1_000e6 - fot.feeOf(1_000e6)
        );
        vm.prank(requester);
        vm.expectRevert(postError);
        st.escrow.postJob(defaultSpec(), PROMPT);

        vm.prank(executor);
        vm.expectRevert(stakeError);
        st.staking.stake(IStaking.Role.Executor, 1_000e6);

        vm.assertEq(fot.balanceOf(address(st.escrow)), 0, "nothing entered the escrow");
        vm.assertEq(fot.balanceOf(address(st.staking)), 0, "nothing entered staking");
        vm.assertEq(st.escrow.nextJobId(), 1, "no job");
    }

    function test_noReturnToken_worksEndToEnd() public {
        NoReturnToken usdt = new NoReturnToken();
        Stack memory st = deployStack(address(usdt));
        usdt.mint(requester, 1_000e6);
        usdt.mint(executor, 1_000e6);
        vm.prank(requester);
        usdt.approve(address(st.escrow), type(uint256).max);
        vm.prank(executor);
        usdt.approve(address(st.staking), type(uint256).max);
        registerOn(st, executor, 1_000e6);

        vm.prank(requester);
        (uint256 jobId, IJobEscrow.Job memory job) = st.escrow.postJob(defaultSpec(), PROMPT);
        vm.assertEq(usdt.balanceOf(address(st.escrow)), job.escrow, "escrow pulled");
        vm.prank(executor);
        IJobEscrow.Assignment memory a = st.escrow.acceptJob(jobId, job);
        vm.prank(executor);
        IJobEscrow.Settlement memory s = st.escrow.submitResult(jobId, job, a, defaultResult(300, 200));
        vm.warp(s.challengeEnd);
        st.escrow.finalize(jobId, s);

        uint256 fee = feeOf(s.payment);
        vm.prank(executor);
        st.escrow.withdraw();
        vm.prank(requester);
        st.escrow.withdraw();
        vm.assertEq(usdt.balanceOf(executor), s.payment - fee, "executor paid");
        vm.assertEq(usdt.balanceOf(requester), 1_000e6 - s.payment, "requester refunded");
        vm.assertEq(usdt.balanceOf(address(st.escrow)), fee, "only the pool left");

        vm.prank(executor);
        st.staking.requestUnstake(IStaking.Role.Executor, 1_000e6);
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        vm.prank(executor);
        st.staking.withdraw(IStaking.Role.Executor);
        vm.assertEq(usdt.balanceOf(executor), 1_000e6 + s.payment - fee, "stake back");
        vm.assertEq(usdt.balanceOf(address(st.staking)), 0, "staking empty");
    }

    function test_falseReturningToken_rejected() public {
        FalseReturnToken bad = new FalseReturnToken();
        Stack memory st = deployStack(address(bad));
        bad.mint(requester, 1e12);
        vm.startPrank(requester);
        bad.approve(address(st.escrow), type(uint256).max);
        bad.approve(address(st.staking), type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(bad)));
        st.escrow.postJob(defaultSpec(), PROMPT);
        vm.expectRevert(abi.encodeWithSelector(SafeERC20.SafeERC20FailedOperation.selector, address(bad)));
        st.staking.stake(IStaking.Role.Executor, 1_000e6);
        vm.stopPrank();
        vm.assertEq(st.escrow.nextJobId(), 1, "no job");
        vm.assertEq(st.staking.stakeOf(requester, IStaking.Role.Executor).staked, 0, "no stake");
    }
}

// =================================================================== re-entrant token

contract AdversarialReentrantTokenTest is StackBase {
    bytes4 internal immutable REENTRANT = ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector;

    HookToken internal hook;
    Stack internal st;
    ReentrantAttacker internal attacker;

    function setUp() public override {
        super.setUp();
        hook = new HookToken();
        st = deployStack(address(hook));
        attacker = new ReentrantAttacker(st.escrow, st.staking, IERC20(address(hook)));
        hook.mint(address(attacker), 1_000_000e6);
        hook.setHook(address(attacker));
        // An honest executor and requester on the hook-token stack.
        hook.mint(executor, 1_000e6);
        hook.mint(requester, 1_000_000e6);
        vm.prank(executor);
        hook.approve(address(st.staking), type(uint256).max);
        vm.prank(requester);
        hook.approve(address(st.escrow), type(uint256).max);
        registerOn(st, executor, 1_000e6);
    }

    /// @notice The attacker posts and cancels a job, so it has `escrow` credited.
    function creditAttacker() internal returns (uint256 credit) {
        (uint256 jobId, IJobEscrow.Job memory job) = attacker.postJob(defaultSpec(), PROMPT);
        attacker.cancelJob(jobId, job);
        credit = st.escrow.credits(address(attacker));
        vm.assertEq(credit, job.escrow, "credited");
    }

    function submittedOnStack() internal returns (uint256 jobId, IJobEscrow.Settlement memory s) {
        IJobEscrow.Job memory job;
        vm.prank(requester);
        (jobId, job) = st.escrow.postJob(defaultSpec(), PROMPT);
        vm.prank(executor);
        IJobEscrow.Assignment memory a = st.escrow.acceptJob(jobId, job);
        vm.prank(executor);
        s = st.escrow.submitResult(jobId, job, a, defaultResult(300, 200));
    }

    function test_reenterWithdrawFromTransferHook_noDoubleWithdrawal() public {
        uint256 start = hook.balanceOf(address(attacker));
        uint256 credit = creditAttacker();
        attacker.arm(address(st.escrow), abi.encodeCall(IJobEscrow.withdraw, ()), false);
        attacker.withdraw();

        vm.assertEq(attacker.attempts(), 1, "re-entry attempted");
        vm.assertFalse(attacker.lastSucceeded(), "re-entry failed");
        vm.assertEq(attacker.lastError(), abi.encodeWithSelector(REENTRANT), "ReentrancyGuardReentrantCall");
        vm.assertEq(hook.balanceOf(address(attacker)), start, "got its escrow back exactly once");
        vm.assertEq(hook.balanceOf(address(st.escrow)), 0, "escrow drained only by the credit");
        vm.assertEq(st.escrow.credits(address(attacker)), 0, "credit consumed");
        vm.assertGt(credit, 0, "there was something to steal");
    }

    function test_reenterWithdraw_bubblingRevertsTheWholeWithdrawal() public {
        uint256 credit = creditAttacker();
        attacker.arm(address(st.escrow), abi.encodeCall(IJobEscrow.withdraw, ()), true);
        vm.expectRevert(REENTRANT);
        attacker.withdraw();
        vm.assertEq(st.escrow.credits(address(attacker)), credit, "credit intact");
        vm.assertEq(hook.balanceOf(address(st.escrow)), credit, "tokens intact");
        attacker.disarm();
        attacker.withdraw();
        vm.assertEq(st.escrow.credits(address(attacker)), 0, "then withdrawn normally");
    }

    function test_reenterFinalizeFromTransferHook() public {
        (uint256 jobId, IJobEscrow.Settlement memory s) = submittedOnStack();
        creditAttacker();
        vm.warp(s.challengeEnd);
        attacker.arm(address(st.escrow), abi.encodeCall(IJobEscrow.finalize, (jobId, s)), false);
        attacker.withdraw();
        vm.assertFalse(attacker.lastSucceeded(), "re-entrant finalize failed");
        vm.assertEq(attacker.lastError(), abi.encodeWithSelector(REENTRANT), "ReentrancyGuardReentrantCall");
        vm.assertEq(
            uint256(st.escrow.jobStatus(jobId)),
            uint256(IJobEscrow.JobStatus.Submitted),
            "not finalized by it"
        );
        st.escrow.finalize(jobId, s);
        vm.assertEq(st.escrow.credits(executor), s.payment - feeOf(s.payment), "finalized once");
    }

    function test_reenterPostJobFromTransferHook() public {
        creditAttacker();
        uint256 nextId = st.escrow.nextJobId();
        attacker.arm(address(st.escrow), abi.encodeCall(IJobEscrow.postJob, (defaultSpec(), PROMPT)), false);
        attacker.withdraw();
        vm.assertFalse(attacker.lastSucceeded(), "re-entrant post failed");
        vm.assertEq(attacker.lastError(), abi.encodeWithSelector(REENTRANT), "ReentrancyGuardReentrantCall");
        vm.assertEq(st.escrow.nextJobId(), nextId, "no job posted");
    }

    function test_reenterWithdrawDuringPostJobPull() public {
        creditAttacker();
        uint256 credit = st.escrow.credits(address(attacker));
        uint256 escrowBalance = hook.balanceOf(address(st.escrow));
        attacker.arm(address(st.escrow), abi.encodeCall(IJobEscrow.withdraw, ()), false);
        (, IJobEscrow.Job memory job) = attacker.postJob(defaultSpec(), PROMPT);
        vm.assertEq(attacker.attempts(), 1, "hook fired during the pull");
        vm.assertEq(attacker.lastError(), abi.encodeWithSelector(REENTRANT), "ReentrancyGuardReentrantCall");
        vm.assertEq(st.escrow.credits(address(attacker)), credit, "credit untouched");
        vm.assertEq(
            hook.balanceOf(address(st.escrow)), escrowBalance + job.escrow, "exactly the escrow pulled"
        );
    }

    function test_reenterStakingWithdrawFromTransferHook() public {
        attacker.stake(500e6);
        attacker.requestUnstake(500e6);
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        uint256 before = hook.balanceOf(address(attacker));
        attacker.arm(address(st.staking), abi.encodeCall(IStaking.withdraw, (IStaking.Role.Executor)), false);
        attacker.withdrawStake();
        vm.assertFalse(attacker.lastSucceeded(), "re-entry failed");
        vm.assertEq(attacker.lastError(), abi.encodeWithSelector(REENTRANT), "ReentrancyGuardReentrantCall");
        vm.assertEq(hook.balanceOf(address(attacker)), before + 500e6, "withdrawn once");
        vm.assertEq(hook.balanceOf(address(st.staking)), 1_000e6, "only the executor's stake left");
    }
}

// =================================================================== callbacks

contract AdversarialCallbackTest is StackBase {
    bytes32 internal immutable CALLBACK_FAILED = IJobEscrow.CallbackFailed.selector;

    function callbackJob(address callback, uint32 gasLimit)
        internal
        returns (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a)
    {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.callback = callback;
        spec.callbackGasLimit = gasLimit;
        (jobId, job, a) = acceptedJob(spec);
    }

    /// @notice Submits with logs recorded; returns the settlement, the gas the call used and the
    /// number of CallbackFailed events.
    function submitRecorded(
        uint256 jobId,
        IJobEscrow.Job memory job,
        IJobEscrow.Assignment memory a,
        IJobEscrow.Result memory r
    ) internal returns (IJobEscrow.Settlement memory s, uint256 gasUsed, uint256 failures) {
        vm.recordLogs();
        vm.prank(a.executor);
        uint256 g = gasleft();
        s = escrow.submitResult(jobId, job, a, r);
        gasUsed = g - gasleft();
        failures = countLogs(vm.getRecordedLogs(), CALLBACK_FAILED, address(escrow));
    }

    function assertPaidNormally(uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Settlement memory s)
        internal
    {
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Submitted), "submitted");
        uint256 creditBefore = escrow.credits(executor);
        finalizeAfterWindow(jobId, s);
        uint256 fee = feeOf(s.payment);
        vm.assertEq(escrow.credits(executor) - creditBefore, s.payment - fee, "executor paid");
        vm.assertEq(escrow.credits(requester), job.escrow - s.payment, "requester refunded");
        vm.assertEq(staking.stakeOf(executor, IStaking.Role.Executor).locked, 0, "collateral released");
    }

    function test_callback_goodConsumerReceivesResult() public {
        GoodConsumer c = new GoodConsumer();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), 200_000);
        IJobEscrow.Result memory r = defaultResult(300, 256);
        r.finishReason = FinishReason.Length;
        vm.expectCall(address(c), abi.encodeCall(IInferaConsumer.onJobResult, (jobId, r.output, 2)));
        (IJobEscrow.Settlement memory s,, uint256 failures) = submitRecorded(jobId, job, a, r);
        vm.assertEq(failures, 0, "no CallbackFailed");
        vm.assertEq(c.calls(), 1, "called once");
        vm.assertEq(c.lastJobId(), jobId, "job id");
        vm.assertEq(c.lastOutput(), r.output, "output");
        vm.assertEq(c.lastFinishReason(), 2, "finish reason Length");
        vm.assertEq(c.lastCaller(), address(escrow), "called by the escrow");
        assertPaidNormally(jobId, job, s);
    }

    function test_callback_revertingConsumer() public {
        RevertingConsumer c = new RevertingConsumer();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), 200_000);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(jobId, address(c));
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(300, 200));
        assertPaidNormally(jobId, job, s);
    }

    function test_callback_gasBurner() public {
        GasBurnerConsumer c = new GasBurnerConsumer();
        uint32 limit = escrow.MAX_CALLBACK_GAS();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), limit);
        (IJobEscrow.Settlement memory s, uint256 gasUsed, uint256 failures) =
            submitRecorded(jobId, job, a, defaultResult(300, 200));
        vm.assertEq(failures, 1, "CallbackFailed");
        vm.assertEq(c.counter(), 0, "its work was rolled back");
        vm.assertLe(gasUsed, uint256(limit) + 300_000, "the executor pays at most the callback budget extra");
        assertPaidNormally(jobId, job, s);
    }

    /// @notice Memory-expansion gas for `size` bytes from empty memory.
    function memoryCost(uint256 size) internal pure returns (uint256) {
        uint256 words = (size + 31) / 32;
        return 3 * words + words * words / 512;
    }

    /// @notice Runs a job whose consumer returns or reverts with `size` bytes; checks it settles.
    function runBomb(uint256 size, bool reverts) internal returns (uint256 gasUsed, uint256 failures) {
        ReturnBombConsumer c = new ReturnBombConsumer(size, reverts);
        uint32 limit = escrow.MAX_CALLBACK_GAS();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), limit);
        IJobEscrow.Settlement memory s;
        (s, gasUsed, failures) = submitRecorded(jobId, job, a, defaultResult(300, 200));
        assertPaidNormally(jobId, job, s);
    }

    function test_callback_revertReturndataBomb() public {
        // 512 KiB of revert data. The consumer pays for building it; if the escrow copied it into its own
        // memory it would pay the same again (~0.57M gas), on the executor's bill.
        uint256 size = 512 * 1024;
        uint256 snap = vm.snapshotState();
        (uint256 baseline, uint256 f0) = runBomb(0, true);
        vm.revertToState(snap);
        (uint256 bomb, uint256 f1) = runBomb(size, true);
        vm.assertEq(f0, 1, "CallbackFailed (empty revert)");
        vm.assertEq(f1, 1, "CallbackFailed (bomb)");
        vm.assertLe(bomb - baseline, memoryCost(size) + 20_000, "revert data not copied by the escrow");
    }

    function test_callback_successReturndataBomb() public {
        uint256 size = 512 * 1024;
        uint256 snap = vm.snapshotState();
        (uint256 baseline, uint256 f0) = runBomb(0, false);
        vm.revertToState(snap);
        (uint256 bomb, uint256 f1) = runBomb(size, false);
        vm.assertEq(f0, 0, "the empty call succeeded");
        vm.assertEq(f1, 0, "the bomb call itself succeeded");
        vm.assertLe(bomb - baseline, memoryCost(size) + 20_000, "return data not copied by the escrow");
    }

    function test_callback_oneMegabyteBomb() public {
        // 1 MiB does not even fit in the callback's gas: it fails inside the consumer.
        ReturnBombConsumer c = new ReturnBombConsumer(1024 * 1024, true);
        uint32 limit = escrow.MAX_CALLBACK_GAS();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), limit);
        (IJobEscrow.Settlement memory s, uint256 gasUsed, uint256 failures) =
            submitRecorded(jobId, job, a, defaultResult(300, 200));
        vm.assertEq(failures, 1, "CallbackFailed");
        vm.assertLe(gasUsed, uint256(limit) + 300_000, "bounded");
        assertPaidNormally(jobId, job, s);
    }

    function test_callback_reentrantConsumerPropagating() public {
        ReentrantConsumer c = new ReentrantConsumer(address(escrow), false);
        c.setPayload(abi.encodeCall(IJobEscrow.withdraw, ()));
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), 500_000);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(jobId, address(c));
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(300, 200));
        vm.assertFalse(c.reentered(), "its state was rolled back with the failed call");
        assertPaidNormally(jobId, job, s);
    }

    function test_callback_reentrantConsumerFinalizeIsBlocked() public {
        // An earlier job whose challenge window is over; the consumer tries to finalize it from inside
        // the callback of a later job.
        (uint256 earlier,, IJobEscrow.Settlement memory s0) = submittedJob(300, 200);
        vm.warp(s0.challengeEnd);
        ReentrantConsumer c = new ReentrantConsumer(address(escrow), true);
        c.setPayload(abi.encodeCall(IJobEscrow.finalize, (earlier, s0)));
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), 500_000);
        (IJobEscrow.Settlement memory s,, uint256 failures) =
            submitRecorded(jobId, job, a, defaultResult(300, 200));
        vm.assertEq(failures, 0, "the consumer swallowed its failure");
        vm.assertTrue(c.reentered(), "re-entry attempted");
        vm.assertFalse(c.reentrySucceeded(), "re-entry failed");
        vm.assertEq(
            c.reentryError(),
            abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector),
            "ReentrancyGuardReentrantCall"
        );
        vm.assertEq(uint256(escrow.jobStatus(earlier)), uint256(IJobEscrow.JobStatus.Submitted), "untouched");
        escrow.finalize(earlier, s0);
        vm.assertEq(uint256(escrow.jobStatus(earlier)), uint256(IJobEscrow.JobStatus.Finalized), "finalized");
        vm.assertEq(escrow.credits(requester), 1024 - s0.payment, "refunded once, by the outer finalize");
        vm.assertGt(s.payment, 0, "later job submitted");
    }

    function test_callback_eoaTarget() public {
        address eoa = address(0xCA11);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = callbackJob(eoa, 100_000);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CallbackFailed(jobId, eoa);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(300, 200));
        assertPaidNormally(jobId, job, s);
    }

    function test_callback_insufficientGasForwardedReverts() public {
        GoodConsumer c = new GoodConsumer();
        uint32 limit = escrow.MAX_CALLBACK_GAS();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), limit);
        IJobEscrow.Result memory r = defaultResult(300, 200);
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.InsufficientGasForCallback.selector);
        escrow.submitResult{gas: 1_000_000}(jobId, job, a, r);
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.InsufficientGasForCallback.selector);
        escrow.submitResult{gas: limit}(jobId, job, a, r);
        vm.assertEq(
            uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Accepted), "still accepted"
        );
        vm.assertEq(c.calls(), 0, "not called");
    }

    // ---- an executor cannot starve the callback: wherever submitResult succeeds, the callback got its budget

    function trySubmit(uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a, uint256 g)
        internal
        returns (bool ok, bytes memory err)
    {
        vm.prank(executor);
        try escrow.submitResult{gas: g}(jobId, job, a, defaultResult(300, 200)) {
            ok = true;
        } catch (bytes memory e) {
            err = e;
        }
    }

    /// @return lo Largest gas that failed. @return hi Smallest gas that succeeded.
    function searchMinimalGas(uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a)
        internal
        returns (uint256 lo, uint256 hi)
    {
        uint256 snap = vm.snapshotState();
        lo = 0;
        hi = 6_000_000;
        (bool ok,) = trySubmit(jobId, job, a, hi);
        vm.assertTrue(ok, "succeeds with plenty of gas");
        vm.revertToState(snap);
        while (lo + 1 < hi) {
            uint256 mid = (lo + hi) / 2;
            (ok,) = trySubmit(jobId, job, a, mid);
            vm.revertToState(snap);
            if (ok) hi = mid;
            else lo = mid;
        }
    }

    function test_callback_cannotBeStarved() public {
        uint32 limit = 1_000_000;
        StarvationProbe probe = new StarvationProbe(limit - 5_000);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(probe), limit);
        (uint256 lo, uint256 hi) = searchMinimalGas(jobId, job, a);

        (bool ok, bytes memory err) = trySubmit(jobId, job, a, lo);
        vm.assertFalse(ok, "one less gas fails");
        vm.assertEq(
            err, abi.encodeWithSelector(IJobEscrow.InsufficientGasForCallback.selector), "refused up front"
        );
        (ok,) = trySubmit(jobId, job, a, hi);
        vm.assertTrue(ok, "minimal gas succeeds");
        vm.assertEq(probe.hits(), 1, "and the callback got its full budget");
        vm.assertGe(probe.gasAtEntry(), limit - 5_000, "budget");
    }

    function test_callback_gasBurnerAtMinimalGasStillSettles() public {
        GasBurnerConsumer c = new GasBurnerConsumer();
        uint32 limit = escrow.MAX_CALLBACK_GAS();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            callbackJob(address(c), limit);
        (uint256 lo, uint256 hi) = searchMinimalGas(jobId, job, a);
        (bool ok, bytes memory err) = trySubmit(jobId, job, a, lo);
        vm.assertFalse(ok, "one less gas fails");
        vm.assertEq(
            err, abi.encodeWithSelector(IJobEscrow.InsufficientGasForCallback.selector), "refused up front"
        );
        vm.recordLogs();
        (ok,) = trySubmit(jobId, job, a, hi);
        vm.assertTrue(ok, "succeeds");
        vm.assertEq(countLogs(vm.getRecordedLogs(), CALLBACK_FAILED, address(escrow)), 1, "CallbackFailed");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Submitted), "submitted");
    }
}
