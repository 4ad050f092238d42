// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IStaking
/// @notice Stake of executors and validators in the settlement token. Stake that backs open jobs is
/// locked and cannot leave; stake stays slashable while it unbonds. Only the protocol contracts wired
/// once at deployment (the job escrow and the dispute contract) can lock, seize or slash — never an
/// admin.
interface IStaking {
    /// @notice The two staking roles. An address may hold stake in both, kept apart.
    enum Role {
        Executor,
        Validator
    }

    /// @notice Why locked collateral was seized.
    enum Fault {
        NoShow,
        DisputeLost
    }

    /// @notice One account's stake in one role, packed in one slot.
    /// @param staked Bonded stake, including what backs open jobs.
    /// @param locked The collateral of the account's open jobs. At most `staked`, except after a slash
    /// reached it: the difference is a deficit that new jobs and unstaking must cover first.
    /// @param jobsCompleted Reputation: jobs finalized with a non-zero payment.
    /// @param jobsExpired Reputation: accepted jobs the executor let expire.
    struct StakeInfo {
        uint96 staked;
        uint96 locked;
        uint32 jobsCompleted;
        uint32 jobsExpired;
    }

    /// @notice Stake on its way out; still slashable until withdrawn.
    struct Unbonding {
        uint96 amount;
        uint40 releaseAt;
    }

    /// @notice An executor's prices for one model, in token base units per million tokens.
    struct Price {
        bool active;
        uint64 inputPerMillion;
        uint64 outputPerMillion;
    }

    /// @notice What an executor publishes about itself.
    struct ExecutorProfile {
        bool registered;
        uint32 disputesLost;
        string endpoint;
        string hardware;
    }

    error ZeroAmount();
    /// @notice Not enough free (unlocked) stake for the operation.
    error InsufficientFreeStake(uint256 available, uint256 required);
    error NothingToWithdraw();
    error StillUnbonding(uint256 releaseAt);
    error NotRegistered(address executor);
    error UnknownModel(bytes32 modelId);
    error NotServing(address executor, bytes32 modelId);
    error StakeBelowModelMinimum(uint256 staked, uint256 minimum);
    /// @notice The caller is not the protocol contract allowed to call this function.
    error Unauthorized(address caller);
    /// @notice A protocol contract address was already wired or is not a contract.
    error InvalidProtocolContract(address account);
    error UnbondingPeriodOutOfBounds(uint256 period, uint256 min, uint256 max);
    error InvalidProfile();
    /// @notice Validator stake cannot change while a jury draw is pending (`IDisputes.pendingDraws`).
    error DrawPending();
    /// @notice A draw's point is not below the total validator stake.
    error DrawOutOfRange(uint256 point, uint256 total);

    event Staked(address indexed account, Role indexed role, uint256 amount);
    event UnstakeRequested(address indexed account, Role indexed role, uint256 amount, uint256 releaseAt);
    event Withdrawn(address indexed account, Role indexed role, uint256 amount);
    event ExecutorRegistered(address indexed executor, string endpoint, string hardware);
    event PriceSet(
        address indexed executor, bytes32 indexed modelId, uint64 inputPerMillion, uint64 outputPerMillion
    );
    event ModelRemoved(address indexed executor, bytes32 indexed modelId);
    event CollateralSeized(
        address indexed executor, uint256 indexed jobId, uint256 amount, Fault fault, address to
    );
    event Slashed(address indexed account, Role indexed role, uint256 amount, address to);
    event JobEscrowSet(address jobEscrow);
    event DisputesSet(address disputes);
    event UnbondingPeriodSet(uint256 period);
    /// @notice Validator stake locked behind a jury seat (until the dispute is resolved).
    event StakeLocked(address indexed account, uint256 amount);
    event StakeUnlocked(address indexed account, uint256 amount);

    // ---------------------------------------------------------------- stakers

    /// @notice Bonds `amount` of the settlement token in `role`. Needs an allowance. Validator stake cannot
    /// change while a jury draw is pending (`DrawPending`), nor be requested for unstaking.
    function stake(Role role, uint256 amount) external;

    /// @notice Starts unbonding `amount` of free stake; it can be withdrawn after the unbonding period
    /// and stays slashable until then. A second request adds to the first and restarts the clock.
    function requestUnstake(Role role, uint256 amount) external;

    /// @notice Withdraws all stake whose unbonding period has passed.
    function withdraw(Role role) external;

    /// @notice Registers or updates the caller as an executor.
    /// @param endpoint URL the gateway reaches the executor at.
    /// @param hardware Free-form hardware profile (e.g. "cpu:16c;ram:128G;gpu:1xH100").
    function registerExecutor(string calldata endpoint, string calldata hardware) external;

    /// @notice Starts serving (or re-prices) a registered model.
    function setPrice(bytes32 modelId, uint64 inputPerMillion, uint64 outputPerMillion) external;

    /// @notice Stops serving a model; jobs already accepted are unaffected.
    function removeModel(bytes32 modelId) external;

    // ---------------------------------------------------------------- protocol contracts

    /// @notice Checks that `executor` may take a job for `modelId` and locks `collateral` of its stake.
    /// Only the job escrow. Emits nothing: the escrow's `JobAccepted` carries the collateral, and
    /// locking is on every job's hot path.
    /// @return price The executor's prices for the model, which the job is then bound to.
    function lockForJob(
        address executor,
        uint256 jobId,
        bytes32 modelId,
        uint256 minStake,
        uint256 collateral
    ) external returns (Price memory price);

    /// @notice Unlocks a finished job's collateral and, when it paid anything, counts the job as completed.
    /// Only the job escrow. Emits nothing: the escrow's `JobFinalized` marks the release.
    function releaseCollateral(address executor, uint256 jobId, uint256 amount, uint256 payment) external;

    /// @notice Takes a job's locked collateral and sends it to `to`, less any part a slash already took
    /// (the deficit). Only the job escrow.
    function seizeCollateral(address executor, uint256 jobId, uint256 amount, Fault fault, address to)
        external;

    /// @notice Slashes up to `amount` of stake — free stake first, then unbonding, then the stake behind
    /// open jobs — and sends it to `to`. Only the dispute contract. Locking stake in jobs (self-posted
    /// ones included) never hides it; what is taken from behind open jobs becomes a deficit that blocks
    /// new jobs and unstaking until covered, and that those jobs' release or seizure absorbs.
    /// @return slashed What was actually taken (at most the stake).
    function slash(address account, Role role, uint256 amount, address to) external returns (uint256 slashed);

    /// @notice Locks `amount` of a validator's free stake behind a jury seat: it cannot be unstaked until
    /// `unlockStake`, and stays slashable. Only the dispute contract.
    function lockStake(address validator, uint256 amount) external;

    /// @notice Unlocks stake `lockStake` locked. Only the dispute contract.
    function unlockStake(address validator, uint256 amount) external;

    /// @notice The validator whose bonded stake covers position `point` of the cumulative validator stake
    /// (`point < totalValidatorStake()`): a stake-weighted draw in O(log n) (a Fenwick tree kept on every
    /// change of validator stake).
    function validatorAt(uint256 point) external view returns (address);

    /// @notice Where `validator`'s bonded stake lies in the draw: `validatorAt(p)` is `validator` exactly for
    /// `start <= p < start + weight`. `start` is the stake of the validators before it in the draw's order
    /// (O(log n)); (0, 0) for an account that never staked as a validator.
    function validatorRange(address validator) external view returns (uint256 start, uint256 weight);

    // ---------------------------------------------------------------- governance (bounded)

    /// @notice Wires the job escrow, once; it must use this contract's token, this contract and its registry.
    function setJobEscrow(address jobEscrow) external;

    /// @notice Wires the dispute contract, once.
    function setDisputes(address disputes) external;

    /// @notice Sets the unbonding period, never below the job escrow's longest job lifetime nor below the
    /// time left until the last posted job can no longer be disputed (`IJobEscrow.riskHorizon`) or the
    /// last open dispute is over (`IDisputes.riskHorizon`).
    function setUnbondingPeriod(uint256 period) external;

    // ---------------------------------------------------------------- views

    function stakeOf(address account, Role role) external view returns (StakeInfo memory);

    function unbondingOf(address account, Role role) external view returns (Unbonding memory);

    function freeStake(address account, Role role) external view returns (uint256);

    function priceOf(address executor, bytes32 modelId) external view returns (Price memory);

    function executorProfile(address executor) external view returns (ExecutorProfile memory);

    function unbondingPeriod() external view returns (uint256);

    /// @notice Sum of every validator's bonded stake (what juries are drawn from).
    function totalValidatorStake() external view returns (uint256);

    /// @notice How many accounts ever staked as validators (the draw's index size).
    function validatorCount() external view returns (uint256);
}
