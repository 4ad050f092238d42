// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {bound} from "./utils/Base.sol";
import {DisputesBase} from "./utils/DisputesBase.sol";
import {IDisputes} from "../src/interfaces/IDisputes.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";

/// @notice The jury draw skips the parties' stake (challenger, executor, payer), seated jurors and validators
/// without free stake, and re-arms rather than leave a dispute without a jury.
contract DisputesDrawTest is DisputesBase {
    /// A faulty executor that stakes far more as a validator than everyone else used to empty its own jury
    /// (every attempt landed on it and was passed over) and was then presumed honest at once.
    function test_audit_executorValidatorStakeEmptiesItsJury() public {
        addValidator(executor, 1_000_000e6);
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        address[] memory jurors = draw(id);
        // A jury sits now, so the dispute no longer resolves at once: it waits for the jury's votes.
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, d.revealEnd));
        disputes.resolve(id, terms(s));
        voteAll(id, jurors, IDisputes.Vote.Faulty);
        disputes.resolve(id, terms(s));
        vm.assertTrue(jurors.length > 0, "a faulty executor emptied its own jury");
        vm.assertFalse(isIn(jurors, executor), "executor on its own jury");
        vm.assertTrue(
            escrow.jobStatus(jobId) != IJobEscrow.JobStatus.Finalized, "paid without any juror voting"
        );
        vm.assertTrue(disputes.disputeOf(id).executorFaulty, "the jury convicted");
    }

    function test_draw_payerNeverSits(bytes32 seed) public {
        // The requester (who gains from a Faulty verdict) holds most of the validator stake.
        addValidator(requester, 10_000e6);
        (,, uint256 id) = openDispute();
        vm.assertEq(disputes.disputeOf(id).payer, requester, "the requester pays");
        if (seed == bytes32(0)) seed = keccak256("seed");
        address[] memory jurors = draw(id, seed);
        vm.assertFalse(isIn(jurors, requester), "payer on the jury");
        vm.assertEq(jurors.length, JURY, "a full jury from the others");
    }

    function test_draw_onlyPartiesStakedRearms() public {
        // Every validator but the parties leaves; the parties hold all the validator stake.
        for (uint256 i = 1; i < 5; ++i) {
            vm.prank(validators[i]);
            staking.requestUnstake(IStaking.Role.Validator, VALIDATOR_STAKE);
        }
        addValidator(executor, 1_000e6);
        addValidator(requester, 1_000e6);
        (uint256 jobId, IJobEscrow.Settlement memory s, uint256 id) = openDispute();
        IDisputes.Dispute memory d = disputes.disputeOf(id);
        vm.roll(uint256(d.drawBlock) + 1);
        vm.setBlockhash(d.drawBlock, keccak256("parties only"));
        uint64 rearmed = uint64(block.number + 1);
        vm.expectEmit(address(disputes));
        emit IDisputes.DrawRearmed(id, rearmed);
        disputes.drawJury(id);
        d = disputes.disputeOf(id);
        vm.assertEq(disputes.jurorsOf(id).length, 0, "nobody seated");
        vm.assertEq(d.drawBlock, rearmed, "re-armed");
        vm.assertTrue(d.phase == IDisputes.Phase.Drawing, "still drawing");
        vm.assertEq(disputes.pendingDraws(), 1, "still pending");
        vm.assertEq(lockedOf(executor) + lockedOf(requester) + lockedOf(challenger), 0, "no party locked");
        // Again on the new block: still nobody.
        vm.assertEq(draw(id, keccak256("again")).length, 0, "nobody seated again");
        vm.expectRevert(abi.encodeWithSelector(IDisputes.TooEarly.selector, d.commitEnd));
        disputes.resolve(id, terms(s));
        // At `commitEnd` the dispute resolves without a jury: honest.
        vm.warp(d.commitEnd);
        disputes.resolve(id, terms(s));
        vm.assertEq(uint256(escrow.jobStatus(jobId)), uint256(IJobEscrow.JobStatus.Finalized), "paid");
        vm.assertEq(disputes.pendingDraws(), 0, "no longer pending");
    }

    /// @notice Whatever the parties stake and whichever other validators can sit, no party is ever seated,
    /// the jurors are distinct and eligible, and the jury is as full as the eligible validators allow (the
    /// attempts suffice for the four others): never empty while one is eligible.
    function testFuzz_draw_neverSeatsAPartyNorEmptyWhileEligible(
        bytes32 seed,
        uint256 executorStake,
        uint256 requesterStake,
        uint256 challengerStake,
        uint8 kinds
    ) public {
        executorStake = bound(executorStake, 0, 1e15);
        requesterStake = bound(requesterStake, 0, 1e15);
        challengerStake = bound(challengerStake, 0, 1e15);
        if (executorStake != 0) addValidator(executor, executorStake);
        if (requesterStake != 0) addValidator(requester, requesterStake);
        if (challengerStake != 0) addValidator(challenger, challengerStake);
        // Two bits per other validator: 0 or 3 eligible, 1 short of free stake, 2 no stake at all.
        uint256 eligible;
        for (uint256 i = 1; i < 5; ++i) {
            uint256 kind = (kinds >> (2 * (i - 1))) & 3;
            if (kind == 1 || kind == 2) {
                vm.prank(validators[i]);
                staking.requestUnstake(
                    IStaking.Role.Validator, kind == 1 ? VALIDATOR_STAKE - PENALTY + 1 : VALIDATOR_STAKE
                );
            } else {
                eligible += 1;
            }
        }
        (,, uint256 id) = openDispute();
        // A zero hash is a draw block gone (re-armed), not a seed.
        if (seed == bytes32(0)) seed = keccak256("seed");
        address[] memory jurors = draw(id, seed);
        for (uint256 i = 0; i < jurors.length; ++i) {
            vm.assertTrue(jurors[i] != challenger, "challenger on the jury");
            vm.assertTrue(jurors[i] != executor, "executor on its own jury");
            vm.assertTrue(jurors[i] != requester, "payer on the jury");
            vm.assertEq(lockedOf(jurors[i]), PENALTY, "seat locked");
            for (uint256 j = i + 1; j < jurors.length; ++j) {
                vm.assertTrue(jurors[i] != jurors[j], "a juror seated twice");
            }
        }
        vm.assertEq(jurors.length, eligible < JURY ? eligible : JURY, "as full as the eligible allow");
        IDisputes.Phase phase = disputes.disputeOf(id).phase;
        if (eligible == 0) vm.assertTrue(phase == IDisputes.Phase.Drawing, "re-armed");
        else vm.assertTrue(phase == IDisputes.Phase.Voting, "drawn");
    }

    /// @notice `validatorRange` matches `validatorAt` at both ends of every validator's range.
    function test_validatorRange_matchesValidatorAt() public {
        addValidator(executor, 7e6);
        vm.prank(validators[2]);
        staking.requestUnstake(IStaking.Role.Validator, VALIDATOR_STAKE);
        uint256 covered;
        for (uint256 i = 0; i < 5; ++i) {
            (uint256 start, uint256 weight) = staking.validatorRange(validators[i]);
            vm.assertEq(weight, stakedOf(validators[i]), "weight is the bonded stake");
            covered += weight;
            if (weight == 0) continue;
            vm.assertEq(staking.validatorAt(start), validators[i], "first point");
            vm.assertEq(staking.validatorAt(start + weight - 1), validators[i], "last point");
        }
        (uint256 s, uint256 w) = staking.validatorRange(executor);
        vm.assertEq(staking.validatorAt(s), executor, "executor's first point");
        vm.assertEq(s + w, staking.totalValidatorStake(), "the last validator ends the stake");
        vm.assertEq(covered + w, staking.totalValidatorStake(), "ranges cover the stake");
        (s, w) = staking.validatorRange(stranger);
        vm.assertEq(s + w, 0, "(0, 0) for a non-validator");
    }
}
