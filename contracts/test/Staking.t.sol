// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {Base, bound} from "./utils/Base.sol";
import {IJobEscrow} from "../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../src/interfaces/IStaking.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MockDisputes} from "./mocks/MockDisputes.sol";

contract StakingTest is Base {
    IStaking.Role internal constant EXEC = IStaking.Role.Executor;
    IStaking.Role internal constant VAL = IStaking.Role.Validator;

    MockDisputes internal disputes;
    address internal alice = address(0xA1);

    function setUp() public override {
        super.setUp();
        disputes = new MockDisputes(escrow, staking);
        wireDisputes(address(disputes));
        fund(alice, 10_000e6);
    }

    function info(address who, IStaking.Role role) internal view returns (IStaking.StakeInfo memory) {
        return staking.stakeOf(who, role);
    }

    function lock(address who, uint256 amount) internal {
        vm.prank(address(escrow));
        staking.lockForJob(who, 1, modelId, 0, amount);
    }

    // ---------------------------------------------------------------- stake

    function test_stake_bondsAndPulls() public {
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.Staked(alice, VAL, 300e6);
        vm.prank(alice);
        staking.stake(VAL, 300e6);
        vm.assertEq(info(alice, VAL).staked, 300e6, "validator stake");
        vm.assertEq(info(alice, EXEC).staked, 0, "roles kept apart");
        vm.assertEq(token.balanceOf(alice), 9_700e6, "pulled");
        vm.assertEq(token.balanceOf(address(staking)), 2_000e6 + 300e6, "held");
        vm.prank(alice);
        staking.stake(VAL, 1);
        vm.assertEq(info(alice, VAL).staked, 300e6 + 1, "adds up");
    }

    function test_stake_zeroReverts() public {
        vm.prank(alice);
        vm.expectRevert(IStaking.ZeroAmount.selector);
        staking.stake(EXEC, 0);
    }

    function test_stake_overflowUint96Reverts() public {
        uint256 huge = uint256(type(uint96).max) + 1;
        fund(alice, huge);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 96, huge));
        staking.stake(EXEC, huge);
    }

    function test_stake_withoutAllowanceReverts() public {
        token.mint(stranger, 100e6);
        vm.prank(stranger);
        vm.expectRevert(); // ERC20InsufficientAllowance
        staking.stake(EXEC, 100e6);
    }

    // ---------------------------------------------------------------- unstake / withdraw

    function test_requestUnstake_movesToUnbonding() public {
        vm.startPrank(alice);
        staking.stake(EXEC, 500e6);
        uint256 releaseAt = block.timestamp + UNBONDING_PERIOD;
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.UnstakeRequested(alice, EXEC, 200e6, releaseAt);
        staking.requestUnstake(EXEC, 200e6);
        vm.stopPrank();
        vm.assertEq(info(alice, EXEC).staked, 300e6, "bonded");
        IStaking.Unbonding memory u = staking.unbondingOf(alice, EXEC);
        vm.assertEq(u.amount, 200e6, "unbonding");
        vm.assertEq(u.releaseAt, releaseAt, "release time");
        vm.assertEq(token.balanceOf(address(staking)), 2_000e6 + 500e6, "nothing left yet");
    }

    function test_requestUnstake_secondRequestAddsAndRestartsClock() public {
        vm.startPrank(alice);
        staking.stake(EXEC, 500e6);
        staking.requestUnstake(EXEC, 100e6);
        vm.warp(block.timestamp + 3 days);
        staking.requestUnstake(EXEC, 50e6);
        vm.stopPrank();
        IStaking.Unbonding memory u = staking.unbondingOf(alice, EXEC);
        vm.assertEq(u.amount, 150e6, "added");
        vm.assertEq(u.releaseAt, block.timestamp + UNBONDING_PERIOD, "clock restarted");
    }

    function test_requestUnstake_zeroAndTooMuchRevert() public {
        vm.startPrank(alice);
        staking.stake(EXEC, 500e6);
        vm.expectRevert(IStaking.ZeroAmount.selector);
        staking.requestUnstake(EXEC, 0);
        vm.expectRevert(abi.encodeWithSelector(IStaking.InsufficientFreeStake.selector, 500e6, 500e6 + 1));
        staking.requestUnstake(EXEC, 500e6 + 1);
        vm.expectRevert(abi.encodeWithSelector(IStaking.InsufficientFreeStake.selector, 0, 1));
        staking.requestUnstake(VAL, 1);
        vm.stopPrank();
    }

    function test_requestUnstake_lockedStakeCannotLeave() public {
        (,, IJobEscrow.Assignment memory a) = acceptedJob(defaultSpec());
        uint256 free = 1_000e6 - a.collateral;
        vm.assertEq(staking.freeStake(executor, EXEC), free, "free");
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IStaking.InsufficientFreeStake.selector, free, free + 1));
        staking.requestUnstake(EXEC, free + 1);
        vm.prank(executor);
        staking.requestUnstake(EXEC, free);
        vm.assertEq(info(executor, EXEC).staked, a.collateral, "only the locked part stays");
        vm.assertEq(info(executor, EXEC).locked, a.collateral, "still locked");
    }

    function test_withdraw_timing() public {
        vm.startPrank(alice);
        staking.stake(EXEC, 500e6);
        vm.expectRevert(IStaking.NothingToWithdraw.selector);
        staking.withdraw(EXEC);
        staking.requestUnstake(EXEC, 200e6);
        uint256 releaseAt = block.timestamp + UNBONDING_PERIOD;
        vm.warp(releaseAt - 1);
        vm.expectRevert(abi.encodeWithSelector(IStaking.StillUnbonding.selector, releaseAt));
        staking.withdraw(EXEC);
        vm.warp(releaseAt);
        uint256 before = token.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.Withdrawn(alice, EXEC, 200e6);
        staking.withdraw(EXEC);
        vm.assertEq(token.balanceOf(alice), before + 200e6, "paid");
        vm.assertEq(staking.unbondingOf(alice, EXEC).amount, 0, "cleared");
        vm.assertEq(info(alice, EXEC).staked, 300e6, "bonded untouched");
        vm.expectRevert(IStaking.NothingToWithdraw.selector);
        staking.withdraw(EXEC);
        vm.stopPrank();
    }

    function test_withdraw_roleMustMatch() public {
        vm.startPrank(alice);
        staking.stake(VAL, 500e6);
        staking.requestUnstake(VAL, 500e6);
        vm.warp(block.timestamp + UNBONDING_PERIOD);
        vm.expectRevert(IStaking.NothingToWithdraw.selector);
        staking.withdraw(EXEC);
        staking.withdraw(VAL);
        vm.stopPrank();
        vm.assertEq(token.balanceOf(alice), 10_000e6, "all back");
    }

    function testFuzz_stakeUnstakeWithdraw(uint256 amount, uint256 out, uint256 wait) public {
        amount = bound(amount, 1, 10_000e6);
        out = bound(out, 1, amount);
        vm.startPrank(alice);
        staking.stake(EXEC, amount);
        staking.requestUnstake(EXEC, out);
        wait = bound(wait, 0, 2 * UNBONDING_PERIOD);
        vm.warp(block.timestamp + wait);
        if (wait < UNBONDING_PERIOD) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IStaking.StillUnbonding.selector, block.timestamp - wait + UNBONDING_PERIOD
                )
            );
            staking.withdraw(EXEC);
        } else {
            staking.withdraw(EXEC);
            vm.assertEq(token.balanceOf(alice), 10_000e6 - amount + out, "got the unstaked amount");
        }
        vm.stopPrank();
        vm.assertEq(info(alice, EXEC).staked, amount - out, "remaining bonded");
        vm.assertEq(
            token.balanceOf(address(staking)),
            2_000e6 + info(alice, EXEC).staked + staking.unbondingOf(alice, EXEC).amount,
            "balance = bonded + unbonding"
        );
    }

    // ---------------------------------------------------------------- slash

    function test_slash_onlyDisputes() public {
        address[4] memory callers = [stranger, governance, address(escrow), executor];
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.prank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, callers[i]));
            staking.slash(executor, EXEC, 1, callers[i]);
        }
        vm.assertEq(info(executor, EXEC).staked, 1_000e6, "untouched");
    }

    /// @notice Free stake first, then unbonding, then locked: locking stake in jobs never hides it.
    function test_slash_takesFreeThenUnbondingThenLocked() public {
        // executor: 1000 staked; lock 300; request 200 → staked 800 (free 500), unbonding 200.
        lock(executor, 300e6);
        vm.prank(executor);
        staking.requestUnstake(EXEC, 200e6);

        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.Slashed(executor, EXEC, 400e6, stranger);
        uint256 slashed = disputes.slash(executor, EXEC, 400e6, stranger);
        vm.assertEq(slashed, 400e6, "from free");
        vm.assertEq(info(executor, EXEC).staked, 400e6, "free part taken first");
        vm.assertEq(staking.unbondingOf(executor, EXEC).amount, 200e6, "unbonding untouched");

        slashed = disputes.slash(executor, EXEC, 250e6, stranger);
        vm.assertEq(slashed, 250e6, "100 free + 150 unbonding");
        vm.assertEq(info(executor, EXEC).staked, 300e6, "only locked left");
        vm.assertEq(staking.unbondingOf(executor, EXEC).amount, 50e6, "unbonding cut");

        slashed = disputes.slash(executor, EXEC, 150e6, stranger);
        vm.assertEq(slashed, 150e6, "50 unbonding + 100 locked");
        vm.assertEq(staking.unbondingOf(executor, EXEC).amount, 0, "unbonding gone");
        vm.assertEq(info(executor, EXEC).staked, 200e6, "stake behind the job reached last");
        vm.assertEq(info(executor, EXEC).locked, 300e6, "locked still counts the job's collateral");
        vm.assertEq(staking.freeStake(executor, EXEC), 0, "a deficit leaves nothing free");

        slashed = disputes.slash(executor, EXEC, type(uint256).max, stranger);
        vm.assertEq(slashed, 200e6, "capped at the whole stake");
        vm.assertEq(info(executor, EXEC).staked, 0, "all slashed");
        vm.assertEq(info(executor, EXEC).locked, 300e6, "the open job's collateral is still counted");
        vm.assertEq(token.balanceOf(stranger), 1_000e6, "slashed tokens sent to `to`");

        slashed = disputes.slash(executor, EXEC, 1, stranger);
        vm.assertEq(slashed, 0, "nothing left to slash");
        vm.assertEq(token.balanceOf(stranger), 1_000e6, "no transfer");
    }

    function test_slash_unbondingStakeStaysSlashableUntilWithdrawn() public {
        vm.startPrank(alice);
        staking.stake(VAL, 100e6);
        staking.requestUnstake(VAL, 100e6);
        vm.stopPrank();
        vm.warp(block.timestamp + UNBONDING_PERIOD); // withdrawable, but not withdrawn
        vm.assertEq(disputes.slash(alice, VAL, 40e6, stranger), 40e6, "slashed while unbonding");
        vm.prank(alice);
        staking.withdraw(VAL);
        vm.assertEq(token.balanceOf(alice), 10_000e6 - 40e6, "rest withdrawn");
    }

    function test_slash_rolesKeptApart() public {
        fund(executor, 10e6);
        vm.prank(executor);
        staking.stake(VAL, 10e6);
        vm.assertEq(disputes.slash(executor, VAL, 100e6, stranger), 10e6, "validator stake only");
        vm.assertEq(info(executor, EXEC).staked, 1_000e6, "executor stake untouched");
    }

    /// @dev Free stake first, then unbonding, then the stake behind the job; the deficit is what the last took.
    function _checkSlashOrder(uint256 stakeAmount, uint256 locked, uint256 unbonding, uint256 slashed)
        internal
        view
    {
        uint256 free = stakeAmount - unbonding - locked;
        uint256 fromFree = slashed < free ? slashed : free;
        uint256 fromUnbonding = slashed - fromFree < unbonding ? slashed - fromFree : unbonding;
        uint256 fromLocked = slashed - fromFree - fromUnbonding;
        IStaking.StakeInfo memory i = info(alice, EXEC);
        vm.assertEq(i.locked, locked, "locked keeps counting the open collateral");
        vm.assertEq(i.staked, stakeAmount - unbonding - fromFree - fromLocked, "staked");
        vm.assertEq(staking.unbondingOf(alice, EXEC).amount, unbonding - fromUnbonding, "unbonding");
        vm.assertEq(staking.freeStake(alice, EXEC), free - fromFree, "free stake");
        vm.assertEq(locked > i.staked ? locked - i.staked : 0, fromLocked, "the deficit is what a slash took");
    }

    function testFuzz_slash_neverExceedsStakeAndReachesLockedLast(
        uint256 stakeAmount,
        uint256 locked,
        uint256 unbonding,
        uint256 amount
    ) public {
        stakeAmount = bound(stakeAmount, 1, 10_000e6);
        locked = bound(locked, 0, stakeAmount);
        unbonding = bound(unbonding, 0, stakeAmount - locked);
        vm.startPrank(alice);
        staking.registerExecutor("http://alice", "");
        staking.setPrice(modelId, 1, 1);
        staking.stake(EXEC, stakeAmount);
        if (unbonding != 0) staking.requestUnstake(EXEC, unbonding);
        vm.stopPrank();
        if (locked != 0) lock(alice, locked);

        uint256 before = token.balanceOf(address(staking));
        uint256 slashed = disputes.slash(alice, EXEC, amount, stranger);

        // Everything bonded or unbonding is slashable, locked stake included.
        vm.assertEq(slashed, amount < stakeAmount ? amount : stakeAmount, "min(amount, stake)");
        IStaking.StakeInfo memory i = info(alice, EXEC);
        _checkSlashOrder(stakeAmount, locked, unbonding, slashed);
        vm.assertEq(
            uint256(i.staked) + staking.unbondingOf(alice, EXEC).amount, stakeAmount - slashed, "accounting"
        );
        vm.assertEq(before - token.balanceOf(address(staking)), slashed, "tokens out = slashed");
        vm.assertEq(token.balanceOf(stranger), slashed, "tokens to `to`");
    }

    // ---------------------------------------------------------------- escrow-only hooks

    function test_escrowHooks_onlyEscrow() public {
        address[4] memory callers = [stranger, governance, address(disputes), executor];
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.startPrank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, callers[i]));
            staking.lockForJob(executor, 1, modelId, 0, 1);
            vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, callers[i]));
            staking.releaseCollateral(executor, 1, 0, 1);
            vm.expectRevert(abi.encodeWithSelector(IStaking.Unauthorized.selector, callers[i]));
            staking.seizeCollateral(executor, 1, 0, IStaking.Fault.NoShow, callers[i]);
            vm.stopPrank();
        }
    }

    function test_lockReleaseSeize_direct() public {
        vm.prank(address(escrow));
        IStaking.Price memory p = staking.lockForJob(executor, 9, modelId, MIN_EXECUTOR_STAKE, 400e6);
        vm.assertTrue(p.active, "price active");
        vm.assertEq(p.inputPerMillion, INPUT_PRICE, "input price");
        vm.assertEq(p.outputPerMillion, OUTPUT_PRICE, "output price");
        vm.assertEq(info(executor, EXEC).locked, 400e6, "locked");

        vm.prank(address(escrow));
        staking.releaseCollateral(executor, 9, 100e6, 1);
        vm.assertEq(info(executor, EXEC).locked, 300e6, "released");
        vm.assertEq(info(executor, EXEC).jobsCompleted, 1, "completed");

        vm.prank(address(escrow));
        staking.seizeCollateral(executor, 9, 100e6, IStaking.Fault.DisputeLost, stranger);
        vm.assertEq(info(executor, EXEC).locked, 200e6, "seized from locked");
        vm.assertEq(info(executor, EXEC).staked, 900e6, "and from stake");
        vm.assertEq(staking.executorProfile(executor).disputesLost, 1, "dispute lost");
        vm.assertEq(token.balanceOf(stranger), 100e6, "sent");

        // A slash that reaches the stake behind open jobs leaves `locked` (their collateral) as it was:
        // the difference is a deficit, absorbed first by the jobs' seizure (or release).
        vm.assertEq(disputes.slash(executor, EXEC, 750e6, alice), 750e6, "700 free + 50 behind the jobs");
        vm.assertEq(info(executor, EXEC).locked, 200e6, "locked still counts the open collateral");
        vm.assertEq(info(executor, EXEC).staked, 150e6, "stake cut");
        vm.assertEq(staking.freeStake(executor, EXEC), 0, "nothing free while in deficit");
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.CollateralSeized(executor, 9, 50e6, IStaking.Fault.NoShow, stranger);
        vm.prank(address(escrow));
        staking.seizeCollateral(executor, 9, 100e6, IStaking.Fault.NoShow, stranger);
        vm.assertEq(info(executor, EXEC).locked, 100e6, "the job's whole collateral unlocked");
        vm.assertEq(info(executor, EXEC).staked, 100e6, "the deficit absorbed: the rest still backs a job");
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.CollateralSeized(executor, 9, 100e6, IStaking.Fault.NoShow, stranger);
        vm.prank(address(escrow));
        staking.seizeCollateral(executor, 9, 100e6, IStaking.Fault.NoShow, stranger);
        vm.assertEq(info(executor, EXEC).locked, 0, "nothing locked");
        vm.assertEq(info(executor, EXEC).staked, 0, "nothing staked");
        vm.assertEq(token.balanceOf(stranger), 250e6, "100 + 50 + 100 sent");
        vm.assertEq(info(executor, EXEC).jobsExpired, 2, "both no-shows counted");

        // A job that paid nothing builds no reputation.
        vm.prank(address(escrow));
        staking.lockForJob(executor, 10, modelId, 0, 0);
        vm.prank(address(escrow));
        staking.releaseCollateral(executor, 10, 0, 0);
        vm.assertEq(info(executor, EXEC).jobsCompleted, 1, "an unpaid job is not counted");
    }

    function test_lockForJob_eligibility() public {
        vm.startPrank(address(escrow));
        vm.expectRevert(abi.encodeWithSelector(IStaking.NotServing.selector, alice, modelId));
        staking.lockForJob(alice, 1, modelId, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(IStaking.StakeBelowModelMinimum.selector, 1_000e6, 1_000e6 + 1)
        );
        staking.lockForJob(executor, 1, modelId, 1_000e6 + 1, 0);
        vm.expectRevert(abi.encodeWithSelector(IStaking.InsufficientFreeStake.selector, 1_000e6, 1_000e6 + 1));
        staking.lockForJob(executor, 1, modelId, 0, 1_000e6 + 1);
        staking.lockForJob(executor, 1, modelId, 1_000e6, 1_000e6);
        vm.stopPrank();
        vm.assertEq(staking.freeStake(executor, EXEC), 0, "fully locked");
    }

    // ---------------------------------------------------------------- executor profile and prices

    function test_registerExecutor_profileBounds() public {
        string memory max = string(new bytes(256));
        string memory tooLong = string(new bytes(257));
        vm.startPrank(alice);
        vm.expectRevert(IStaking.InvalidProfile.selector);
        staking.registerExecutor("", "gpu");
        vm.expectRevert(IStaking.InvalidProfile.selector);
        staking.registerExecutor(tooLong, "gpu");
        vm.expectRevert(IStaking.InvalidProfile.selector);
        staking.registerExecutor("http://x", tooLong);
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.ExecutorRegistered(alice, max, max);
        staking.registerExecutor(max, max);
        staking.registerExecutor("http://alice", "");
        vm.stopPrank();
        IStaking.ExecutorProfile memory p = staking.executorProfile(alice);
        vm.assertTrue(p.registered, "registered");
        vm.assertEq(p.endpoint, "http://alice", "endpoint updated");
        vm.assertEq(p.hardware, "", "hardware may be empty");
    }

    function test_registerExecutor_updateKeepsReputation() public {
        vm.prank(address(escrow));
        staking.seizeCollateral(executor, 1, 0, IStaking.Fault.DisputeLost, stranger);
        vm.prank(executor);
        staking.registerExecutor("http://new", "gpu:1xH100");
        vm.assertEq(
            staking.executorProfile(executor).disputesLost, 1, "disputes lost survive re-registration"
        );
    }

    function test_setPrice_requiresRegistrationAndKnownModel() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IStaking.NotRegistered.selector, alice));
        staking.setPrice(modelId, 1, 1);
        vm.prank(alice);
        staking.registerExecutor("http://alice", "");
        bytes32 unknown = keccak256("unknown");
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownModel.selector, unknown));
        staking.setPrice(unknown, 1, 1);
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.PriceSet(alice, modelId, 7, 9);
        vm.prank(alice);
        staking.setPrice(modelId, 7, 9);
        IStaking.Price memory p = staking.priceOf(alice, modelId);
        vm.assertTrue(p.active, "active");
        vm.assertEq(p.inputPerMillion, 7, "in");
        vm.assertEq(p.outputPerMillion, 9, "out");
    }

    function test_removeModel() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IStaking.NotServing.selector, alice, modelId));
        staking.removeModel(modelId);
        vm.expectEmit(true, true, true, true, address(staking));
        emit IStaking.ModelRemoved(executor, modelId);
        vm.prank(executor);
        staking.removeModel(modelId);
        vm.assertFalse(staking.priceOf(executor, modelId).active, "not serving");
        vm.prank(executor);
        vm.expectRevert(abi.encodeWithSelector(IStaking.NotServing.selector, executor, modelId));
        staking.removeModel(modelId);
    }

    function test_removeModel_doesNotAffectAcceptedJobs() public {
        (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory a) =
            acceptedJob(defaultSpec());
        vm.prank(executor);
        staking.removeModel(modelId);
        IJobEscrow.Settlement memory s = submit(jobId, job, a, defaultResult(10, 10));
        finalizeAfterWindow(jobId, s);
        vm.assertEq(info(executor, EXEC).locked, 0, "released");
    }
}
