// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {Base, bound} from "./utils/Base.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {Commitment, FinishReason, SamplingParams} from "../src/libraries/Commitment.sol";
import {MockDisputes} from "./mocks/MockDisputes.sol";
import {JobEscrow} from "../src/JobEscrow.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @notice Shared helpers of the escrow unit suites.
abstract contract EscrowTestBase is Base {
    uint256 internal constant JOB_FIELDS = 19;
    uint256 internal constant SETTLEMENT_FIELDS = 8;
    uint256 internal constant ASSIGNMENT_FIELDS = 5;

    function copyJob(IJobEscrow.Job memory job) internal pure returns (IJobEscrow.Job memory) {
        return abi.decode(abi.encode(job), (IJobEscrow.Job));
    }

    /// @notice A copy of `job` with field number `field` (0..17, every leaf of `Job`) changed.
    function tamperJob(IJobEscrow.Job memory job, uint256 field)
        internal
        pure
        returns (IJobEscrow.Job memory t)
    {
        t = copyJob(job);
        if (field == 0) t.spec.modelId = bytes32(uint256(t.spec.modelId) ^ 1);
        else if (field == 1) t.spec.executor = address(uint160(t.spec.executor) ^ 0xE3E3);
        else if (field == 2) t.spec.callback = address(uint160(t.spec.callback) ^ 0xCA11);
        else if (field == 3) t.spec.callbackGasLimit += 1;
        else if (field == 4) t.spec.maxInputTokens -= 1;
        else if (field == 5) t.spec.maxOutputTokens -= 1;
        else if (field == 6) t.spec.maxInputPrice += 1;
        else if (field == 7) t.spec.maxOutputPrice += 1;
        else if (field == 8) t.spec.deadline += 1;
        else if (field == 9) t.spec.sampling.temperature += 1;
        else if (field == 10) t.spec.sampling.topK += 1;
        else if (field == 11) t.spec.sampling.topP -= 1;
        else if (field == 12) t.requester = address(0xBEEF);
        else if (field == 13) t.promptHash = keccak256("another prompt");
        else if (field == 14) t.spec.salt = bytes32(uint256(t.spec.salt) ^ 1);
        else if (field == 15) t.samplerVersion += 1;
        else if (field == 16) t.minExecutorStake -= 1;
        else if (field == 17) t.escrow -= 1;
        else if (field == 18) t.rulesVersion += 1;
        else revert("no such field");
    }

    function tamperAssignment(IJobEscrow.Assignment memory a, uint256 field)
        internal
        view
        returns (IJobEscrow.Assignment memory t)
    {
        t = IJobEscrow.Assignment(a.executor, a.inputPrice, a.outputPrice, a.collateral, a.seed);
        if (field == 0) t.executor = otherExecutor;
        else if (field == 1) t.inputPrice -= 1;
        else if (field == 2) t.outputPrice -= 1;
        else if (field == 3) t.collateral -= 1;
        else if (field == 4) t.seed = bytes32(uint256(t.seed) ^ 1);
        else revert("no such field");
    }

    function tamperSettlement(IJobEscrow.Settlement memory s, uint256 field)
        internal
        view
        returns (IJobEscrow.Settlement memory t)
    {
        t = abi.decode(abi.encode(s), (IJobEscrow.Settlement));
        if (field == 0) t.requester = stranger;
        else if (field == 1) t.executor = otherExecutor;
        else if (field == 2) t.escrow += 1;
        else if (field == 3) t.payment -= 1;
        else if (field == 4) t.collateral -= 1;
        else if (field == 5) t.commitment = bytes32(uint256(t.commitment) ^ 1);
        else if (field == 6) t.challengeEnd -= 1;
        else if (field == 7) t.disputeEnd -= 1;
        else revert("no such field");
    }

    /// @notice `defaultResult`, without text when there is no output token (text is bounded per token).
    function fittingResult(uint32 inputTokens, uint256 outputCount)
        internal
        pure
        returns (IJobEscrow.Result memory r)
    {
        r = defaultResult(inputTokens, outputCount);
        if (outputCount == 0) r.output = "";
    }

    function expectedPayment(uint256 inputTokens, uint256 outputTokens) internal pure returns (uint256) {
        return (inputTokens * INPUT_PRICE + outputTokens * OUTPUT_PRICE) / 1_000_000;
    }

    function assertStatus(uint256 jobId, IJobEscrow.JobStatus expected, string memory what) internal view {
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(expected), what);
    }

    function stakeInfo(address who) internal view returns (IStaking.StakeInfo memory) {
        return staking.stakeOf(who, IStaking.Role.Executor);
    }
}

contract JobEscrowPostTest is EscrowTestBase {
    function test_post_pullsEscrowStoresJobAndEmits() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        uint256 expectedEscrow = (512 * uint256(1_000_000) + 256 * uint256(2_000_000)) / 1_000_000;
        vm.assertEq(escrow.maxCost(spec), expectedEscrow, "maxCost view");
        uint256 before = token.balanceOf(requester);

        IJobEscrow.Job memory expected = IJobEscrow.Job({
            spec: spec,
            requester: requester,
            promptHash: keccak256(PROMPT),
            samplerVersion: 1,
            rulesVersion: 1,
            minExecutorStake: MIN_EXECUTOR_STAKE,
            validatorFeeBps: VALIDATOR_FEE_BPS,
            collateralBps: COLLATERAL_BPS,
            challengeWindow: uint32(CHALLENGE_WINDOW),
            disputeWindow: uint32(DISPUTE_WINDOW),
            escrow: expectedEscrow
        });
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobPosted(1, requester, modelId, expected, PROMPT);
        (uint256 jobId, IJobEscrow.Job memory job) = post(spec);

        vm.assertEq(jobId, 1, "first job id");
        vm.assertEq(escrow.nextJobId(), 2, "next id");
        vm.assertEq(keccak256(abi.encode(job)), keccak256(abi.encode(expected)), "returned job");
        vm.assertEq(token.balanceOf(requester), before - expectedEscrow, "requester paid escrow");
        vm.assertEq(token.balanceOf(address(escrow)), expectedEscrow, "escrow holds it");
        assertStatus(jobId, IJobEscrow.JobStatus.Posted, "posted");
        assertStatus(jobId + 1, IJobEscrow.JobStatus.None, "next job unknown");
    }

    function test_post_unknownModelReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.modelId = keccak256("no such model");
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownModel.selector, spec.modelId));
        post(spec);
    }

    function test_post_inactiveModelReverts() public {
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        t.active = false;
        vm.prank(governance);
        registry.setTerms(modelId, t);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ModelInactive.selector, modelId));
        post(defaultSpec());
    }

    function test_post_zeroMaxOutputReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxOutputTokens = 0;
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        post(spec);
    }

    function test_post_emptyPromptReverts() public {
        vm.prank(requester);
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        escrow.postJob(defaultSpec(), "");
    }

    function test_post_contextOverflowReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputTokens = 32_768 - spec.maxOutputTokens + 1;
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        post(spec);
        // Exactly the context fits.
        spec.maxInputTokens -= 1;
        (uint256 jobId,) = post(spec);
        assertStatus(jobId, IJobEscrow.JobStatus.Posted, "context exactly full");
    }

    /// @notice A prompt is never zero tokens and `submitResult` demands 1 <= inputTokens <= maxInputTokens,
    /// so a job with maxInputTokens == 0 can never be fulfilled: an executor that accepts it can only
    /// let it expire and lose its collateral to the requester. Posting it must fail.
    function test_post_zeroMaxInputTokensReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputTokens = 0;
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        post(spec);
    }

    function test_post_contextOverflowNoUint32Wrap() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputTokens = type(uint32).max;
        spec.maxOutputTokens = 1;
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        post(spec);
    }

    function test_post_topPAboveOneReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.sampling.topP = 1_000_001;
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        post(spec);
        spec.sampling.topP = 1_000_000;
        (uint256 jobId,) = post(spec);
        assertStatus(jobId, IJobEscrow.JobStatus.Posted, "topP == 1e6 allowed");
    }

    function test_post_callbackGasAboveMaxReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.callback = address(0xCA11);
        spec.callbackGasLimit = escrow.MAX_CALLBACK_GAS() + 1;
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        post(spec);
        spec.callbackGasLimit = escrow.MAX_CALLBACK_GAS();
        (uint256 jobId,) = post(spec);
        assertStatus(jobId, IJobEscrow.JobStatus.Posted, "max callback gas allowed");
    }

    function test_post_callbackGasWithoutCallbackReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.callbackGasLimit = 1;
        vm.expectRevert(IJobEscrow.InvalidSpec.selector);
        post(spec);
    }

    function test_post_deadlineNowOrPastReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.deadline = uint64(block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, spec.deadline));
        post(spec);
        spec.deadline = uint64(block.timestamp - 1);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, spec.deadline));
        post(spec);
    }

    function test_post_deadlineBeyondMaxDurationReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.deadline = uint64(block.timestamp + MAX_JOB_DURATION + 1);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, spec.deadline));
        post(spec);
        spec.deadline = uint64(block.timestamp + MAX_JOB_DURATION);
        (uint256 jobId,) = post(spec);
        assertStatus(jobId, IJobEscrow.JobStatus.Posted, "deadline at max duration allowed");
    }

    function test_post_zeroEscrowReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputPrice = 0;
        spec.maxOutputPrice = 0;
        vm.expectRevert(IJobEscrow.EmptyEscrow.selector);
        post(spec);
        // Rounds down to zero: 512 * 1 + 256 * 1 < 1e6.
        spec.maxInputPrice = 1;
        spec.maxOutputPrice = 1;
        vm.expectRevert(IJobEscrow.EmptyEscrow.selector);
        post(spec);
    }

    function test_post_withoutAllowanceReverts() public {
        token.mint(stranger, 1e12);
        vm.prank(stranger);
        vm.expectRevert(); // ERC20InsufficientAllowance
        escrow.postJob(defaultSpec(), PROMPT);
        vm.assertEq(escrow.nextJobId(), 1, "no job id consumed");
    }

    function testFuzz_maxCost_formula(uint32 maxIn, uint32 maxOut, uint64 inPrice, uint64 outPrice)
        public
        view
    {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputTokens = maxIn;
        spec.maxOutputTokens = maxOut;
        spec.maxInputPrice = inPrice;
        spec.maxOutputPrice = outPrice;
        uint256 expected = (uint256(maxIn) * inPrice + uint256(maxOut) * outPrice) / 1_000_000;
        vm.assertEq(escrow.maxCost(spec), expected, "floor((in*pIn + out*pOut)/1e6)");
    }

    function testFuzz_post_pullsExactlyMaxCost(
        uint256 maxIn,
        uint256 maxOut,
        uint256 inPrice,
        uint256 outPrice
    ) public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxOutputTokens = uint32(bound(maxOut, 1, 16_384));
        spec.maxInputTokens = uint32(bound(maxIn, 1, 32_768 - spec.maxOutputTokens));
        spec.maxInputPrice = uint64(bound(inPrice, 0, 1e9));
        spec.maxOutputPrice = uint64(bound(outPrice, 1e6, 1e9));
        uint256 cost = escrow.maxCost(spec);
        uint256 before = token.balanceOf(requester);
        (, IJobEscrow.Job memory job) = post(spec);
        vm.assertEq(job.escrow, cost, "escrow = maxCost");
        vm.assertEq(before - token.balanceOf(requester), cost, "pulled exactly");
        vm.assertEq(token.balanceOf(address(escrow)), cost, "held exactly");
    }
}

contract JobEscrowCancelTest is EscrowTestBase {
    function test_cancel_refundsEscrowAsCredit() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobCancelled(jobId, job.escrow);
        vm.prank(requester);
        escrow.cancelJob(jobId, job);
        vm.assertEq(escrow.credits(requester), job.escrow, "credited");
        assertStatus(jobId, IJobEscrow.JobStatus.Cancelled, "cancelled");
        vm.assertEq(token.balanceOf(address(escrow)), job.escrow, "tokens stay until withdrawn");
    }

    function test_cancel_onlyRequester() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        address[3] memory others = [stranger, executor, governance];
        for (uint256 i = 0; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NotRequester.selector, others[i]));
            escrow.cancelJob(jobId, job);
        }
        // Claiming to be the requester does not work either.
        IJobEscrow.Job memory forged = copyJob(job);
        forged.requester = stranger;
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
        escrow.cancelJob(jobId, forged);
        assertStatus(jobId, IJobEscrow.JobStatus.Posted, "still posted");
    }

    function test_cancel_anyoneAfterDeadline_refundsRequester() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.warp(job.spec.deadline - 1);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NotRequester.selector, stranger));
        escrow.cancelJob(jobId, job);

        // From the deadline on the job can no longer be accepted, so anyone may close it.
        vm.warp(job.spec.deadline);
        vm.prank(stranger);
        escrow.cancelJob(jobId, job);
        assertStatus(jobId, IJobEscrow.JobStatus.Cancelled, "cancelled");
        vm.assertEq(escrow.credits(requester), job.escrow, "refund goes to the requester");
        vm.assertEq(escrow.credits(stranger), 0, "not to the caller");
    }

    function test_cancel_onlyPosted() public {
        (uint256 jobId, IJobEscrow.Job memory job,) = acceptedJob(defaultSpec());
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Accepted)
        );
        escrow.cancelJob(jobId, job);
    }

    function test_cancel_twiceReverts() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.prank(requester);
        escrow.cancelJob(jobId, job);
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Cancelled)
        );
        escrow.cancelJob(jobId, job);
        vm.assertEq(escrow.credits(requester), job.escrow, "refunded once");
    }

    function test_cancel_unknownJobReverts() public {
        (, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.UnknownJob.selector, 7));
        escrow.cancelJob(7, job);
    }

    function test_cancel_tamperedTermsRevert() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        for (uint256 f = 0; f < JOB_FIELDS; ++f) {
            if (f == 12) continue; // requester: covered in test_cancel_onlyRequester
            vm.prank(requester);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            escrow.cancelJob(jobId, tamperJob(job, f));
        }
    }

    function testFuzz_cancel_refundsExactly(uint256 maxOut, uint256 outPrice) public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxOutputTokens = uint32(bound(maxOut, 1, 8_192));
        spec.maxOutputPrice = uint64(bound(outPrice, 1e6, 1e12));
        uint256 before = token.balanceOf(requester);
        (uint256 jobId, IJobEscrow.Job memory job) = post(spec);
        vm.prank(requester);
        escrow.cancelJob(jobId, job);
        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(requester), before, "whole escrow back");
        vm.assertEq(token.balanceOf(address(escrow)), 0, "nothing left behind");
    }
}

contract JobEscrowAcceptTest is EscrowTestBase {
    function test_accept_locksCollateralAndBinds() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        uint256 collateral = collateralOf(job.escrow);
        IJobEscrow.Assignment memory expected =
            IJobEscrow.Assignment(executor, INPUT_PRICE, OUTPUT_PRICE, collateral, expectedSeed(jobId, job));
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobAccepted(jobId, executor, expected);
        IJobEscrow.Assignment memory a = accept(executor, jobId, job);

        vm.assertEq(keccak256(abi.encode(a)), keccak256(abi.encode(expected)), "assignment");
        vm.assertEq(stakeInfo(executor).locked, collateral, "locked");
        vm.assertEq(staking.freeStake(executor, IStaking.Role.Executor), 1_000e6 - collateral, "free");
        assertStatus(jobId, IJobEscrow.JobStatus.Accepted, "accepted");
    }

    /// @notice The seed is drawn at acceptance (`Assignment.seed`), differs per job, is what the commitment
    /// uses whatever happens in later blocks, and cannot be swapped for one the executor prefers.
    function test_seed_fixedAtAcceptanceAndBoundByTheAssignment() public {
        vm.prevrandao(keccak256("randomness of the accepting block"));
        IJobEscrow.JobSpec memory spec = defaultSpec();
        (uint256 id1, IJobEscrow.Job memory job1) = post(spec);
        (uint256 twinId, IJobEscrow.Job memory twin) = post(spec);
        spec.salt = keccak256("a fresh salt");
        (uint256 id2, IJobEscrow.Job memory job2) = post(spec);
        IJobEscrow.Assignment memory a1 = accept(executor, id1, job1);
        IJobEscrow.Assignment memory aTwin = accept(executor, twinId, twin);
        IJobEscrow.Assignment memory a2 = accept(otherExecutor, id2, job2);
        vm.assertEq(a1.seed, expectedSeed(id1, job1), "seed 1 derivation");
        vm.assertEq(a2.seed, expectedSeed(id2, job2), "seed 2 derivation");
        // The job id is not in the seed (others' posts could move it): the same terms accepted in one
        // block draw the same seed, and a fresh salt a fresh one.
        vm.assertEq(aTwin.seed, a1.seed, "same terms, same block: same seed");
        vm.assertNotEq(a1.seed, a2.seed, "same block, another salt: another seed");

        vm.roll(block.number + 50);
        vm.warp(block.timestamp + 10 minutes);
        vm.prevrandao(keccak256("a later block"));
        IJobEscrow.Result memory r = defaultResult(100, 10);
        IJobEscrow.Settlement memory s = submit(id1, job1, a1, r);
        vm.assertEq(
            s.commitment,
            Commitment.compute(
                modelId,
                1,
                job1.spec.sampling,
                a1.seed,
                r.promptTokensHash,
                r.inputTokens,
                keccak256(r.outputTokens),
                keccak256(r.output),
                r.finishReason
            ),
            "commitment uses the accepted seed"
        );

        IJobEscrow.Assignment memory forged = tamperAssignment(a2, 4);
        forged.seed = keccak256("the executor's favourite seed");
        vm.prank(otherExecutor);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, id2));
        escrow.submitResult(id2, job2, forged, r);
    }

    function test_accept_pricesAreBoundAtAcceptance() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        vm.prank(executor);
        staking.setPrice(modelId, INPUT_PRICE * 5, OUTPUT_PRICE * 5);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(300, 200));
        vm.assertEq(s.payment, expectedPayment(300, 200), "paid at the accepted price");
    }

    function test_accept_wrongStatusReverts() public {
        (uint256 jobId, IJobEscrow.Job memory job,) = acceptedJob(defaultSpec());
        vm.prank(otherExecutor);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Accepted)
        );
        escrow.acceptJob(jobId, job);

        (uint256 id2, IJobEscrow.Job memory job2) = post(defaultSpec());
        vm.prank(requester);
        escrow.cancelJob(id2, job2);
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, id2, IJobEscrow.JobStatus.Cancelled)
        );
        escrow.acceptJob(id2, job2);

        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.UnknownJob.selector, 99));
        escrow.acceptJob(99, job2);
    }

    function test_accept_anyTamperedJobFieldReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.callback = address(0xCA11);
        spec.callbackGasLimit = 50_000;
        (uint256 jobId, IJobEscrow.Job memory job) = post(spec);
        for (uint256 f = 0; f < JOB_FIELDS; ++f) {
            vm.prank(executor);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            escrow.acceptJob(jobId, tamperJob(job, f));
        }
        vm.assertEq(stakeInfo(executor).locked, 0, "nothing locked");
        accept(executor, jobId, job); // the genuine terms still work
        assertStatus(jobId, IJobEscrow.JobStatus.Accepted, "accepted");
    }

    function test_accept_deadlinePassedReverts() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.warp(job.spec.deadline);
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, job.spec.deadline));
        escrow.acceptJob(jobId, job);
    }

    function test_accept_designatedExecutorOnly() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.executor = executor;
        (uint256 jobId, IJobEscrow.Job memory job) = post(spec);
        vm.prank(otherExecutor);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NotDesignatedExecutor.selector, otherExecutor));
        escrow.acceptJob(jobId, job);
        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        vm.assertEq(a.executor, executor, "designated executor accepted");
    }

    function test_accept_notServingReverts() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IStaking.NotServing.selector, stranger, modelId));
        escrow.acceptJob(jobId, job);

        vm.prank(executor);
        staking.removeModel(modelId);
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IStaking.NotServing.selector, executor, modelId));
        escrow.acceptJob(jobId, job);
    }

    function test_accept_stakeBelowModelMinimumReverts() public {
        address small = address(0x5A11);
        setUpExecutor(small, MIN_EXECUTOR_STAKE - 1);
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.prank(small);
        vm.expectRevert(
            abi.encodeWithSelector(
                IStaking.StakeBelowModelMinimum.selector, MIN_EXECUTOR_STAKE - 1, MIN_EXECUTOR_STAKE
            )
        );
        escrow.acceptJob(jobId, job);
    }

    function test_accept_minimumStakeIsSnapshotAtPosting() public {
        address mid = address(0x3131);
        setUpExecutor(mid, 150e6);
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        t.minExecutorStake = 200e6;
        vm.prank(governance);
        registry.setTerms(modelId, t);
        // The posted job keeps the minimum it was posted with.
        IJobEscrow.Assignment memory a = accept(mid, jobId, job);
        vm.assertEq(a.executor, mid, "accepted under the posted minimum");
        // A new job uses the new minimum.
        (uint256 id2, IJobEscrow.Job memory job2) = post(defaultSpec());
        vm.assertEq(job2.minExecutorStake, 200e6, "new snapshot");
        vm.prank(mid);
        vm.expectRevert(abi.encodeWithSelector(IStaking.StakeBelowModelMinimum.selector, 150e6, 200e6));
        escrow.acceptJob(id2, job2);
    }

    function test_accept_insufficientFreeStakeReverts() public {
        address small = address(0x5A11);
        setUpExecutor(small, MIN_EXECUTOR_STAKE);
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxOutputPrice = 240e6 * 1_000_000 / 256; // escrow ≈ 240e6 → collateral ≈ 480e6 > 100e6
        (uint256 jobId, IJobEscrow.Job memory job) = post(spec);
        uint256 collateral = collateralOf(job.escrow);
        vm.prank(small);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.InsufficientFreeStake.selector, MIN_EXECUTOR_STAKE, collateral)
        );
        escrow.acceptJob(jobId, job);
    }

    function test_accept_lockedStakeIsNotFreeForTheNextJob() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxOutputPrice = 300e6 * 1_000_000 / 256; // escrow 300e6 → collateral 600e6 of 1000e6
        (uint256 id1, IJobEscrow.Job memory job1) = post(spec);
        (uint256 id2, IJobEscrow.Job memory job2) = post(spec);
        accept(executor, id1, job1);
        uint256 collateral = collateralOf(job2.escrow);
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.InsufficientFreeStake.selector, 1_000e6 - collateral, collateral)
        );
        escrow.acceptJob(id2, job2);
    }

    function test_accept_priceAboveMaximumReverts() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputPrice = INPUT_PRICE - 1;
        (uint256 id1, IJobEscrow.Job memory job1) = post(spec);
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.PriceAboveMaximum.selector);
        escrow.acceptJob(id1, job1);

        spec = defaultSpec();
        spec.maxOutputPrice = OUTPUT_PRICE - 1;
        (uint256 id2, IJobEscrow.Job memory job2) = post(spec);
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.PriceAboveMaximum.selector);
        escrow.acceptJob(id2, job2);

        spec.maxInputPrice = INPUT_PRICE;
        spec.maxOutputPrice = OUTPUT_PRICE;
        (uint256 id3, IJobEscrow.Job memory job3) = post(spec);
        accept(executor, id3, job3);
        assertStatus(id3, IJobEscrow.JobStatus.Accepted, "price == max accepted");
        vm.assertEq(stakeInfo(executor).locked, collateralOf(job3.escrow), "only job 3 locked");
    }
}

contract JobEscrowSubmitTest is EscrowTestBase {
    uint256 internal jobId;
    IJobEscrow.Job internal job;
    IJobEscrow.Assignment internal assignment;

    function setUp() public override {
        super.setUp();
        (jobId, job, assignment) = acceptedJob(defaultSpec());
    }

    function submitAs(address who, IJobEscrow.Result memory r)
        internal
        returns (IJobEscrow.Settlement memory)
    {
        vm.prank(who);
        return escrow.submitResult(jobId, job, assignment, r);
    }

    function expectInvalid(IJobEscrow.Result memory r) internal {
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.InvalidResult.selector);
        escrow.submitResult(jobId, job, assignment, r);
    }

    function test_submit_settlementCommitmentPaymentAndEvent() public {
        IJobEscrow.Result memory r = defaultResult(300, 200);
        bytes32 commitment = Commitment.compute(
            modelId,
            1,
            job.spec.sampling,
            assignment.seed,
            r.promptTokensHash,
            r.inputTokens,
            keccak256(r.outputTokens),
            keccak256(r.output),
            FinishReason.Stop
        );
        uint64 challengeEnd = uint64(block.timestamp) + CHALLENGE_WINDOW;
        IJobEscrow.Settlement memory expected = IJobEscrow.Settlement({
            requester: requester,
            executor: executor,
            escrow: job.escrow,
            payment: expectedPayment(300, 200),
            validatorFee: feeOf(expectedPayment(300, 200)),
            collateral: assignment.collateral,
            commitment: commitment,
            challengeEnd: challengeEnd,
            disputeEnd: challengeEnd + DISPUTE_WINDOW
        });
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.ResultSubmitted(
            jobId, executor, expected, 300, FinishReason.Stop, r.promptTokensHash, r.outputTokens, r.output
        );
        IJobEscrow.Settlement memory s = submitAs(executor, r);
        vm.assertEq(keccak256(abi.encode(s)), keccak256(abi.encode(expected)), "settlement");
        vm.assertEq(s.payment, 110, "(300*0.1e6 + 200*0.4e6)/1e6");
        assertStatus(jobId, IJobEscrow.JobStatus.Submitted, "submitted");
    }

    function test_submit_onlyBoundExecutor() public {
        address[4] memory others = [otherExecutor, requester, stranger, governance];
        for (uint256 i = 0; i < others.length; ++i) {
            vm.prank(others[i]);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NotBoundExecutor.selector, others[i]));
            escrow.submitResult(jobId, job, assignment, defaultResult(300, 200));
        }
        assertStatus(jobId, IJobEscrow.JobStatus.Accepted, "still accepted");
    }

    function test_submit_cannotRebindByForgingTheAssignment() public {
        for (uint256 f = 0; f < ASSIGNMENT_FIELDS; ++f) {
            vm.prank(f == 0 ? otherExecutor : executor);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            escrow.submitResult(jobId, job, tamperAssignment(assignment, f), defaultResult(300, 200));
        }
        for (uint256 f = 0; f < JOB_FIELDS; ++f) {
            vm.prank(executor);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            escrow.submitResult(jobId, tamperJob(job, f), assignment, defaultResult(300, 200));
        }
    }

    function test_submit_wrongStatusReverts() public {
        (uint256 posted, IJobEscrow.Job memory postedJob) = post(defaultSpec());
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, posted, IJobEscrow.JobStatus.Posted)
        );
        escrow.submitResult(posted, postedJob, assignment, defaultResult(300, 200));

        submitAs(executor, defaultResult(300, 200));
        vm.prank(executor);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Submitted)
        );
        escrow.submitResult(jobId, job, assignment, defaultResult(300, 200));
    }

    function test_submit_misalignedPackingReverts() public {
        IJobEscrow.Result memory r = defaultResult(300, 3);
        r.outputTokens = bytes.concat(r.outputTokens, hex"01");
        expectInvalid(r);
        r.outputTokens = hex"000001";
        expectInvalid(r);
    }

    function test_submit_tooManyOutputsReverts() public {
        expectInvalid(defaultResult(300, 257));
        IJobEscrow.Settlement memory s = submitAs(executor, defaultResult(300, 256));
        vm.assertEq(s.payment, expectedPayment(300, 256), "256 outputs allowed");
    }

    function test_submit_inputTokenBoundsRevert() public {
        expectInvalid(defaultResult(0, 10));
        expectInvalid(defaultResult(513, 10));
        IJobEscrow.Settlement memory s = submitAs(executor, defaultResult(512, 10));
        vm.assertEq(s.payment, expectedPayment(512, 10), "512 inputs allowed");
    }

    function test_submit_finishReasonNoneReverts() public {
        IJobEscrow.Result memory r = defaultResult(300, 10);
        r.finishReason = FinishReason.None;
        expectInvalid(r);
    }

    function test_submit_lengthNeedsExactlyMaxOutputs() public {
        IJobEscrow.Result memory r = defaultResult(300, 255);
        r.finishReason = FinishReason.Length;
        expectInvalid(r);
        r = defaultResult(300, 0);
        r.finishReason = FinishReason.Length;
        expectInvalid(r);
        r = defaultResult(300, 256);
        r.finishReason = FinishReason.Length;
        IJobEscrow.Settlement memory s = submitAs(executor, r);
        vm.assertEq(
            s.commitment,
            Commitment.compute(
                modelId,
                1,
                job.spec.sampling,
                assignment.seed,
                r.promptTokensHash,
                r.inputTokens,
                keccak256(r.outputTokens),
                keccak256(r.output),
                FinishReason.Length
            ),
            "length commitment"
        );
    }

    function test_submit_emptyOutputWithStop() public {
        IJobEscrow.Result memory r = defaultResult(300, 0);
        // No output token, no text: text beyond MAX_TEXT_BYTES_PER_TOKEN per output token is invalid.
        expectInvalid(r);
        r.output = "";
        IJobEscrow.Settlement memory s = submitAs(executor, r);
        vm.assertEq(s.payment, expectedPayment(300, 0), "input only");
    }

    function test_submit_deadline() public {
        vm.warp(job.spec.deadline + 1);
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlinePassed.selector, job.spec.deadline));
        escrow.submitResult(jobId, job, assignment, defaultResult(300, 10));
        vm.warp(job.spec.deadline);
        IJobEscrow.Settlement memory s = submitAs(executor, defaultResult(300, 10));
        vm.assertEq(s.challengeEnd, job.spec.deadline + CHALLENGE_WINDOW, "at the deadline is still in time");
    }

    function test_submit_commitmentBindsEveryInput() public {
        IJobEscrow.Result memory r = defaultResult(300, 10);
        uint256 snap = vm.snapshotState();
        bytes32 base = submitAs(executor, r).commitment;
        vm.revertToState(snap);
        r.promptTokensHash = keccak256("other prompt ids");
        vm.assertNotEq(submitAs(executor, r).commitment, base, "prompt ids");
        vm.revertToState(snap);
        r = defaultResult(300, 10);
        r.outputTokens[3] = 0x07;
        vm.assertNotEq(submitAs(executor, r).commitment, base, "output ids");
        vm.revertToState(snap);
        r = defaultResult(300, 10);
        r.output = "different text, same ids";
        vm.assertNotEq(submitAs(executor, r).commitment, base, "output text");
        vm.revertToState(snap);
        r = defaultResult(301, 10);
        vm.assertNotEq(submitAs(executor, r).commitment, base, "input count");
        vm.revertToState(snap);
        vm.assertEq(
            submitAs(executor, defaultResult(300, 10)).commitment, base, "same inputs, same commitment"
        );
    }

    function testFuzz_submit_paymentWithinEscrowAndSplitsExactly(
        uint256 inputTokens,
        uint256 outputCount,
        uint256 inPrice,
        uint256 outPrice,
        uint256 maxIn,
        uint256 maxOut
    ) public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputTokens = uint32(bound(maxIn, 1, 4_096));
        spec.maxOutputTokens = uint32(bound(maxOut, 1, 1_024));
        spec.maxInputPrice = uint64(bound(inPrice, 0, 1e12));
        spec.maxOutputPrice = uint64(bound(outPrice, 1e6, 1e12));
        // The executor's prices are at most the job's maxima.
        uint64 pIn = uint64(bound(uint256(keccak256(abi.encode(inPrice))), 0, spec.maxInputPrice));
        uint64 pOut = uint64(bound(uint256(keccak256(abi.encode(outPrice))), 0, spec.maxOutputPrice));
        address exec = address(0xF00D);
        setUpExecutor(exec, 1e27);
        vm.prank(exec);
        staking.setPrice(modelId, pIn, pOut);

        (uint256 id, IJobEscrow.Job memory j) = post(spec);
        IJobEscrow.Assignment memory a = accept(exec, id, j);
        uint32 nIn = uint32(bound(inputTokens, 1, spec.maxInputTokens));
        uint256 nOut = bound(outputCount, 0, spec.maxOutputTokens);
        IJobEscrow.Settlement memory s = submit(id, j, a, fittingResult(nIn, nOut));

        uint256 payment = (uint256(nIn) * pIn + nOut * pOut) / 1_000_000;
        vm.assertEq(s.payment, payment, "payment formula");
        vm.assertLe(s.payment, j.escrow, "payment <= escrow");

        uint256 poolBefore = escrow.rewardPool();
        uint256 reqBefore = escrow.credits(requester);
        finalizeAfterWindow(id, s);
        uint256 payout = escrow.credits(exec);
        uint256 fee = escrow.rewardPool() - poolBefore;
        uint256 refund = escrow.credits(requester) - reqBefore;
        vm.assertEq(fee, feeOf(payment), "fee (rounded up)");
        vm.assertEq(payout + fee, payment, "payout + fee = payment");
        vm.assertEq(refund + payout + fee, j.escrow, "refund + payout + fee = escrow");
        // setUp's accepted job is still held too.
        vm.assertEq(token.balanceOf(address(escrow)), job.escrow + j.escrow, "escrow balance = liabilities");
        vm.assertEq(stakeInfo(exec).locked, 0, "collateral released");
    }
}

contract JobEscrowFinalizeTest is EscrowTestBase {
    function test_finalize_creditsPoolRefundReleaseAndReputation() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        uint256 fee = feeOf(s.payment);
        vm.warp(s.challengeEnd);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobFinalized(jobId);
        vm.prank(stranger); // anyone may finalize
        escrow.finalize(jobId, s);

        vm.assertEq(escrow.credits(executor), s.payment - fee, "executor");
        vm.assertEq(escrow.rewardPool(), fee, "pool");
        vm.assertEq(escrow.credits(requester), job.escrow - s.payment, "refund");
        vm.assertEq(escrow.credits(stranger), 0, "finalizer gets nothing");
        vm.assertEq(stakeInfo(executor).locked, 0, "released");
        vm.assertEq(stakeInfo(executor).staked, 1_000e6, "stake intact");
        vm.assertEq(stakeInfo(executor).jobsCompleted, 1, "jobs completed");
        assertStatus(jobId, IJobEscrow.JobStatus.Finalized, "finalized");
    }

    function test_finalize_fullPaymentMeansNoRefund() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputPrice = INPUT_PRICE;
        spec.maxOutputPrice = OUTPUT_PRICE;
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = acceptedJob(spec);
        IJobEscrow.Result memory r = defaultResult(512, 256);
        r.finishReason = FinishReason.Length;
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        vm.assertEq(s.payment, job.escrow, "everything spent");
        finalizeAfterWindow(jobId, s);
        vm.assertEq(escrow.credits(requester), 0, "no refund");
        vm.assertEq(escrow.credits(executor) + escrow.rewardPool(), job.escrow, "all to executor and pool");
    }

    function test_finalize_challengeWindowOpenReverts() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        vm.warp(s.challengeEnd - 1);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ChallengeWindowOpen.selector, s.challengeEnd));
        escrow.finalize(jobId, s);
    }

    function test_finalize_twiceReverts() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        finalizeAfterWindow(jobId, s);
        uint256 credit = escrow.credits(executor);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Finalized)
        );
        escrow.finalize(jobId, s);
        vm.assertEq(escrow.credits(executor), credit, "paid once");
    }

    function test_finalize_wrongSettlementReverts() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        vm.warp(s.disputeEnd + 1);
        for (uint256 f = 0; f < SETTLEMENT_FIELDS; ++f) {
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            escrow.finalize(jobId, tamperSettlement(s, f));
        }
    }

    function test_finalize_cannotEndChallengeEarlyWithForgedEnd() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        IJobEscrow.Settlement memory forged = tamperSettlement(s, 6);
        forged.challengeEnd = uint64(block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
        escrow.finalize(jobId, forged);
    }

    function test_finalize_wrongStatusAndUnknown() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        (uint256 posted,) = post(defaultSpec());
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, posted, IJobEscrow.JobStatus.Posted)
        );
        escrow.finalize(posted, s);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.UnknownJob.selector, 1234));
        escrow.finalize(1234, s);
        vm.assertEq(jobId, 1, "first job");
    }
}

contract JobEscrowExpireTest is EscrowTestBase {
    function test_expire_refundsAndSeizesCollateral() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        uint256 stakingBefore = token.balanceOf(address(staking));
        vm.warp(job.spec.deadline + 1);
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.CollateralSeized(executor, jobId, a.collateral, IStaking.Fault.NoShow, address(escrow));
        vm.expectEmit(true, true, true, true, address(escrow));
        uint256 compensation = compensationCap(job.escrow);
        emit IJobEscrow.JobExpired(jobId, job.escrow, compensation, a.collateral - compensation);
        vm.prank(stranger); // permissionless
        escrow.expire(jobId, job, a);

        vm.assertEq(escrow.credits(requester), job.escrow, "refund now");
        (uint256 locked, uint256 releaseAt) = escrow.lockedCreditOf(requester);
        vm.assertEq(locked, compensation, "compensation locked");
        vm.assertEq(releaseAt, block.timestamp + UNBONDING_PERIOD, "until the unbonding period");
        vm.assertEq(escrow.rewardPool(), a.collateral - compensation, "rest to the reward pool");
        IStaking.StakeInfo memory info = stakeInfo(executor);
        vm.assertEq(info.locked, 0, "locked reduced");
        vm.assertEq(info.staked, 1_000e6 - a.collateral, "stake reduced by the collateral");
        vm.assertEq(info.jobsExpired, 1, "reputation");
        vm.assertEq(info.jobsCompleted, 0, "not completed");
        vm.assertEq(token.balanceOf(address(staking)), stakingBefore - a.collateral, "left staking");
        vm.assertEq(token.balanceOf(address(escrow)), job.escrow + a.collateral, "arrived in escrow");
        assertStatus(jobId, IJobEscrow.JobStatus.Expired, "expired");

        // The escrow is paid at once; the compensation only after the unbonding period.
        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(requester), 1_000_000e6, "escrow back, no compensation yet");
        vm.assertEq(
            token.balanceOf(address(escrow)), compensation + escrow.rewardPool(), "holds locked credit + pool"
        );
        vm.warp(releaseAt - 1);
        vm.prank(requester);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        escrow.withdraw();
        vm.warp(releaseAt);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Withdrawn(requester, requester, compensation);
        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(requester), 1_000_000e6 + compensation, "compensation after unbonding");
        (locked,) = escrow.lockedCreditOf(requester);
        vm.assertEq(locked, 0, "locked credit paid out");
        vm.assertEq(token.balanceOf(address(escrow)), escrow.rewardPool(), "only the pool is left");
    }

    function test_expire_beforeDeadlineReverts() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        vm.warp(job.spec.deadline);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DeadlineNotPassed.selector, job.spec.deadline));
        escrow.expire(jobId, job, a);
    }

    function test_expire_twiceReverts() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        vm.warp(job.spec.deadline + 1);
        escrow.expire(jobId, job, a);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Expired)
        );
        escrow.expire(jobId, job, a);
        vm.assertEq(escrow.credits(requester), job.escrow, "refunded once");
        (uint256 locked,) = escrow.lockedCreditOf(requester);
        vm.assertEq(locked, compensationCap(job.escrow), "compensated once");
        vm.assertEq(escrow.rewardPool(), a.collateral - locked, "pool credited once");
    }

    function test_expire_wrongStatusOrTermsReverts() public {
        (uint256 posted, IJobEscrow.Job memory postedJob) = post(defaultSpec());
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        vm.warp(job.spec.deadline + 1);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, posted, IJobEscrow.JobStatus.Posted)
        );
        escrow.expire(posted, postedJob, a);
        for (uint256 f = 0; f < ASSIGNMENT_FIELDS; ++f) {
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            escrow.expire(jobId, job, tamperAssignment(a, f));
        }
        for (uint256 f = 0; f < JOB_FIELDS; ++f) {
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            escrow.expire(jobId, tamperJob(job, f), a);
        }
    }

    function test_expire_submittedJobCannotExpire() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        submit(jobId, job, a, defaultResult(10, 10));
        vm.warp(job.spec.deadline + 1);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Submitted)
        );
        escrow.expire(jobId, job, a);
    }

    /// @notice Collateral rounds up: a one-unit job at a 0.5x ratio still locks one unit, which a no-show
    /// loses (to the reward pool: the capped compensation of a one-unit escrow rounds to zero), and the
    /// expiry counts against the executor's reputation.
    function test_expire_oneUnitJobStillRisksCollateral() public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputTokens = 1;
        spec.maxOutputTokens = 1;
        spec.maxInputPrice = INPUT_PRICE;
        spec.maxOutputPrice = 1_000_000; // escrow (1e5 + 1e6) / 1e6 = 1; collateral ceil(1 * 5000 / 10000) = 1
        vm.prank(governance);
        escrow.setParameters(CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION, VALIDATOR_FEE_BPS, 5_000);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = acceptedJob(spec);
        vm.assertEq(job.escrow, 1, "escrow 1");
        vm.assertEq(a.collateral, 1, "collateral rounds up to 1");
        vm.assertEq(stakeInfo(executor).locked, 1, "one unit locked");
        vm.warp(job.spec.deadline + 1);
        escrow.expire(jobId, job, a);
        vm.assertEq(escrow.credits(requester), 1, "refund");
        (uint256 locked,) = escrow.lockedCreditOf(requester);
        vm.assertEq(locked, 0, "10% of 1 rounds to no compensation");
        vm.assertEq(escrow.rewardPool(), 1, "the collateral funds the pool");
        vm.assertEq(stakeInfo(executor).staked, 1_000e6 - 1, "executor lost it");
        vm.assertEq(stakeInfo(executor).jobsExpired, 1, "a no-show is a no-show");
    }

    function testFuzz_expire_refundsExactly(uint256 maxOut, uint256 outPrice, uint256 late) public {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxOutputTokens = uint32(bound(maxOut, 1, 4_096));
        spec.maxOutputPrice = uint64(bound(outPrice, OUTPUT_PRICE, 1e11));
        uint256 before = token.balanceOf(requester);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = acceptedJob(spec);
        vm.assertEq(a.collateral, collateralOf(job.escrow), "collateral");
        vm.warp(job.spec.deadline + bound(late, 1, 365 days));
        escrow.expire(jobId, job, a);
        uint256 compensation = compensationCap(job.escrow);
        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(requester), before, "escrow back at once");
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(requester), before + compensation, "plus the capped compensation later");
        vm.assertEq(
            stakeInfo(executor).staked, 1_000e6 - a.collateral, "executor lost exactly the collateral"
        );
        vm.assertEq(escrow.rewardPool(), a.collateral - compensation, "the rest to the pool");
        vm.assertEq(token.balanceOf(address(escrow)), escrow.rewardPool(), "nothing else left behind");
    }
}

contract JobEscrowWithdrawTest is EscrowTestBase {
    function test_withdraw_nothingReverts() public {
        vm.prank(stranger);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        escrow.withdraw();
    }

    function test_withdraw_paysCreditOnce() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        finalizeAfterWindow(jobId, s);
        uint256 credit = escrow.credits(executor);
        vm.assertGt(credit, 0, "has credit");
        uint256 escrowBefore = token.balanceOf(address(escrow));
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Withdrawn(executor, executor, credit);
        vm.prank(executor);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(executor), credit, "paid");
        vm.assertEq(token.balanceOf(address(escrow)), escrowBefore - credit, "left escrow");
        vm.assertEq(escrow.credits(executor), 0, "zeroed");
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        escrow.withdraw();
    }
}

contract JobEscrowWithdrawToTest is EscrowTestBase {
    function test_withdrawTo_paysTheCallersCreditToAnotherAddress() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.prank(requester);
        escrow.cancelJob(jobId, job);
        address wallet = address(0x3A11E7);
        uint256 requesterBalance = token.balanceOf(requester);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.Withdrawn(requester, wallet, job.escrow);
        vm.prank(requester);
        escrow.withdrawTo(wallet);
        vm.assertEq(token.balanceOf(wallet), job.escrow, "paid to `to`");
        vm.assertEq(token.balanceOf(requester), requesterBalance, "not to the caller");
        vm.assertEq(escrow.credits(requester), 0, "credit spent");
        vm.prank(requester);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        escrow.withdrawTo(wallet);
    }

    function test_withdrawTo_zeroAddressReverts() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.prank(requester);
        escrow.cancelJob(jobId, job);
        vm.prank(requester);
        vm.expectRevert(IJobEscrow.ZeroAddress.selector);
        escrow.withdrawTo(address(0));
        vm.assertEq(escrow.credits(requester), job.escrow, "credit kept");
    }

    /// @notice Two no-shows against one requester: the locked compensations add up, and the later expiry
    /// pushes the release of both to its own unbonding period.
    function test_lockedCredit_accumulatesAndReleasesTogether() public {
        (uint256 id1, IJobEscrow.Job memory job1, IJobEscrow.Assignment memory a1) =
            acceptedJob(defaultSpec());
        vm.warp(job1.spec.deadline + 1);
        escrow.expire(id1, job1, a1);
        (, uint256 firstRelease) = escrow.lockedCreditOf(requester);
        vm.warp(block.timestamp + 1 days);
        (uint256 id2, IJobEscrow.Job memory job2, IJobEscrow.Assignment memory a2) =
            acceptedJob(defaultSpec());
        vm.warp(job2.spec.deadline + 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.CreditLocked(
            requester, compensationCap(job2.escrow), block.timestamp + UNBONDING_PERIOD
        );
        escrow.expire(id2, job2, a2);
        (uint256 locked, uint256 releaseAt) = escrow.lockedCreditOf(requester);
        vm.assertEq(locked, compensationCap(job1.escrow) + compensationCap(job2.escrow), "added up");
        vm.assertEq(releaseAt, block.timestamp + UNBONDING_PERIOD, "released with the later one");
        vm.assertGt(releaseAt, firstRelease, "pushed back");

        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(escrow.credits(requester), 0, "refunds paid");
        (uint256 stillLocked,) = escrow.lockedCreditOf(requester);
        vm.assertEq(stillLocked, locked, "compensation still locked");
        vm.warp(releaseAt);
        uint256 before = token.balanceOf(requester);
        vm.prank(requester);
        escrow.withdraw();
        vm.assertEq(token.balanceOf(requester) - before, locked, "both compensations at release");
    }
}

contract JobEscrowDisputeHookTest is EscrowTestBase {
    MockDisputes internal disputes;

    function setUp() public override {
        super.setUp();
        disputes = new MockDisputes(escrow, staking);
        wireDisputes(address(disputes));
    }

    function test_wiring() public view {
        vm.assertEq(escrow.disputes(), address(disputes), "escrow wired");
        vm.assertEq(staking.disputes(), address(disputes), "staking wired");
    }

    function test_onlyDisputes() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        address[4] memory callers = [stranger, governance, executor, requester];
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.startPrank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, callers[i]));
            escrow.freezeClaim(jobId, abi.encode(s));
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, callers[i]));
            escrow.resolveClaim(jobId, abi.encode(s), true);
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, callers[i]));
            escrow.payReward(callers[i], 0);
            vm.stopPrank();
        }
    }

    function test_hooksUnwiredRejectEveryone() public {
        // A fresh escrow whose dispute contract is not wired: the zero address never passes.
        JobEscrow fresh = newEscrow(IERC20(address(token)), staking, registry);
        vm.assertEq(fresh.disputes(), address(0), "unwired");
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, address(this)));
        fresh.payReward(address(this), 0);
        vm.prank(address(0));
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, address(0)));
        fresh.payReward(address(this), 0);
    }

    function test_freeze_insideWindow() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        vm.warp(s.challengeEnd - 1);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobDisputed(jobId);
        disputes.freeze(jobId, s);
        assertStatus(jobId, IJobEscrow.JobStatus.Disputed, "disputed");
        // A frozen job cannot be finalized at challenge end.
        vm.warp(s.challengeEnd);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DisputeWindowOpen.selector, s.disputeEnd));
        escrow.finalize(jobId, s);
    }

    function test_freeze_outsideWindowReverts() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        vm.warp(s.challengeEnd);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ChallengeWindowClosed.selector, s.challengeEnd));
        disputes.freeze(jobId, s);
    }

    function test_freeze_wrongStatusOrTerms() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        for (uint256 f = 0; f < SETTLEMENT_FIELDS; ++f) {
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            disputes.freeze(jobId, tamperSettlement(s, f));
        }
        disputes.freeze(jobId, s);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Disputed)
        );
        disputes.freeze(jobId, s);
        (uint256 posted,) = post(defaultSpec());
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, posted, IJobEscrow.JobStatus.Posted)
        );
        disputes.freeze(posted, s);
    }

    function test_resolve_faulty() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        disputes.freeze(jobId, s);
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.CollateralSeized(
            executor, jobId, s.collateral, IStaking.Fault.DisputeLost, address(disputes)
        );
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobRejected(jobId, job.escrow, s.collateral);
        disputes.resolve(jobId, s, true);

        vm.assertEq(escrow.credits(requester), job.escrow, "full refund");
        vm.assertEq(escrow.credits(executor), 0, "executor unpaid");
        vm.assertEq(escrow.rewardPool(), 0, "no fee");
        vm.assertEq(token.balanceOf(address(disputes)), s.collateral, "collateral to disputes");
        vm.assertEq(token.balanceOf(address(escrow)), job.escrow, "escrow holds only the refund");
        IStaking.StakeInfo memory info = stakeInfo(executor);
        vm.assertEq(info.staked, 1_000e6 - s.collateral, "stake cut");
        vm.assertEq(info.locked, 0, "unlocked");
        vm.assertEq(info.jobsExpired, 0, "not a no-show");
        vm.assertEq(info.jobsCompleted, 0, "not completed");
        vm.assertEq(staking.executorProfile(executor).disputesLost, 1, "disputes lost");
        assertStatus(jobId, IJobEscrow.JobStatus.Rejected, "rejected");

        vm.warp(s.disputeEnd);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Rejected)
        );
        escrow.finalize(jobId, s);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Rejected)
        );
        disputes.resolve(jobId, s, false);
    }

    function test_resolve_honestPaysAsFinalize() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        disputes.freeze(jobId, s);
        uint256 fee = feeOf(s.payment);
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.JobFinalized(jobId);
        disputes.resolve(jobId, s, false);
        vm.assertEq(escrow.credits(executor), s.payment - fee, "executor");
        vm.assertEq(escrow.rewardPool(), fee, "pool");
        vm.assertEq(escrow.credits(requester), job.escrow - s.payment, "refund");
        vm.assertEq(stakeInfo(executor).locked, 0, "released");
        vm.assertEq(stakeInfo(executor).jobsCompleted, 1, "completed");
        vm.assertEq(staking.executorProfile(executor).disputesLost, 0, "no dispute lost");
        assertStatus(jobId, IJobEscrow.JobStatus.Finalized, "finalized");
    }

    function test_resolve_onlyDisputedJobs() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Submitted)
        );
        disputes.resolve(jobId, s, true);
        disputes.freeze(jobId, s);
        for (uint256 f = 0; f < SETTLEMENT_FIELDS; ++f) {
            vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
            disputes.resolve(jobId, tamperSettlement(s, f), true);
        }
    }

    function test_unresolvedDisputeFinalizesAfterDisputeEnd() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        disputes.freeze(jobId, s);
        vm.warp(s.disputeEnd - 1);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DisputeWindowOpen.selector, s.disputeEnd));
        escrow.finalize(jobId, s);
        vm.warp(s.disputeEnd);
        escrow.finalize(jobId, s);
        uint256 fee = feeOf(s.payment);
        vm.assertEq(escrow.credits(executor), s.payment - fee, "paid as honest");
        vm.assertEq(escrow.credits(requester), job.escrow - s.payment, "refund");
        assertStatus(jobId, IJobEscrow.JobStatus.Finalized, "finalized");
        // The late dispute contract can no longer resolve it.
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Finalized)
        );
        disputes.resolve(jobId, s, true);
    }

    function test_payReward() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        finalizeAfterWindow(jobId, s);
        uint256 pool = escrow.rewardPool();
        vm.assertGt(pool, 0, "pool funded");
        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.RewardPaid(stranger, pool - 1);
        disputes.payReward(stranger, pool - 1);
        vm.assertEq(escrow.rewardPool(), 1, "pool reduced");
        vm.assertEq(escrow.credits(stranger), pool - 1, "credited");
        // More than the pool underflows.
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x11));
        disputes.payReward(stranger, 2);
    }
}
