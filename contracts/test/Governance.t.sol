// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {Base} from "./utils/Base.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {JobEscrow} from "../src/JobEscrow.sol";
import {Staking} from "../src/Staking.sol";
import {MockDisputes} from "./mocks/MockDisputes.sol";

/// @notice Governance is bounded: only the owner tunes parameters, within fixed bounds, and it has no
/// way to move, lock, seize or slash anybody's funds.
contract GovernanceTest is Base {
    MockDisputes internal disputes;

    function setUp() public override {
        super.setUp();
        disputes = new MockDisputes(escrow, staking);
        wireDisputes(address(disputes));
    }

    function unauthorized(address who) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, who);
    }

    function ownables() internal view returns (Ownable2Step[3] memory) {
        return
            [Ownable2Step(address(registry)), Ownable2Step(address(staking)), Ownable2Step(address(escrow))];
    }

    // ---------------------------------------------------------------- onlyOwner

    function test_nonOwnerCannotCallAnyOwnerFunction() public {
        IModelRegistry.Model memory m = defaultModel();
        m.name = "another";
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        IModelRegistry.VerificationThresholds memory v = IModelRegistry.VerificationThresholds(1, 1);
        address[5] memory callers = [stranger, requester, executor, address(disputes), address(escrow)];
        for (uint256 i = 0; i < callers.length; ++i) {
            address c = callers[i];
            vm.startPrank(c);
            vm.expectRevert(unauthorized(c));
            registry.registerModel(m);
            vm.expectRevert(unauthorized(c));
            registry.setTerms(modelId, t);
            vm.expectRevert(unauthorized(c));
            registry.setThresholds(modelId, v);

            vm.expectRevert(unauthorized(c));
            staking.setJobEscrow(address(escrow));
            vm.expectRevert(unauthorized(c));
            staking.setDisputes(address(disputes));
            vm.expectRevert(unauthorized(c));
            staking.setUnbondingPeriod(UNBONDING_PERIOD);

            vm.expectRevert(unauthorized(c));
            escrow.setDisputes(address(disputes));
            vm.expectRevert(unauthorized(c));
            escrow.setParameters(
                CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION, VALIDATOR_FEE_BPS, COLLATERAL_BPS
            );

            Ownable2Step[3] memory o = ownables();
            for (uint256 k = 0; k < o.length; ++k) {
                vm.expectRevert(unauthorized(c));
                o[k].transferOwnership(c);
                vm.expectRevert(unauthorized(c));
                o[k].renounceOwnership();
                vm.expectRevert(unauthorized(c));
                o[k].acceptOwnership();
            }
            vm.stopPrank();
        }
        vm.assertEq(registry.modelCount(), 1, "nothing registered");
        for (uint256 k = 0; k < 3; ++k) {
            vm.assertEq(ownables()[k].owner(), governance, "owner unchanged");
        }
    }

    // ---------------------------------------------------------------- no path to user funds

    struct Books {
        uint256 requesterBal;
        uint256 executorBal;
        uint256 otherBal;
        uint256 escrowBal;
        uint256 stakingBal;
        uint256 governanceBal;
        uint256 requesterCredit;
        uint256 executorCredit;
        uint256 pool;
        bytes32 executorStake;
        bytes32 otherStake;
        bytes32 otherUnbonding;
    }

    function books() internal view returns (Books memory b) {
        b.requesterBal = token.balanceOf(requester);
        b.executorBal = token.balanceOf(executor);
        b.otherBal = token.balanceOf(otherExecutor);
        b.escrowBal = token.balanceOf(address(escrow));
        b.stakingBal = token.balanceOf(address(staking));
        b.governanceBal = token.balanceOf(governance);
        b.requesterCredit = escrow.credits(requester);
        b.executorCredit = escrow.credits(executor);
        b.pool = escrow.rewardPool();
        b.executorStake = keccak256(abi.encode(staking.stakeOf(executor, IStaking.Role.Executor)));
        b.otherStake = keccak256(abi.encode(staking.stakeOf(otherExecutor, IStaking.Role.Executor)));
        b.otherUnbonding = keccak256(abi.encode(staking.unbondingOf(otherExecutor, IStaking.Role.Executor)));
    }

    function test_ownerCannotMoveUserFunds() public {
        // A live market: one finalized job (credits, pool), one submitted, one accepted (locked stake),
        // one posted, and stake unbonding.
        (uint256 done,, IJobEscrow.Settlement memory s1) = submittedJob(300, 200);
        finalizeAfterWindow(done, s1);
        (uint256 submitted,, IJobEscrow.Settlement memory s2) = submittedJob(100, 50);
        (uint256 acceptedId, IJobEscrow.Job memory acceptedJob_, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        (uint256 posted, IJobEscrow.Job memory postedJob) = post(defaultSpec());
        vm.prank(otherExecutor);
        staking.requestUnstake(IStaking.Role.Executor, 300e6);

        Books memory before = books();
        vm.assertGt(before.escrowBal, 0, "escrow holds funds");
        vm.assertGt(before.requesterCredit + before.executorCredit + before.pool, 0, "credits exist");

        vm.startPrank(governance);
        // Every governance function, with valid arguments.
        IModelRegistry.Model memory m = defaultModel();
        m.name = "governance's model";
        registry.registerModel(m);
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        t.minExecutorStake = type(uint96).max;
        t.samplerVersion = 9;
        registry.setTerms(modelId, t);
        registry.setThresholds(modelId, IModelRegistry.VerificationThresholds(1, 0));
        staking.setUnbondingPeriod(staking.MAX_UNBONDING_PERIOD());
        escrow.setParameters(
            escrow.MAX_CHALLENGE_WINDOW(),
            escrow.MAX_DISPUTE_WINDOW(),
            escrow.MAX_JOB_DURATION_LIMIT(),
            escrow.MAX_VALIDATOR_FEE_BPS(),
            escrow.MAX_COLLATERAL_BPS()
        );
        vm.expectRevert(abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, address(this)));
        staking.setJobEscrow(address(this));
        vm.expectRevert(abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, address(this)));
        staking.setDisputes(address(this));
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.InvalidProtocolContract.selector, address(this)));
        escrow.setDisputes(address(this));

        // Every protocol-contract hook: refused.
        vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, governance));
        staking.slash(otherExecutor, IStaking.Role.Executor, 1e6, governance);
        vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, governance));
        staking.lockForJob(executor, 1, modelId, 0, 1);
        vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, governance));
        staking.releaseCollateral(executor, acceptedId, a.collateral, 1);
        vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, governance));
        staking.seizeCollateral(executor, acceptedId, a.collateral, IStaking.Fault.NoShow, governance);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, governance));
        escrow.freezeClaim(submitted, abi.encode(s2));
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, governance));
        escrow.resolveClaim(submitted, abi.encode(s2), true);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.Unauthorized.selector, governance));
        escrow.payReward(governance, 1);

        // Every user function, on other people's jobs and money.
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NotRequester.selector, governance));
        escrow.cancelJob(posted, postedJob);
        vm.expectRevert(
            abi.encodeWithSelector(IJobEscrow.DeadlineNotPassed.selector, acceptedJob_.spec.deadline)
        );
        escrow.expire(acceptedId, acceptedJob_, a);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.NotBoundExecutor.selector, governance));
        escrow.submitResult(acceptedId, acceptedJob_, a, defaultResult(1, 1));
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.ChallengeWindowOpen.selector, s2.challengeEnd));
        escrow.finalize(submitted, s2);
        vm.expectRevert(IJobEscrow.NothingToWithdraw.selector);
        escrow.withdraw();
        vm.expectRevert(IStaking.NothingToWithdraw.selector);
        staking.withdraw(IStaking.Role.Executor);
        vm.expectRevert(IStaking.ZeroAmount.selector);
        staking.requestUnstake(IStaking.Role.Executor, 0);

        // Ownership moves change nothing either.
        registry.transferOwnership(stranger);
        staking.renounceOwnership();
        escrow.transferOwnership(stranger);
        vm.stopPrank();

        Books memory afterwards = books();
        vm.assertEq(keccak256(abi.encode(afterwards)), keccak256(abi.encode(before)), "no balance moved");
        vm.assertEq(afterwards.governanceBal, 0, "governance holds nothing");

        // And the users can still get everything out.
        vm.prank(requester);
        escrow.withdraw();
        vm.prank(executor);
        escrow.withdraw();
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        vm.prank(otherExecutor);
        staking.withdraw(IStaking.Role.Executor);
        vm.assertEq(token.balanceOf(otherExecutor), 300e6, "unbonded stake out under the old period");
    }

    // ---------------------------------------------------------------- wiring once

    function test_wiring_onlyOnceAndOnlyContracts() public {
        MockDisputes other = new MockDisputes(escrow, staking);
        vm.startPrank(governance);
        vm.expectRevert(abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, address(escrow)));
        staking.setJobEscrow(address(escrow));
        vm.expectRevert(abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, address(other)));
        staking.setDisputes(address(other));
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.InvalidProtocolContract.selector, address(other)));
        escrow.setDisputes(address(other));
        vm.stopPrank();
        vm.assertEq(staking.jobEscrow(), address(escrow), "escrow wired");
        vm.assertEq(staking.disputes(), address(disputes), "staking disputes wired");
        vm.assertEq(escrow.disputes(), address(disputes), "escrow disputes wired");
    }

    function test_wiring_rejectsEOAsAndZero() public {
        Staking freshStaking = new Staking(IERC20(address(token)), registry, governance, UNBONDING_PERIOD);
        JobEscrow freshEscrow = newEscrow(IERC20(address(token)), freshStaking, registry);
        address eoa = address(0xE0A);
        vm.startPrank(governance);
        vm.expectRevert(abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, eoa));
        freshStaking.setJobEscrow(eoa);
        vm.expectRevert(abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, address(0)));
        freshStaking.setJobEscrow(address(0));
        vm.expectRevert(abi.encodeWithSelector(IStaking.InvalidProtocolContract.selector, eoa));
        freshStaking.setDisputes(eoa);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.InvalidProtocolContract.selector, eoa));
        freshEscrow.setDisputes(eoa);
        vm.expectRevert(abi.encodeWithSelector(IJobEscrow.InvalidProtocolContract.selector, address(0)));
        freshEscrow.setDisputes(address(0));

        vm.expectEmit(true, true, true, true, address(freshStaking));
        emit IStaking.JobEscrowSet(address(freshEscrow));
        freshStaking.setJobEscrow(address(freshEscrow));
        vm.expectEmit(true, true, true, true, address(freshEscrow));
        emit IJobEscrow.DisputesSet(address(disputes));
        freshEscrow.setDisputes(address(disputes));
        vm.stopPrank();
    }

    function test_setJobEscrow_requiresUnbondingAtLeastLifetime() public {
        uint256 lifetime = escrow.maxJobLifetime();
        Staking freshStaking = new Staking(IERC20(address(token)), registry, governance, lifetime - 1);
        JobEscrow freshEscrow = newEscrow(IERC20(address(token)), freshStaking, registry);
        bytes memory expected = abi.encodeWithSelector(
            IStaking.UnbondingPeriodOutOfBounds.selector,
            lifetime - 1,
            lifetime,
            staking.MAX_UNBONDING_PERIOD()
        );
        vm.prank(governance);
        vm.expectRevert(expected);
        freshStaking.setJobEscrow(address(freshEscrow));
    }

    // ---------------------------------------------------------------- parameter bounds

    function expectBadParameters(uint64 cw, uint64 dw, uint64 mjd, uint16 fee, uint16 coll) internal {
        vm.prank(governance);
        vm.expectRevert(IJobEscrow.ParameterOutOfBounds.selector);
        escrow.setParameters(cw, dw, mjd, fee, coll);
    }

    function test_setParameters_bounds() public {
        uint64 cw = CHALLENGE_WINDOW;
        uint64 dw = DISPUTE_WINDOW;
        uint64 mjd = MAX_JOB_DURATION;
        uint16 fee = VALIDATOR_FEE_BPS;
        uint16 coll = COLLATERAL_BPS;
        expectBadParameters(10 minutes - 1, dw, mjd, fee, coll);
        expectBadParameters(7 days + 1, dw, mjd, fee, coll);
        expectBadParameters(cw, 1 hours - 1, mjd, fee, coll);
        expectBadParameters(cw, 14 days + 1, mjd, fee, coll);
        expectBadParameters(cw, dw, 0, fee, coll);
        expectBadParameters(cw, dw, 30 days + 1, fee, coll);
        expectBadParameters(cw, dw, mjd, 2_001, coll);
        expectBadParameters(cw, dw, mjd, fee, 4_999);
        expectBadParameters(cw, dw, mjd, fee, 50_001);

        vm.expectEmit(true, true, true, true, address(escrow));
        emit IJobEscrow.ParametersSet(10 minutes, 1 hours, 1, 0, 5_000);
        vm.prank(governance);
        escrow.setParameters(10 minutes, 1 hours, 1, 0, 5_000);
        vm.assertEq(escrow.challengeWindow(), 10 minutes, "cw");
        vm.assertEq(escrow.disputeWindow(), 1 hours, "dw");
        vm.assertEq(escrow.maxJobDuration(), 1, "mjd");
        vm.assertEq(escrow.validatorFeeBps(), 0, "fee");
        vm.assertEq(escrow.collateralBps(), 5_000, "collateral");
        vm.prank(governance);
        escrow.setParameters(cw, dw, mjd, 2_000, 50_000);
        vm.assertEq(escrow.validatorFeeBps(), 2_000, "fee cap reachable");
        vm.assertEq(escrow.collateralBps(), 50_000, "collateral cap reachable");
    }

    function test_constructor_rejectsOutOfBoundsParameters() public {
        vm.expectRevert(IJobEscrow.ParameterOutOfBounds.selector);
        new JobEscrow(IERC20(address(token)), staking, registry, governance, 0, DISPUTE_WINDOW, 1, 0, 10_000);
        vm.expectRevert(IJobEscrow.ParameterOutOfBounds.selector);
        new JobEscrow(
            IERC20(address(token)),
            staking,
            registry,
            governance,
            CHALLENGE_WINDOW,
            DISPUTE_WINDOW,
            1,
            2_001,
            10_000
        );
        vm.expectRevert(
            abi.encodeWithSelector(
                IStaking.UnbondingPeriodOutOfBounds.selector, 0, 0, staking.MAX_UNBONDING_PERIOD()
            )
        );
        new Staking(IERC20(address(token)), registry, governance, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                IStaking.UnbondingPeriodOutOfBounds.selector, 90 days + 1, 0, staking.MAX_UNBONDING_PERIOD()
            )
        );
        new Staking(IERC20(address(token)), registry, governance, 90 days + 1);
    }

    function test_unbondingPeriod_neverBelowJobLifetime() public {
        uint256 lifetime = escrow.maxJobLifetime();
        vm.assertEq(lifetime, MAX_JOB_DURATION + CHALLENGE_WINDOW + DISPUTE_WINDOW, "lifetime");
        uint256 max = staking.MAX_UNBONDING_PERIOD();
        vm.startPrank(governance);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.UnbondingPeriodOutOfBounds.selector, lifetime - 1, lifetime, max)
        );
        staking.setUnbondingPeriod(lifetime - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.UnbondingPeriodOutOfBounds.selector, 0, lifetime, max)
        );
        staking.setUnbondingPeriod(0);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.UnbondingPeriodOutOfBounds.selector, max + 1, lifetime, max)
        );
        staking.setUnbondingPeriod(max + 1);
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.UnbondingPeriodSet(lifetime);
        staking.setUnbondingPeriod(lifetime);
        vm.assertEq(staking.unbondingPeriod(), lifetime, "exactly the lifetime is allowed");

        // The other way round: the escrow cannot outgrow the unbonding period.
        vm.expectRevert(IJobEscrow.ParameterOutOfBounds.selector);
        escrow.setParameters(
            CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION + 1, VALIDATOR_FEE_BPS, COLLATERAL_BPS
        );
        vm.expectRevert(IJobEscrow.ParameterOutOfBounds.selector);
        escrow.setParameters(
            CHALLENGE_WINDOW + 1, DISPUTE_WINDOW, MAX_JOB_DURATION, VALIDATOR_FEE_BPS, COLLATERAL_BPS
        );
        vm.expectRevert(IJobEscrow.ParameterOutOfBounds.selector);
        escrow.setParameters(
            CHALLENGE_WINDOW, DISPUTE_WINDOW + 1, MAX_JOB_DURATION, VALIDATOR_FEE_BPS, COLLATERAL_BPS
        );
        vm.stopPrank();
        vm.assertEq(escrow.maxJobLifetime(), lifetime, "unchanged");
    }

    function test_setParameters_lifetimeMayNotExceedUnbonding() public {
        // unbonding 7 days; 6 days + 1 hour + 1 day > 7 days.
        vm.prank(governance);
        vm.expectRevert(IJobEscrow.ParameterOutOfBounds.selector);
        escrow.setParameters(CHALLENGE_WINDOW, DISPUTE_WINDOW, 6 days, VALIDATOR_FEE_BPS, COLLATERAL_BPS);
        // 6 days - 1 hour + 1 hour + 1 day == 7 days: allowed.
        vm.prank(governance);
        escrow.setParameters(
            CHALLENGE_WINDOW, DISPUTE_WINDOW, 6 days - 1 hours, VALIDATOR_FEE_BPS, COLLATERAL_BPS
        );
        vm.assertEq(escrow.maxJobLifetime(), UNBONDING_PERIOD, "lifetime == unbonding");
    }

    /// @notice A job's economics are fixed when it is posted and accepted (prices and collateral are in
    /// the assignment): a governance change in between must not reach back into an open job's money.
    function test_parameterChangeDoesNotTouchOpenJobs() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(300, 200));
        vm.assertEq(s.collateral, a.collateral, "collateral fixed at acceptance");
        // Governance raises the validator fee from 5% to its 20% cap while the job is in its window.
        vm.prank(governance);
        escrow.setParameters(CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION, 2_000, 50_000);
        finalizeAfterWindow(jobId, s);
        vm.assertEq(
            staking.stakeOf(executor, IStaking.Role.Executor).locked, 0, "exactly the locked amount released"
        );
        uint256 feeAtSubmission = feeOf(s.payment);
        vm.assertEq(
            escrow.credits(executor), s.payment - feeAtSubmission, "executor paid under the terms it accepted"
        );
        vm.assertEq(escrow.rewardPool(), feeAtSubmission, "pool gets the fee of the job's terms");
    }

    // ---------------------------------------------------------------- Ownable2Step

    function test_ownershipTransferNeedsAcceptance() public {
        address newOwner = address(0x0E11);
        Ownable2Step[3] memory o = ownables();
        for (uint256 k = 0; k < o.length; ++k) {
            vm.prank(governance);
            o[k].transferOwnership(newOwner);
            vm.assertEq(o[k].owner(), governance, "not yet");
            vm.assertEq(o[k].pendingOwner(), newOwner, "pending");
            vm.prank(stranger);
            vm.expectRevert(unauthorized(stranger));
            o[k].acceptOwnership();
            vm.prank(newOwner);
            o[k].acceptOwnership();
            vm.assertEq(o[k].owner(), newOwner, "accepted");
            vm.assertEq(o[k].pendingOwner(), address(0), "cleared");
        }
        // The old owner lost its rights; the new one has them.
        vm.prank(governance);
        vm.expectRevert(unauthorized(governance));
        staking.setUnbondingPeriod(UNBONDING_PERIOD);
        vm.prank(newOwner);
        staking.setUnbondingPeriod(UNBONDING_PERIOD + 1);
        vm.assertEq(staking.unbondingPeriod(), UNBONDING_PERIOD + 1, "new owner governs");
    }

    function test_pendingOwnerHasNoPowerBeforeAccepting() public {
        address newOwner = address(0x0E11);
        vm.prank(governance);
        escrow.transferOwnership(newOwner);
        vm.prank(newOwner);
        vm.expectRevert(unauthorized(newOwner));
        escrow.setParameters(CHALLENGE_WINDOW, DISPUTE_WINDOW, MAX_JOB_DURATION, 0, COLLATERAL_BPS);
        // The current owner can still redirect the transfer before it is accepted.
        vm.prank(governance);
        escrow.transferOwnership(stranger);
        vm.prank(newOwner);
        vm.expectRevert(unauthorized(newOwner));
        escrow.acceptOwnership();
    }
}
