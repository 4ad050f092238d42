// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {StakingHandler} from "./StakingHandler.sol";
import {FuzzSelector} from "./FuzzSelector.sol";

/// @notice Stateful invariants of Staking on its own (DESIGN.md §3): the balance backs every stake,
/// locked stake never leaves, and a slash never exceeds the stake.
contract StakingInvariants {
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
        bytes4[] memory selectors = new bytes4[](10);
        selectors[0] = StakingHandler.stake.selector;
        selectors[1] = StakingHandler.requestUnstake.selector;
        selectors[2] = StakingHandler.withdraw.selector;
        selectors[3] = StakingHandler.warp.selector;
        selectors[4] = StakingHandler.setUnbondingPeriod.selector;
        selectors[5] = StakingHandler.lockForJob.selector;
        selectors[6] = StakingHandler.releaseCollateral.selector;
        selectors[7] = StakingHandler.seizeCollateral.selector;
        selectors[8] = StakingHandler.slash.selector;
        selectors[9] = StakingHandler.unauthorised.selector;
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), selectors);
    }

    /// @notice Token balance = Σ (staked + unbonding) over every account and role, and = what came in
    /// minus what was withdrawn, slashed or seized.
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

    /// @notice Locked ≤ staked for every account and role; validators never hold locks; each executor's
    /// locked stake is exactly the collateral of its open locks.
    function invariant_lockedWithinStake() public view {
        IStaking staking = handler.staking();
        address[] memory actors = handler.actorList();
        for (uint256 i = 0; i < actors.length; ++i) {
            IStaking.StakeInfo memory exec = staking.stakeOf(actors[i], IStaking.Role.Executor);
            IStaking.StakeInfo memory val = staking.stakeOf(actors[i], IStaking.Role.Validator);
            vm.assertLe(exec.locked, exec.staked, "locked > staked");
            vm.assertEq(val.locked, 0, "validator stake locked");
            uint256 open;
            uint256 n = handler.lockCount();
            for (uint256 j = 0; j < n; ++j) {
                (address executor, uint256 amount, bool isOpen) = handler.lockAt(j);
                if (isOpen && executor == actors[i]) open += amount;
            }
            vm.assertEq(exec.locked, open, "locked != open collateral");
            vm.assertEq(exec.locked, handler.ghostLocked(actors[i]), "locked != ghost");
        }
    }

    /// @notice Locked stake never leaves: no unstake beyond the free stake, no early withdrawal, no slash
    /// of locked stake, no outsider call ever succeeded (the handler counts each as a violation).
    function invariant_noForbiddenCallSucceeded() public view {
        vm.assertEq(handler.ghostViolations(), 0, handler.lastViolation());
    }

    /// @notice What was ever slashed or seized never exceeds what was ever staked.
    function invariant_slashedWithinStaked() public view {
        vm.assertLe(
            handler.ghostSlashed() + handler.ghostSeized(),
            handler.ghostStakedIn(),
            "slashed more than staked"
        );
    }
}
