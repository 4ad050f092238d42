// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {JobEscrow} from "../../src/JobEscrow.sol";
import {Staking} from "../../src/Staking.sol";
import {EscrowHandler, Market} from "./EscrowHandler.sol";
import {GovernanceHandler} from "./GovernanceHandler.sol";
import {OutsiderHandler} from "./OutsiderHandler.sol";
import {FuzzSelector} from "./FuzzSelector.sol";
import {Coverage} from "./Coverage.sol";

/// @notice Stateful invariants of JobEscrow + Staking + ModelRegistry (DESIGN.md §3, "Invariants the
/// tests MUST hold"), driven by EscrowHandler (lifecycles, stake, self-dealing), GovernanceHandler
/// (governance over its whole range) and OutsiderHandler (unauthorised calls).
///
/// Besides the invariants below, every handler call is checked against the handler's model: a call the
/// rules allow must succeed with exactly the modelled effects, one they forbid must revert
/// (`invariant_everyCallAsModelled`). `afterInvariant` ends every job, drains every balance, and asserts
/// that the run covered the protocol (`Coverage`).
contract EscrowInvariants is Coverage {
    EscrowHandler internal handler;
    GovernanceHandler internal governance;
    OutsiderHandler internal outsider;

    function setUp() public {
        handler = new EscrowHandler();
        governance = new GovernanceHandler(handler);
        outsider = new OutsiderHandler(handler);
        handler.wire(address(governance), address(outsider));
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function targetSelectors() public view returns (FuzzSelector[] memory targets) {
        bytes4[] memory selectors = new bytes4[](13);
        selectors[0] = EscrowHandler.postJob.selector;
        selectors[1] = EscrowHandler.cancelJob.selector;
        selectors[2] = EscrowHandler.acceptJob.selector;
        selectors[3] = EscrowHandler.submitResult.selector;
        selectors[4] = EscrowHandler.finalize.selector;
        selectors[5] = EscrowHandler.expire.selector;
        selectors[6] = EscrowHandler.withdraw.selector;
        selectors[7] = EscrowHandler.warp.selector;
        selectors[8] = EscrowHandler.disputeOp.selector; // freeze, resolve, payReward, slash
        selectors[9] = EscrowHandler.stakeOp.selector; // stake, requestUnstake, withdraw stake, prices
        selectors[10] = EscrowHandler.selfDeal.selector; // one owner behind a requester and an executor
        selectors[11] = EscrowHandler.governanceOp.selector; // parameters, unbonding, terms, thresholds
        selectors[12] = EscrowHandler.outsiderOp.selector; // dispute-, escrow- and owner-only calls
        targets = new FuzzSelector[](1);
        targets[0] = FuzzSelector(address(handler), selectors);
    }

    // ---------------------------------------------------------------- solvency

    /// @notice Escrow balance = open escrows + credits + locked credits + reward pool, read from the
    /// contracts, and each of them equals the model; staking balance = Σ staked + unbonding.
    function invariant_escrowSolvency() public view {
        JobEscrow escrow = handler.escrow();
        uint256 open = handler.openEscrowByContract();
        uint256 credits;
        uint256 lockedCredits;
        address[] memory list = handler.accounts();
        for (uint256 i = 0; i < list.length; ++i) {
            address who = list[i];
            uint256 credit = escrow.credits(who);
            (uint256 locked, uint256 releaseAt) = escrow.lockedCreditOf(who);
            vm.assertEq(credit, handler.ghostCredits(who), "credit != model");
            vm.assertEq(locked, handler.ghostLockedCredit(who), "locked credit != model");
            vm.assertEq(releaseAt, handler.ghostLockedCreditRelease(who), "locked credit release != model");
            credits += credit;
            lockedCredits += locked;
        }
        vm.assertEq(
            handler.token().balanceOf(address(escrow)),
            open + credits + lockedCredits + escrow.rewardPool(),
            "escrow balance != open escrows + credits + locked credits + reward pool"
        );
        vm.assertEq(open, handler.ghostOpenEscrow(), "open escrow != model");
        vm.assertEq(credits, handler.ghostCreditSum(), "credit sum != model");
        vm.assertEq(lockedCredits, handler.ghostLockedCreditSum(), "locked credit sum != model");
        vm.assertEq(escrow.rewardPool(), handler.ghostRewardPool(), "reward pool != model");
        _assertStakingBalance();
    }

    /// @notice Every executor's staked, locked, free and unbonding stake and reputation counters equal the
    /// model (which follows slashes into the stake behind open jobs, the deficit they leave and the
    /// seizures that absorb it exactly); locked is exactly the collateral of the executor's open jobs, and
    /// the collateral of jobs accepted after the executor's last such slash stays locked and staked in full.
    function invariant_stakeMatchesModel() public view {
        for (uint256 e = 0; e < handler.N(); ++e) {
            address executor = handler.executors(e);
            _assertStakeModel(executor);
            (uint256 openCollateral, uint256 laterCollateral) = handler.openCollateral(executor);
            IStaking.StakeInfo memory info = handler.staking().stakeOf(executor, IStaking.Role.Executor);
            vm.assertEq(info.locked, openCollateral, "locked != collateral of open jobs");
            // A slash into the stake behind open jobs may leave those jobs short, never a job taken later:
            // its collateral stays locked and staked until it is released or seized.
            vm.assertLe(
                laterCollateral,
                info.locked < info.staked ? info.locked : info.staked,
                "a slash of older jobs freed a later job's collateral"
            );
        }
        vm.assertLe(
            handler.ghostSlashed() + handler.ghostSeized(),
            handler.ghostStakedIn(),
            "slashed and seized more than was ever staked"
        );
    }

    // ---------------------------------------------------------------- settlement

    /// @notice No job is paid, refunded or slashed twice; a terminal status never changes; the contract's
    /// status always matches the status the model expects.
    function invariant_noDoubleSettlement() public view {
        (uint256 job, string memory what) = handler.settlementMismatch();
        vm.assertEq(job, 0, what);
    }

    // ---------------------------------------------------------------- self-dealing

    /// @notice No stake reaches its owner, or any address the owner controls, faster than the unbonding
    /// period. What arrived at the owner's addresses (their balance, less what was minted to them, plus
    /// what they paid in as escrow and stake) never exceeds what the model lets out by now: refunds,
    /// payouts and rewards at once; no-show compensation (seized stake, whoever's) one unbonding period
    /// after the seizure; the owner's own stake after its own unbonding.
    function invariant_ownerStakeNeverOutrunsUnbonding() public view {
        address[] memory owner = handler.ownerAddresses();
        uint256 received = handler.ownerPaidIn();
        for (uint256 i = 0; i < owner.length; ++i) {
            received += handler.token().balanceOf(owner[i]);
        }
        received -= handler.ownerMinted();
        vm.assertLe(
            received,
            handler.ownerFastIncome() + handler.ownerMaturedCompensation() + handler.ownerStakeMatured(),
            "stake reached its owner's addresses before the unbonding period"
        );
    }

    // ---------------------------------------------------------------- governance

    /// @notice Governance stays inside its bounds, and posted jobs keep what they snapshotted: the
    /// unbonding period covers a new job's whole lifetime and never ends before the risk horizon, which
    /// never comes before the last dispute of any job posted so far (even under longer, earlier windows);
    /// the verification rules of every job's rules version are the ones in force when it was posted.
    function invariant_governanceBounds() public view {
        JobEscrow escrow = handler.escrow();
        Staking staking = handler.staking();
        Market memory m = handler.market();
        uint256 unbonding = staking.unbondingPeriod();
        vm.assertEq(unbonding, m.unbondingPeriod, "unbonding period != model");
        vm.assertGe(unbonding, escrow.maxJobLifetime(), "unbonding period shorter than a job's lifetime");
        vm.assertEq(escrow.riskHorizon(), handler.riskHorizonModel(), "risk horizon != model");
        vm.assertGe(
            escrow.riskHorizon(), handler.ghostHorizon(), "risk horizon before a posted job's last dispute"
        );
        vm.assertGe(
            block.timestamp + unbonding,
            escrow.riskHorizon(),
            "stake unbonding now could leave before an open job's last dispute"
        );
        vm.assertEq(
            escrow.maxJobLifetime(), m.challengeWindow + m.disputeWindow + m.maxJobDuration, "lifetime"
        );
        vm.assertEq(escrow.validatorFeeBps(), m.validatorFeeBps, "fee != model");
        vm.assertEq(escrow.collateralBps(), m.collateralBps, "collateral ratio != model");

        IModelRegistry registry = handler.registry();
        bytes32 modelId = handler.modelId();
        vm.assertEq(
            keccak256(abi.encode(registry.terms(modelId))), keccak256(abi.encode(m.terms)), "terms != model"
        );
        // Every version keeps its rules (each posted job was checked, when posted, to name the version in
        // force; `afterInvariant` checks them all again).
        for (uint32 v = 1; v <= m.terms.rulesVersion; ++v) {
            vm.assertEq(
                keccak256(abi.encode(registry.rulesAt(modelId, v))),
                keccak256(abi.encode(governance.rulesOf(v))),
                "rules of a version changed"
            );
        }
    }

    /// @notice Every posted job's rules version still gives the rules in force when it was posted.
    function _assertJobsKeepTheirRules() internal view {
        IModelRegistry registry = handler.registry();
        bytes32 modelId = handler.modelId();
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; ++i) {
            (uint32 version, IModelRegistry.Rules memory rules) = handler.jobRules(i);
            vm.assertEq(
                keccak256(abi.encode(registry.rulesAt(modelId, version))),
                keccak256(abi.encode(rules)),
                "a posted job's rules version does not give the rules in force at posting"
            );
        }
    }

    // ---------------------------------------------------------------- every call

    /// @notice Every call had the outcome and effects the model predicts: no forbidden call succeeded (a
    /// stranger cancelling, a terminal job moving, finalizing inside the challenge window, an early
    /// withdrawal, an outsider calling a dispute-, escrow- or owner-only function, governance leaving its
    /// bounds…), no allowed call reverted, and results were accepted only from the bound executor.
    function invariant_everyCallAsModelled() public view {
        vm.assertEq(handler.ghostViolations(), 0, handler.lastViolation());
        vm.assertEq(handler.ghostNonBoundSubmits(), 0, "result accepted from a non-bound caller");
    }

    // ---------------------------------------------------------------- end of a run

    /// @notice The run covered the protocol; then, past every deadline and window, every job can be ended,
    /// every credit, locked credit and unbonded stake withdrawn, after which the escrow holds only the pool
    /// and nothing stays locked, and the invariants still hold.
    function afterInvariant() public {
        _assertCoverage("ESCROW", _floors());

        vm.assertEq(handler.finishAll(), 0, "an open job could not be ended after its deadlines");
        uint256 n = handler.jobCount();
        for (uint256 i = 0; i < n; ++i) {
            (uint256 id,,,,,,,,) = handler.jobAt(i);
            vm.assertFalse(_isOpen(handler.escrow().jobStatus(id)), "job not terminal after its deadlines");
        }
        vm.assertEq(handler.ghostOpenEscrow(), 0, "open escrow left");
        for (uint256 e = 0; e < handler.N(); ++e) {
            vm.assertEq(
                handler.staking().stakeOf(handler.executors(e), IStaking.Role.Executor).locked,
                0,
                "stake left locked"
            );
        }
        vm.assertEq(handler.drainAll(), 0, "a credit, locked credit or unbonded stake could not be withdrawn");
        vm.assertEq(
            handler.token().balanceOf(address(handler.escrow())),
            handler.escrow().rewardPool(),
            "escrow holds more than the pool after every withdrawal"
        );
        invariant_escrowSolvency();
        invariant_stakeMatchesModel();
        invariant_noDoubleSettlement();
        invariant_ownerStakeNeverOutrunsUnbonding();
        invariant_governanceBounds();
        _assertJobsKeepTheirRules();
        invariant_everyCallAsModelled();
    }

    /// @notice Coverage floors: per run (`depth` calls over 13 actions: only the total of successes), and per
    /// window of `WINDOW` runs (every success path and the error paths that matter).
    function _floors() internal pure returns (Floor[] memory f) {
        f = new Floor[](40);
        uint256 i;
        f[i++] = Floor("any.ok", 3, 1);
        f[i++] = Floor("postJob.ok", 0, 1);
        f[i++] = Floor("postJob.rejected", 0, 1);
        f[i++] = Floor("cancelJob.ok", 0, 1);
        f[i++] = Floor("acceptJob.ok", 0, 1);
        f[i++] = Floor("acceptJob.rejected", 0, 1);
        f[i++] = Floor("submitResult.ok", 0, 1);
        f[i++] = Floor("submitResult.rejected", 0, 1);
        f[i++] = Floor("submitResult.textTooLong", 0, 1);
        f[i++] = Floor("submitResult.gasLimited", 0, 1);
        f[i++] = Floor("callback.measured", 0, 1);
        f[i++] = Floor("finalize.ok", 0, 1);
        f[i++] = Floor("expire.ok", 0, 1);
        f[i++] = Floor("expire.compensated", 0, 1);
        f[i++] = Floor("withdraw.ok", 0, 1);
        f[i++] = Floor("withdrawTo.ok", 0, 1);
        f[i++] = Floor("withdraw.locked.ok", 0, 1);
        f[i++] = Floor("selfDeal.accepted", 0, 1);
        f[i++] = Floor("selfDeal.expired", 0, 1);
        f[i++] = Floor("freeze.ok", 0, 1);
        f[i++] = Floor("resolve.honest.ok", 0, 1);
        f[i++] = Floor("resolve.faulty.ok", 0, 1);
        f[i++] = Floor("payReward.ok", 0, 1);
        f[i++] = Floor("slash.ok", 0, 1);
        f[i++] = Floor("slash.locked.ok", 0, 1);
        f[i++] = Floor("stake.ok", 0, 1);
        f[i++] = Floor("requestUnstake.ok", 0, 1);
        f[i++] = Floor("withdrawStake.ok", 0, 1);
        f[i++] = Floor("reprice.ok", 0, 1);
        f[i++] = Floor("setParameters.ok", 0, 1);
        f[i++] = Floor("setParameters.rejected", 0, 1);
        f[i++] = Floor("setUnbondingPeriod.ok", 0, 1);
        f[i++] = Floor("setUnbondingPeriod.rejected", 0, 1);
        f[i++] = Floor("setUnbondingPeriod.belowHorizon", 0, 1);
        f[i++] = Floor("setTerms.ok", 0, 1);
        f[i++] = Floor("setTerms.rejected", 0, 1);
        f[i++] = Floor("setThresholds.ok", 0, 1);
        f[i++] = Floor("setThresholds.rejected", 0, 1);
        f[i++] = Floor("registerModel.ok", 0, 1);
        f[i++] = Floor("outsider.reverted", 0, 1);
    }

    function _counter(string memory name) internal view override returns (uint256) {
        return handler.calls(bytes32(bytes(name)));
    }

    // ---------------------------------------------------------------- internals

    function _assertStakingBalance() internal view {
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

    function _assertStakeModel(address executor) internal view {
        IStaking staking = handler.staking();
        EscrowHandler.StakeModel memory model = handler.stakeModel(executor);
        IStaking.StakeInfo memory info = staking.stakeOf(executor, IStaking.Role.Executor);
        IStaking.Unbonding memory pending = staking.unbondingOf(executor, IStaking.Role.Executor);
        vm.assertEq(info.staked, model.staked, "staked != model");
        vm.assertEq(info.locked, model.locked, "locked != model");
        vm.assertEq(staking.freeStake(executor, IStaking.Role.Executor), _free(model), "free stake != model");
        vm.assertEq(pending.amount, model.pending, "unbonding != model");
        if (pending.amount != 0) {
            vm.assertEq(pending.releaseAt, model.releaseAt, "unbonding release != model");
        }
        vm.assertEq(info.jobsCompleted, model.completed, "jobs completed != model");
        vm.assertEq(info.jobsExpired, model.expired, "jobs expired != model");
        vm.assertEq(
            staking.executorProfile(executor).disputesLost, model.disputesLost, "disputes lost != model"
        );
    }

    function _free(EscrowHandler.StakeModel memory m) internal pure returns (uint256) {
        return m.staked > m.locked ? m.staked - m.locked : 0;
    }

    function _isOpen(IJobEscrow.JobStatus status) internal pure returns (bool) {
        return status == IJobEscrow.JobStatus.Posted || status == IJobEscrow.JobStatus.Accepted
            || status == IJobEscrow.JobStatus.Submitted || status == IJobEscrow.JobStatus.Disputed;
    }
}
