// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {bound} from "./utils/Base.sol";
import {DisputesBase} from "./utils/DisputesBase.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Disputes} from "../src/Disputes.sol";
import {IDisputes} from "../src/interfaces/IDisputes.sol";
import {IClaimSource} from "../src/interfaces/IClaimSource.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";
import {MockClaimSource} from "./mocks/MockClaimSource.sol";

/// @notice Unit tests of every path and revert of the dispute contract, on the real JobEscrow and Staking.
contract DisputesTest is DisputesBase {
    // ---------------------------------------------------------------- challenge

    function test_challenge_opensDisputeAndFreezesClaim() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        uint256 balanceBefore = token.balanceOf(challenger);
        uint64 revealEnd = s.disputeEnd - disputes.RESOLVE_GRACE();
        uint64 commitEnd = uint64(block.timestamp + (revealEnd - block.timestamp) / 2);
        vm.expectEmit(address(disputes));
        emit IDisputes.Challenged(
            1,
            address(escrow),
            jobId,
            challenger,
            executor,
            BOND,
            uint64(block.number + 1),
            commitEnd,
            revealEnd
        );
        vm.prank(challenger);
        uint256 id = disputes.challenge(escrow, jobId, terms(s));

        vm.assertEq(id, 1, "first id");
        vm.assertEq(disputes.nextDisputeId(), 2, "next id");
        vm.assertEq(disputes.disputeOfClaim(address(escrow), jobId), id, "claim -> dispute");
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.assertEq(address(d.source), address(escrow), "source");
        vm.assertEq(d.claimId, jobId, "claim id");
        vm.assertEq(d.termsHash, keccak256(terms(s)), "terms hash");
        vm.assertEq(d.challenger, challenger, "challenger");
        vm.assertEq(d.executor, executor, "executor");
        vm.assertEq(d.payer, requester, "payer");
        vm.assertEq(d.bond, BOND, "bond");
        vm.assertEq(d.jurorPenalty, PENALTY, "penalty");
        vm.assertEq(d.drawBlock, block.number + 1, "draw block");
        vm.assertEq(d.commitEnd, commitEnd, "commit end");
        vm.assertEq(d.revealEnd, revealEnd, "reveal end");
        vm.assertEq(d.disputeEnd, s.disputeEnd, "dispute end");
        vm.assertTrue(d.phase == IDisputes.Phase.Drawing, "drawing");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Disputed), "frozen");
        vm.assertEq(balanceBefore - token.balanceOf(challenger), BOND, "bond pulled");
        vm.assertEq(token.balanceOf(address(disputes)), BOND, "bond held");
        vm.assertEq(disputes.riskHorizon(), s.disputeEnd, "risk horizon");
        // A frozen claim cannot be finalized through the challenge window's end.
        vm.warp(s.challengeEnd);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.DisputeWindowOpen.selector, s.disputeEnd));
        escrow.finalize(jobId, s);
    }

    function test_challenge_revertsForUnknownSource() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        MockClaimSource other = new MockClaimSource();
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.UnknownSource.selector, address(other)));
        disputes.challenge(IClaimSource(address(other)), jobId, terms(s));
    }

    function test_challenge_onceperClaim() public {
        (uint256 jobId, IJobEscrow.Settlement memory s,) = openDispute();
        vm.prank(validators[1]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.AlreadyChallenged.selector, address(escrow), jobId));
        disputes.challenge(escrow, jobId, terms(s));
    }

    function test_challenge_needsValidatorStake() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        fund(stranger, 1_000e6);
        vm.prank(stranger);
        token.approve(address(disputes), type(uint256).max);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.NotValidator.selector, stranger));
        disputes.challenge(escrow, jobId, terms(s));
        // Executor stake does not count.
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.NotValidator.selector, executor));
        disputes.challenge(escrow, jobId, terms(s));
        // Validator stake below the juror penalty does not either.
        address small = address(0x5A11);
        addValidator(small, PENALTY - 1);
        vm.prank(small);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.NotValidator.selector, small));
        disputes.challenge(escrow, jobId, terms(s));
    }

    function test_challenge_refusedOutsideWindowOrWithWrongTerms() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        IJobEscrow.Settlement memory wrong = abi.decode(abi.encode(s), (IJobEscrow.Settlement));
        wrong.payment += 1;
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.TermsMismatch.selector, jobId));
        disputes.challenge(escrow, jobId, terms(wrong));
        vm.warp(s.challengeEnd);
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ChallengeWindowClosed.selector, s.challengeEnd));
        disputes.challenge(escrow, jobId, terms(s));
        // A finalized job cannot be challenged at all.
        escrow.finalize(jobId, s);
        vm.prank(challenger);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.WrongStatus.selector, jobId, IJobEscrow.JobStatus.Finalized)
        );
        disputes.challenge(escrow, jobId, terms(s));
    }

    function test_challenge_tooLateWhenClaimLeavesNoTimeToVote() public {
        MockClaimSource source = _mockSource();
        IClaimSource.Claim memory claim = IClaimSource.Claim({
            executor: executor,
            payer: requester,
            commitment: bytes32(uint256(1)),
            amount: 100,
            collateral: 200,
            challengeEnd: uint64(block.timestamp + 1 hours),
            disputeEnd: uint64(block.timestamp + 30 minutes - 1)
        });
        source.setClaim(7, claim);
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooLate.selector, claim.disputeEnd));
        disputes.challenge(IClaimSource(address(source)), 7, "");
        // The challenge window is checked too, even if the source forgot to.
        claim.disputeEnd = uint64(block.timestamp + 1 days);
        claim.challengeEnd = uint64(block.timestamp);
        source.setClaim(7, claim);
        vm.prank(challenger);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooLate.selector, claim.challengeEnd));
        disputes.challenge(IClaimSource(address(source)), 7, "");
        // Exactly the minimum is enough.
        claim.challengeEnd = uint64(block.timestamp + 1);
        claim.disputeEnd = uint64(block.timestamp + 30 minutes);
        source.setClaim(7, claim);
        vm.prank(challenger);
        disputes.challenge(IClaimSource(address(source)), 7, "");
        vm.assertTrue(source.frozen(7), "frozen");
    }

    function test_challenge_needsAllowance() public {
        (uint256 jobId,, IJobEscrow.Settlement memory s) = submittedJob(300, 200);
        vm.prank(challenger);
        token.approve(address(disputes), BOND - 1);
        vm.prank(challenger);
        vm.expectRevert();
        disputes.challenge(escrow, jobId, terms(s));
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Submitted), "not frozen");
    }

    // ---------------------------------------------------------------- draw

    function test_draw_seatsDistinctValidatorsAndLocksPenalty() public {
        (,, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        vm.assertGt(jurors.length, 0, "a jury");
        vm.assertLe(jurors.length, JURY, "at most the jury size");
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.assertTrue(jurors[i] != challenger, "challenger never sits");
            vm.assertTrue(jurors[i] != executor, "executor never sits");
            vm.assertEq(lockedOf(jurors[i]), PENALTY, "penalty locked");
            for (uint256 j = i + 1; j < jurors.length; ++j) {
                vm.assertTrue(jurors[i] != jurors[j], "distinct");
            }
        }
        vm.assertTrue(disputes.disputeOf(id).phase == IDisputes.Phase.Voting, "voting");
    }

    function test_draw_fillsEverySeatWhenEnoughValidators() public {
        (,, uint256 id) = openDispute();
        // Four eligible validators, three seats, twelve attempts: seeds that leave a seat empty are rare;
        // across many seeds most draws fill the jury.
        uint256 full;
        for (uint256 k = 0; k < 16; ++k) {
            uint256 snap = vm.snapshotState();
            if (draw(id, keccak256(abi.encode(k))).length == JURY) full++;
            vm.revertToState(snap);
        }
        vm.assertGe(full, 12, "most draws fill the jury");
    }

    function test_draw_timing() public {
        (,, uint256 id) = openDispute();
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, uint256(d.drawBlock) + 1));
        disputes.drawJury(id);
        vm.roll(d.drawBlock);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, uint256(d.drawBlock) + 1));
        disputes.drawJury(id);
        vm.roll(uint256(d.drawBlock) + 1);
        vm.warp(d.commitEnd);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooLate.selector, d.commitEnd));
        disputes.drawJury(id);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.UnknownDispute.selector, 99));
        disputes.drawJury(99);
    }

    function test_draw_onceOnly() public {
        (,, uint256 id) = openDispute();
        draw(id);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.WrongPhase.selector, id, IDisputes.Phase.Voting));
        disputes.drawJury(id);
    }

    function test_draw_rearmedWhenHashIsGone() public {
        (,, uint256 id) = openDispute();
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.roll(uint256(d.drawBlock) + 300);
        vm.setBlockhash(d.drawBlock, bytes32(0));
        uint64 rearmed = uint64(block.number + 1);
        vm.expectEmit(address(disputes));
        emit IDisputes.DrawRearmed(id, rearmed);
        disputes.drawJury(id);
        d = disputes.disputeOf(id);
        vm.assertEq(d.drawBlock, rearmed, "re-armed");
        vm.assertTrue(d.phase == IDisputes.Phase.Drawing, "still drawing");
        vm.assertEq(disputes.jurorsOf(id).length, 0, "nobody seated");
        // The new block's hash, once it exists, draws the jury.
        address[] memory jurors = draw(id, keccak256("later"));
        vm.assertGt(jurors.length, 0, "drawn after re-arm");
    }

    function test_draw_skipsValidatorsWithoutFreeStake() public {
        // Every validator but one keeps less free stake than the penalty: only that one can sit.
        for (uint256 i = 1; i < 4; ++i) {
            vm.prank(validators[i]);
            staking.requestUnstake(IStaking.Role.Validator, VALIDATOR_STAKE - PENALTY + 1);
        }
        (,, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.assertEq(jurors[i], validators[4], "only the one with free stake");
        }
    }

    function test_draw_noValidatorsMeansNoJuryAndHonestDefault() public {
        // Only the challenger is a validator: nobody else can sit.
        for (uint256 i = 1; i < 5; ++i) {
            vm.prank(validators[i]);
            staking.requestUnstake(IStaking.Role.Validator, VALIDATOR_STAKE);
        }
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        vm.assertEq(jurors.length, 0, "empty jury");
        // The draw is re-armed, not over: the dispute waits for `commitEnd`, then resolves honest.
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.assertTrue(d.phase == IDisputes.Phase.Drawing, "still drawing");
        vm.assertEq(d.drawBlock, block.number + 1, "re-armed");
        vm.assertEq(disputes.pendingDraws(), 1, "still pending");
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, d.commitEnd));
        disputes.resolve(id, terms(s));
        vm.warp(d.commitEnd);
        disputes.resolve(id, terms(s));
        vm.assertEq(disputes.pendingDraws(), 0, "no longer pending");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "paid");
        vm.assertEq(disputes.credits(executor), BOND, "executor keeps the whole bond");
    }

    function test_attack_executorValidatorNeverSitsOnItsOwnJury(bytes32 seed) public {
        // The executor also stakes as a validator, with by far the most stake.
        addValidator(executor, 10_000e6);
        (,, uint256 id) = openDispute();
        address[] memory jurors = draw(id, seed);
        vm.assertFalse(isIn(jurors, executor), "executor on its own jury");
        vm.assertFalse(isIn(jurors, challenger), "challenger on the jury");
    }

    function test_attack_challengerNeverSits(bytes32 seed) public {
        // The challenger holds most of the validator stake.
        addValidator(challenger, 10_000e6);
        (,, uint256 id) = openDispute();
        address[] memory jurors = draw(id, seed);
        vm.assertFalse(isIn(jurors, challenger), "challenger on the jury");
    }

    function test_attack_validatorStakeFrozenUntilTheDraw() public {
        // Between a challenge and its draw nobody can move the draw's weights (after seeing the hash).
        address v = validators[2];
        fund(v, 10);
        (,, uint256 id) = openDispute();
        vm.assertEq(disputes.pendingDraws(), 1, "pending");
        vm.prank(v);
        vm.expectRevert(IStaking.DrawPending.selector);
        staking.stake(IStaking.Role.Validator, 1);
        vm.prank(v);
        vm.expectRevert(IStaking.DrawPending.selector);
        staking.requestUnstake(IStaking.Role.Validator, 1);
        // Executor stake is not part of the draw.
        vm.prank(executor);
        staking.requestUnstake(IStaking.Role.Executor, 1);
        draw(id);
        vm.assertEq(disputes.pendingDraws(), 0, "drawn");
        vm.prank(v);
        staking.stake(IStaking.Role.Validator, 1);
        vm.prank(v);
        staking.requestUnstake(IStaking.Role.Validator, 1);
    }

    function test_pendingDraws_clearedByADefaultResolution() public {
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        vm.warp(disputes.disputeOf(id).commitEnd);
        disputes.resolve(id, terms(s));
        vm.assertEq(disputes.pendingDraws(), 0, "never drawn, resolved");
        vm.prank(validators[1]);
        staking.requestUnstake(IStaking.Role.Validator, 1);
    }

    // ---------------------------------------------------------------- commit and reveal

    function test_commit_reverts() public {
        (,, uint256 id) = openDispute();
        vm.prank(validators[1]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.WrongPhase.selector, id, IDisputes.Phase.Drawing));
        disputes.commitVote(id, bytes32(uint256(1)));
        address[] memory jurors = draw(id);
        address juror = jurors[0];
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.NotJuror.selector, id, stranger));
        disputes.commitVote(id, bytes32(uint256(1)));
        vm.prank(juror);
        vm.expectRevert(IDisputes.InvalidVote.selector);
        disputes.commitVote(id, bytes32(0));
        commit(id, juror, IDisputes.Vote.Faulty);
        (bytes32 c, IDisputes.Vote v) = disputes.ballotOf(id, juror);
        vm.assertEq(c, commitmentOf(id, juror, IDisputes.Vote.Faulty), "stored");
        vm.assertTrue(v == IDisputes.Vote.None, "not revealed");
        vm.prank(juror);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.AlreadyCommitted.selector, id, juror));
        disputes.commitVote(id, bytes32(uint256(1)));
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.warp(d.commitEnd);
        if (jurors.length > 1) {
            vm.prank(jurors[1]);
            vm.expectRevert(abi.encodeWithSelector(IDisputes.TooLate.selector, d.commitEnd));
            disputes.commitVote(id, bytes32(uint256(1)));
        }
    }

    function test_reveal_reverts() public {
        (,, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        vm.assertGt(jurors.length, 1, "needs two jurors");
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        commit(id, jurors[0], IDisputes.Vote.Honest);
        // Not everyone committed and the commit phase is open: too early.
        vm.prank(jurors[0]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, d.commitEnd));
        disputes.revealVote(id, IDisputes.Vote.Honest, saltOf(jurors[0]));
        vm.warp(d.commitEnd);
        // A juror that never committed cannot reveal.
        vm.prank(jurors[1]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.CommitmentMismatch.selector, id, jurors[1]));
        disputes.revealVote(id, IDisputes.Vote.Honest, saltOf(jurors[1]));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.NotJuror.selector, id, stranger));
        disputes.revealVote(id, IDisputes.Vote.Honest, bytes32(0));
        vm.prank(jurors[0]);
        vm.expectRevert(IDisputes.InvalidVote.selector);
        disputes.revealVote(id, IDisputes.Vote.None, saltOf(jurors[0]));
        // Another vote or another salt does not open the commitment.
        vm.prank(jurors[0]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.CommitmentMismatch.selector, id, jurors[0]));
        disputes.revealVote(id, IDisputes.Vote.Faulty, saltOf(jurors[0]));
        vm.prank(jurors[0]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.CommitmentMismatch.selector, id, jurors[0]));
        disputes.revealVote(id, IDisputes.Vote.Honest, bytes32(uint256(7)));
        vm.expectEmit(address(disputes));
        emit IDisputes.VoteRevealed(id, jurors[0], IDisputes.Vote.Honest);
        reveal(id, jurors[0], IDisputes.Vote.Honest);
        vm.prank(jurors[0]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.AlreadyRevealed.selector, id, jurors[0]));
        disputes.revealVote(id, IDisputes.Vote.Honest, saltOf(jurors[0]));
        vm.warp(d.revealEnd);
        vm.prank(jurors[0]);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooLate.selector, d.revealEnd));
        disputes.revealVote(id, IDisputes.Vote.Honest, saltOf(jurors[0]));
    }

    function test_reveal_openAsSoonAsEveryoneCommitted() public {
        (,, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        for (uint256 i = 0; i < jurors.length; ++i) {
            commit(id, jurors[i], IDisputes.Vote.Honest);
        }
        reveal(id, jurors[0], IDisputes.Vote.Honest);
        (, IDisputes.Vote v) = disputes.ballotOf(id, jurors[0]);
        vm.assertTrue(v == IDisputes.Vote.Honest, "revealed before commitEnd");
    }

    function test_commitmentEncoding() public pure {
        // Pinned for the validator (Rust): keccak256(abi.encode(uint256 id, address juror, uint8 vote, bytes32 salt)).
        bytes32 expected = keccak256(
            abi.encodePacked(
                uint256(5), uint256(uint160(address(0xA001))), uint256(2), bytes32(uint256(0x5a17))
            )
        );
        vm.assertEq(
            keccak256(
                abi.encode(uint256(5), address(0xA001), IDisputes.Vote.Faulty, bytes32(uint256(0x5a17)))
            ),
            expected,
            "encoding"
        );
    }

    // ---------------------------------------------------------------- resolve: outcomes

    function test_resolve_faulty_slashesCollateralRefundsRequesterPaysChallengerAndJurors() public {
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Faulty);
        uint256 executorStake = staking.stakeOf(executor, IStaking.Role.Executor).staked;
        uint256 burnBefore = token.balanceOf(BURN);

        disputes.resolve(id, terms(s));

        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Rejected), "rejected");
        vm.assertEq(escrow.credits(requester), s.escrow, "requester refunded in full");
        vm.assertEq(
            executorStake - staking.stakeOf(executor, IStaking.Role.Executor).staked, s.collateral, "slashed"
        );
        uint256 reward = s.collateral * CHALLENGER_BPS / 10_000;
        uint256 pool = s.collateral * JUROR_BPS / 10_000;
        uint256 share = pool / jurors.length;
        vm.assertEq(disputes.credits(challenger), BOND + reward, "challenger: bond back + reward");
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.assertEq(disputes.credits(jurors[i]), share, "juror share");
            vm.assertEq(lockedOf(jurors[i]), 0, "seat unlocked");
            vm.assertEq(stakedOf(jurors[i]), VALIDATOR_STAKE, "majority not slashed");
        }
        uint256 burned = s.collateral - reward - share * jurors.length;
        vm.assertEq(token.balanceOf(BURN) - burnBefore, burned, "rest burned");
        vm.assertEq(
            token.balanceOf(address(disputes)), BOND + reward + share * jurors.length, "balance = credits"
        );
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.assertTrue(d.phase == IDisputes.Phase.Resolved, "resolved");
        vm.assertTrue(d.executorFaulty, "faulty");
        vm.assertEq(staking.executorProfile(executor).disputesLost, 1, "reputation");
    }

    function test_resolve_honest_bondPaysJurorsAndExecutor() public {
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Honest);
        uint256 executorStake = staking.stakeOf(executor, IStaking.Role.Executor).staked;

        disputes.resolve(id, terms(s));

        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "paid");
        vm.assertEq(escrow.credits(executor), s.payment - s.validatorFee, "executor paid as by finalize");
        vm.assertEq(staking.stakeOf(executor, IStaking.Role.Executor).staked, executorStake, "stake intact");
        vm.assertEq(staking.stakeOf(executor, IStaking.Role.Executor).locked, 0, "collateral released");
        uint256 pool = BOND * JUROR_BPS / 10_000;
        uint256 share = pool / jurors.length;
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.assertEq(disputes.credits(jurors[i]), share, "juror share");
            vm.assertEq(lockedOf(jurors[i]), 0, "unlocked");
        }
        vm.assertEq(disputes.credits(executor), BOND - pool, "executor compensated");
        vm.assertEq(disputes.credits(challenger), 0, "griefing costs the bond");
        vm.assertEq(token.balanceOf(BURN), pool - share * jurors.length, "only rounding dust burned");
        vm.assertFalse(disputes.disputeOf(id).executorFaulty, "honest");
    }

    function test_attack_griefingChallengeCostsTheBond() public {
        uint256 before = token.balanceOf(challenger);
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Honest);
        disputes.resolve(id, terms(s));
        vm.assertEq(before - token.balanceOf(challenger), BOND, "bond gone");
        vm.assertEq(disputes.credits(challenger), 0, "nothing back");
        vm.prank(challenger);
        vm.expectRevert(IDisputes.NothingToWithdraw.selector);
        disputes.withdraw();
    }

    function test_resolve_penalisesNonRevealingAndMinorityJurors() public {
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        vm.assertEq(jurors.length, 3, "full jury");
        // jurors[0], jurors[1]: Faulty (majority); jurors[2] commits Honest and never reveals.
        commit(id, jurors[0], IDisputes.Vote.Faulty);
        commit(id, jurors[1], IDisputes.Vote.Faulty);
        commit(id, jurors[2], IDisputes.Vote.Honest);
        reveal(id, jurors[0], IDisputes.Vote.Faulty);
        reveal(id, jurors[1], IDisputes.Vote.Faulty);
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, d.revealEnd));
        disputes.resolve(id, terms(s));
        vm.warp(d.revealEnd);
        vm.expectEmit(address(disputes));
        emit IDisputes.JurorPenalised(id, jurors[2], PENALTY);
        disputes.resolve(id, terms(s));
        uint256 pool = s.collateral * JUROR_BPS / 10_000 + PENALTY;
        vm.assertEq(stakedOf(jurors[2]), VALIDATOR_STAKE - PENALTY, "non-revealer slashed");
        vm.assertEq(lockedOf(jurors[2]), 0, "unlocked");
        vm.assertEq(disputes.credits(jurors[0]), pool / 2, "majority share incl. penalty");
        vm.assertEq(disputes.credits(jurors[1]), pool / 2, "majority share incl. penalty");
        vm.assertEq(disputes.credits(jurors[2]), 0, "nothing for the non-revealer");
    }

    function test_resolve_minorityVoterPenalised_tieIsHonest() public {
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        vm.assertEq(jurors.length, 3, "full jury");
        // One Faulty, one Honest, one silent: a tie → honest; the Faulty voter and the silent one lose.
        commit(id, jurors[0], IDisputes.Vote.Faulty);
        commit(id, jurors[1], IDisputes.Vote.Honest);
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.warp(d.commitEnd);
        reveal(id, jurors[0], IDisputes.Vote.Faulty);
        reveal(id, jurors[1], IDisputes.Vote.Honest);
        vm.warp(d.revealEnd);
        disputes.resolve(id, terms(s));
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "tie: honest");
        vm.assertEq(stakedOf(jurors[0]), VALIDATOR_STAKE - PENALTY, "minority slashed");
        vm.assertEq(stakedOf(jurors[2]), VALIDATOR_STAKE - PENALTY, "silent slashed");
        vm.assertEq(stakedOf(jurors[1]), VALIDATOR_STAKE, "majority kept");
        uint256 bondShare = BOND * JUROR_BPS / 10_000;
        vm.assertEq(disputes.credits(jurors[1]), bondShare + 2 * PENALTY, "majority gets all");
        vm.assertEq(disputes.credits(executor), BOND - bondShare, "executor compensated");
    }

    function test_resolve_nobodyRevealed_penaltiesBurnedExecutorKeepsBond() public {
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.warp(d.revealEnd);
        uint256 burnBefore = token.balanceOf(BURN);
        disputes.resolve(id, terms(s));
        vm.assertEq(disputes.credits(executor), BOND, "whole bond to the executor");
        vm.assertEq(token.balanceOf(BURN) - burnBefore, PENALTY * jurors.length, "penalties burned");
        vm.assertEq(token.balanceOf(address(disputes)), BOND, "only the executor's credit left");
    }

    function test_resolve_neverDrawn_honestAfterCommitEnd() public {
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, d.commitEnd));
        disputes.resolve(id, terms(s));
        vm.warp(d.commitEnd);
        disputes.resolve(id, terms(s));
        vm.assertEq(
            uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "honest default"
        );
        vm.assertEq(disputes.credits(executor), BOND, "bond to the executor");
    }

    function test_resolve_reverts() public {
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        vm.expectRevert(abi.encodeWithSelector(IDisputes.UnknownDispute.selector, 42));
        disputes.resolve(42, terms(s));
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Faulty);
        IJobEscrow.Settlement memory wrong = abi.decode(abi.encode(s), (IJobEscrow.Settlement));
        wrong.collateral = 1;
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TermsMismatch.selector, id));
        disputes.resolve(id, terms(wrong));
        disputes.resolve(id, terms(s));
        vm.expectRevert(abi.encodeWithSelector(IDisputes.WrongPhase.selector, id, IDisputes.Phase.Resolved));
        disputes.resolve(id, terms(s));
        vm.expectRevert(abi.encodeWithSelector(IDisputes.WrongPhase.selector, id, IDisputes.Phase.Resolved));
        disputes.drawJury(id);
    }

    function test_attack_resolveAfterDisputeEndStillReleasesEverything() public {
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Faulty);
        // Nobody resolves in time: the job settles as honest by itself.
        vm.warp(s.disputeEnd);
        escrow.finalize(jobId, s);
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "settled");
        // The dispute still closes: bond back to the (right) challenger, seats unlocked, nothing stuck.
        vm.expectEmit(address(disputes));
        emit IDisputes.DisputeResolved(id, false, jurors.length, 0, 0, 0);
        disputes.resolve(id, terms(s));
        vm.assertEq(disputes.credits(challenger), BOND, "bond back");
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.assertEq(lockedOf(jurors[i]), 0, "unlocked");
            vm.assertEq(stakedOf(jurors[i]), VALIDATOR_STAKE, "not slashed");
        }
        vm.assertEq(token.balanceOf(address(disputes)), BOND, "balance = credits");
        vm.prank(challenger);
        disputes.withdraw();
        vm.assertEq(token.balanceOf(address(disputes)), 0, "empty");
    }

    function test_resolve_afterDisputeEnd_honestVerdictPaysBondWithoutSource() public {
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Honest);
        vm.warp(s.disputeEnd);
        // Resolved before anyone finalized: the job stays Disputed until finalize, which still works.
        disputes.resolve(id, terms(s));
        vm.assertEq(
            uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Disputed), "source untouched"
        );
        escrow.finalize(jobId, s);
        uint256 pool = BOND * JUROR_BPS / 10_000;
        vm.assertEq(disputes.credits(executor), BOND - pool, "executor compensated");
    }

    function test_resolve_sourceRefusalRevertsInTimeButNotAfter() public {
        MockClaimSource source = _mockSource();
        IClaimSource.Claim memory claim = IClaimSource.Claim({
            executor: executor,
            payer: requester,
            commitment: bytes32(uint256(1)),
            amount: 100,
            collateral: 200,
            challengeEnd: uint64(block.timestamp + 1 hours),
            disputeEnd: uint64(block.timestamp + 1 days)
        });
        source.setClaim(3, claim);
        vm.prank(challenger);
        uint256 id = disputes.challenge(IClaimSource(address(source)), 3, "t");
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Honest);
        source.setRevertOnResolve(true);
        vm.expectRevert("MockClaimSource: resolve refused");
        disputes.resolve(id, "t");
        vm.warp(claim.disputeEnd);
        disputes.resolve(id, "t");
        vm.assertEq(source.resolvedCalls(), 0, "source not called after its dispute end");
        vm.assertTrue(disputes.disputeOf(id).phase == IDisputes.Phase.Resolved, "closed");
    }

    function test_attack_jurorCannotUnstakeOutOfPenalty() public {
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        address juror = jurors[0];
        vm.prank(juror);
        vm.expectRevert(
            abi.encodeWithSelector(
                IStaking.InsufficientFreeStake.selector, VALIDATOR_STAKE - PENALTY, VALIDATOR_STAKE
            )
        );
        staking.requestUnstake(IStaking.Role.Validator, VALIDATOR_STAKE);
        // It may unbond the rest, but the seat's stake stays, and is slashed if it does not reveal.
        vm.prank(juror);
        staking.requestUnstake(IStaking.Role.Validator, VALIDATOR_STAKE - PENALTY);
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        vm.prank(juror);
        staking.withdraw(IStaking.Role.Validator);
        vm.assertEq(stakedOf(juror), PENALTY, "penalty stake stayed");
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        if (block.timestamp < d.revealEnd) vm.warp(d.revealEnd);
        disputes.resolve(id, terms(s));
        vm.assertEq(stakedOf(juror), 0, "slashed for not revealing");
    }

    function test_withdraw_paysCredits() public {
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        voteAll(id, jurors, IDisputes.Vote.Faulty);
        disputes.resolve(id, terms(s));
        uint256 credit = disputes.credits(challenger);
        uint256 before = token.balanceOf(challenger);
        vm.expectEmit(address(disputes));
        emit IDisputes.Withdrawn(challenger, challenger, credit);
        vm.prank(challenger);
        disputes.withdraw();
        vm.assertEq(token.balanceOf(challenger) - before, credit, "paid");
        vm.assertEq(disputes.credits(challenger), 0, "cleared");
        vm.prank(challenger);
        vm.expectRevert(IDisputes.NothingToWithdraw.selector);
        disputes.withdraw();
    }

    // ---------------------------------------------------------------- governance

    function test_governance_allowSource() public {
        MockClaimSource source = new MockClaimSource();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        disputes.allowSource(address(source));
        vm.startPrank(governance);
        vm.expectRevert(IDisputes.ZeroAddress.selector);
        disputes.allowSource(address(0));
        vm.expectRevert(abi.encodeWithSelector(IDisputes.UnknownSource.selector, stranger));
        disputes.allowSource(stranger);
        vm.expectEmit(address(disputes));
        emit IDisputes.SourceAllowed(address(source));
        disputes.allowSource(address(source));
        vm.expectRevert(abi.encodeWithSelector(Disputes.SourceAlreadyAllowed.selector, address(source)));
        disputes.allowSource(address(source));
        vm.stopPrank();
        vm.assertTrue(disputes.allowedSource(address(source)), "allowed");
    }

    function test_governance_parametersBounded() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        disputes.setParameters(1, 1, 1, 0, 0);
        vm.startPrank(governance);
        uint256 maxBond = disputes.MAX_BOND();
        uint256 maxPenalty = disputes.MAX_JUROR_PENALTY();
        uint8 maxJury = disputes.MAX_JURY_SIZE();
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        disputes.setParameters(0, 1, 1, 0, 0);
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        disputes.setParameters(maxBond + 1, 1, 1, 0, 0);
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        disputes.setParameters(1, 0, 1, 0, 0);
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        disputes.setParameters(1, maxPenalty + 1, 1, 0, 0);
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        disputes.setParameters(1, 1, 0, 0, 0);
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        disputes.setParameters(1, 1, maxJury + 1, 0, 0);
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        disputes.setParameters(1, 1, 1, 5_001, 5_000);
        vm.expectEmit(address(disputes));
        emit IDisputes.ParametersSet(maxBond, maxPenalty, maxJury, 5_000, 5_000);
        disputes.setParameters(maxBond, maxPenalty, maxJury, 5_000, 5_000);
        vm.stopPrank();
        vm.assertEq(disputes.bond(), maxBond, "bond");
        vm.assertEq(disputes.jurySize(), maxJury, "jury");
    }

    function test_governance_neverChangesAnOpenDispute() public {
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        vm.prank(governance);
        disputes.setParameters(BOND * 2, PENALTY * 2, 1, 0, 10_000);
        address[] memory jurors = draw(id);
        vm.assertGt(jurors.length, 1, "the snapshotted jury size");
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.assertEq(lockedOf(jurors[i]), PENALTY, "snapshotted penalty");
        }
        voteAll(id, jurors, IDisputes.Vote.Faulty);
        disputes.resolve(id, terms(s));
        uint256 reward = s.collateral * CHALLENGER_BPS / 10_000;
        vm.assertEq(disputes.credits(challenger), BOND + reward, "snapshotted bond and reward");
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Rejected), "rejected");
    }

    function test_constructor_bounds() public {
        vm.expectRevert(IDisputes.ZeroAddress.selector);
        new Disputes(IERC20(address(0)), staking, governance, BOND, PENALTY, JURY, 0, 0);
        vm.expectRevert(IDisputes.ZeroAddress.selector);
        new Disputes(IERC20(address(token)), IStaking(address(0)), governance, BOND, PENALTY, JURY, 0, 0);
        vm.expectRevert(IDisputes.ParameterOutOfBounds.selector);
        new Disputes(IERC20(address(token)), staking, governance, BOND, PENALTY, 16, 0, 0);
    }

    function test_staking_onlyDisputesLocksAndUnlocks() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, stranger));
        staking.lockStake(validators[1], 1);
        vm.prank(governance);
        vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, governance));
        staking.unlockStake(validators[1], 1);
        vm.prank(address(disputes));
        vm.expectRevert(
            abi.encodeWithSelector(
                IStaking.InsufficientFreeStake.selector, VALIDATOR_STAKE, VALIDATOR_STAKE + 1
            )
        );
        staking.lockStake(validators[1], VALIDATOR_STAKE + 1);
    }

    function test_staking_unbondingCutRespectsDisputeHorizon() public {
        // A claim source with a dispute far beyond the escrow's own horizon: the unbonding period may not
        // be cut below the time left until it ends.
        MockClaimSource source = _mockSource();
        IClaimSource.Claim memory claim = IClaimSource.Claim({
            executor: executor,
            payer: requester,
            commitment: bytes32(uint256(1)),
            amount: 100,
            collateral: 200,
            challengeEnd: uint64(block.timestamp + 1 hours),
            disputeEnd: uint64(block.timestamp + 30 days)
        });
        source.setClaim(1, claim);
        vm.prank(challenger);
        disputes.challenge(IClaimSource(address(source)), 1, "");
        vm.assertEq(disputes.riskHorizon(), claim.disputeEnd, "horizon");
        vm.assertGt(disputes.riskHorizon(), escrow.riskHorizon(), "the dispute outlasts every job");
        uint256 minPeriod = 30 days;
        uint256 maxPeriod = staking.MAX_UNBONDING_PERIOD();
        vm.prank(governance);
        vm.expectRevert(
            abi.encodeWithSelector(
                IStaking.UnbondingPeriodOutOfBounds.selector, minPeriod - 1, minPeriod, maxPeriod
            )
        );
        staking.setUnbondingPeriod(minPeriod - 1);
        vm.prank(governance);
        staking.setUnbondingPeriod(minPeriod);
        vm.assertEq(staking.unbondingPeriod(), minPeriod, "set at the horizon");
        // Once the horizon has passed, it no longer holds the period up.
        vm.warp(claim.disputeEnd);
        uint256 lifetime = escrow.maxJobLifetime();
        vm.prank(governance);
        staking.setUnbondingPeriod(lifetime);
    }

    // ---------------------------------------------------------------- fuzz

    /// @notice Any mix of votes: tokens are conserved (disputes' balance = credits; inflow = outflow), an
    /// honest verdict never touches the executor's stake, and a slash never exceeds the penalty.
    function testFuzz_resolve_conservesTokens(uint8 votesSeed, bytes32 seed) public {
        (, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id, seed);
        uint256 executorStake = staking.stakeOf(executor, IStaking.Role.Executor).staked;
        uint256 faulty;
        uint256 honest;
        for (uint256 i = 0; i < jurors.length; ++i) {
            uint256 v = (votesSeed >> (2 * i)) % 3; // 0: silent, 1: honest, 2: faulty
            if (v != 0) commit(id, jurors[i], IDisputes.Vote(v));
        }
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.warp(d.commitEnd);
        for (uint256 i = 0; i < jurors.length; ++i) {
            uint256 v = (votesSeed >> (2 * i)) % 3;
            if (v != 0) reveal(id, jurors[i], IDisputes.Vote(v));
            if (v == 1) honest++;
            if (v == 2) faulty++;
        }
        uint256[] memory stakes = new uint256[](jurors.length);
        for (uint256 i = 0; i < jurors.length; ++i) {
            stakes[i] = stakedOf(jurors[i]);
        }
        uint256 supplyOutside = token.balanceOf(address(disputes)) + token.balanceOf(BURN)
            + token.balanceOf(address(staking)) + token.balanceOf(address(escrow));
        vm.warp(d.revealEnd);
        disputes.resolve(id, terms(s));
        uint256 supplyAfter = token.balanceOf(address(disputes)) + token.balanceOf(BURN)
            + token.balanceOf(address(staking)) + token.balanceOf(address(escrow));
        vm.assertEq(supplyAfter, supplyOutside, "tokens conserved");
        uint256 credited = disputes.credits(challenger) + disputes.credits(executor);
        for (uint256 i = 0; i < jurors.length; ++i) {
            credited += disputes.credits(jurors[i]);
            vm.assertLe(stakes[i] - stakedOf(jurors[i]), PENALTY, "slash within the penalty");
            vm.assertEq(lockedOf(jurors[i]), 0, "unlocked");
        }
        vm.assertEq(token.balanceOf(address(disputes)), credited, "balance = credits");
        if (faulty <= honest) {
            vm.assertEq(
                staking.stakeOf(executor, IStaking.Role.Executor).staked, executorStake, "honest keeps stake"
            );
        }
    }

    /// @notice The stake-weighted draw returns the validator whose cumulative range holds the point.
    function testFuzz_validatorAt_matchesLinearScan(uint256[8] memory amounts, uint256 point) public {
        // Fresh staking with only fuzzed validators.
        address[] memory vs = new address[](8);
        uint256 total = staking.totalValidatorStake();
        for (uint256 i = 0; i < 8; ++i) {
            vs[i] = address(uint160(0xB000 + i));
            uint256 amount = bound(amounts[i], 1, 1e12);
            addValidator(vs[i], amount);
            total += amount;
        }
        // Some unstake, so updates go down the tree as well.
        uint256 half = stakedOf(vs[3]) / 2;
        if (half != 0) {
            vm.prank(vs[3]);
            staking.requestUnstake(IStaking.Role.Validator, half);
        }
        total = staking.totalValidatorStake();
        point = bound(point, 0, total - 1);
        // Linear scan over every validator in staking order: the five of setUp, then the eight.
        address expected;
        uint256 acc;
        for (uint256 i = 0; i < 13; ++i) {
            address v = i < 5 ? validators[i] : vs[i - 5];
            acc += stakedOf(v);
            if (point < acc) {
                expected = v;
                break;
            }
        }
        vm.assertEq(staking.validatorAt(point), expected, "draw");
        vm.assertEq(staking.validatorCount(), 13, "count");
        vm.expectRevert(abi.encodeWithSelector(IStaking.DrawOutOfRange.selector, total, total));
        staking.validatorAt(total);
    }

    // ---------------------------------------------------------------- helpers

    function _mockSource() internal returns (MockClaimSource source) {
        source = new MockClaimSource();
        vm.prank(governance);
        disputes.allowSource(address(source));
    }
}
