// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {IDisputes} from "../../src/interfaces/IDisputes.sol";
import {Disputes} from "../../src/Disputes.sol";
import {Staking} from "../../src/Staking.sol";
import {DisputeHandler} from "./DisputeHandler.sol";
import {FuzzSelector} from "./FuzzSelector.sol";
import {Coverage} from "./Coverage.sol";

/// @notice Stateful invariants of the dispute contract on the real JobEscrow and Staking (DESIGN.md §3): no
/// seat or claim is slashed twice, a slash never exceeds the penalty or the stake, every dispute
/// terminates by its deadlines, tokens are conserved across the three contracts and the burn address,
/// an honest executor never loses stake, juries never seat a party, seats stay locked until resolution,
/// the draw's tree follows validator stake, and the risk horizon covers every open dispute.
/// forge-config: default.invariant.runs = 64
/// forge-config: default.invariant.depth = 40
/// forge-config: ci.invariant.runs = 64
/// forge-config: ci.invariant.depth = 40
contract DisputeInvariants is Coverage {
    DisputeHandler internal handler;

    function setUp() public {
        handler = new DisputeHandler();
        handler.wire();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory selectors = new bytes4[](11);
        selectors[0] = DisputeHandler.submitJob.selector;
        selectors[1] = DisputeHandler.challenge.selector;
        selectors[2] = DisputeHandler.draw.selector;
        selectors[3] = DisputeHandler.commit.selector;
        selectors[4] = DisputeHandler.reveal.selector;
        selectors[5] = DisputeHandler.resolve.selector;
        selectors[6] = DisputeHandler.finalize.selector;
        selectors[7] = DisputeHandler.warp.selector;
        selectors[8] = DisputeHandler.withdraw.selector;
        selectors[9] = DisputeHandler.restake.selector;
        selectors[10] = DisputeHandler.setParameters.selector;
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), selectors);
    }

    /// @notice No juror loses stake twice in one dispute, no job's collateral is seized twice, and no
    /// resolution took more than the penalty (or more than the juror had).
    function invariant_noDoubleSlashAndSlashWithinStake() public view {
        vm.assertFalse(handler.ghostOverSlash(), "a slash exceeded the penalty or the stake");
        Disputes disputes = handler.disputes();
        uint256 count = handler.disputeCount();
        for (uint256 k = 0; k < count; ++k) {
            uint256 id = handler.disputeIds(k);
            address[] memory jurors = disputes.jurorsOf(id);
            for (uint256 i = 0; i < jurors.length; ++i) {
                vm.assertLe(handler.ghostPenalised(id, jurors[i]), 1, "a seat slashed twice");
            }
        }
        uint256 jobs = handler.jobCount();
        for (uint256 j = 0; j < jobs; ++j) {
            (uint256 jobId,,) = handler.jobAt(j);
            vm.assertLe(handler.ghostSeized(jobId), 1, "a claim slashed twice");
        }
    }

    /// @notice Tokens are conserved: what was minted is in wallets, JobEscrow, Staking, Disputes or the
    /// burn address; Disputes holds exactly the credits plus the bonds of open disputes; Staking exactly
    /// the bonded and unbonding stake.
    function invariant_tokensConserved() public view {
        address[] memory all = handler.everyone();
        Disputes disputes = handler.disputes();
        Staking staking = handler.staking();
        uint256 wallets;
        uint256 credited;
        uint256 staked;
        for (uint256 i = 0; i < all.length; ++i) {
            wallets += handler.token().balanceOf(all[i]);
            credited += disputes.credits(all[i]);
            for (uint256 r = 0; r < 2; ++r) {
                staked += staking.stakeOf(all[i], IStaking.Role(r)).staked;
                staked += staking.unbondingOf(all[i], IStaking.Role(r)).amount;
            }
        }
        uint256 bonds;
        uint256 count = handler.disputeCount();
        for (uint256 k = 0; k < count; ++k) {
            IDisputes.Dispute memory d = disputes.disputeOf(handler.disputeIds(k));
            if (d.phase != IDisputes.Phase.Resolved) bonds += d.bond;
        }
        uint256 held = handler.token().balanceOf(address(disputes));
        vm.assertEq(held, credited + bonds, "disputes balance != credits + open bonds");
        vm.assertEq(handler.token().balanceOf(address(staking)), staked, "staking balance != stake");
        uint256 total = wallets + held + handler.token().balanceOf(address(staking))
            + handler.token().balanceOf(address(handler.escrow())) + handler.token().balanceOf(handler.BURN());
        vm.assertEq(total, handler.ghostMinted(), "tokens created or lost");
    }

    /// @notice The honest executor never loses a base unit of stake and never loses a dispute.
    function invariant_honestExecutorKeepsStake() public view {
        Staking staking = handler.staking();
        address honest = handler.honestExecutor();
        vm.assertEq(
            staking.stakeOf(honest, IStaking.Role.Executor).staked,
            handler.honestExecutorInitialStake(),
            "honest executor lost stake"
        );
        vm.assertEq(staking.executorProfile(honest).disputesLost, 0, "honest executor lost a dispute");
    }

    /// @notice Juries are distinct validators and never seat the challenger or the executor; a seat's
    /// penalty is locked in Staking exactly while its dispute is open.
    function invariant_juriesAndLocks() public view {
        Disputes disputes = handler.disputes();
        address[] memory vs = handler.validatorList();
        uint256[] memory expectedLocked = new uint256[](vs.length);
        uint256 count = handler.disputeCount();
        for (uint256 k = 0; k < count; ++k) {
            uint256 id = handler.disputeIds(k);
            IDisputes.Dispute memory d = disputes.disputeOf(id);
            address[] memory jurors = disputes.jurorsOf(id);
            for (uint256 i = 0; i < jurors.length; ++i) {
                vm.assertTrue(jurors[i] != d.challenger, "challenger on the jury");
                vm.assertTrue(jurors[i] != d.executor, "executor on its own jury");
                for (uint256 j = i + 1; j < jurors.length; ++j) {
                    vm.assertTrue(jurors[i] != jurors[j], "a juror seated twice");
                }
                if (d.phase == IDisputes.Phase.Resolved) continue;
                for (uint256 v = 0; v < vs.length; ++v) {
                    if (vs[v] == jurors[i]) expectedLocked[v] += d.jurorPenalty;
                }
            }
        }
        Staking staking = handler.staking();
        for (uint256 v = 0; v < vs.length; ++v) {
            vm.assertEq(
                staking.stakeOf(vs[v], IStaking.Role.Validator).locked, expectedLocked[v], "seat locks"
            );
        }
    }

    /// @notice The draw's tree follows validator stake: the total is the sum, and each validator with stake
    /// owns the point where its cumulative range starts. Validator stake never moved while a draw was
    /// pending, and `pendingDraws` counts the disputes still drawing.
    function invariant_drawFollowsStake() public view {
        vm.assertFalse(handler.ghostStakeMovedDuringDraw(), "validator stake moved while a draw was pending");
        Disputes disputes = handler.disputes();
        uint256 drawing;
        uint256 count = handler.disputeCount();
        for (uint256 k = 0; k < count; ++k) {
            if (disputes.disputeOf(handler.disputeIds(k)).phase == IDisputes.Phase.Drawing) drawing++;
        }
        vm.assertEq(disputes.pendingDraws(), drawing, "pending draws");
        Staking staking = handler.staking();
        address[] memory vs = handler.validatorList();
        uint256 acc;
        for (uint256 v = 0; v < vs.length; ++v) {
            uint256 s = staking.stakeOf(vs[v], IStaking.Role.Validator).staked;
            if (s != 0) {
                vm.assertEq(staking.validatorAt(acc), vs[v], "draw start of a validator's range");
                vm.assertEq(staking.validatorAt(acc + s - 1), vs[v], "draw end of a validator's range");
            }
            acc += s;
        }
        vm.assertEq(staking.totalValidatorStake(), acc, "total validator stake");
    }

    /// @notice The unbonding floor (`riskHorizon`) covers every open dispute's deadline.
    function invariant_horizonCoversOpenDisputes() public view {
        Disputes disputes = handler.disputes();
        uint256 count = handler.disputeCount();
        for (uint256 k = 0; k < count; ++k) {
            IDisputes.Dispute memory d = disputes.disputeOf(handler.disputeIds(k));
            if (d.phase != IDisputes.Phase.Resolved) {
                vm.assertGe(disputes.riskHorizon(), d.disputeEnd, "horizon below an open dispute");
            }
        }
    }

    /// @notice Every open dispute terminates: at its reveal deadline (in time) and after its claim's
    /// dispute end (late), `resolve` succeeds, unlocks every seat and leaves the dispute Resolved; then
    /// every job settles.
    function invariant_everyDisputeTerminates() public {
        Disputes disputes = handler.disputes();
        uint256 count = handler.disputeCount();
        for (uint256 pass = 0; pass < 2; ++pass) {
            uint256 snapshot = vm.snapshotState();
            for (uint256 k = 0; k < count; ++k) {
                uint256 id = handler.disputeIds(k);
                IDisputes.Dispute memory d = disputes.disputeOf(id);
                if (d.phase == IDisputes.Phase.Resolved) continue;
                uint256 at = pass == 0 ? d.revealEnd : d.disputeEnd;
                if (at > block.timestamp) vm.warp(at);
                vm.roll(block.number + 1);
                disputes.resolve(id, handler.termsOf(id));
                vm.assertTrue(disputes.disputeOf(id).phase == IDisputes.Phase.Resolved, "not resolved");
            }
            // With every dispute closed, no validator stake stays locked, and every job can settle.
            address[] memory vs = handler.validatorList();
            for (uint256 v = 0; v < vs.length; ++v) {
                vm.assertEq(
                    handler.staking().stakeOf(vs[v], IStaking.Role.Validator).locked, 0, "a seat stays locked"
                );
            }
            _settleEveryJob();
            vm.revertToState(snapshot);
        }
    }

    function afterInvariant() public {
        _assertCoverage("DISPUTES", _floors());
        invariant_noDoubleSlashAndSlashWithinStake();
        invariant_tokensConserved();
        invariant_honestExecutorKeepsStake();
        invariant_juriesAndLocks();
        invariant_drawFollowsStake();
        invariant_horizonCoversOpenDisputes();
        invariant_everyDisputeTerminates();
    }

    function _settleEveryJob() internal {
        IJobEscrow escrow = handler.escrow();
        uint256 jobs = handler.jobCount();
        for (uint256 j = 0; j < jobs; ++j) {
            (uint256 jobId, IJobEscrow.Settlement memory s,) = handler.jobAt(j);
            IJobEscrow.JobStatus status = escrow.jobStatus(jobId);
            if (status != IJobEscrow.JobStatus.Submitted && status != IJobEscrow.JobStatus.Disputed) {
                continue;
            }
            if (s.disputeEnd > block.timestamp) vm.warp(s.disputeEnd);
            escrow.finalize(jobId, s);
        }
    }

    function _floors() internal pure returns (Floor[] memory f) {
        f = new Floor[](14);
        uint256 i;
        f[i++] = Floor("any.ok", 3, 1);
        f[i++] = Floor("submitJob.ok", 0, 1);
        f[i++] = Floor("challenge.ok", 0, 1);
        f[i++] = Floor("draw.ok", 0, 1);
        f[i++] = Floor("draw.rearmed", 0, 1);
        f[i++] = Floor("commit.ok", 0, 1);
        f[i++] = Floor("reveal.ok", 0, 1);
        f[i++] = Floor("resolve.ok", 0, 1);
        f[i++] = Floor("resolve.late", 0, 1);
        f[i++] = Floor("finalize.ok", 0, 1);
        f[i++] = Floor("withdraw.ok", 0, 1);
        f[i++] = Floor("setParameters.ok", 0, 1);
        f[i++] = Floor("restake.ok", 0, 1);
        f[i++] = Floor("restake.frozen", 0, 1);
    }

    function _counter(string memory name) internal view override returns (uint256) {
        return handler.calls(bytes32(bytes(name)));
    }
}
