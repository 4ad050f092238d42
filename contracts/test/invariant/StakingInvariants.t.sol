// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {StakingHandler} from "./StakingHandler.sol";
import {FuzzSelector} from "./FuzzSelector.sol";
import {Coverage} from "./Coverage.sol";

/// @notice Stateful invariants of Staking on its own (DESIGN.md §3): the balance backs every stake, each
/// account's stake follows the model (slashes take free, then unbonding, then locked stake; releases and
/// seizures take what is left of a lock), unbonding never ends before the risk horizon, and every call
/// has the outcome the model predicts.
contract StakingInvariants is Coverage {
    StakingHandler internal handler;

    function setUp() public {
        handler = new StakingHandler();
        handler.wire();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory selectors = new bytes4[](11);
        selectors[0] = StakingHandler.stake.selector;
        selectors[1] = StakingHandler.requestUnstake.selector;
        selectors[2] = StakingHandler.withdraw.selector;
        selectors[3] = StakingHandler.warp.selector;
        selectors[4] = StakingHandler.setUnbondingPeriod.selector;
        selectors[5] = StakingHandler.setLifetime.selector;
        selectors[6] = StakingHandler.lockForJob.selector;
        selectors[7] = StakingHandler.releaseCollateral.selector;
        selectors[8] = StakingHandler.seizeCollateral.selector;
        selectors[9] = StakingHandler.slash.selector;
        selectors[10] = StakingHandler.unauthorised.selector;
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), selectors);
    }

    /// @notice Token balance = Σ (staked + unbonding) over every account and role, and = what came in
    /// minus what was withdrawn, slashed or seized (so those never exceed what came in).
    function invariant_balanceEqualsStake() public view {
        IStaking staking = handler.staking();
        address[] memory actors = handler.actorList();
        uint256 sum;
        for (uint256 i = 0; i < actors.length; ++i) {
            for (uint256 r = 0; r < 2; ++r) {
                IStaking.Role role = IStaking.Role(r);
                sum += staking.stakeOf(actors[i], role).staked;
                sum += staking.unbondingOf(actors[i], role).amount;
            }
        }
        uint256 balance = handler.token().balanceOf(address(staking));
        vm.assertEq(balance, sum, "balance != staked + unbonding");
        vm.assertEq(
            balance + handler.ghostWithdrawn() + handler.ghostSlashed() + handler.ghostSeized(),
            handler.ghostStakedIn(),
            "balance != in - withdrawn - slashed - seized"
        );
    }

    /// @notice Every account's staked, locked, free and unbonding stake and counters equal the model;
    /// validators never hold locks; an executor's locked stake is exactly its open locks (a slash behind
    /// them leaves a deficit, locked > staked, instead), and locks taken after such a slash stay backed.
    function invariant_stakeMatchesModel() public view {
        IStaking staking = handler.staking();
        address[] memory actors = handler.actorList();
        for (uint256 i = 0; i < actors.length; ++i) {
            for (uint256 r = 0; r < 2; ++r) {
                IStaking.Role role = IStaking.Role(r);
                StakingHandler.StakeModel memory m = handler.model(actors[i], role);
                IStaking.StakeInfo memory info = staking.stakeOf(actors[i], role);
                IStaking.Unbonding memory pending = staking.unbondingOf(actors[i], role);
                vm.assertEq(info.staked, m.staked, "staked != model");
                vm.assertEq(info.locked, m.locked, "locked != model");
                vm.assertEq(
                    staking.freeStake(actors[i], role),
                    m.staked > m.locked ? m.staked - m.locked : 0,
                    "free != model"
                );
                vm.assertEq(pending.amount, m.pending, "unbonding != model");
                if (m.pending != 0) vm.assertEq(pending.releaseAt, m.releaseAt, "release time != model");
                vm.assertEq(info.jobsCompleted, m.completed, "jobs completed != model");
                vm.assertEq(info.jobsExpired, m.expired, "jobs expired != model");
            }
            vm.assertEq(
                staking.stakeOf(actors[i], IStaking.Role.Validator).locked, 0, "validator stake locked"
            );
            vm.assertEq(
                staking.executorProfile(actors[i]).disputesLost,
                handler.disputesLost(actors[i]),
                "disputes lost"
            );
            (uint256 open, uint256 later) = handler.openLocks(actors[i]);
            IStaking.StakeInfo memory exec = staking.stakeOf(actors[i], IStaking.Role.Executor);
            vm.assertEq(exec.locked, open, "locked != open collateral");
            // A slash into the stake behind open locks may leave them short, never a lock taken later.
            vm.assertLe(
                later,
                exec.locked < exec.staked ? exec.locked : exec.staked,
                "a slash of older locks freed a later lock's collateral"
            );
        }
    }

    /// @notice The unbonding period covers a new job's whole lifetime and never ends before the risk
    /// horizon: stake that starts unbonding now stays slashable until every job can no longer be disputed.
    function invariant_unbondingCoversRiskHorizon() public view {
        uint256 period = handler.staking().unbondingPeriod();
        vm.assertEq(period, handler.unbondingPeriod(), "unbonding period != model");
        vm.assertGe(period, handler.lifetime(), "unbonding period shorter than a job's lifetime");
        vm.assertGe(block.timestamp + period, handler.riskHorizon(), "unbonding ends before the risk horizon");
    }

    /// @notice Every call had the outcome and effects the model predicts: no unstake over the free stake,
    /// no early withdrawal, no slash out of order, no outsider call, no allowed call reverted.
    function invariant_everyCallAsModelled() public view {
        vm.assertEq(handler.ghostViolations(), 0, handler.lastViolation());
    }

    function afterInvariant() public {
        _assertCoverage("STAKING", _floors());
        invariant_balanceEqualsStake();
        invariant_stakeMatchesModel();
        invariant_unbondingCoversRiskHorizon();
        invariant_everyCallAsModelled();
    }

    /// @notice Coverage floors, per run and per window of `WINDOW` runs (see `Coverage`).
    function _floors() internal pure returns (Floor[] memory f) {
        f = new Floor[](16);
        uint256 i;
        f[i++] = Floor("any.ok", 3, 1);
        f[i++] = Floor("stake.ok", 0, 1);
        f[i++] = Floor("requestUnstake.ok", 0, 1);
        f[i++] = Floor("withdraw.ok", 0, 1);
        f[i++] = Floor("lockForJob.ok", 0, 1);
        f[i++] = Floor("releaseCollateral.ok", 0, 1);
        f[i++] = Floor("releaseCollateral.deficit", 0, 1);
        f[i++] = Floor("seizeCollateral.ok", 0, 1);
        f[i++] = Floor("seizeCollateral.deficit", 0, 1);
        f[i++] = Floor("slash.ok", 0, 1);
        f[i++] = Floor("slash.locked.ok", 0, 1);
        f[i++] = Floor("setUnbondingPeriod.ok", 0, 1);
        f[i++] = Floor("setUnbondingPeriod.rejected", 0, 1);
        f[i++] = Floor("setUnbondingPeriod.belowHorizon", 0, 1);
        f[i++] = Floor("setLifetime", 0, 1);
        f[i++] = Floor("unauthorised.reverted", 0, 1);
    }

    function _counter(string memory name) internal view override returns (uint256) {
        return handler.calls(bytes32(bytes(name)));
    }
}
