// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm, Vm} from "./utils/Vm.sol";
import {Base, bound} from "./utils/Base.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {Staking} from "../src/Staking.sol";
import {JobEscrow} from "../src/JobEscrow.sol";
import {ExampleConsumer} from "../src/examples/ExampleConsumer.sol";
import {MockSettlementToken} from "../src/mocks/MockSettlementToken.sol";
import {Commitment, FinishReason} from "../src/libraries/Commitment.sol";
import {MockDisputes} from "./mocks/MockDisputes.sol";
import {StarvationProbe, GasMeterConsumer} from "./mocks/Consumers.sol";
import {BlocklistToken} from "./mocks/MaliciousTokens.sol";

/// @title The audit findings of issue 8 (and the decided items of issue 9), each played from the
/// attacker's side with the cheapest attack, asserting that it no longer pays or no longer works.
/// @notice "Old" is the code before the fix, commit 8349f87 (`git show 8349f87:contracts/src/JobEscrow.sol`).
/// Its ABI differs (no salt, the seed in the job, no `rulesVersion`, no `withdrawTo`, ...), so these tests
/// cannot compile against it: each test's NatSpec names the old line that made the same scenario pay and
/// says what it produced there.
contract AuditTest is Base {
    IStaking.Role internal constant EXEC = IStaking.Role.Executor;

    MockDisputes internal disputes;

    /// @dev One owner behind two addresses: a requester and a staked executor.
    address internal ownerRequester = address(0x0A11);
    address internal ownerExecutor = address(0x0E11);
    address internal dappOwner = address(0xDA99);

    function setUp() public override {
        super.setUp();
        disputes = new MockDisputes(escrow, staking);
        wireDisputes(address(disputes));
    }

    // ================================================================ helpers

    /// @notice A spec whose escrow is exactly `escrowAmount` (1 input at 0.1/token rounds away), designated
    /// to `designated` and due at `deadline`.
    function specWithEscrow(uint256 escrowAmount, address designated, uint64 deadline)
        internal
        view
        returns (IJobEscrow.JobSpec memory spec)
    {
        spec = defaultSpec();
        spec.executor = designated;
        spec.maxInputTokens = 1;
        spec.maxInputPrice = INPUT_PRICE;
        spec.maxOutputTokens = 1;
        spec.maxOutputPrice = uint64(escrowAmount * 1_000_000);
        spec.deadline = deadline;
    }

    function ownerPosts(IJobEscrow.JobSpec memory spec)
        internal
        returns (uint256 jobId, IJobEscrow.Job memory job)
    {
        vm.prank(ownerRequester);
        (jobId, job) = escrow.postJob(spec, PROMPT);
        vm.assertEq(job.escrow, escrow.maxCost(spec), "escrow");
    }

    /// @notice Tokens the owner holds in its wallets.
    function ownerLiquid() internal view returns (uint256) {
        return token.balanceOf(ownerRequester) + token.balanceOf(ownerExecutor);
    }

    /// @notice Everything the owner has a claim on: wallets, escrow credits (locked ones included),
    /// bonded and unbonding stake.
    function ownerWealth() internal view returns (uint256 wealth) {
        wealth = ownerLiquid();
        address[2] memory addrs = [ownerRequester, ownerExecutor];
        for (uint256 i = 0; i < addrs.length; ++i) {
            (uint256 locked,) = escrow.lockedCreditOf(addrs[i]);
            wealth += escrow.credits(addrs[i]) + locked;
        }
        wealth += staking.stakeOf(ownerExecutor, EXEC).staked
        + staking.unbondingOf(ownerExecutor, EXEC).amount;
    }

    /// @notice The owner takes out everything any of its addresses can withdraw right now.
    function drainOwner() internal {
        address[2] memory addrs = [ownerRequester, ownerExecutor];
        for (uint256 i = 0; i < addrs.length; ++i) {
            vm.prank(addrs[i]);
            try escrow.withdraw() {} catch {}
        }
        vm.prank(ownerExecutor);
        try staking.withdraw(EXEC) {} catch {}
    }

    /// @notice The owner of `dapp` asks through it; returns the job as `JobPosted` carried it.
    function dappAsks(ExampleConsumer dapp, IJobEscrow.JobSpec memory spec)
        internal
        returns (uint256 jobId, IJobEscrow.Job memory job)
    {
        vm.recordLogs();
        vm.prank(dappOwner);
        jobId = dapp.ask(spec, PROMPT);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; ++i) {
            if (logs[i].emitter == address(escrow) && logs[i].topics[0] == IJobEscrow.JobPosted.selector) {
                (job,) = abi.decode(logs[i].data, (IJobEscrow.Job, bytes));
                return (jobId, job);
            }
        }
        revert("no JobPosted");
    }

    function newDapp() internal returns (ExampleConsumer dapp, IJobEscrow.JobSpec memory spec) {
        dapp = new ExampleConsumer(escrow, IERC20(address(token)), dappOwner);
        token.mint(address(dapp), 1_000_000);
        spec = defaultSpec();
        spec.callback = address(dapp);
        spec.callbackGasLimit = 100_000;
    }

    /// @notice The commitment-v2 encoding of a result, as the spec (Commitment.sol) defines it.
    function commitmentOf(
        IJobEscrow.Job memory job,
        IJobEscrow.Assignment memory a,
        IJobEscrow.Result memory r
    ) internal pure returns (bytes32) {
        return Commitment.compute(
            job.spec.modelId,
            job.samplerVersion,
            job.spec.sampling,
            a.seed,
            r.promptTokensHash,
            r.inputTokens,
            keccak256(r.outputTokens),
            keccak256(r.output),
            r.finishReason
        );
    }

    function submitAndGetCommitment(
        uint256 jobId,
        IJobEscrow.Job memory job,
        IJobEscrow.Assignment memory a,
        IJobEscrow.Result memory r
    ) internal returns (bytes32 commitment, uint256 payment) {
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        return (s.commitment, s.payment);
    }

    // ================================================================ F1 (High): stake leaves without unbonding

    /// @notice F1: the cheapest exit. The owner posts from its requester address a job designated to its own
    /// executor, with half the stake as escrow (so the collateral at the default 2x is the whole stake) and
    /// a deadline one second away, accepts it, lets it expire and withdraws everything it can.
    /// Old (8349f87) JobEscrow.sol:281-284 (`credits[job.requester] += job.escrow; ... credits[job.requester]
    /// += seized;`) credited the escrow plus the whole seized collateral to the owner's requester address,
    /// withdrawable at once: the owner had liquidBefore + 1,000e6 (its whole stake) two blocks after posting,
    /// with no unbonding. Now the escrow comes back at once, at most 10% of it only after the unbonding
    /// period, and the rest of the collateral goes to the validators' reward pool.
    function test_audit_F1_selfDealtNoShowCannotExitStakeBeforeUnbonding() public {
        uint256 stakeAmount = 1_000e6;
        setUpExecutor(ownerExecutor, stakeAmount);
        fund(ownerRequester, stakeAmount / 2);
        uint256 liquidBefore = ownerLiquid();
        uint256 wealthBefore = ownerWealth();

        (uint256 jobId, IJobEscrow.Job memory job) =
            ownerPosts(specWithEscrow(stakeAmount / 2, ownerExecutor, uint64(block.timestamp + 1)));
        IJobEscrow.Assignment memory a = accept(ownerExecutor, jobId, job);
        uint256 acceptedAt = block.timestamp;
        vm.assertEq(a.collateral, stakeAmount, "the whole stake is the collateral");
        vm.warp(job.spec.deadline + 1);
        vm.prank(ownerRequester);
        escrow.expire(jobId, job, a);

        drainOwner();
        // old: liquidBefore + 1_000e6.
        vm.assertEq(ownerLiquid(), liquidBefore, "only the escrow came back");
        (uint256 locked, uint256 releaseAt) = escrow.lockedCreditOf(ownerRequester);
        vm.assertEq(locked, compensationCap(job.escrow), "compensation capped at 10% of the escrow");
        vm.assertEq(releaseAt, block.timestamp + staking.unbondingPeriod(), "locked for the unbonding period");
        vm.assertGe(
            releaseAt, acceptedAt + UNBONDING_PERIOD, "no earlier than an honest unstake would have been"
        );
        vm.assertEq(escrow.rewardPool(), a.collateral - locked, "the rest funds the validators");

        vm.warp(releaseAt - 1);
        drainOwner();
        vm.assertEq(ownerLiquid(), liquidBefore, "nothing beyond the escrow before the unbonding period");
        vm.warp(releaseAt);
        drainOwner();
        vm.assertEq(ownerLiquid(), liquidBefore + locked, "then only the capped compensation");
        vm.assertEq(
            wealthBefore - ownerWealth(),
            a.collateral - locked,
            "the owner lost the collateral less 10% of the escrow"
        );
    }

    /// @notice F1: locking the whole free stake in a long self-posted job used to hide it from `slash`.
    /// Old (8349f87) Staking.sol:187-194 took free stake (`staked - locked`) and unbonding stake only:
    /// `slash(owner's executor, 1,000e6)` returned 0 while the self-posted job held the stake; the owner
    /// then let the job finalize (collateral released) or expire (collateral credited to its own requester
    /// address, see the test above) and kept the whole stake. Now locked stake is reached last but
    /// reached: the job's collateral stays counted as a deficit, and the job releases or forfeits nothing more.
    function test_audit_F1_stakeLockedInSelfPostedJobStaysSlashable() public {
        setUpExecutor(ownerExecutor, 1_000e6);
        fund(ownerRequester, 500e6);
        (uint256 jobId, IJobEscrow.Job memory job) =
            ownerPosts(specWithEscrow(500e6, ownerExecutor, uint64(block.timestamp + MAX_JOB_DURATION)));
        IJobEscrow.Assignment memory a = accept(ownerExecutor, jobId, job);
        vm.assertEq(staking.freeStake(ownerExecutor, EXEC), 0, "everything locked in the owner's own job");

        // A validator proves a fraud of the owner's executor elsewhere: the dispute contract slashes.
        uint256 slashed = disputes.slash(ownerExecutor, EXEC, 1_000e6, address(disputes));
        vm.assertEq(slashed, 1_000e6, "locked stake reached"); // old: 0
        vm.assertEq(token.balanceOf(address(disputes)), 1_000e6, "slashed tokens with the dispute contract");
        IStaking.StakeInfo memory info = staking.stakeOf(ownerExecutor, EXEC);
        vm.assertEq(info.staked, 0, "no stake left");
        vm.assertEq(info.locked, a.collateral, "the job's collateral still counted: a deficit to cover");
        vm.assertEq(staking.freeStake(ownerExecutor, EXEC), 0, "nothing free");

        // Either way the self-posted job ends, the owner gets nothing of the stake back.
        uint256 snap = vm.snapshotState();
        vm.warp(job.spec.deadline + 1);
        escrow.expire(jobId, job, a);
        (uint256 locked,) = escrow.lockedCreditOf(ownerRequester);
        vm.assertEq(locked, 0, "nothing left to compensate from");
        vm.assertEq(escrow.credits(ownerRequester), job.escrow, "only the escrow refunded");
        vm.assertEq(escrow.rewardPool(), 0, "nothing seized");
        vm.assertEq(staking.stakeOf(ownerExecutor, EXEC).locked, 0, "the deficit absorbed by the seizure");
        vm.revertToState(snap);

        IJobEscrow.Result memory r = defaultResult(1, 0);
        r.output = "";
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        finalizeAfterWindow(jobId, s);
        vm.assertEq(staking.stakeOf(ownerExecutor, EXEC).staked, 0, "finalizing releases nothing either");
        vm.assertEq(
            escrow.credits(ownerRequester) + escrow.credits(ownerExecutor) + escrow.rewardPool(),
            job.escrow,
            "the escrow is all the owner's two addresses and the pool share"
        );
    }

    /// @notice F1, fuzzed over stake sizes, escrows, collateral ratios, unbonding periods and lateness: a
    /// self-dealt no-show never returns more than the escrow before the unbonding period, and always costs
    /// the owner at least the collateral less the capped compensation.
    function testFuzz_audit_F1_selfDealtNoShowNeverProfits(
        uint256 stakeAmount,
        uint256 collateralBps,
        uint256 escrowAmount,
        uint256 unbonding,
        uint256 late
    ) public {
        stakeAmount = bound(stakeAmount, MIN_EXECUTOR_STAKE, 1e12);
        collateralBps = bound(collateralBps, escrow.MIN_COLLATERAL_BPS(), escrow.MAX_COLLATERAL_BPS());
        unbonding = bound(unbonding, escrow.maxJobLifetime(), staking.MAX_UNBONDING_PERIOD());
        vm.startPrank(governance);
        staking.setUnbondingPeriod(unbonding);
        escrow.setParameters(
            CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION, VALIDATOR_FEE_BPS, uint16(collateralBps)
        );
        vm.stopPrank();
        // Any escrow whose collateral the stake covers.
        escrowAmount = bound(escrowAmount, 1, stakeAmount * 10_000 / collateralBps);
        setUpExecutor(ownerExecutor, stakeAmount);
        fund(ownerRequester, escrowAmount);
        uint256 liquidBefore = ownerLiquid();
        uint256 wealthBefore = ownerWealth();

        (uint256 jobId, IJobEscrow.Job memory job) =
            ownerPosts(specWithEscrow(escrowAmount, ownerExecutor, uint64(block.timestamp + 1)));
        IJobEscrow.Assignment memory a = accept(ownerExecutor, jobId, job);
        vm.assertEq(a.collateral, bpsCeil(escrowAmount, collateralBps), "collateral");
        vm.warp(job.spec.deadline + bound(late, 1, 30 days));
        escrow.expire(jobId, job, a);
        uint256 releaseAt = block.timestamp + unbonding;

        drainOwner();
        vm.assertLe(ownerLiquid(), liquidBefore, "no stake out at once");
        vm.warp(releaseAt - 1);
        drainOwner();
        vm.assertLe(ownerLiquid(), liquidBefore, "no stake out before the unbonding period");
        vm.warp(releaseAt);
        drainOwner();
        uint256 wealthAfter = ownerWealth();
        vm.assertLt(wealthAfter, wealthBefore, "a self-dealt no-show always costs");
        vm.assertGe(
            wealthBefore - wealthAfter,
            a.collateral - compensationCap(escrowAmount),
            "collateral less the cap"
        );
        vm.assertLe(ownerLiquid() - liquidBefore, compensationCap(escrowAmount), "at most the cap comes back");
    }

    // ================================================================ F2 (Medium): the seed can be chosen

    /// @notice F2: the seed does not exist until acceptance. Old (8349f87) JobEscrow.sol:120-122 fixed it at
    /// posting, `keccak256(SEED_TAG, chainid, escrow, jobId, blockhash(block.number - 1))`, and published it
    /// in `JobPosted`: everyone, the executor about to accept included, knew it before acceptance.
    function test_audit_F2_seedUnknownBeforeAcceptanceAndDrawnThen() public {
        vm.prevrandao(keccak256("randomness of the posting block"));
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        // All that can be computed at posting uses the posting block's randomness.
        bytes32 guessAtPosting = expectedSeed(jobId, job);

        vm.roll(block.number + 1);
        vm.warp(block.timestamp + 12);
        vm.prevrandao(keccak256("randomness of the accepting block"));
        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        vm.assertEq(a.seed, expectedSeed(jobId, job), "drawn from the accepting block");
        vm.assertNotEq(a.seed, guessAtPosting, "not knowable at posting");
        vm.assertNotEq(a.seed, bytes32(0), "a seed");

        // The commitment binds that seed.
        IJobEscrow.Result memory r = defaultResult(100, 10);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        vm.assertEq(s.commitment, commitmentOf(job, a, r), "commitment over the accepted seed");
    }

    /// @notice F2: the seed depends on the accepting block's `prevrandao` and on the requester's salt, and
    /// on nothing the executor chooses. Old: it depended on neither (JobEscrow.sol:120-122).
    function test_audit_F2_seedDependsOnAcceptanceRandomnessAndSalt() public {
        uint256 beforePosting = vm.snapshotState();
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        uint256 posted = vm.snapshotState();

        vm.prevrandao(uint256(1));
        bytes32 seedA = accept(executor, jobId, job).seed;
        vm.revertToState(posted);
        vm.prevrandao(uint256(2));
        bytes32 seedB = accept(executor, jobId, job).seed;
        vm.revertToState(posted);
        vm.prevrandao(uint256(1));
        // Another eligible executor accepting in the same block draws the same seed.
        bytes32 seedOther = accept(otherExecutor, jobId, job).seed;
        vm.assertNotEq(seedA, seedB, "prevrandao at acceptance changes the seed");
        vm.assertEq(seedOther, seedA, "the accepting executor does not");

        vm.revertToState(beforePosting);
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.salt = keccak256("another salt");
        (uint256 jobId2, IJobEscrow.Job memory job2) = post(spec);
        vm.assertEq(jobId2, jobId, "same job id");
        vm.prevrandao(uint256(1));
        vm.assertNotEq(accept(executor, jobId2, job2).seed, seedA, "the requester's salt changes the seed");
    }

    /// @notice F2: the executor that will take the victim's job front-runs the victim's `postJob` in the same
    /// block with k refunded dummy jobs (posted and cancelled at once) and accepts right behind it, trying
    /// k = 0..4 to pick the victim's seed. Old (8349f87) JobEscrow.sol:120-122 derived the seed from the
    /// global job id and the parent block hash, both known while building the block: each k gave another
    /// public seed, and the attacker picked the one it liked (e.g. the longest output, billed per token).
    /// The victim's seed must not depend on how many jobs others posted ahead of it.
    function test_audit_F2_dummyJobsAheadOfVictimCannotChangeItsSeed() public {
        address dummyPoster = address(0xD0D0); // the executor's second address
        fund(dummyPoster, 1e12);
        vm.prevrandao(keccak256("the block the victim's job is posted and accepted in"));
        IJobEscrow.JobSpec memory victimSpec = defaultSpec();
        uint256 snap = vm.snapshotState();
        bytes32 seedWithoutDummies;
        for (uint256 k = 0; k <= 4; ++k) {
            for (uint256 d = 0; d < k; ++d) {
                vm.prank(dummyPoster);
                (uint256 dummyId, IJobEscrow.Job memory dummy) = escrow.postJob(defaultSpec(), PROMPT);
                vm.prank(dummyPoster);
                escrow.cancelJob(dummyId, dummy);
            }
            (uint256 jobId, IJobEscrow.Job memory job) = post(victimSpec);
            bytes32 seed = accept(executor, jobId, job).seed;
            if (k == 0) seedWithoutDummies = seed;
            else vm.assertEq(seed, seedWithoutDummies, "dummy jobs ahead of the victim moved its seed");
            vm.revertToState(snap);
        }
    }

    // ================================================================ F3 (Medium): uncommitted callback text

    /// @notice F3: an executor delivers other text with the honest token ids. Old (8349f87) JobEscrow.sol:
    /// 211-219 and Commitment.sol:38-60 committed to the ids only: both submissions had the same
    /// commitment, so the text the callback received could never be proved wrong.
    function test_audit_F3_otherTextWithSameIdsChangesTheCommitment() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        IJobEscrow.Result memory honest = defaultResult(300, 20);
        IJobEscrow.Result memory forged = defaultResult(300, 20);
        forged.output = bytes("Ignore the ids: transfer everything to 0xBAD");
        uint256 snap = vm.snapshotState();
        (bytes32 honestCommitment, uint256 honestPayment) = submitAndGetCommitment(jobId, job, a, honest);
        vm.revertToState(snap);
        (bytes32 forgedCommitment, uint256 forgedPayment) = submitAndGetCommitment(jobId, job, a, forged);
        vm.assertEq(forgedPayment, honestPayment, "same ids, same bill");
        vm.assertNotEq(forgedCommitment, honestCommitment, "other text, other commitment"); // old: equal
        vm.assertEq(
            forgedCommitment,
            commitmentOf(job, a, forged),
            "the commitment binds keccak256 of the delivered text"
        );
    }

    /// @notice F3: `ExampleConsumer` acts only on final results. Old (8349f87) ExampleConsumer.sol:53-57 stored
    /// the text delivered at submission as the result, before the challenge window, and nothing ever told
    /// it about a later rejection. Now a delivered result is provisional until `confirm` sees `Finalized`.
    function test_audit_F3_exampleConsumerTreatsResultAsFinalOnlyAfterFinalize() public {
        (ExampleConsumer dapp, IJobEscrow.JobSpec memory spec) = newDapp();
        (uint256 jobId, IJobEscrow.Job memory job) = dappAsks(dapp, spec);
        vm.assertEq(uint256(dapp.state(jobId)), uint256(ExampleConsumer.State.Asked), "asked");
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotConfirmable.selector, jobId));
        dapp.confirm(jobId);

        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        IJobEscrow.Result memory r = defaultResult(300, 200);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        vm.assertEq(uint256(dapp.state(jobId)), uint256(ExampleConsumer.State.Delivered), "delivered");
        vm.assertEq(dapp.resultHash(jobId), keccak256(r.output), "provisional result kept");
        vm.assertEq(dapp.finalResult(jobId), bytes32(0), "but not final");

        // Before settlement confirm refuses, in the challenge window and while disputed.
        vm.warp(s.challengeEnd - 1);
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotConfirmable.selector, jobId));
        dapp.confirm(jobId);
        uint256 snap = vm.snapshotState();
        disputes.freeze(jobId, s);
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotConfirmable.selector, jobId));
        dapp.confirm(jobId);
        vm.revertToState(snap);

        finalizeAfterWindow(jobId, s);
        vm.expectEmit(true, true, true, true, address(dapp));
        emit ExampleConsumer.ResultSettled(jobId, true);
        vm.prank(stranger); // anyone may confirm
        dapp.confirm(jobId);
        vm.assertEq(uint256(dapp.state(jobId)), uint256(ExampleConsumer.State.Final), "final");
        vm.assertEq(dapp.finalResult(jobId), keccak256(r.output), "final result");
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotConfirmable.selector, jobId));
        dapp.confirm(jobId);
    }

    /// @notice F3: a result a validator proves wrong never becomes final in `ExampleConsumer`. Old (8349f87)
    /// ExampleConsumer.sol:53-57: the wrong text stayed as the job's result forever.
    function test_audit_F3_exampleConsumerDropsAResultProvedWrong() public {
        (ExampleConsumer dapp, IJobEscrow.JobSpec memory spec) = newDapp();
        (uint256 jobId, IJobEscrow.Job memory job) = dappAsks(dapp, spec);
        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        IJobEscrow.Result memory r = defaultResult(300, 200);
        r.output = bytes("a confidently wrong answer");
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        vm.assertEq(dapp.resultHash(jobId), keccak256(r.output), "delivered");

        disputes.freeze(jobId, s);
        disputes.resolve(jobId, s, true);
        vm.expectEmit(true, true, true, true, address(dapp));
        emit ExampleConsumer.ResultSettled(jobId, false);
        dapp.confirm(jobId);
        vm.assertEq(uint256(dapp.state(jobId)), uint256(ExampleConsumer.State.Dropped), "dropped");
        vm.assertEq(dapp.resultHash(jobId), bytes32(0), "text forgotten");
        vm.assertEq(uint256(dapp.finishReason(jobId)), 0, "finish reason forgotten");
        vm.assertEq(dapp.finalResult(jobId), bytes32(0), "never final");
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotConfirmable.selector, jobId));
        dapp.confirm(jobId);
    }

    // ================================================================ F4 (Low): uncommitted input count

    /// @notice F4: the executor bills 512 input tokens for a 300-token prompt (same prompt ids hash). Old
    /// (8349f87) JobEscrow.sol:211-219 left `inputTokens` out of the commitment: the over-billed submission
    /// had the honest commitment and a higher payment, so no validator could prove the over-billing.
    function test_audit_F4_overBilledInputChangesTheCommitment() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        uint256 snap = vm.snapshotState();
        (bytes32 honestCommitment, uint256 honestPayment) =
            submitAndGetCommitment(jobId, job, a, defaultResult(300, 20));
        vm.revertToState(snap);
        (bytes32 billedCommitment, uint256 billedPayment) =
            submitAndGetCommitment(jobId, job, a, defaultResult(512, 20));
        vm.assertGt(billedPayment, honestPayment, "over-billing pays more");
        vm.assertNotEq(billedCommitment, honestCommitment, "but is another commitment"); // old: equal
    }

    /// @notice F4, fuzzed: any two input counts give two commitments.
    function testFuzz_audit_F4_anyInputCountChangesTheCommitment(uint256 actual, uint256 billed) public {
        actual = bound(actual, 1, 512);
        billed = bound(billed, 1, 512);
        vm.assume(actual != billed);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        uint256 snap = vm.snapshotState();
        (bytes32 c1,) = submitAndGetCommitment(jobId, job, a, defaultResult(uint32(actual), 20));
        vm.revertToState(snap);
        (bytes32 c2,) = submitAndGetCommitment(jobId, job, a, defaultResult(uint32(billed), 20));
        vm.assertNotEq(c1, c2, "input count committed");
    }

    // ================================================================ F5 (Low): a long output starves the callback

    uint32 internal constant F5_CALLBACK_GAS = 1_000_000;
    uint32 internal constant F5_OUTPUTS = 2_048;

    function f5Job(address callback)
        internal
        returns (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a)
    {
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxOutputTokens = F5_OUTPUTS;
        spec.callback = callback;
        spec.callbackGasLimit = callback == address(0) ? 0 : F5_CALLBACK_GAS;
        (jobId, job, a) = acceptedJob(spec);
    }

    /// @notice 2,048 outputs carrying 256 KiB of text: the most `MAX_TEXT_BYTES_PER_TOKEN` allows.
    function longResult() internal view returns (IJobEscrow.Result memory r) {
        r = defaultResult(300, F5_OUTPUTS);
        r.output = new bytes(F5_OUTPUTS * escrow.MAX_TEXT_BYTES_PER_TOKEN());
        vm.assertEq(r.output.length, 256 * 1024, "256 KiB");
    }

    function trySubmitWithGas(
        uint256 jobId,
        IJobEscrow.Job memory job,
        IJobEscrow.Assignment memory a,
        IJobEscrow.Result memory r,
        uint256 gas
    ) internal returns (bool ok, bytes memory err) {
        vm.prank(a.executor);
        try escrow.submitResult{gas: gas}(jobId, job, a, r) {
            ok = true;
        } catch (bytes memory e) {
            err = e;
        }
    }

    /// @notice The least gas `submitResult` succeeds with (state restored to `snap` after each try).
    function leastGas(
        uint256 jobId,
        IJobEscrow.Job memory job,
        IJobEscrow.Assignment memory a,
        IJobEscrow.Result memory r,
        uint256 snap
    ) internal returns (uint256 hi) {
        uint256 lo = 1_000_000;
        hi = 30_000_000;
        (bool ok,) = trySubmitWithGas(jobId, job, a, r, lo);
        vm.assertFalse(ok, "fails with too little gas");
        vm.revertToState(snap);
        (ok,) = trySubmitWithGas(jobId, job, a, r, hi);
        vm.assertTrue(ok, "succeeds with plenty of gas");
        vm.revertToState(snap);
        while (lo + 1 < hi) {
            uint256 mid = (lo + hi) / 2;
            (ok,) = trySubmitWithGas(jobId, job, a, r, mid);
            vm.revertToState(snap);
            if (ok) hi = mid;
            else lo = mid;
        }
    }

    function assertRefused(bytes memory err) internal pure {
        // Refused by the escrow's check, or out of gas before reaching it: either way nothing settles.
        vm.assertTrue(
            err.length == 0
                || keccak256(err)
                    == keccak256(abi.encodeWithSelector(IJobEscrow.InsufficientGasForCallback.selector)),
            "refused"
        );
    }

    /// @notice F5: with 256 KiB of output, the executor sends `submitResult` with the least gas that
    /// succeeds and a little more: wherever it succeeds, the callback must have been given its whole
    /// limit (a consumer mock measures `gasleft()` at entry and compares it with a fully funded call).
    /// Old (8349f87) JobEscrow.sol:242 checked `gasleft()` before EXTCODESIZE and before the unbounded output
    /// was copied into the call's arguments, and 191-196 did not bound the output: the call succeeded at
    /// the least gas the check allowed while the callback got less than its limit.
    function test_audit_F5_longOutputCannotStarveTheCallback() public {
        GasMeterConsumer meter = new GasMeterConsumer();
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = f5Job(address(meter));
        IJobEscrow.Result memory r = longResult();
        uint256 snap = vm.snapshotState();
        (bool ok,) = trySubmitWithGas(jobId, job, a, r, 30_000_000);
        vm.assertTrue(ok, "fully funded");
        uint256 fullBudget = meter.gasAtEntry(); // the limit less the callee's own dispatch
        vm.assertEq(meter.outputLength(), r.output.length, "whole text delivered");
        vm.revertToState(snap);

        uint256 least = leastGas(jobId, job, a, r, snap);
        for (uint256 g = least - 2_000; g < least + 12_000; g += 250) {
            bytes memory err;
            (ok, err) = trySubmitWithGas(jobId, job, a, r, g);
            if (ok) vm.assertEq(meter.gasAtEntry(), fullBudget, "succeeded with a starved callback");
            else assertRefused(err);
            vm.revertToState(snap);
        }
    }

    /// @notice F5: the same attack against a consumer that needs its whole budget and reverts early when it
    /// gets less (as any consumer whose inner call ran short does): the executor must not be able to make
    /// it fail and still settle. Old (8349f87) JobEscrow.sol:242-251: `CallbackFailed` and a settled job.
    function test_audit_F5_starvedCallbackCannotFailSilently() public {
        StarvationProbe probe = new StarvationProbe(F5_CALLBACK_GAS - 1_000);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = f5Job(address(probe));
        IJobEscrow.Result memory r = longResult();
        uint256 snap = vm.snapshotState();
        uint256 least = leastGas(jobId, job, a, r, snap);
        for (uint256 g = least - 2_000; g < least + 12_000; g += 250) {
            (bool ok, bytes memory err) = trySubmitWithGas(jobId, job, a, r, g);
            if (ok) vm.assertEq(probe.hits(), 1, "settled while the starved callback failed");
            else assertRefused(err);
            vm.revertToState(snap);
        }
    }

    /// @notice F5: the output text is bounded by `MAX_TEXT_BYTES_PER_TOKEN` per output token. Old (8349f87)
    /// JobEscrow.sol:191-196 accepted any length (a 1 MiB text with one output token was valid).
    function test_audit_F5_textAboveBytesPerTokenRejected() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = f5Job(address(0));
        IJobEscrow.Result memory r = longResult();
        r.output = new bytes(r.output.length + 1);
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.InvalidResult.selector);
        escrow.submitResult(jobId, job, a, r);

        r = defaultResult(300, 1);
        r.output = new bytes(1 << 20);
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.InvalidResult.selector);
        escrow.submitResult(jobId, job, a, r); // old: accepted

        submit(jobId, job, a, longResult()); // exactly the bound is fine
    }

    /// @notice F5, fuzzed: n outputs carry at most n × MAX_TEXT_BYTES_PER_TOKEN bytes of text.
    function testFuzz_audit_F5_textBoundPerOutputToken(uint256 outputs, uint256 excess) public {
        outputs = bound(outputs, 0, 256);
        excess = bound(excess, 1, 4_096);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        uint256 maxText = outputs * escrow.MAX_TEXT_BYTES_PER_TOKEN();
        IJobEscrow.Result memory r = defaultResult(300, outputs);
        r.output = new bytes(maxText + excess);
        vm.prank(executor);
        vm.expectRevert(IJobEscrow.InvalidResult.selector);
        escrow.submitResult(jobId, job, a, r);
        r.output = new bytes(maxText);
        submit(jobId, job, a, r);
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Submitted), "at the bound");
    }

    // ================================================================ F6 (Low, governance): unbonding cut

    /// @notice F6: the exact two-step attack. Jobs may last 5 days; an executor's stake backs an accepted
    /// 5-day job. Governance (1) lowers `maxJobDuration` to 1 hour, so the new lifetime is 1 day 2 hours,
    /// then (2) cuts the unbonding period to that lifetime. Old (8349f87) Staking.sol:222-223 compared the
    /// period with `maxJobLifetime()` only and accepted step 2: stake unbonding from then on was withdrawable
    /// days before the open job could no longer be disputed, and a dispute found nothing to slash.
    function test_audit_F6_governanceCannotCutUnbondingBelowOpenJobsWindows() public {
        vm.prank(governance);
        escrow.setParameters(CHALLENGE_WINDOW, DISPUTE_WINDOW, 5 days, VALIDATOR_FEE_BPS, COLLATERAL_BPS);
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.deadline = uint64(block.timestamp + 5 days);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = acceptedJob(spec);
        uint256 jobRiskEnd = uint256(job.spec.deadline) + job.challengeWindow + job.disputeWindow;

        vm.prank(governance);
        escrow.setParameters(CHALLENGE_WINDOW, DISPUTE_WINDOW, 1 hours, VALIDATOR_FEE_BPS, COLLATERAL_BPS);
        uint256 newLifetime = escrow.maxJobLifetime();
        vm.assertEq(newLifetime, 1 hours + CHALLENGE_WINDOW + DISPUTE_WINDOW, "step 1 done");
        vm.assertGe(escrow.riskHorizon(), jobRiskEnd, "the open job is within the risk horizon");

        vm.prank(governance);
        vm.expectPartialRevert(IStaking.UnbondingPeriodOutOfBounds.selector);
        staking.setUnbondingPeriod(newLifetime); // old: accepted
        vm.prank(governance);
        vm.expectPartialRevert(IStaking.UnbondingPeriodOutOfBounds.selector);
        staking.setUnbondingPeriod(jobRiskEnd - block.timestamp - 1);
        vm.assertEq(staking.unbondingPeriod(), UNBONDING_PERIOD, "unchanged");

        // Stake the executor starts unbonding now is still slashable when the job's dispute ends.
        vm.prank(executor);
        staking.requestUnstake(EXEC, 100e6);
        vm.assertGe(staking.unbondingOf(executor, EXEC).releaseAt, jobRiskEnd, "unbonding outlasts the job");
        vm.warp(job.spec.deadline);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(300, 200));
        disputes.freeze(jobId, s);
        vm.warp(s.disputeEnd - 1);
        vm.prank(executor);
        vm.expectPartialRevert(IStaking.StillUnbonding.selector);
        staking.withdraw(EXEC);
        vm.assertEq(
            disputes.slash(executor, EXEC, 1_000e6, address(disputes)), 1_000e6, "all of it slashable"
        );

        // Once no open job can be disputed any more, the cut goes through: bounded, not frozen.
        vm.warp(jobRiskEnd + 1);
        vm.prank(governance);
        staking.setUnbondingPeriod(newLifetime);
        vm.assertEq(staking.unbondingPeriod(), newLifetime, "cut after the open job's windows");
    }

    /// @notice F6, fuzzed over the new job duration, the time of the cut and the period asked for: every
    /// period governance manages to set outlasts the open job's dispute window.
    function testFuzz_audit_F6_noAcceptedCutEndsBeforeAnOpenJob(
        uint256 newDuration,
        uint256 elapsed,
        uint256 period
    ) public {
        vm.prank(governance);
        escrow.setParameters(CHALLENGE_WINDOW, DISPUTE_WINDOW, 5 days, VALIDATOR_FEE_BPS, COLLATERAL_BPS);
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.deadline = uint64(block.timestamp + 5 days);
        (, IJobEscrow.Job memory job,) = acceptedJob(spec);
        uint256 jobRiskEnd = uint256(job.spec.deadline) + job.challengeWindow + job.disputeWindow;

        vm.prank(governance);
        escrow.setParameters(
            CHALLENGE_WINDOW,
            DISPUTE_WINDOW,
            uint64(bound(newDuration, 1, 5 days)),
            VALIDATOR_FEE_BPS,
            COLLATERAL_BPS
        );
        vm.warp(block.timestamp + bound(elapsed, 0, 8 days));
        period = bound(period, 1, staking.MAX_UNBONDING_PERIOD());
        vm.prank(governance);
        try staking.setUnbondingPeriod(period) {
            vm.assertGe(block.timestamp + period, jobRiskEnd, "stake unbonding now outlasts the open job");
            vm.assertGe(period, escrow.maxJobLifetime(), "and new jobs");
        } catch (bytes memory err) {
            vm.assertEq(bytes4(err), IStaking.UnbondingPeriodOutOfBounds.selector, "refused in bounds");
            vm.assertEq(staking.unbondingPeriod(), UNBONDING_PERIOD, "unchanged");
        }
    }

    // ================================================================ F7 (Low, governance): live rules

    /// @notice F7: inside a job's life governance loosens the rules (a 50x margin threshold, the largest flip
    /// rate, no audits) and even tries to file the new rules under the job's version. Old (8349f87)
    /// ModelRegistry.sol:53-57 overwrote the thresholds in place and the job snapshotted no rules: the
    /// validator, reading the registry live, judged the posted job by the new rules.
    function test_audit_F7_rulesChangedAfterPostingDoNotReachTheJob() public {
        IModelRegistry.Rules memory original = registry.rulesAt(modelId, 1);
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        vm.assertEq(job.rulesVersion, 1, "snapshotted at posting");

        vm.startPrank(governance);
        registry.setThresholds(modelId, IModelRegistry.VerificationThresholds(100_000_000, 500_000));
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        t.auditRatePpm = 0;
        t.rulesVersion = job.rulesVersion; // file the new rules under the job's version
        registry.setTerms(modelId, t);
        vm.stopPrank();
        vm.assertEq(
            registry.terms(modelId).rulesVersion, 3, "each change a new version; the caller's ignored"
        );

        vm.assertEq(
            keccak256(abi.encode(registry.rulesAt(modelId, job.rulesVersion))),
            keccak256(abi.encode(original)),
            "the job is judged by the rules it was posted under"
        );
        vm.assertEq(registry.rulesAt(modelId, 2).thresholds.maxMarginPpm, 100_000_000, "version 2");
        vm.assertEq(registry.rulesAt(modelId, 2).auditRatePpm, original.auditRatePpm, "version 2 audit rate");
        vm.assertEq(registry.rulesAt(modelId, 3).auditRatePpm, 0, "version 3");

        // The job cannot be re-filed under the new rules: its version is inside its digest.
        IJobEscrow.Job memory refiled = abi.decode(abi.encode(job), (IJobEscrow.Job));
        refiled.rulesVersion = 3;
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
        escrow.acceptJob(jobId, refiled);
        accept(executor, jobId, job);

        (, IJobEscrow.Job memory later) = post(defaultSpec());
        vm.assertEq(later.rulesVersion, 3, "new jobs take the new rules");
    }

    /// @notice F7, fuzzed: `setTerms` ignores a caller-supplied `rulesVersion`; only a change of the rules
    /// (here the audit rate) makes a new version, and versions only go up.
    function testFuzz_audit_F7_setTermsIgnoresCallerVersion(uint32 claimed, uint32 auditRate, uint96 minStake)
        public
    {
        auditRate = uint32(bound(auditRate, 0, registry.MAX_AUDIT_RATE_PPM()));
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        uint32 before = t.rulesVersion;
        bool rulesChange = auditRate != t.auditRatePpm;
        t.auditRatePpm = auditRate;
        t.minExecutorStake = minStake;
        t.rulesVersion = claimed;
        vm.prank(governance);
        registry.setTerms(modelId, t);
        uint32 stored = registry.terms(modelId).rulesVersion;
        vm.assertEq(stored, rulesChange ? before + 1 : before, "the registry numbers the versions");
        vm.assertEq(registry.rulesAt(modelId, stored).auditRatePpm, auditRate, "current rules");
        vm.assertEq(registry.rulesAt(modelId, before).auditRatePpm, 50_000, "old rules kept");
    }

    // ================================================================ F8 (Low): unsolicited callbacks

    /// @notice F8: a stranger posts a job naming `ExampleConsumer` as its callback, designates its own
    /// executor and delivers text of its choice. Old (8349f87) ExampleConsumer.sol:53-57 stored it as the
    /// job's result (`resultHash[jobId] = keccak256(output)`) for any job that named it.
    function test_audit_F8_exampleConsumerIgnoresJobsItNeverAskedFor() public {
        (ExampleConsumer dapp, IJobEscrow.JobSpec memory spec) = newDapp();
        address strangersExecutor = address(0x5E5E);
        setUpExecutor(strangersExecutor, 1_000e6);
        fund(stranger, 1e12);
        spec.executor = strangersExecutor;
        vm.prank(stranger);
        (uint256 jobId, IJobEscrow.Job memory job) = escrow.postJob(spec, PROMPT);
        IJobEscrow.Assignment memory a = accept(strangersExecutor, jobId, job);
        IJobEscrow.Result memory r = defaultResult(10, 10);
        r.output = bytes("The oracle says: sell everything");

        vm.expectEmit(true, true, true, true, address(dapp));
        emit ExampleConsumer.UnsolicitedResultIgnored(jobId);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        vm.assertEq(
            uint256(dapp.state(jobId)), uint256(ExampleConsumer.State.None), "never asked, never taken"
        );
        vm.assertEq(dapp.resultHash(jobId), bytes32(0), "no result"); // old: keccak256(r.output)
        vm.assertEq(uint256(dapp.finishReason(jobId)), 0, "no finish reason");

        finalizeAfterWindow(jobId, s);
        vm.expectRevert(abi.encodeWithSelector(ExampleConsumer.NotConfirmable.selector, jobId));
        dapp.confirm(jobId);
        vm.assertEq(dapp.finalResult(jobId), bytes32(0), "not even once finalized");

        // The jobs it did ask for still arrive.
        spec.deadline = uint64(block.timestamp + 1 hours);
        (uint256 asked, IJobEscrow.Job memory askedJob) = dappAsks(dapp, spec);
        IJobEscrow.Assignment memory a2 = accept(strangersExecutor, asked, askedJob);
        submit(asked, askedJob, a2, defaultResult(10, 10));
        vm.assertEq(
            uint256(dapp.state(asked)), uint256(ExampleConsumer.State.Delivered), "asked job delivered"
        );
    }

    // ================================================================ issue 9, decided items

    /// @notice Issue 9: a tiny self-dealt job (payment 1) used to pay no validator fee (old (8349f87)
    /// JobEscrow.sol:209, `payment * validatorFeeBps / BPS` = 0), so farming `jobsCompleted` cost only gas
    /// and the owner's money went round in a circle. Now the fee rounds up: each farmed job feeds the pool.
    function test_audit_F9_validatorFeeRoundsUpSoFarmingIsNotFree() public {
        setUpExecutor(ownerExecutor, 1_000e6);
        fund(ownerRequester, 1_000);
        vm.prank(ownerExecutor);
        staking.setPrice(modelId, 1_000_000, 0); // one unit per input token
        uint256 wealthBefore = ownerWealth();
        uint256 rounds = 5;
        for (uint256 i = 0; i < rounds; ++i) {
            IJobEscrow.JobSpec memory spec = defaultSpec();
            spec.executor = ownerExecutor;
            spec.maxInputTokens = 1;
            spec.maxInputPrice = 1_000_000;
            spec.maxOutputTokens = 1;
            spec.maxOutputPrice = 0;
            (uint256 jobId, IJobEscrow.Job memory job) = ownerPosts(spec);
            vm.assertEq(job.escrow, 1, "a one-unit job");
            IJobEscrow.Assignment memory a = accept(ownerExecutor, jobId, job);
            IJobEscrow.Result memory r = defaultResult(1, 0);
            r.output = "";
            IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
            vm.assertEq(s.payment, 1, "payment 1");
            vm.assertEq(s.validatorFee, 1, "5% of 1, rounded up"); // old: 0
            finalizeAfterWindow(jobId, s);
        }
        vm.assertEq(staking.stakeOf(ownerExecutor, EXEC).jobsCompleted, rounds, "jobs counted");
        vm.assertEq(escrow.rewardPool(), rounds, "each one fed the pool");
        vm.assertEq(wealthBefore - ownerWealth(), rounds, "and cost the owner"); // old: 0
    }

    /// @notice Issue 9, fuzzed: the fee is the payment × rate rounded up, never 0 on a paid job at a
    /// non-zero rate.
    function testFuzz_audit_F9_validatorFeeRoundsUp(uint256 inputTokens, uint256 inputPrice, uint256 feeBps)
        public
    {
        feeBps = bound(feeBps, 0, escrow.MAX_VALIDATOR_FEE_BPS());
        vm.prank(governance);
        escrow.setParameters(
            CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION, uint16(feeBps), COLLATERAL_BPS
        );
        inputPrice = bound(inputPrice, 0, 1e9);
        vm.prank(executor);
        staking.setPrice(modelId, uint64(inputPrice), OUTPUT_PRICE);
        IJobEscrow.JobSpec memory spec = defaultSpec();
        spec.maxInputPrice = uint64(inputPrice);
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) = acceptedJob(spec);
        IJobEscrow.Result memory r = defaultResult(uint32(bound(inputTokens, 1, 512)), 0);
        r.output = "";
        IJobEscrow.Settlement memory s = submit(jobId, job, a, r);
        vm.assertEq(s.validatorFee, bpsCeil(s.payment, feeBps), "ceil(payment x rate)");
        vm.assertGe(s.validatorFee * 10_000, s.payment * feeBps, "never below the rate");
        if (s.payment != 0 && feeBps != 0) vm.assertGe(s.validatorFee, 1, "a paid job pays a fee");
        vm.assertLe(s.validatorFee, s.payment, "never above the payment");
    }

    /// @notice Issue 9: collateral rounds up, so even a one-unit job puts stake at risk. Old (8349f87)
    /// JobEscrow.sol:164 rounded `1 × 5,000 / 10,000` to 0: accepting and never delivering was free.
    function testFuzz_audit_F9_collateralRoundsUp(uint256 escrowAmount, uint256 collateralBps) public {
        collateralBps = bound(collateralBps, escrow.MIN_COLLATERAL_BPS(), escrow.MAX_COLLATERAL_BPS());
        vm.prank(governance);
        escrow.setParameters(
            CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION, VALIDATOR_FEE_BPS, uint16(collateralBps)
        );
        escrowAmount = bound(escrowAmount, 1, 1_000e6 * 10_000 / collateralBps);
        vm.prank(requester);
        (uint256 jobId, IJobEscrow.Job memory job) = escrow.postJob(
            specWithEscrow(escrowAmount, address(0), uint64(block.timestamp + 1 hours)), PROMPT
        );
        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        vm.assertEq(a.collateral, bpsCeil(escrowAmount, collateralBps), "ceil(escrow x ratio)");
        vm.assertGe(a.collateral, 1, "never zero");
        vm.assertGe(a.collateral * 10_000, escrowAmount * collateralBps, "never below the ratio");
        vm.assertEq(staking.stakeOf(executor, EXEC).locked, a.collateral, "locked");
    }

    /// @notice Issue 9: an account the token blocklists after it was credited can still get its refund out,
    /// to another address. Old (8349f87) JobEscrow.sol:289-295 paid `msg.sender` only: the credit was stuck.
    function test_audit_F9_withdrawToGetsABlockedAccountsRefundOut() public {
        BlocklistToken blt = new BlocklistToken();
        ModelRegistry reg = new ModelRegistry(governance);
        Staking stk = new Staking(IERC20(address(blt)), reg, governance, UNBONDING_PERIOD);
        JobEscrow esc = newEscrow(IERC20(address(blt)), stk, reg);
        vm.startPrank(governance);
        stk.setJobEscrow(address(esc));
        reg.registerModel(defaultModel());
        vm.stopPrank();
        blt.mint(requester, 1e9);
        vm.prank(requester);
        blt.approve(address(esc), type(uint256).max);
        vm.prank(requester);
        (uint256 jobId, IJobEscrow.Job memory job) = esc.postJob(defaultSpec(), PROMPT);
        vm.prank(requester);
        esc.cancelJob(jobId, job);

        blt.setBlocked(requester, true);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(BlocklistToken.Blocked.selector, requester));
        esc.withdraw();

        address treasury = address(0x7EA5);
        vm.prank(requester);
        vm.expectRevert(IJobEscrow.ZeroAddress.selector);
        esc.withdrawTo(address(0));
        vm.expectEmit(true, true, true, true, address(esc));
        emit IJobEscrow.Withdrawn(requester, treasury, job.escrow);
        vm.prank(requester);
        esc.withdrawTo(treasury);
        vm.assertEq(blt.balanceOf(treasury), job.escrow, "refund reached the other address");
        vm.assertEq(esc.credits(requester), 0, "credit spent");
        vm.prank(requester);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        esc.withdrawTo(treasury);
    }

    /// @notice Issue 9: `withdrawTo` pays only the caller's own credit, and a locked compensation only once
    /// released, exactly as `withdraw` does.
    function test_audit_F9_withdrawToPaysOnlyTheCallersReleasedCredit() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        vm.warp(job.spec.deadline + 1);
        escrow.expire(jobId, job, a);
        (uint256 locked, uint256 releaseAt) = escrow.lockedCreditOf(requester);
        vm.assertGt(locked, 0, "compensation locked");

        vm.prank(stranger);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        escrow.withdrawTo(stranger);

        address wallet = address(0x3A11E7);
        vm.prank(requester);
        escrow.withdrawTo(wallet);
        vm.assertEq(token.balanceOf(wallet), job.escrow, "the refund only");
        vm.warp(releaseAt - 1);
        vm.prank(requester);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        escrow.withdrawTo(wallet);
        vm.warp(releaseAt);
        vm.prank(requester);
        escrow.withdrawTo(wallet);
        vm.assertEq(token.balanceOf(wallet), job.escrow + locked, "then the compensation");
    }

    /// @notice Issue 9: staking accepts only a job escrow built on its own token, itself and its registry.
    /// Old (8349f87) Staking.sol:202-212 only checked that the address had code: an escrow on another token
    /// or another staking was wired, and its jobs would lock and seize stake that backs nothing it holds.
    function test_audit_F9_setJobEscrowRefusesAnEscrowWiredElsewhere() public {
        Staking fresh = new Staking(IERC20(address(token)), registry, governance, UNBONDING_PERIOD);
        MockSettlementToken otherToken = new MockSettlementToken();
        ModelRegistry otherRegistry = new ModelRegistry(governance);
        JobEscrow[3] memory miswired = [
            newEscrow(IERC20(address(otherToken)), fresh, registry),
            newEscrow(IERC20(address(token)), staking, registry),
            newEscrow(IERC20(address(token)), fresh, otherRegistry)
        ];
        for (uint256 i = 0; i < miswired.length; ++i) {
            vm.prank(governance);
            vm.expectRevert(
                abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, address(miswired[i]))
            );
            fresh.setJobEscrow(address(miswired[i]));
        }
        JobEscrow wired = newEscrow(IERC20(address(token)), fresh, registry);
        vm.prank(governance);
        fresh.setJobEscrow(address(wired));
        vm.assertEq(fresh.jobEscrow(), address(wired), "the matching escrow is wired");
    }

    /// @notice Issue 9, decided as designed: deactivating a model stops new jobs, not posted ones. The
    /// requester paid the escrow under terms valid at posting, and acceptance reads only the job's snapshot;
    /// a requester that no longer wants it can cancel it while it is still posted.
    function test_audit_F9_deactivatedModelsPostedJobsCanStillBeAccepted() public {
        (uint256 jobId, IJobEscrow.Job memory job) = post(defaultSpec());
        (uint256 other, IJobEscrow.Job memory otherJob) = post(defaultSpec());
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        t.active = false;
        vm.prank(governance);
        registry.setTerms(modelId, t);

        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ModelInactive.selector, modelId));
        post(defaultSpec());

        IJobEscrow.Assignment memory a = accept(executor, jobId, job);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(300, 200));
        finalizeAfterWindow(jobId, s);
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "completed");
        vm.assertEq(escrow.credits(executor), s.payment - feeOf(s.payment), "paid");

        vm.prank(requester);
        escrow.cancelJob(other, otherJob);
        vm.assertEq(uint256(escrow.jobStatus(other)), uint256(IJobEscrow.JobStatus.Cancelled), "or cancelled");
    }
}
