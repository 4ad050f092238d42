// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {EscrowHandler} from "./EscrowHandler.sol";
import {FuzzSelector} from "./FuzzSelector.sol";

/// @notice Stateful invariants of JobEscrow + Staking (DESIGN.md §3, "Invariants the tests MUST hold"),
/// driven by EscrowHandler.
contract EscrowInvariants {
    EscrowHandler internal handler;

    function setUp() public {
        handler = new EscrowHandler();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory selectors = new bytes4[](10);
        selectors[0] = EscrowHandler.postJob.selector;
        selectors[1] = EscrowHandler.cancelJob.selector;
        selectors[2] = EscrowHandler.acceptJob.selector;
        selectors[3] = EscrowHandler.submitResult.selector;
        selectors[4] = EscrowHandler.finalize.selector;
        selectors[5] = EscrowHandler.expire.selector;
        selectors[6] = EscrowHandler.withdraw.selector;
        selectors[7] = EscrowHandler.warp.selector;
        selectors[8] = EscrowHandler.disputeOp.selector; // freeze, resolve, payReward, slash
        selectors[9] = EscrowHandler.stakeOp.selector; // stake, requestUnstake, withdraw stake, setParameters
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), selectors);
    }

    // ---------------------------------------------------------------- solvency

    /// @notice Escrow balance = open escrows + every credit + reward pool, read from the contracts...
    function invariant_escrowBalanceEqualsLiabilities() public view {
        uint256 open;
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; ++i) {
            (uint256 id,, uint256 amount,,,,,,) = handler.jobAt(i);
            if (_isOpen(handler.escrow().jobStatus(id))) open += amount;
        }
        uint256 credits;
        address[] memory list = handler.accounts();
        for (uint256 i = 0; i < list.length; ++i) {
            credits += handler.escrow().credits(list[i]);
        }
        vm.assertEq(
            handler.token().balanceOf(address(handler.escrow())),
            open + credits + handler.escrow().rewardPool(),
            "escrow balance != open escrows + credits + reward pool"
        );
        vm.assertEq(open, handler.ghostOpenEscrow(), "open escrow != ghost");
    }

    /// @notice ...and every credit and the pool match the handler's independent bookkeeping.
    function invariant_creditsMatchGhosts() public view {
        address[] memory list = handler.accounts();
        uint256 sum;
        for (uint256 i = 0; i < list.length; ++i) {
            uint256 credit = handler.escrow().credits(list[i]);
            vm.assertEq(credit, handler.ghostCredits(list[i]), "credit != ghost");
            sum += credit;
        }
        vm.assertEq(sum, handler.ghostCreditSum(), "credit sum != ghost");
        vm.assertEq(handler.escrow().rewardPool(), handler.ghostRewardPool(), "reward pool != ghost");
    }

    /// @notice Staking balance = Σ staked + unbonding, over every account and role; and it equals what
    /// came in minus what was slashed, seized or withdrawn is never more than came in.
    function invariant_stakingBalanceEqualsStake() public view {
        IStaking staking = handler.staking();
        address[] memory list = handler.accounts();
        uint256 sum;
        for (uint256 i = 0; i < list.length; ++i) {
            for (uint256 r = 0; r < 2; ++r) {
                IStaking.Role role = IStaking.Role(r);
                sum += staking.stakeOf(list[i], role).staked;
                sum += staking.unbondingOf(list[i], role).amount;
            }
        }
        vm.assertEq(handler.token().balanceOf(address(staking)), sum, "staking balance != staked + unbonding");
    }

    // ---------------------------------------------------------------- settlement

    /// @notice No job is paid, refunded or slashed twice; a terminal status never changes; the contract's
    /// status always matches the status the handler saw it reach.
    function invariant_noDoubleSettlement() public view {
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; ++i) {
            (
                uint256 id,
                IJobEscrow.JobStatus status,,,,
                uint8 paid,
                uint8 refunded,
                uint8 slashed,
                uint8 settled
            ) = handler.jobAt(i);
            vm.assertLe(paid, 1, "job paid twice");
            vm.assertLe(refunded, 1, "job refunded twice");
            vm.assertLe(slashed, 1, "job slashed twice");
            vm.assertLe(settled, 1, "job settled twice");
            vm.assertEq(uint256(handler.escrow().jobStatus(id)), uint256(status), "status != ghost status");
        }
    }

    /// @notice Locked stake of each executor = collateral of its Accepted/Submitted/Disputed jobs ≤ staked.
    function invariant_lockedEqualsOpenCollateral() public view {
        for (uint256 e = 0; e < handler.N(); ++e) {
            address executor = handler.executors(e);
            uint256 expected;
            uint256 n = handler.jobCount();
            for (uint256 i = 0; i < n; ++i) {
                (uint256 id,,, address bound_, uint256 collateral,,,,) = handler.jobAt(i);
                IJobEscrow.JobStatus status = handler.escrow().jobStatus(id);
                if (bound_ == executor && _isOpen(status) && status != IJobEscrow.JobStatus.Posted) {
                    expected += collateral;
                }
            }
            IStaking.StakeInfo memory info = handler.staking().stakeOf(executor, IStaking.Role.Executor);
            vm.assertEq(info.locked, expected, "locked != collateral of open jobs");
            vm.assertEq(info.locked, handler.ghostLocked(executor), "locked != ghost");
            vm.assertLe(info.locked, info.staked, "locked > staked");
        }
    }

    /// @notice Results are accepted only from the bound executor.
    function invariant_onlyBoundExecutorSubmits() public view {
        vm.assertEq(handler.ghostNonBoundSubmits(), 0, "result accepted from a non-bound caller");
    }

    /// @notice A slash (or seizure) never exceeds the stake: per call (checked by the handler against the
    /// stake just before) and in total.
    function invariant_slashNeverExceedsStake() public view {
        vm.assertLe(
            handler.ghostSlashed() + handler.ghostSeized(),
            handler.ghostStakedIn(),
            "slashed more than ever staked"
        );
    }

    /// @notice No call the rules forbid ever succeeded: a stranger cancelling, a terminal job moving,
    /// finalizing inside the challenge window, freezing after it, expiring before the deadline, a slash
    /// over the stake, an unstake over the free stake, an early stake withdrawal, wrong settlement terms…
    /// (the handler counts each; `lastViolation` names the latest).
    function invariant_noForbiddenCallSucceeded() public view {
        vm.assertEq(handler.ghostViolations(), 0, handler.lastViolation());
    }

    // ---------------------------------------------------------------- liveness

    /// @notice Past every deadline, challenge and dispute window, every job can be ended by the calls the
    /// protocol offers, after which the escrow holds only credits and the pool, and nothing stays locked.
    function afterInvariant() public {
        vm.assertEq(handler.finishAll(), 0, "an open job could not be ended after its deadlines");
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; ++i) {
            (uint256 id,,,,,,,,) = handler.jobAt(i);
            vm.assertFalse(_isOpen(handler.escrow().jobStatus(id)), "job not terminal after its deadlines");
        }
        invariant_noDoubleSettlement();
        invariant_creditsMatchGhosts();
        invariant_lockedEqualsOpenCollateral();
        invariant_stakingBalanceEqualsStake();
        vm.assertEq(handler.ghostOpenEscrow(), 0, "ghost open escrow left");
        vm.assertEq(
            handler.token().balanceOf(address(handler.escrow())),
            handler.ghostCreditSum() + handler.escrow().rewardPool(),
            "escrow holds more than credits + pool after every job ended"
        );
        for (uint256 e = 0; e < handler.N(); ++e) {
            vm.assertEq(
                handler.staking().stakeOf(handler.executors(e), IStaking.Role.Executor).locked,
                0,
                "stake left locked"
            );
        }
        vm.assertEq(handler.withdrawAll(), 0, "a credit could not be withdrawn");
        vm.assertEq(
            handler.token().balanceOf(address(handler.escrow())),
            handler.escrow().rewardPool(),
            "escrow holds more than the pool after every withdrawal"
        );
        vm.assertEq(handler.ghostViolations(), 0, handler.lastViolation());
    }

    function _isOpen(IJobEscrow.JobStatus status) internal pure returns (bool) {
        return status == IJobEscrow.JobStatus.Posted || status == IJobEscrow.JobStatus.Accepted
            || status == IJobEscrow.JobStatus.Submitted || status == IJobEscrow.JobStatus.Disputed;
    }
}
