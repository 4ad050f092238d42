// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {IJobEscrow} from "./interfaces/IJobEscrow.sol";
import {IDisputes} from "./interfaces/IDisputes.sol";
import {TokenTransfers} from "./libraries/TokenTransfers.sol";

/// @title Staking
/// @notice Executor and validator stake (see IStaking). Token balance of this contract always equals
/// the sum of every account's bonded and unbonding stake.
contract Staking is IStaking, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using TokenTransfers for IERC20;

    /// @notice Longest unbonding period governance may set.
    uint256 public constant MAX_UNBONDING_PERIOD = 90 days;
    /// @notice Longest endpoint or hardware string an executor may publish.
    uint256 public constant MAX_PROFILE_LENGTH = 256;

    IERC20 public immutable token;
    IModelRegistry public immutable registry;

    /// @notice The job escrow: the only contract that locks, releases and seizes collateral.
    address public jobEscrow;
    /// @notice The dispute contract: the only contract that slashes stake.
    address public disputes;
    /// @inheritdoc IStaking
    uint256 public unbondingPeriod;

    mapping(address account => mapping(Role => StakeInfo)) private _stakes;
    mapping(address account => mapping(Role => Unbonding)) private _unbonding;
    mapping(address executor => mapping(bytes32 modelId => Price)) private _prices;
    mapping(address executor => ExecutorProfile) private _profiles;

    /// @inheritdoc IStaking
    uint256 public totalValidatorStake;
    /// @dev Every account that ever staked as a validator, in order; `_validatorIndex` is 1-based.
    address[] private _validators;
    mapping(address validator => uint256) private _validatorIndex;
    /// @dev Fenwick tree over the validators' bonded stake (1-based): node i sums the stake of validators
    /// (i - lowbit(i), i]. Draws and updates are O(log n).
    mapping(uint256 node => uint256) private _tree;

    modifier only(address authorised) {
        if (msg.sender != authorised || authorised == address(0)) revert Unauthorized(msg.sender);
        _;
    }

    /// @param initialUnbondingPeriod Must be at least the job escrow's longest job lifetime once wired.
    constructor(IERC20 token_, IModelRegistry registry_, address governance, uint256 initialUnbondingPeriod)
        Ownable(governance)
    {
        token = token_;
        registry = registry_;
        _setUnbondingPeriod(initialUnbondingPeriod, 0);
    }

    // ---------------------------------------------------------------- stakers

    /// @inheritdoc IStaking
    function stake(Role role, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        StakeInfo storage info = _stakes[msg.sender][role];
        info.staked = (uint256(info.staked) + amount).toUint96();
        if (role == Role.Validator) {
            _requireNoPendingDraw();
            _addValidatorStake(msg.sender, amount);
        }
        token.pullExact(msg.sender, amount);
        emit Staked(msg.sender, role, amount);
    }

    /// @inheritdoc IStaking
    function requestUnstake(Role role, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        StakeInfo storage info = _stakes[msg.sender][role];
        uint256 free = _free(info);
        if (amount > free) revert InsufficientFreeStake(free, amount);
        info.staked -= amount.toUint96();
        if (role == Role.Validator) {
            _requireNoPendingDraw();
            _subValidatorStake(msg.sender, amount);
        }

        Unbonding storage pending = _unbonding[msg.sender][role];
        uint256 releaseAt = block.timestamp + unbondingPeriod;
        pending.amount += amount.toUint96();
        pending.releaseAt = releaseAt.toUint40();
        emit UnstakeRequested(msg.sender, role, amount, releaseAt);
    }

    /// @inheritdoc IStaking
    function withdraw(Role role) external nonReentrant {
        Unbonding memory pending = _unbonding[msg.sender][role];
        if (pending.amount == 0) revert NothingToWithdraw();
        if (block.timestamp < pending.releaseAt) revert StillUnbonding(pending.releaseAt);
        delete _unbonding[msg.sender][role];
        token.safeTransfer(msg.sender, pending.amount);
        emit Withdrawn(msg.sender, role, pending.amount);
    }

    /// @inheritdoc IStaking
    function registerExecutor(string calldata endpoint, string calldata hardware) external {
        if (
            bytes(endpoint).length == 0 || bytes(endpoint).length > MAX_PROFILE_LENGTH
                || bytes(hardware).length > MAX_PROFILE_LENGTH
        ) revert InvalidProfile();
        ExecutorProfile storage profile = _profiles[msg.sender];
        profile.registered = true;
        profile.endpoint = endpoint;
        profile.hardware = hardware;
        emit ExecutorRegistered(msg.sender, endpoint, hardware);
    }

    /// @inheritdoc IStaking
    function setPrice(bytes32 modelId, uint64 inputPerMillion, uint64 outputPerMillion) external {
        if (!_profiles[msg.sender].registered) revert NotRegistered(msg.sender);
        registry.terms(modelId); // reverts for an unknown model
        _prices[msg.sender][modelId] = Price(true, inputPerMillion, outputPerMillion);
        emit PriceSet(msg.sender, modelId, inputPerMillion, outputPerMillion);
    }

    /// @inheritdoc IStaking
    function removeModel(bytes32 modelId) external {
        if (!_prices[msg.sender][modelId].active) revert NotServing(msg.sender, modelId);
        delete _prices[msg.sender][modelId];
        emit ModelRemoved(msg.sender, modelId);
    }

    // ---------------------------------------------------------------- protocol contracts

    /// @inheritdoc IStaking
    function lockForJob(
        address executor,
        uint256, /* jobId */
        bytes32 modelId,
        uint256 minStake,
        uint256 collateral
    )
        external
        only(jobEscrow)
        returns (Price memory price)
    {
        price = _prices[executor][modelId];
        if (!price.active) revert NotServing(executor, modelId);
        StakeInfo storage info = _stakes[executor][Role.Executor];
        uint256 staked = info.staked;
        if (staked < minStake) revert StakeBelowModelMinimum(staked, minStake);
        uint256 free = _free(info);
        if (collateral > free) revert InsufficientFreeStake(free, collateral);
        info.locked += collateral.toUint96();
    }

    /// @inheritdoc IStaking
    function releaseCollateral(
        address executor,
        uint256,
        /* jobId */
        uint256 amount,
        uint256 payment
    )
        external
        only(jobEscrow)
    {
        StakeInfo storage info = _stakes[executor][Role.Executor];
        info.locked -= amount.toUint96();
        // Only paid jobs build reputation: a job that bills nothing feeds no validator fee either.
        if (payment != 0) info.jobsCompleted += 1;
    }

    /// @inheritdoc IStaking
    function seizeCollateral(address executor, uint256 jobId, uint256 amount, Fault fault, address to)
        external
        only(jobEscrow)
        nonReentrant
    {
        StakeInfo storage info = _stakes[executor][Role.Executor];
        // A slash that reached locked stake left a deficit (locked > staked): that part of the
        // collateral is gone already, so the job forfeits only the rest and the deficit shrinks.
        uint256 locked = info.locked;
        uint256 staked = info.staked;
        uint256 deficit = locked > staked ? locked - staked : 0;
        uint96 seized = (amount > deficit ? amount - deficit : 0).toUint96();
        info.locked = (locked - amount).toUint96();
        info.staked = (staked - seized).toUint96();
        if (fault == Fault.NoShow) {
            info.jobsExpired += 1;
        } else {
            _profiles[executor].disputesLost += 1;
        }
        if (seized != 0) token.safeTransfer(to, seized);
        emit CollateralSeized(executor, jobId, seized, fault, to);
    }

    /// @inheritdoc IStaking
    function slash(address account, Role role, uint256 amount, address to)
        external
        only(disputes)
        nonReentrant
        returns (uint256 slashed)
    {
        // Free stake first, then unbonding stake, then the stake behind open jobs: locking stake in
        // jobs (one's own included) never hides it from a slash. `locked` keeps counting the open jobs'
        // collateral, so what a slash took from it is a deficit (locked > staked) that new jobs and
        // unstaking must cover first and that the jobs' release or seizure absorbs.
        StakeInfo storage info = _stakes[account][role];
        uint256 fromFree = Math.min(amount, _free(info));
        info.staked -= fromFree.toUint96();

        Unbonding storage pending = _unbonding[account][role];
        uint256 fromUnbonding = Math.min(amount - fromFree, pending.amount);
        pending.amount -= fromUnbonding.toUint96();

        uint256 fromLocked = Math.min(amount - fromFree - fromUnbonding, info.staked);
        info.staked -= fromLocked.toUint96();

        slashed = fromFree + fromUnbonding + fromLocked;
        if (role == Role.Validator) _subValidatorStake(account, fromFree + fromLocked);
        if (slashed != 0) token.safeTransfer(to, slashed);
        emit Slashed(account, role, slashed, to);
    }

    /// @inheritdoc IStaking
    function lockStake(address validator, uint256 amount) external only(disputes) {
        StakeInfo storage info = _stakes[validator][Role.Validator];
        uint256 free = _free(info);
        if (amount > free) revert InsufficientFreeStake(free, amount);
        info.locked += amount.toUint96();
        emit StakeLocked(validator, amount);
    }

    /// @inheritdoc IStaking
    function unlockStake(address validator, uint256 amount) external only(disputes) {
        _stakes[validator][Role.Validator].locked -= amount.toUint96();
        emit StakeUnlocked(validator, amount);
    }

    // ---------------------------------------------------------------- governance

    /// @inheritdoc IStaking
    function setJobEscrow(address jobEscrow_) external onlyOwner {
        if (jobEscrow != address(0) || jobEscrow_.code.length == 0) {
            revert InvalidProtocolContract(jobEscrow_);
        }
        IJobEscrow escrow = IJobEscrow(jobEscrow_);
        // Wired to the same token, this staking and this registry, or not at all.
        if (escrow.token() != token || escrow.staking() != this || escrow.registry() != registry) {
            revert InvalidProtocolContract(jobEscrow_);
        }
        uint256 lifetime = IJobEscrow(jobEscrow_).maxJobLifetime();
        if (unbondingPeriod < lifetime) {
            revert UnbondingPeriodOutOfBounds(unbondingPeriod, lifetime, MAX_UNBONDING_PERIOD);
        }
        jobEscrow = jobEscrow_;
        emit JobEscrowSet(jobEscrow_);
    }

    /// @inheritdoc IStaking
    function setDisputes(address disputes_) external onlyOwner {
        if (disputes != address(0) || disputes_.code.length == 0) revert InvalidProtocolContract(disputes_);
        disputes = disputes_;
        emit DisputesSet(disputes_);
    }

    /// @inheritdoc IStaking
    function setUnbondingPeriod(uint256 period) external onlyOwner {
        // Stake that starts unbonding now must stay slashable until every job posted so far (which keep
        // the windows they snapshotted) and every job posted from now on can no longer be disputed.
        // Likewise every open dispute's jurors and the collateral it judges, until its last deadline.
        uint256 horizon = jobEscrow == address(0) ? 0 : IJobEscrow(jobEscrow).riskHorizon();
        uint256 disputesHorizon = disputes == address(0) ? 0 : IDisputes(disputes).riskHorizon();
        if (disputesHorizon > horizon) horizon = disputesHorizon;
        _setUnbondingPeriod(period, horizon > block.timestamp ? horizon - block.timestamp : 0);
    }

    /// @dev Stake that backs no open job: zero while a slash's deficit (locked > staked) is uncovered.
    function _free(StakeInfo storage info) private view returns (uint256) {
        uint256 staked = info.staked;
        uint256 locked = info.locked;
        return staked > locked ? staked - locked : 0;
    }

    /// @dev The draw's weights are fixed from a challenge until its jury is drawn: otherwise a validator
    /// could move them after seeing the randomness.
    function _requireNoPendingDraw() private view {
        address disputes_ = disputes;
        if (disputes_ != address(0) && IDisputes(disputes_).pendingDraws() != 0) revert DrawPending();
    }

    /// @dev Adds `amount` to a validator's weight in the draw, appending it to the tree on its first stake.
    function _addValidatorStake(address validator, uint256 amount) private {
        totalValidatorStake += amount;
        uint256 index = _validatorIndex[validator];
        uint256 count = _validators.length;
        if (index == 0) {
            _validators.push(validator);
            index = count + 1;
            _validatorIndex[validator] = index;
            // A new last node sums its own stake and its children's: (index - lowbit(index), index - 1].
            uint256 node = amount;
            uint256 low = index & (~index + 1);
            for (uint256 step = 1; step < low; step <<= 1) {
                node += _tree[index - step];
            }
            _tree[index] = node;
            return;
        }
        for (uint256 i = index; i <= count; i += i & (~i + 1)) {
            _tree[i] += amount;
        }
    }

    /// @dev Takes `amount` off a validator's weight in the draw.
    function _subValidatorStake(address validator, uint256 amount) private {
        if (amount == 0) return;
        totalValidatorStake -= amount;
        uint256 count = _validators.length;
        for (uint256 i = _validatorIndex[validator]; i <= count; i += i & (~i + 1)) {
            _tree[i] -= amount;
        }
    }

    function _setUnbondingPeriod(uint256 period, uint256 minPeriod) private {
        if (period < minPeriod || period == 0 || period > MAX_UNBONDING_PERIOD) {
            revert UnbondingPeriodOutOfBounds(period, minPeriod, MAX_UNBONDING_PERIOD);
        }
        unbondingPeriod = period;
        emit UnbondingPeriodSet(period);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IStaking
    function stakeOf(address account, Role role) external view returns (StakeInfo memory) {
        return _stakes[account][role];
    }

    /// @inheritdoc IStaking
    function unbondingOf(address account, Role role) external view returns (Unbonding memory) {
        return _unbonding[account][role];
    }

    /// @inheritdoc IStaking
    function freeStake(address account, Role role) external view returns (uint256) {
        return _free(_stakes[account][role]);
    }

    /// @inheritdoc IStaking
    function validatorAt(uint256 point) external view returns (address) {
        if (point >= totalValidatorStake) revert DrawOutOfRange(point, totalValidatorStake);
        uint256 count = _validators.length;
        uint256 pos;
        for (uint256 mask = 2 ** Math.log2(count); mask != 0; mask >>= 1) {
            uint256 next = pos + mask;
            if (next <= count) {
                uint256 sum = _tree[next];
                if (sum <= point) {
                    pos = next;
                    point -= sum;
                }
            }
        }
        return _validators[pos];
    }

    /// @inheritdoc IStaking
    function validatorRange(address validator) external view returns (uint256 start, uint256 weight) {
        uint256 index = _validatorIndex[validator];
        if (index == 0) return (0, 0);
        for (uint256 i = index - 1; i != 0; i -= i & (~i + 1)) {
            start += _tree[i];
        }
        // A validator's weight in the tree is its bonded validator stake (every change moves both).
        weight = _stakes[validator][Role.Validator].staked;
    }

    /// @inheritdoc IStaking
    function validatorCount() external view returns (uint256) {
        return _validators.length;
    }

    /// @inheritdoc IStaking
    function priceOf(address executor, bytes32 modelId) external view returns (Price memory) {
        return _prices[executor][modelId];
    }

    /// @inheritdoc IStaking
    function executorProfile(address executor) external view returns (ExecutorProfile memory) {
        return _profiles[executor];
    }
}
