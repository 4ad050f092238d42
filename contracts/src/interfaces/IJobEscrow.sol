// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SamplingParams, FinishReason} from "../libraries/Commitment.sol";
import {IStaking} from "./IStaking.sol";
import {IModelRegistry} from "./IModelRegistry.sol";
import {IClaimSource} from "./IClaimSource.sol";

/// @title IJobEscrow
/// @notice The on-chain job market for dApps: post a prompt with the maximum cost in escrow, an
/// eligible executor accepts and is bound to it, submits the result with its commitment, and after a
/// challenge window anyone finalizes: the executor is paid for the tokens it produced, a validator fee
/// goes to the reward pool and the rest is refunded. All payouts are credited and pulled with `withdraw`.
///
/// @dev Gas design: a job occupies one storage slot, a 31-byte digest of its terms plus its status.
/// Each step takes the terms it needs as calldata (emitted by the previous step's event) and checks
/// them against the digest, then moves the digest on: H(Job) at posting, H(H(Job), Assignment) once
/// accepted, H(Settlement) once the result is in.
///
/// Economics against self-dealing (one owner behind the requester and the executor): an expired job
/// refunds the escrow, but of the executor's seized collateral the requester gets at most
/// `NO_SHOW_COMPENSATION_BPS` of the escrow, and only after the staking unbonding period
/// (`lockedCreditOf`); the rest goes to the validator reward pool. Letting one's own job expire is
/// therefore never a way to move stake out faster than unbonding, and it costs the collateral.
interface IJobEscrow is IClaimSource {
    enum JobStatus {
        None,
        Posted,
        Accepted,
        Submitted,
        Disputed,
        Finalized,
        Cancelled,
        Expired,
        Rejected
    }

    /// @notice What a requester asks for.
    /// @param modelId Registered model (ModelRegistry).
    /// @param executor Designated executor, or zero for any eligible executor.
    /// @param callback Contract called with the result (IInferaConsumer), or zero for none.
    /// @param callbackGasLimit Gas the callback is given.
    /// @param maxInputTokens Most prompt tokens (after the chat template) the requester pays for.
    /// @param maxOutputTokens Most output tokens.
    /// @param maxInputPrice Highest input price accepted, base units per million tokens.
    /// @param maxOutputPrice Highest output price accepted, base units per million tokens.
    /// @param deadline Timestamp by which the result must be submitted.
    /// @param sampling Sampling parameters of the verifiable sampler.
    /// @param salt The requester's contribution to the seed (any value; see `Assignment.seed`).
    struct JobSpec {
        bytes32 modelId;
        address executor;
        address callback;
        uint32 callbackGasLimit;
        uint32 maxInputTokens;
        uint32 maxOutputTokens;
        uint64 maxInputPrice;
        uint64 maxOutputPrice;
        uint64 deadline;
        SamplingParams sampling;
        bytes32 salt;
    }

    /// @notice A job's terms as fixed at posting (emitted in `JobPosted`).
    /// @param samplerVersion, minExecutorStake, rulesVersion Snapshots of the model's terms at posting;
    /// the job is verified by the registry's `rulesAt(modelId, rulesVersion)` (audit rate, thresholds).
    /// @param validatorFeeBps, collateralBps, challengeWindow, disputeWindow Snapshots of the market
    /// parameters at posting: governance changes never touch a posted job.
    /// @param escrow The maximum cost, held in escrow.
    struct Job {
        JobSpec spec;
        address requester;
        bytes32 promptHash;
        uint32 samplerVersion;
        uint32 rulesVersion;
        uint96 minExecutorStake;
        uint16 validatorFeeBps;
        uint16 collateralBps;
        uint32 challengeWindow;
        uint32 disputeWindow;
        uint256 escrow;
    }

    /// @notice The executor a job is bound to and the prices it is paid at (emitted in `JobAccepted`).
    /// @param collateral Stake locked for the job: the escrow × the job's collateral ratio, rounded up.
    /// @param seed The sampling seed, fixed at acceptance: `keccak256(abi.encode(keccak256("infera.seed.v2"),
    /// chainid, escrow, keccak256(abi.encode(job)), block.prevrandao))`. Nobody can steer it: the job's
    /// terms (requester, salt, prompt hash, …) are fixed at posting, before the randomness of the
    /// accepting block exists, and nothing in them depends on other jobs — the global job id is left
    /// out, so posting or cancelling dummy jobs ahead of a victim, even in the block that accepts it,
    /// changes nothing; the executor can touch neither the terms nor the randomness. It could at most
    /// delay acceptance to draw the seed of a later block, one draw per block, while any other eligible
    /// executor may take the job first (and output is bounded by `maxOutputTokens` and billed only as
    /// verified). A requester that posts the same terms twice gets the same seed for both jobs when
    /// they are accepted in one block; a fresh `salt` gives a fresh draw. On a chain whose `prevrandao`
    /// is constant (some L2s) the seed is known at posting and the requester, who pays, can choose it.
    struct Assignment {
        address executor;
        uint64 inputPrice;
        uint64 outputPrice;
        uint256 collateral;
        bytes32 seed;
    }

    /// @notice What an executor submits.
    /// @param inputTokens Prompt token count after the model's chat template.
    /// @param finishReason Stop or Length (Length requires exactly `maxOutputTokens` outputs).
    /// @param promptTokensHash keccak256 of the prompt token ids packed as uint32 big-endian.
    /// @param outputTokens Output token ids packed as uint32 big-endian.
    /// @param output Output text (the detokenised ids), at most `MAX_TEXT_BYTES_PER_TOKEN` bytes per
    /// output token; its hash is part of the commitment.
    struct Result {
        uint32 inputTokens;
        FinishReason finishReason;
        bytes32 promptTokensHash;
        bytes outputTokens;
        bytes output;
    }

    /// @notice Everything needed to settle a submitted job (emitted in `ResultSubmitted`).
    /// @param payment What the job costs the requester for the counted tokens.
    /// @param validatorFee The part of `payment` that goes to the validator reward pool.
    /// @param challengeEnd Until then the result can be disputed; after it, anyone may finalize.
    /// @param disputeEnd A dispute not resolved by then settles as if the executor were honest.
    struct Settlement {
        address requester;
        address executor;
        uint256 escrow;
        uint256 payment;
        uint256 validatorFee;
        uint256 collateral;
        bytes32 commitment;
        uint64 challengeEnd;
        uint64 disputeEnd;
    }

    error UnknownJob(uint256 jobId);
    /// @notice The job is not in the state the operation needs.
    error WrongStatus(uint256 jobId, JobStatus status);
    /// @notice The terms passed in do not match the job's digest.
    error TermsMismatch(uint256 jobId);
    error ModelInactive(bytes32 modelId);
    error InvalidSpec();
    error EmptyEscrow();
    error DeadlinePassed(uint256 deadline);
    error DeadlineNotPassed(uint256 deadline);
    error NotDesignatedExecutor(address executor);
    error PriceAboveMaximum();
    error NotBoundExecutor(address caller);
    error NotRequester(address caller);
    error InvalidResult();
    error ChallengeWindowOpen(uint256 challengeEnd);
    error ChallengeWindowClosed(uint256 challengeEnd);
    error DisputeWindowOpen(uint256 disputeEnd);
    /// @notice The dispute window is over: the job settles as honest through `finalize`.
    error DisputeWindowClosed(uint256 disputeEnd);
    error InsufficientGasForCallback();
    error NothingToWithdraw();
    error Unauthorized(address caller);
    error InvalidProtocolContract(address account);
    error ParameterOutOfBounds();
    error ZeroAddress();

    event JobPosted(
        uint256 indexed jobId, address indexed requester, bytes32 indexed modelId, Job job, bytes prompt
    );
    event JobAccepted(uint256 indexed jobId, address indexed executor, Assignment assignment);
    event ResultSubmitted(
        uint256 indexed jobId,
        address indexed executor,
        Settlement settlement,
        uint32 inputTokens,
        FinishReason finishReason,
        bytes32 promptTokensHash,
        bytes outputTokens,
        bytes output
    );
    event CallbackFailed(uint256 indexed jobId, address indexed callback);
    /// @notice Emitted when a job settled with payment. The amounts follow from its `Settlement`: the executor
    /// is credited `payment - validatorFee`, the reward pool `validatorFee`, the requester `escrow - payment`.
    event JobFinalized(uint256 indexed jobId);
    event JobCancelled(uint256 indexed jobId, uint256 refund);
    /// @notice Emitted when an accepted job expired: `refund` (the escrow) is credited to the requester,
    /// `compensation` is locked for it until `lockedCreditOf(requester).releaseAt`, and the rest of the
    /// seized collateral, `toRewardPool`, went to the validator reward pool.
    event JobExpired(uint256 indexed jobId, uint256 refund, uint256 compensation, uint256 toRewardPool);
    /// @notice Emitted when a no-show compensation was locked for `account` until `releaseAt`.
    event CreditLocked(address indexed account, uint256 amount, uint256 releaseAt);
    event JobDisputed(uint256 indexed jobId);
    event JobRejected(uint256 indexed jobId, uint256 refund, uint256 collateralSeized);
    event Withdrawn(address indexed account, address indexed to, uint256 amount);
    event RewardPaid(address indexed to, uint256 amount);
    event DisputesSet(address disputes);
    event ParametersSet(
        uint64 challengeWindow,
        uint64 disputeWindow,
        uint64 maxJobDuration,
        uint16 validatorFeeBps,
        uint16 collateralBps
    );

    // ---------------------------------------------------------------- requesters

    /// @notice Posts a job and pulls its maximum cost into escrow (needs an allowance).
    /// @param prompt Chat messages as JSON, or plain text; emitted, not stored.
    /// @return jobId The new job's id.
    /// @return job The job's terms, as emitted; pass them to later calls.
    function postJob(JobSpec calldata spec, bytes calldata prompt)
        external
        returns (uint256 jobId, Job memory job);

    /// @notice Cancels a job no executor has accepted and credits the escrow back to the requester.
    /// Before the job's deadline only the requester may cancel; from the deadline on, anyone may.
    function cancelJob(uint256 jobId, Job calldata job) external;

    // ---------------------------------------------------------------- executors

    /// @notice Accepts a posted job: checks eligibility, locks collateral, fixes the seed and binds the job
    /// to the caller. A job posted while its model was active may still be accepted after governance
    /// deactivated the model: the job is judged by the terms and rules it snapshotted, and its requester
    /// can cancel it until it is accepted. The callback's gas is not priced by the protocol: an executor
    /// sees `callbackGasLimit` before accepting and declines jobs whose callback it does not want to fund.
    function acceptJob(uint256 jobId, Job calldata job) external returns (Assignment memory assignment);

    /// @notice Submits the result of an accepted job before its deadline. Bound executor only. Computes
    /// the commitment and the payment, and calls the requester's callback (if any) with a gas cap.
    function submitResult(
        uint256 jobId,
        Job calldata job,
        Assignment calldata assignment,
        Result calldata result
    ) external returns (Settlement memory settlement);

    // ---------------------------------------------------------------- anyone

    /// @notice Settles a submitted job after its challenge window (or a disputed one after its dispute
    /// deadline): credits the executor, the reward pool and the requester's refund; releases collateral.
    function finalize(uint256 jobId, Settlement calldata settlement) external;

    /// @notice Expires an accepted job whose deadline passed without a result: the executor's collateral
    /// is seized, the requester is refunded its escrow at once and compensated with at most
    /// `NO_SHOW_COMPENSATION_BPS` of the escrow after the unbonding period; the rest of the collateral
    /// goes to the validator reward pool.
    function expire(uint256 jobId, Job calldata job, Assignment calldata assignment) external;

    /// @notice Withdraws the caller's credited balance, plus its locked credit once released.
    function withdraw() external;

    /// @notice `withdraw`, paid to `to` (for accounts the token will not pay, or that keep funds elsewhere).
    function withdrawTo(address to) external;

    // ---------------------------------------------------------------- dispute contract

    // The claim interface (IClaimSource): a claim is a submitted job, `claimId` its job id and its terms
    // `abi.encode(Settlement)` as emitted in `ResultSubmitted`. `freezeClaim` moves it to Disputed inside
    // its challenge window; `resolveClaim` (before its `disputeEnd`) rejects it — the requester refunded in
    // full, the collateral seized to the dispute contract — or pays it as `finalize` would.

    /// @notice Pays `amount` from the validator reward pool. Dispute contract only: the pool (validator
    /// fees and no-show collateral) exists to fund challenge rewards, and nobody else can spend it.
    function payReward(address to, uint256 amount) external;

    // ---------------------------------------------------------------- governance (bounded)

    /// @notice Wires the dispute contract, once.
    function setDisputes(address disputes) external;

    /// @notice Sets the market parameters within fixed bounds; the longest job lifetime can never exceed
    /// the staking unbonding period.
    function setParameters(
        uint64 challengeWindow,
        uint64 disputeWindow,
        uint64 maxJobDuration,
        uint16 validatorFeeBps,
        uint16 collateralBps
    ) external;

    // ---------------------------------------------------------------- views

    function jobStatus(uint256 jobId) external view returns (JobStatus);

    /// @notice The settlement token; the staking contract and the registry this escrow was built with.
    function token() external view returns (IERC20);

    function staking() external view returns (IStaking);

    function registry() external view returns (IModelRegistry);

    /// @notice A no-show compensation waiting out the unbonding period, and when it is released.
    function lockedCreditOf(address account) external view returns (uint256 amount, uint256 releaseAt);

    /// @notice A bound on the latest time any job posted so far, or posted now, may still be disputed
    /// (deadline + challenge + dispute window): jobs keep the windows they snapshotted even when
    /// governance shortens them, so stake that starts unbonding now must stay slashable until then.
    /// The staking unbonding period may never end before it.
    function riskHorizon() external view returns (uint256);

    function credits(address account) external view returns (uint256);

    function rewardPool() external view returns (uint256);

    function nextJobId() external view returns (uint256);

    /// @notice Longest time stake can stay at risk for a new job: max job duration + challenge + dispute
    /// window.
    function maxJobLifetime() external view returns (uint256);

    /// @notice The maximum cost of a spec: floor((maxIn × maxInPrice + maxOut × maxOutPrice) / 1e6).
    function maxCost(JobSpec calldata spec) external pure returns (uint256);
}
