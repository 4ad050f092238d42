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

/// @notice Drives Staking directly. The handler itself is wired as both the job escrow (it offers
/// `maxJobLifetime()`) and the dispute contract, so it can lock, release and seize collateral and slash.
contract StakingHandler {
    struct Lock {
        address executor;
        uint256 jobId;
        uint256 amount;
        bool open;
    }

    uint256 public constant N = 4;
    uint64 internal constant START = 1_700_000_000;
    uint256 internal constant LIFETIME = 1 days;

    MockSettlementToken public token;
    ModelRegistry public registry;
    Staking public staking;
    bytes32 public modelId;
    address public governance = address(0x60F);
    address public sink = address(0x5111C);
    address[N] public actors;

    Lock[] internal _locks;
    uint256 internal _nextJobId = 1;

    // ---------------------------------------------------------------- ghosts
    uint256 public currentTime;
    uint256 public ghostStakedIn;
    uint256 public ghostWithdrawn;
    uint256 public ghostSlashed;
    uint256 public ghostSeized;
    mapping(address => uint256) public ghostLocked;
    /// @notice Calls that succeeded although no rule allows them (must stay 0); `lastViolation` says which.
    uint256 public ghostViolations;
    string public lastViolation;
    mapping(bytes32 => uint256) public calls;

    constructor() {
        vm.warp(START);
        currentTime = START;
        token = new MockSettlementToken();
        registry = new ModelRegistry(governance);
        staking = new Staking(IERC20(address(token)), registry, governance, 2 days);
        vm.startPrank(governance);
        modelId = registry.registerModel(
            IModelRegistry.Model({
                name: "staking-invariant-model",
                weightsSha256: keccak256("weights"),
                tokenizerHash: keccak256("tokenizer"),
                terms: IModelRegistry.ModelTerms({
                    active: true, samplerVersion: 1, maxContext: 8192, auditRatePpm: 0, minExecutorStake: 1e6,
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

    /// @notice What Staking reads from the contract wired as its job escrow.
    function maxJobLifetime() external pure returns (uint256) {
        return LIFETIME;
    }

    function actorList() external view returns (address[] memory list) {
        list = new address[](N);
        for (uint256 i = 0; i < N; ++i) {
            list[i] = actors[i];
        }
    }

    function lockCount() external view returns (uint256) {
        return _locks.length;
    }

    function lockAt(uint256 i) external view returns (address executor, uint256 amount, bool open) {
        Lock storage l = _locks[i];
        return (l.executor, l.amount, l.open);
    }

    // ---------------------------------------------------------------- stakers

    function stake(uint256 actorSeed, bool validator, uint256 amount) external {
        _sync();
        calls["stake"]++;
        address who = actors[actorSeed % N];
        amount = bound(amount, 0, 50e6);
        token.mint(who, amount);
        vm.prank(who);
        try staking.stake(_role(validator), amount) {
            calls["stake.ok"]++;
            if (amount == 0) _violation("staked zero");
            ghostStakedIn += amount;
        } catch {}
    }

    function requestUnstake(uint256 actorSeed, bool validator, uint256 amount) external {
        _sync();
        calls["requestUnstake"]++;
        (address who, IStaking.Role role) = _pickStaker(actorSeed, validator, false);
        IStaking.StakeInfo memory info = staking.stakeOf(who, role);
        IStaking.Unbonding memory pending = staking.unbondingOf(who, role);
        uint256 free = uint256(info.staked) - info.locked;
        // Mostly within the free stake, sometimes beyond it (must revert).
        amount = amount % 4 == 0
            ? bound(amount >> 2, 0, uint256(info.staked) + 1)
            : bound(amount >> 2, 1, free + 1);
        vm.prank(who);
        try staking.requestUnstake(role, amount) {
            calls["requestUnstake.ok"]++;
            if (amount > free) _violation("unstaked more than the free stake");
            IStaking.StakeInfo memory afterInfo = staking.stakeOf(who, role);
            IStaking.Unbonding memory afterPending = staking.unbondingOf(who, role);
            if (afterInfo.locked != info.locked) _violation("unstake touched locked stake");
            if (afterInfo.staked + amount != info.staked) _violation("unstake moved a wrong amount");
            if (afterPending.amount != pending.amount + amount) _violation("unbonding amount wrong");
            if (afterPending.releaseAt != block.timestamp + staking.unbondingPeriod()) {
                _violation("releaseAt wrong");
            }
        } catch {}
    }

    function withdraw(uint256 actorSeed, bool validator) external {
        _sync();
        calls["withdraw"]++;
        (address who, IStaking.Role role) = _pickStaker(actorSeed, validator, true);
        IStaking.Unbonding memory pending = staking.unbondingOf(who, role);
        IStaking.StakeInfo memory info = staking.stakeOf(who, role);
        // Half the time, wait for the release first.
        if (actorSeed % 2 == 0) _warpTo(pending.releaseAt);
        uint256 balanceBefore = token.balanceOf(who);
        vm.prank(who);
        try staking.withdraw(role) {
            calls["withdraw.ok"]++;
            if (block.timestamp < pending.releaseAt) _violation("withdrew before release");
            if (token.balanceOf(who) != balanceBefore + pending.amount) {
                _violation("withdrew a wrong amount");
            }
            IStaking.StakeInfo memory afterInfo = staking.stakeOf(who, role);
            if (afterInfo.staked != info.staked || afterInfo.locked != info.locked) {
                _violation("withdraw touched bonded stake");
            }
            if (afterInfo.staked < afterInfo.locked) _violation("staked < locked after withdraw");
            ghostWithdrawn += pending.amount;
        } catch {}
    }

    function warp(uint256 seconds_) external {
        calls["warp"]++;
        currentTime += seconds_ % 4 == 0 ? bound(seconds_ >> 2, 1, 4 days) : bound(seconds_ >> 2, 1, 6 hours);
        vm.warp(currentTime);
    }

    function setUnbondingPeriod(uint256 period) external {
        _sync();
        calls["setUnbondingPeriod"]++;
        period = bound(period, LIFETIME - 1, 4 days);
        vm.prank(governance);
        try staking.setUnbondingPeriod(period) {
            if (period < LIFETIME) _violation("unbonding below the job lifetime");
        } catch {}
    }

    // ---------------------------------------------------------------- as the job escrow

    function lockForJob(uint256 actorSeed, uint256 amount, uint256 minStake) external {
        _sync();
        calls["lockForJob"]++;
        (address who,) = _pickStaker(actorSeed, false, false);
        IStaking.StakeInfo memory info = staking.stakeOf(who, IStaking.Role.Executor);
        uint256 free = uint256(info.staked) - info.locked;
        amount =
            amount % 4 == 0 ? bound(amount >> 2, 0, uint256(info.staked) + 1) : bound(amount >> 2, 0, free);
        minStake = bound(minStake, 0, 2e6);
        uint256 jobId = _nextJobId++;
        try staking.lockForJob(who, jobId, modelId, minStake, amount) {
            calls["lockForJob.ok"]++;
            if (amount > free) _violation("locked more than the free stake");
            if (info.staked < minStake) _violation("locked below the minimum stake");
            if (staking.stakeOf(who, IStaking.Role.Executor).locked != info.locked + amount) {
                _violation("locked a wrong amount");
            }
            _locks.push(Lock(who, jobId, amount, true));
            ghostLocked[who] += amount;
        } catch {}
    }

    function releaseCollateral(uint256 lockSeed) external {
        _sync();
        if (_locks.length == 0) return;
        calls["releaseCollateral"]++;
        Lock storage l = _pickOpen(lockSeed);
        if (!l.open) return;
        IStaking.StakeInfo memory info = staking.stakeOf(l.executor, IStaking.Role.Executor);
        try staking.releaseCollateral(l.executor, l.jobId, l.amount) {
            calls["releaseCollateral.ok"]++;
            IStaking.StakeInfo memory afterInfo = staking.stakeOf(l.executor, IStaking.Role.Executor);
            if (afterInfo.staked != info.staked || afterInfo.locked + l.amount != info.locked) {
                _violation("release moved a wrong amount");
            }
            l.open = false;
            ghostLocked[l.executor] -= l.amount;
        } catch {
            _violation("could not release open collateral");
        }
    }

    function seizeCollateral(uint256 lockSeed, bool disputeLost) external {
        _sync();
        if (_locks.length == 0) return;
        calls["seizeCollateral"]++;
        Lock storage l = _pickOpen(lockSeed);
        if (!l.open) return;
        IStaking.StakeInfo memory info = staking.stakeOf(l.executor, IStaking.Role.Executor);
        uint256 sinkBefore = token.balanceOf(sink);
        IStaking.Fault fault = disputeLost ? IStaking.Fault.DisputeLost : IStaking.Fault.NoShow;
        try staking.seizeCollateral(l.executor, l.jobId, l.amount, fault, sink) {
            calls["seizeCollateral.ok"]++;
            IStaking.StakeInfo memory afterInfo = staking.stakeOf(l.executor, IStaking.Role.Executor);
            if (afterInfo.staked + l.amount != info.staked || afterInfo.locked + l.amount != info.locked) {
                _violation("seize moved a wrong amount");
            }
            if (l.amount > info.staked) _violation("seized more than the stake");
            if (token.balanceOf(sink) != sinkBefore + l.amount) _violation("seized tokens not delivered");
            l.open = false;
            ghostLocked[l.executor] -= l.amount;
            ghostSeized += l.amount;
        } catch {
            _violation("could not seize open collateral");
        }
    }

    // ---------------------------------------------------------------- as the dispute contract

    function slash(uint256 actorSeed, bool validator, uint256 amount) external {
        _sync();
        calls["slash"]++;
        address who = actors[actorSeed % N];
        IStaking.Role role = _role(validator);
        IStaking.StakeInfo memory info = staking.stakeOf(who, role);
        uint256 unbonding = staking.unbondingOf(who, role).amount;
        uint256 available = uint256(info.staked) - info.locked + unbonding;
        uint256 total = uint256(info.staked) + unbonding;
        // Mostly a small slash; sometimes one well over the stake.
        amount = amount % 4 == 0 ? bound(amount >> 2, 0, 2 * total + 1) : bound(amount >> 2, 0, total / 8 + 1);
        uint256 sinkBefore = token.balanceOf(sink);
        try staking.slash(who, role, amount, sink) returns (uint256 slashed) {
            calls["slash.ok"]++;
            if (slashed > amount || slashed > available) _violation("slashed more than the stake");
            if (slashed != (amount < available ? amount : available)) _violation("slashed a wrong amount");
            if (staking.stakeOf(who, role).locked != info.locked) _violation("slash touched locked stake");
            if (token.balanceOf(sink) != sinkBefore + slashed) _violation("slash not delivered");
            ghostSlashed += slashed;
        } catch {}
    }

    // ---------------------------------------------------------------- outsiders

    /// @notice A staker or stranger calling the protocol-only functions: must always revert.
    function unauthorised(uint256 actorSeed, uint256 op, uint256 amount) external {
        _sync();
        calls["unauthorised"]++;
        address caller = actorSeed % 5 == 4 ? governance : actors[actorSeed % N];
        address target = actors[(actorSeed / 5) % N];
        amount = bound(amount, 0, 1e6);
        bool ok;
        vm.prank(caller);
        if (op % 4 == 0) {
            try staking.lockForJob(target, 0, modelId, 0, amount) {
                ok = true;
            } catch {}
        } else if (op % 4 == 1) {
            try staking.releaseCollateral(target, 0, amount) {
                ok = true;
            } catch {}
        } else if (op % 4 == 2) {
            try staking.seizeCollateral(target, 0, amount, IStaking.Fault.NoShow, caller) {
                ok = true;
            } catch {}
        } else {
            try staking.slash(target, IStaking.Role.Executor, amount, caller) {
                ok = true;
            } catch {}
        }
        if (ok) _violation("an outsider called a protocol-only function");
    }

    // ---------------------------------------------------------------- internals

    function _sync() internal {
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
        if ((seed / N) % 4 == 0) return (who, role);
        for (uint256 k = 0; k < 2 * N; ++k) {
            address candidate = actors[(start + k) % N];
            IStaking.Role r = k < N ? role : _role(!validator);
            bool has = unbonding
                ? staking.unbondingOf(candidate, r).amount != 0
                : staking.freeStake(candidate, r) != 0;
            if (has) return (candidate, r);
        }
    }

    function _role(bool validator) internal pure returns (IStaking.Role) {
        return validator ? IStaking.Role.Validator : IStaking.Role.Executor;
    }

    function _pickOpen(uint256 seed) internal view returns (Lock storage) {
        uint256 len = _locks.length;
        uint256 start = seed % len;
        for (uint256 k = 0; k < len; ++k) {
            Lock storage l = _locks[(start + k) % len];
            if (l.open) return l;
        }
        return _locks[start];
    }

    function _violation(string memory what) internal {
        ghostViolations++;
        lastViolation = what;
    }
}
