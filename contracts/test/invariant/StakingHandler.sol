// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {bound} from "../utils/Base.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {MockSettlementToken} from "../../src/mocks/MockSettlementToken.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {Staking} from "../../src/Staking.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";

/// @notice Drives Staking directly. The handler itself is wired as both the job escrow (it offers what
/// Staking reads from one: `maxJobLifetime()`, `riskHorizon()` and the wiring views) and the dispute
/// contract, so it can lock, release and seize collateral and slash. Every call's outcome is predicted
/// from an independent model of each account's stake, and every success is checked against it.
contract StakingHandler {
    struct Lock {
        address executor;
        uint256 jobId;
        uint256 amount;
        bool open;
        uint256 seq; // order of locking, against the executor's last slash of locked stake
    }

    /// @notice The model of one account's stake in one role.
    struct StakeModel {
        uint256 staked;
        uint256 locked;
        uint256 pending;
        uint256 releaseAt;
        uint256 completed;
        uint256 expired;
        uint256 lockedSlashSeq; // lock counter when a slash last reached locked stake
    }

    uint256 public constant N = 4;
    uint64 internal constant START = 1_700_000_000;
    uint256 internal constant MAX_UNBONDING = 90 days; // Staking.MAX_UNBONDING_PERIOD

    MockSettlementToken public token;
    ModelRegistry public registry;
    Staking public staking;
    bytes32 public modelId;
    address public governance = address(0x60F);
    address public sink = address(0x5111C);
    address[N] public actors;

    Lock[] internal _locks;
    uint256 internal _nextJobId = 1;
    mapping(address => mapping(IStaking.Role => StakeModel)) internal _model;
    mapping(address => uint256) public disputesLost;

    // ---------------------------------------------------------------- the escrow this handler plays
    /// @notice Longest job lifetime (the escrow's `maxJobLifetime`); never above the unbonding period.
    uint256 public lifetime = 1 days;
    /// @notice Latest end of a job posted under an earlier, longer lifetime (the escrow's record).
    uint256 public earlierJobsHorizon;
    uint256 public unbondingPeriod = 2 days;

    // ---------------------------------------------------------------- ghosts
    uint256 public currentTime;
    uint256 public ghostStakedIn;
    uint256 public ghostWithdrawn;
    uint256 public ghostSlashed;
    uint256 public ghostSeized;
    /// @notice Calls whose outcome differs from the model's (must stay 0); `lastViolation` says which.
    uint256 public ghostViolations;
    string public lastViolation;
    mapping(bytes32 => uint256) public calls;

    constructor() {
        vm.warp(START);
        currentTime = START;
        earlierJobsHorizon = START;
        token = new MockSettlementToken();
        registry = new ModelRegistry(governance);
        staking = new Staking(IERC20(address(token)), registry, governance, unbondingPeriod);
        vm.startPrank(governance);
        modelId = registry.registerModel(
            IModelRegistry.Model({
                name: "staking-invariant-model",
                weightsSha256: keccak256("weights"),
                tokenizerHash: keccak256("tokenizer"),
                terms: IModelRegistry.ModelTerms({
                    active: true,
                    samplerVersion: 1,
                    maxContext: 8192,
                    auditRatePpm: 0,
                    minExecutorStake: 1e6,
                    rulesVersion: 0
                }),
                thresholds: IModelRegistry.VerificationThresholds({maxMarginPpm: 1, maxFlipRatePpm: 0})
            })
        );
        vm.stopPrank();

        actors = [address(0xAC00), address(0xAC01), address(0xAC02), address(0xAC03)];
        for (uint256 i = 0; i < N; ++i) {
            vm.startPrank(actors[i]);
            token.approve(address(staking), type(uint256).max);
            staking.registerExecutor("http://127.0.0.1/executor", "cpu");
            staking.setPrice(modelId, 1, 1);
            vm.stopPrank();
        }
    }

    /// @notice Wires this handler as the job escrow and the dispute contract (it needs code, so not from the
    /// constructor). Called once by the invariant contract's setUp; not fuzzed.
    function wire() external {
        vm.startPrank(governance);
        staking.setJobEscrow(address(this));
        staking.setDisputes(address(this));
        vm.stopPrank();
    }

    // ---------------------------------------------------------------- what Staking reads from its escrow

    function maxJobLifetime() external view returns (uint256) {
        return lifetime;
    }

    /// @notice As IDisputes: no jury draw is ever pending here.
    function pendingDraws() external pure returns (uint256) {
        return 0;
    }

    /// @notice As JobEscrow: jobs posted now end within a lifetime, earlier ones by the recorded horizon.
    function riskHorizon() public view returns (uint256) {
        uint256 current = block.timestamp + lifetime;
        return earlierJobsHorizon > current ? earlierJobsHorizon : current;
    }

    // ---------------------------------------------------------------- views for the invariant contract

    function actorList() external view returns (address[] memory list) {
        list = new address[](N);
        for (uint256 i = 0; i < N; ++i) {
            list[i] = actors[i];
        }
    }

    /// @notice The executor's open locks, and the part of them taken after its last slash into the stake
    /// behind its locks.
    function openLocks(address executor) external view returns (uint256 open, uint256 later) {
        uint256 lastSlash = _model[executor][IStaking.Role.Executor].lockedSlashSeq;
        for (uint256 j = 0; j < _locks.length; ++j) {
            Lock storage l = _locks[j];
            if (l.open && l.executor == executor) {
                open += l.amount;
                if (l.seq > lastSlash) later += l.amount;
            }
        }
    }

    function model(address who, IStaking.Role role) external view returns (StakeModel memory) {
        return _model[who][role];
    }

    // ---------------------------------------------------------------- stakers

    function stake(uint256 actorSeed, bool validator, uint256 amount) external {
        _sync();
        calls["stake"]++;
        address who = actors[actorSeed % N];
        IStaking.Role role = _role(validator);
        amount = amount % 32 == 0 ? 0 : bound(amount, 1, 50e6);
        token.mint(who, amount);
        vm.prank(who);
        try staking.stake(role, amount) {
            _ok("stake.ok");
            if (amount == 0) _violation("staked zero");
            _model[who][role].staked += amount;
            ghostStakedIn += amount;
        } catch {
            if (amount != 0) _violation("could not stake");
        }
    }

    function requestUnstake(uint256 actorSeed, bool validator, uint256 amount) external {
        _sync();
        calls["requestUnstake"]++;
        (address who, IStaking.Role role) = _pickStaker(actorSeed, validator, false);
        StakeModel storage m = _model[who][role];
        uint256 free = _free(m);
        // Mostly within the free stake, sometimes beyond it or zero (must revert).
        amount = amount % 4 == 0 ? bound(amount >> 2, 0, m.staked + 1) : bound(amount >> 2, 1, free + 1);
        bool valid = amount != 0 && amount <= free;
        vm.prank(who);
        try staking.requestUnstake(role, amount) {
            _ok("requestUnstake.ok");
            if (!valid) _violation("unstaked zero or more than the free stake");
            m.staked -= amount;
            m.pending += amount;
            m.releaseAt = currentTime + unbondingPeriod;
            // Stake that starts unbonding now stays slashable until every job it may back can no longer be
            // disputed.
            if (m.releaseAt < riskHorizon()) _violation("stake unbonds before the risk horizon");
        } catch {
            if (valid) _violation("could not unstake free stake");
        }
    }

    function withdraw(uint256 actorSeed, bool validator) external {
        _sync();
        calls["withdraw"]++;
        (address who, IStaking.Role role) = _pickStaker(actorSeed, validator, true);
        StakeModel storage m = _model[who][role];
        // Half the time, wait for the release first.
        if (_mix(actorSeed) % 2 == 0) _warpTo(m.releaseAt);
        uint256 pending = m.pending;
        bool valid = pending != 0 && currentTime >= m.releaseAt;
        uint256 balanceBefore = token.balanceOf(who);
        vm.prank(who);
        try staking.withdraw(role) {
            _ok("withdraw.ok");
            if (!valid) _violation("withdrew nothing or stake still unbonding");
            if (token.balanceOf(who) != balanceBefore + pending) _violation("withdrew a wrong amount");
            m.pending = 0;
            m.releaseAt = 0;
            ghostWithdrawn += pending;
        } catch {
            if (valid) _violation("could not withdraw unbonded stake");
        }
    }

    function warp(uint256 seconds_) external {
        calls["steps"]++;
        calls["warp"]++;
        currentTime += seconds_ % 4 == 0 ? bound(seconds_ >> 2, 1, 4 days) : bound(seconds_ >> 2, 1, 6 hours);
        vm.warp(currentTime);
    }

    // ---------------------------------------------------------------- governance

    /// @notice Over the whole range and around its lower edge, which follows the risk horizon.
    function setUnbondingPeriod(uint256 period, uint256 mode) external {
        _sync();
        calls["setUnbondingPeriod"]++;
        uint256 minPeriod = riskHorizon() - currentTime;
        mode = uint256(keccak256(abi.encode(mode))) % 8;
        if (mode < 2) period = bound(period, 0, MAX_UNBONDING + 1);
        else if (mode < 4) period = bound(period, minPeriod > 2 ? minPeriod - 2 : 0, minPeriod + 2);
        else if (mode < 5 && minPeriod > lifetime) period = bound(period, lifetime, minPeriod - 1);
        else period = bound(period, minPeriod, minPeriod + 4 days);
        bool valid = period >= minPeriod && period != 0 && period <= MAX_UNBONDING;
        if (!valid && period >= lifetime && period < minPeriod) calls["setUnbondingPeriod.belowHorizon"]++;
        vm.prank(governance);
        try staking.setUnbondingPeriod(period) {
            _ok("setUnbondingPeriod.ok");
            if (!valid) _violation("unbonding period out of range, below the lifetime or the risk horizon");
            unbondingPeriod = period;
        } catch {
            if (valid) _violation("setUnbondingPeriod rejected a period within bounds");
            else calls["setUnbondingPeriod.rejected"]++;
        }
    }

    /// @notice The escrow's governance changes the job lifetime (within the unbonding period, as
    /// JobEscrow.setParameters does): jobs posted so far keep theirs, recorded as the earlier horizon.
    function setLifetime(uint256 newLifetime) external {
        _sync();
        calls["setLifetime"]++;
        newLifetime = bound(newLifetime, 1, unbondingPeriod);
        uint256 horizon = currentTime + lifetime;
        if (horizon > earlierJobsHorizon) earlierJobsHorizon = horizon;
        lifetime = newLifetime;
    }

    // ---------------------------------------------------------------- as the job escrow

    function lockForJob(uint256 actorSeed, uint256 amount, uint256 minStake) external {
        _sync();
        calls["lockForJob"]++;
        address who = actors[actorSeed % N];
        // Mostly an executor with free stake.
        for (uint256 k = 0; k < N && _mix(actorSeed) % 8 != 0; ++k) {
            StakeModel storage c = _model[actors[(actorSeed % N + k) % N]][IStaking.Role.Executor];
            if (_free(c) != 0) {
                who = actors[(actorSeed % N + k) % N];
                break;
            }
        }
        StakeModel storage m = _model[who][IStaking.Role.Executor];
        uint256 free = _free(m);
        amount = amount % 4 == 0 ? bound(amount >> 2, 0, m.staked + 1) : bound(amount >> 2, 0, free);
        minStake = minStake % 8 == 0 ? bound(minStake >> 3, 0, 100e6) : bound(minStake >> 3, 0, m.staked);
        // Now and then a model the executor does not serve.
        bytes32 model_ = (_mix(actorSeed) >> 3) % 16 == 0 ? keccak256("unserved") : modelId;
        bool valid = model_ == modelId && m.staked >= minStake && amount <= free;
        uint256 jobId = _nextJobId++;
        try staking.lockForJob(who, jobId, model_, minStake, amount) returns (IStaking.Price memory price) {
            _ok("lockForJob.ok");
            if (!valid) {
                _violation("locked for an unserved model, below the minimum stake or over the free stake");
            }
            if (price.inputPerMillion != 1 || price.outputPerMillion != 1) {
                _violation("lock returned wrong prices");
            }
            _locks.push(Lock(who, jobId, amount, true, _locks.length + 1));
            m.locked += amount;
        } catch {
            if (valid) _violation("could not lock free stake");
        }
    }

    /// @notice Releases a lock (a finished job, paid or not); a slash's deficit stays with the other locks.
    function releaseCollateral(uint256 lockSeed, uint256 payment) external {
        _sync();
        if (_locks.length == 0) return;
        calls["releaseCollateral"]++;
        Lock storage l = _pickOpen(lockSeed);
        if (!l.open) return;
        StakeModel storage m = _model[l.executor][IStaking.Role.Executor];
        if (m.locked > m.staked) calls["releaseCollateral.deficit"]++;
        payment = payment % 4 == 0 ? 0 : payment;
        try staking.releaseCollateral(l.executor, l.jobId, l.amount, payment) {
            _ok("releaseCollateral.ok");
            l.open = false;
            m.locked -= l.amount;
            if (payment != 0) m.completed++; // only paid jobs build reputation
            _checkModel(l.executor, IStaking.Role.Executor, "release moved a wrong amount");
        } catch {
            _violation("could not release open collateral");
        }
    }

    /// @notice Seizes a lock: all of it, less the deficit a slash into the stake behind open locks left.
    function seizeCollateral(uint256 lockSeed, bool disputeLost) external {
        _sync();
        if (_locks.length == 0) return;
        calls["seizeCollateral"]++;
        Lock storage l = _pickOpen(lockSeed);
        if (!l.open) return;
        StakeModel storage m = _model[l.executor][IStaking.Role.Executor];
        uint256 deficit = m.locked > m.staked ? m.locked - m.staked : 0;
        uint256 seized = l.amount > deficit ? l.amount - deficit : 0;
        if (deficit != 0) calls["seizeCollateral.deficit"]++;
        uint256 sinkBefore = token.balanceOf(sink);
        IStaking.Fault fault = disputeLost ? IStaking.Fault.DisputeLost : IStaking.Fault.NoShow;
        try staking.seizeCollateral(l.executor, l.jobId, l.amount, fault, sink) {
            _ok("seizeCollateral.ok");
            l.open = false;
            m.locked -= l.amount;
            m.staked -= seized;
            if (disputeLost) disputesLost[l.executor]++;
            else m.expired++;
            ghostSeized += seized;
            if (token.balanceOf(sink) != sinkBefore + seized) _violation("seized tokens not delivered");
            _checkModel(l.executor, IStaking.Role.Executor, "seize moved a wrong amount");
        } catch {
            _violation("could not seize open collateral");
        }
    }

    // ---------------------------------------------------------------- as the dispute contract

    /// @notice Free stake first, then unbonding stake, then the stake behind open locks (which stay counted
    /// in `locked`: the difference is a deficit).
    function slash(uint256 actorSeed, bool validator, uint256 amount) external {
        _sync();
        calls["slash"]++;
        address who = actors[actorSeed % N];
        // Mostly an executor with stake locked in jobs.
        if (_mix(actorSeed) % 4 != 0) {
            validator = false;
            for (uint256 j = 0; j < N; ++j) {
                if (_model[actors[(actorSeed % N + j) % N]][IStaking.Role.Executor].locked != 0) {
                    who = actors[(actorSeed % N + j) % N];
                    break;
                }
            }
        }
        IStaking.Role role = _role(validator);
        StakeModel storage m = _model[who][role];
        uint256 unlocked = _free(m) + m.pending;
        uint256 total = m.staked + m.pending;
        // A small slash, one that reaches into locked stake, one well over the whole stake.
        uint256 k = amount % 8;
        amount = k < 3
            ? bound(amount >> 3, unlocked + 1, total + 1)
            : k == 2 ? bound(amount >> 3, 0, 2 * total + 1) : bound(amount >> 3, 0, total / 8 + 1);
        uint256 fromFree = _min(amount, _free(m));
        uint256 fromUnbonding = _min(amount - fromFree, m.pending);
        uint256 fromLocked = _min(amount - fromFree - fromUnbonding, m.staked - fromFree);
        uint256 sinkBefore = token.balanceOf(sink);
        try staking.slash(who, role, amount, sink) returns (uint256 slashed) {
            _ok("slash.ok");
            if (slashed != fromFree + fromUnbonding + fromLocked) {
                _violation("slash did not take free, then unbonding, then locked stake");
            }
            if (token.balanceOf(sink) != sinkBefore + slashed) _violation("slash not delivered");
            m.staked -= fromFree + fromLocked;
            m.pending -= fromUnbonding;
            if (fromLocked != 0) {
                _ok("slash.locked.ok");
                m.lockedSlashSeq = _locks.length;
            }
            ghostSlashed += slashed;
            _checkModel(who, role, "slash moved a wrong amount");
        } catch {
            _violation("slash reverted");
        }
    }

    // ---------------------------------------------------------------- outsiders

    /// @notice A staker, a stranger or the owner calling the protocol-only functions, or anyone but the
    /// owner calling the owner-only ones, or the owner rewiring: must always revert.
    function unauthorised(uint256 actorSeed, uint256 op, uint256 amount) external {
        _sync();
        calls["unauthorised"]++;
        op = uint256(keccak256(abi.encode(op))) % 7;
        // Owner-only functions are called by anyone but the owner; the others by the owner too.
        uint256 c = actorSeed % 6;
        address caller = c < N ? actors[c] : c == N ? (op >= 4 ? sink : governance) : address(token);
        address target = actors[(actorSeed / 6) % N];
        amount = bound(amount, 1, 1e6);
        bool ok;
        vm.prank(caller);
        if (op == 0) {
            try staking.lockForJob(target, 0, modelId, 0, amount) {
                ok = true;
            } catch {}
        } else if (op == 1) {
            try staking.releaseCollateral(target, 0, amount, 1) {
                ok = true;
            } catch {}
        } else if (op == 2) {
            try staking.seizeCollateral(target, 0, amount, IStaking.Fault.NoShow, caller) {
                ok = true;
            } catch {}
        } else if (op == 3) {
            try staking.slash(target, IStaking.Role.Executor, amount, caller) {
                ok = true;
            } catch {}
        } else if (op == 4) {
            try staking.setUnbondingPeriod(unbondingPeriod) {
                ok = true;
            } catch {}
        } else if (op == 5) {
            try staking.setJobEscrow(address(this)) {
                ok = true;
            } catch {}
        } else {
            try staking.setDisputes(address(this)) {
                ok = true;
            } catch {}
        }
        if (ok) _violation("an outsider called a protocol-only or owner-only function");
        else _ok("unauthorised.reverted");
    }

    // ---------------------------------------------------------------- internals

    /// @dev Counts a success, and every success together (the per-run floor of `Coverage`).
    function _ok(bytes32 key) internal {
        calls[key]++;
        calls["any.ok"]++;
    }

    function _checkModel(address who, IStaking.Role role, string memory what) internal {
        StakeModel storage m = _model[who][role];
        IStaking.StakeInfo memory info = staking.stakeOf(who, role);
        if (info.staked != m.staked || info.locked != m.locked) _violation(what);
    }

    function _sync() internal {
        calls["steps"]++;
        vm.warp(currentTime);
    }

    function _warpTo(uint256 timestamp) internal {
        if (timestamp <= currentTime) return;
        currentTime = timestamp;
        vm.warp(timestamp);
    }

    /// @dev Mostly an account (and role) with free stake, or with something unbonding when `unbonding`;
    /// sometimes any.
    function _pickStaker(uint256 seed, bool validator, bool unbonding)
        internal
        view
        returns (address who, IStaking.Role role)
    {
        uint256 start = seed % N;
        role = _role(validator);
        who = actors[start];
        if (uint256(keccak256(abi.encode(seed))) % 4 == 0) return (who, role);
        for (uint256 k = 0; k < 2 * N; ++k) {
            address candidate = actors[(start + k) % N];
            IStaking.Role r = k < N ? role : _role(!validator);
            StakeModel storage m = _model[candidate][r];
            bool has = unbonding ? m.pending != 0 : _free(m) != 0;
            if (has) return (candidate, r);
        }
    }

    function _role(bool validator) internal pure returns (IStaking.Role) {
        return validator ? IStaking.Role.Validator : IStaking.Role.Executor;
    }

    /// @dev An open lock; half the time one of an executor with a deficit (a slash reached behind its open
    /// locks), so that releases and seizures meet one.
    function _pickOpen(uint256 seed) internal view returns (Lock storage) {
        uint256 len = _locks.length;
        uint256 start = seed % len;
        for (uint256 k = 0; k < len && _mix(seed) % 2 == 0; ++k) {
            Lock storage l = _locks[(start + k) % len];
            StakeModel storage m = _model[l.executor][IStaking.Role.Executor];
            if (l.open && m.locked > m.staked) return l;
        }
        for (uint256 k = 0; k < len; ++k) {
            Lock storage l = _locks[(start + k) % len];
            if (l.open) return l;
        }
        return _locks[start];
    }

    /// @dev Mode bits from a fuzzed value, which is often small (its high bits zero).
    function _mix(uint256 x) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(x, "mix")));
    }

    function _free(StakeModel storage m) internal view returns (uint256) {
        return m.staked > m.locked ? m.staked - m.locked : 0;
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    function _violation(string memory what) internal {
        ghostViolations++;
        lastViolation = what;
    }
}
