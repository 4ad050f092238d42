// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobEscrow} from "./interfaces/IJobEscrow.sol";
import {IClaimSource} from "./interfaces/IClaimSource.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";
import {IInferaConsumer} from "./interfaces/IInferaConsumer.sol";
import {Commitment, FinishReason} from "./libraries/Commitment.sol";
import {TokenTransfers} from "./libraries/TokenTransfers.sol";

/// @title JobEscrow
/// @notice The on-chain job market (see IJobEscrow). The token balance of this contract always equals
/// its liabilities: the escrow of every open job, every credited balance and the reward pool.
contract JobEscrow is IJobEscrow, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using TokenTransfers for IERC20;
    using SafeCast for uint256;

    /// @notice One storage slot per job: a digest of the terms the current step needs, and the status.
    struct JobRecord {
        bytes31 digest;
        JobStatus status;
    }

    /// @notice A credit that is withdrawable only from `releaseAt` on (no-show compensation).
    struct LockedCredit {
        uint128 amount;
        uint64 releaseAt;
    }

    uint256 internal constant PRICE_UNIT = 1_000_000;
    uint256 internal constant BPS = 10_000;
    bytes32 internal constant SEED_TAG = keccak256("infera.seed.v2");
    /// @dev Where a `Job` sits in the calldata of every function that takes one (after the selector and
    /// the job id), and its encoded size: 23 static words (13 of `JobSpec`, 10 more). See `_hash(Job)`.
    uint256 internal constant JOB_OFFSET = 4 + 32;
    uint256 internal constant JOB_SIZE = 23 * 32;

    // Bounds governance can never leave.
    uint64 public constant MIN_CHALLENGE_WINDOW = 10 minutes;
    uint64 public constant MAX_CHALLENGE_WINDOW = 7 days;
    uint64 public constant MIN_DISPUTE_WINDOW = 1 hours;
    uint64 public constant MAX_DISPUTE_WINDOW = 14 days;
    uint64 public constant MAX_JOB_DURATION_LIMIT = 30 days;
    uint16 public constant MAX_VALIDATOR_FEE_BPS = 2_000;
    uint16 public constant MIN_COLLATERAL_BPS = 5_000;
    uint16 public constant MAX_COLLATERAL_BPS = 50_000;
    /// @notice Most gas a requester may give its callback.
    uint32 public constant MAX_CALLBACK_GAS = 2_000_000;
    /// @notice Gas kept back around the callback for the rest of `submitResult`.
    uint256 internal constant CALLBACK_RESERVE = 20_000;
    /// @notice Most output text per output token: far above any tokenizer's longest token, and it bounds
    /// the calldata a callback's arguments take to encode.
    uint256 public constant MAX_TEXT_BYTES_PER_TOKEN = 128;
    /// @notice Most a requester receives from a no-show's seized collateral, as a share of its escrow.
    uint16 public constant NO_SHOW_COMPENSATION_BPS = 1_000;

    /// @inheritdoc IJobEscrow
    IERC20 public immutable token;
    /// @inheritdoc IJobEscrow
    IStaking public immutable staking;
    /// @inheritdoc IJobEscrow
    IModelRegistry public immutable registry;

    /// @notice The dispute contract, wired once; zero until then.
    address public disputes;

    // Market parameters and the job counter share one slot: each lifecycle step reads it once.
    uint32 private _challengeWindow;
    uint32 private _disputeWindow;
    uint32 private _maxJobDuration;
    uint16 private _validatorFeeBps;
    uint16 private _collateralBps;
    uint64 private _nextJobId;
    /// @dev Latest end of any job posted under earlier (longer) parameters: raised by `setParameters`
    /// only, so the job path never writes it (see `riskHorizon`).
    uint64 private _earlierJobsHorizon;

    /// @inheritdoc IJobEscrow
    uint256 public rewardPool;
    /// @inheritdoc IJobEscrow
    mapping(address account => uint256) public credits;

    mapping(uint256 jobId => JobRecord) private _jobs;
    mapping(address account => LockedCredit) private _lockedCredits;

    modifier onlyDisputes() {
        if (msg.sender != disputes || msg.sender == address(0)) revert Unauthorized(msg.sender);
        _;
    }

    constructor(
        IERC20 token_,
        IStaking staking_,
        IModelRegistry registry_,
        address governance,
        uint64 challengeWindow_,
        uint64 disputeWindow_,
        uint64 maxJobDuration_,
        uint16 validatorFeeBps_,
        uint16 collateralBps_
    ) Ownable(governance) {
        if (
            address(token_) == address(0) || address(staking_) == address(0)
                || address(registry_) == address(0)
        ) {
            revert ZeroAddress();
        }
        token = token_;
        staking = staking_;
        registry = registry_;
        _nextJobId = 1;
        _setParameters(challengeWindow_, disputeWindow_, maxJobDuration_, validatorFeeBps_, collateralBps_);
    }

    // ---------------------------------------------------------------- requesters

    /// @inheritdoc IJobEscrow
    function postJob(JobSpec calldata spec, bytes calldata prompt)
        external
        nonReentrant
        returns (uint256 jobId, Job memory job)
    {
        IModelRegistry.ModelTerms memory model = registry.terms(spec.modelId);
        if (!model.active) revert ModelInactive(spec.modelId);
        if (
            spec.maxInputTokens == 0 || spec.maxOutputTokens == 0 || prompt.length == 0
                || uint256(spec.maxInputTokens) + spec.maxOutputTokens > model.maxContext
                || spec.sampling.topP > PRICE_UNIT || spec.callbackGasLimit > MAX_CALLBACK_GAS
                || (spec.callback == address(0) && spec.callbackGasLimit != 0)
        ) revert InvalidSpec();
        if (spec.deadline <= block.timestamp || spec.deadline > block.timestamp + _maxJobDuration) {
            revert DeadlinePassed(spec.deadline);
        }
        uint256 escrow = _maxCost(spec);
        if (escrow == 0) revert EmptyEscrow();

        jobId = _nextJobId++;
        job = Job({
            spec: spec,
            requester: msg.sender,
            promptHash: keccak256(prompt),
            samplerVersion: model.samplerVersion,
            rulesVersion: model.rulesVersion,
            minExecutorStake: model.minExecutorStake,
            validatorFeeBps: _validatorFeeBps,
            collateralBps: _collateralBps,
            challengeWindow: _challengeWindow,
            disputeWindow: _disputeWindow,
            escrow: escrow
        });
        _jobs[jobId] = JobRecord(bytes31(keccak256(abi.encode(job))), JobStatus.Posted);

        token.pullExact(msg.sender, escrow);
        emit JobPosted(jobId, msg.sender, spec.modelId, job, prompt);
    }

    /// @inheritdoc IJobEscrow
    function cancelJob(uint256 jobId, Job calldata job) external nonReentrant {
        _enter(jobId, JobStatus.Posted, _hash(job), JobStatus.Cancelled);
        // Before its deadline only the requester may withdraw a job; after it nobody can accept it any
        // more, so anyone may close it and the escrow goes back to the requester.
        if (msg.sender != job.requester && block.timestamp < job.spec.deadline) {
            revert NotRequester(msg.sender);
        }
        credits[job.requester] += job.escrow;
        emit JobCancelled(jobId, job.escrow);
    }

    // ---------------------------------------------------------------- executors

    /// @inheritdoc IJobEscrow
    function acceptJob(uint256 jobId, Job calldata job)
        external
        nonReentrant
        returns (Assignment memory assignment)
    {
        bytes32 jobHash = _hash(job);
        JobRecord storage record = _check(jobId, JobStatus.Posted, jobHash);
        if (block.timestamp >= job.spec.deadline) revert DeadlinePassed(job.spec.deadline);
        if (job.spec.executor != address(0) && job.spec.executor != msg.sender) {
            revert NotDesignatedExecutor(msg.sender);
        }

        // Rounded up: even a one-unit job puts stake at risk.
        uint256 collateral = _bpsCeil(job.escrow, job.collateralBps);
        IStaking.Price memory price =
            staking.lockForJob(msg.sender, jobId, job.spec.modelId, job.minExecutorStake, collateral);
        if (
            price.inputPerMillion > job.spec.maxInputPrice || price.outputPerMillion > job.spec.maxOutputPrice
        ) {
            revert PriceAboveMaximum();
        }

        // The seed exists only now (see `Assignment.seed`): neither the requester, who fixed its terms
        // and salt before this block's randomness existed, nor the executor, who cannot touch them,
        // steers it. The job id is left out on purpose: it is global, so others' posts could move it.
        bytes32 seed =
            keccak256(abi.encode(SEED_TAG, block.chainid, address(this), jobHash, block.prevrandao));
        assignment = Assignment(msg.sender, price.inputPerMillion, price.outputPerMillion, collateral, seed);
        record.digest = bytes31(keccak256(abi.encode(jobHash, assignment)));
        record.status = JobStatus.Accepted;
        emit JobAccepted(jobId, msg.sender, assignment);
    }

    /// @inheritdoc IJobEscrow
    function submitResult(
        uint256 jobId,
        Job calldata job,
        Assignment calldata assignment,
        Result calldata result
    ) external nonReentrant returns (Settlement memory settlement) {
        JobRecord storage record = _check(jobId, JobStatus.Accepted, _hash(job, assignment));
        if (msg.sender != assignment.executor) revert NotBoundExecutor(msg.sender);
        if (block.timestamp > job.spec.deadline) revert DeadlinePassed(job.spec.deadline);

        uint256 outputCount = result.outputTokens.length / Commitment.TOKEN_BYTES;
        if (
            result.outputTokens.length % Commitment.TOKEN_BYTES != 0 || outputCount > job.spec.maxOutputTokens
                || result.inputTokens == 0 || result.inputTokens > job.spec.maxInputTokens
                || result.finishReason == FinishReason.None
                || (result.finishReason == FinishReason.Length && outputCount != job.spec.maxOutputTokens)
                || result.output.length > outputCount * MAX_TEXT_BYTES_PER_TOKEN
        ) revert InvalidResult();

        uint256 payment =
            (result.inputTokens
                    * uint256(assignment.inputPrice)
                    + outputCount
                    * uint256(assignment.outputPrice)) / PRICE_UNIT;
        uint64 challengeEnd = block.timestamp.toUint64() + job.challengeWindow;
        settlement = Settlement({
            requester: job.requester,
            executor: assignment.executor,
            escrow: job.escrow,
            payment: payment,
            // Rounded up: tiny jobs still feed the reward pool, so farming job counts is never free.
            validatorFee: _bpsCeil(payment, job.validatorFeeBps),
            collateral: assignment.collateral,
            commitment: _commitment(job, assignment, result),
            challengeEnd: challengeEnd,
            disputeEnd: challengeEnd + job.disputeWindow
        });
        record.digest = bytes31(keccak256(abi.encode(settlement)));
        record.status = JobStatus.Submitted;

        emit ResultSubmitted(
            jobId,
            msg.sender,
            settlement,
            result.inputTokens,
            result.finishReason,
            result.promptTokensHash,
            result.outputTokens,
            result.output
        );

        // Interaction last. The executor must forward enough gas for the full callback budget
        // (63/64 rule), so it cannot make the callback fail by starving it: the check up front counts
        // what encoding the text for the call will cost, and after a failed call a second check refuses
        // one that ran out of the gas it was given.
        address callback = job.spec.callback;
        if (callback != address(0)) {
            uint256 gasLimit = job.spec.callbackGasLimit;
            if (
                gasleft()
                    < gasLimit + gasLimit / 63 + CALLBACK_RESERVE
                        + _encodingGas(result.output.length, result.outputTokens.length)
            ) revert InsufficientGasForCallback();
            if (callback.code.length == 0) {
                emit CallbackFailed(jobId, callback);
            } else {
                try IInferaConsumer(callback).onJobResult{gas: gasLimit}(
                    jobId, result.output, uint8(result.finishReason)
                ) {}
                catch {
                    // Had the callee been given its whole limit, at least gasLimit / 63 would be left.
                    if (gasleft() <= gasLimit / 63) revert InsufficientGasForCallback();
                    emit CallbackFailed(jobId, callback);
                }
            }
        }
    }

    // ---------------------------------------------------------------- anyone

    /// @inheritdoc IJobEscrow
    function finalize(uint256 jobId, Settlement calldata settlement) external nonReentrant {
        JobRecord storage record = _record(jobId);
        JobStatus status = record.status;
        if (status == JobStatus.Submitted) {
            if (block.timestamp < settlement.challengeEnd) {
                revert ChallengeWindowOpen(settlement.challengeEnd);
            }
        } else if (status == JobStatus.Disputed) {
            // A dispute nobody resolved in time settles as if the executor were honest.
            if (block.timestamp < settlement.disputeEnd) revert DisputeWindowOpen(settlement.disputeEnd);
        } else {
            revert WrongStatus(jobId, status);
        }
        _enter(jobId, status, _hash(settlement), JobStatus.Finalized);
        _pay(
            jobId,
            settlement.requester,
            settlement.executor,
            settlement.escrow,
            settlement.payment,
            settlement.validatorFee,
            settlement.collateral
        );
    }

    /// @inheritdoc IJobEscrow
    function expire(uint256 jobId, Job calldata job, Assignment calldata assignment) external nonReentrant {
        _enter(jobId, JobStatus.Accepted, _hash(job, assignment), JobStatus.Expired);
        if (block.timestamp <= job.spec.deadline) revert DeadlineNotPassed(job.spec.deadline);

        credits[job.requester] += job.escrow;
        uint256 before = token.balanceOf(address(this));
        staking.seizeCollateral(
            assignment.executor, jobId, assignment.collateral, IStaking.Fault.NoShow, address(this)
        );
        uint256 seized = token.balanceOf(address(this)) - before;
        // The requester may be the executor under another address: it gets at most a capped share of
        // the escrow, and only after the unbonding period; the rest funds the validators.
        uint256 compensation = Math.min(seized, job.escrow * NO_SHOW_COMPENSATION_BPS / BPS);
        if (compensation != 0) {
            LockedCredit storage locked = _lockedCredits[job.requester];
            uint256 releaseAt = block.timestamp + staking.unbondingPeriod();
            locked.amount = (uint256(locked.amount) + compensation).toUint128();
            locked.releaseAt = releaseAt.toUint64();
            emit CreditLocked(job.requester, compensation, releaseAt);
        }
        rewardPool += seized - compensation;
        emit JobExpired(jobId, job.escrow, compensation, seized - compensation);
    }

    /// @inheritdoc IJobEscrow
    function withdraw() external nonReentrant {
        _withdraw(msg.sender);
    }

    /// @inheritdoc IJobEscrow
    function withdrawTo(address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        _withdraw(to);
    }

    // ---------------------------------------------------------------- dispute contract

    /// @inheritdoc IClaimSource
    /// @dev `terms` must be the canonical `abi.encode(Settlement)` (nine static words): any other encoding
    /// hashes differently and is refused as a `TermsMismatch`.
    function claimOf(uint256 claimId, bytes calldata terms) external view returns (Claim memory claim) {
        _check(claimId, JobStatus.Submitted, keccak256(terms));
        Settlement memory s = abi.decode(terms, (Settlement));
        if (block.timestamp >= s.challengeEnd) revert ChallengeWindowClosed(s.challengeEnd);
        return _claim(s);
    }

    /// @inheritdoc IClaimSource
    function freezeClaim(uint256 claimId, bytes calldata terms)
        external
        onlyDisputes
        nonReentrant
        returns (Claim memory claim)
    {
        _enter(claimId, JobStatus.Submitted, keccak256(terms), JobStatus.Disputed);
        Settlement memory s = abi.decode(terms, (Settlement));
        if (block.timestamp >= s.challengeEnd) revert ChallengeWindowClosed(s.challengeEnd);
        emit JobDisputed(claimId);
        return _claim(s);
    }

    /// @inheritdoc IClaimSource
    function resolveClaim(uint256 claimId, bytes calldata terms, bool executorFaulty)
        external
        onlyDisputes
        nonReentrant
        returns (uint256 seized)
    {
        Settlement memory s = abi.decode(terms, (Settlement));
        if (!executorFaulty) {
            _enter(claimId, JobStatus.Disputed, keccak256(terms), JobStatus.Finalized);
            if (block.timestamp >= s.disputeEnd) revert DisputeWindowClosed(s.disputeEnd);
            _pay(claimId, s.requester, s.executor, s.escrow, s.payment, s.validatorFee, s.collateral);
            return 0;
        }
        _enter(claimId, JobStatus.Disputed, keccak256(terms), JobStatus.Rejected);
        if (block.timestamp >= s.disputeEnd) revert DisputeWindowClosed(s.disputeEnd);
        credits[s.requester] += s.escrow;
        uint256 before = token.balanceOf(disputes);
        staking.seizeCollateral(s.executor, claimId, s.collateral, IStaking.Fault.DisputeLost, disputes);
        seized = token.balanceOf(disputes) - before;
        emit JobRejected(claimId, s.escrow, seized);
    }

    /// @inheritdoc IJobEscrow
    function payReward(address to, uint256 amount) external onlyDisputes nonReentrant {
        rewardPool -= amount;
        credits[to] += amount;
        emit RewardPaid(to, amount);
    }

    // ---------------------------------------------------------------- governance

    /// @inheritdoc IJobEscrow
    function setDisputes(address disputes_) external onlyOwner {
        if (disputes != address(0) || disputes_.code.length == 0) revert InvalidProtocolContract(disputes_);
        disputes = disputes_;
        emit DisputesSet(disputes_);
    }

    /// @inheritdoc IJobEscrow
    function setParameters(
        uint64 challengeWindow_,
        uint64 disputeWindow_,
        uint64 maxJobDuration_,
        uint16 validatorFeeBps_,
        uint16 collateralBps_
    ) external onlyOwner {
        _setParameters(challengeWindow_, disputeWindow_, maxJobDuration_, validatorFeeBps_, collateralBps_);
        if (maxJobLifetime() > staking.unbondingPeriod()) revert ParameterOutOfBounds();
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IJobEscrow
    function jobStatus(uint256 jobId) external view returns (JobStatus) {
        return _jobs[jobId].status;
    }

    /// @inheritdoc IJobEscrow
    function lockedCreditOf(address account) external view returns (uint256 amount, uint256 releaseAt) {
        LockedCredit memory locked = _lockedCredits[account];
        return (locked.amount, locked.releaseAt);
    }

    /// @inheritdoc IJobEscrow
    function riskHorizon() external view returns (uint256) {
        // A job posted under the current parameters ends within `maxJobLifetime` of its posting; one
        // posted under earlier ones by the horizon `setParameters` recorded when it changed them.
        return Math.max(_earlierJobsHorizon, block.timestamp + maxJobLifetime());
    }

    /// @inheritdoc IJobEscrow
    function maxJobLifetime() public view returns (uint256) {
        return uint256(_maxJobDuration) + _challengeWindow + _disputeWindow;
    }

    /// @inheritdoc IJobEscrow
    function nextJobId() external view returns (uint256) {
        return _nextJobId;
    }

    /// @notice Seconds after submission during which a result can be challenged.
    function challengeWindow() external view returns (uint64) {
        return _challengeWindow;
    }

    /// @notice Seconds a dispute may take before it settles by default.
    function disputeWindow() external view returns (uint64) {
        return _disputeWindow;
    }

    /// @notice Longest time from posting to deadline a job may ask for.
    function maxJobDuration() external view returns (uint64) {
        return _maxJobDuration;
    }

    /// @notice Share of each payment that goes to the validator reward pool, fixed per job at posting.
    function validatorFeeBps() external view returns (uint16) {
        return _validatorFeeBps;
    }

    /// @notice Collateral locked per job at acceptance, as a share of its escrow.
    function collateralBps() external view returns (uint16) {
        return _collateralBps;
    }

    /// @inheritdoc IJobEscrow
    function maxCost(JobSpec calldata spec) external pure returns (uint256) {
        return _maxCost(spec);
    }

    // ---------------------------------------------------------------- internals

    function _setParameters(
        uint64 challengeWindow_,
        uint64 disputeWindow_,
        uint64 maxJobDuration_,
        uint16 validatorFeeBps_,
        uint16 collateralBps_
    ) private {
        // Jobs posted so far end by now + the lifetime they were posted under: keep that as a floor.
        uint256 horizon = block.timestamp + maxJobLifetime();
        if (horizon > _earlierJobsHorizon) _earlierJobsHorizon = horizon.toUint64();
        if (
            challengeWindow_ < MIN_CHALLENGE_WINDOW || challengeWindow_ > MAX_CHALLENGE_WINDOW
                || disputeWindow_ < MIN_DISPUTE_WINDOW || disputeWindow_ > MAX_DISPUTE_WINDOW
                || maxJobDuration_ == 0 || maxJobDuration_ > MAX_JOB_DURATION_LIMIT
                || validatorFeeBps_ > MAX_VALIDATOR_FEE_BPS || collateralBps_ < MIN_COLLATERAL_BPS
                || collateralBps_ > MAX_COLLATERAL_BPS
        ) revert ParameterOutOfBounds();
        _challengeWindow = uint256(challengeWindow_).toUint32();
        _disputeWindow = uint256(disputeWindow_).toUint32();
        _maxJobDuration = uint256(maxJobDuration_).toUint32();
        _validatorFeeBps = validatorFeeBps_;
        _collateralBps = collateralBps_;
        emit ParametersSet(
            challengeWindow_, disputeWindow_, maxJobDuration_, validatorFeeBps_, collateralBps_
        );
    }

    /// @dev Credits a settled job: executor payout, validator fee, refund; releases the collateral.
    function _pay(
        uint256 jobId,
        address requester,
        address executor,
        uint256 escrow,
        uint256 payment,
        uint256 fee,
        uint256 collateral
    ) private {
        uint256 payout = payment - fee;
        uint256 refund = escrow - payment;
        credits[executor] += payout;
        rewardPool += fee;
        if (refund != 0) credits[requester] += refund;
        staking.releaseCollateral(executor, jobId, collateral, payment);
        emit JobFinalized(jobId);
    }

    /// @dev The claim a settlement makes (IClaimSource).
    function _claim(Settlement memory s) private pure returns (Claim memory) {
        return Claim({
            executor: s.executor,
            payer: s.requester,
            commitment: s.commitment,
            amount: s.escrow,
            collateral: s.collateral,
            challengeEnd: s.challengeEnd,
            disputeEnd: s.disputeEnd
        });
    }

    /// @dev Pays the caller's credit, and its locked credit once released, to `to`.
    function _withdraw(address to) private {
        uint256 amount = credits[msg.sender];
        credits[msg.sender] = 0;
        LockedCredit memory locked = _lockedCredits[msg.sender];
        if (locked.amount != 0 && block.timestamp >= locked.releaseAt) {
            amount += locked.amount;
            delete _lockedCredits[msg.sender];
        }
        if (amount == 0) revert NothingToWithdraw();
        token.safeTransfer(to, amount);
        emit Withdrawn(msg.sender, to, amount);
    }

    /// @dev The commitment of a submitted result (Commitment.sol): bound to the job's seed and everything
    /// billed or delivered.
    function _commitment(Job calldata job, Assignment calldata assignment, Result calldata result)
        private
        pure
        returns (bytes32)
    {
        return Commitment.compute(
            job.spec.modelId,
            job.samplerVersion,
            job.spec.sampling,
            assignment.seed,
            result.promptTokensHash,
            result.inputTokens,
            keccak256(result.outputTokens),
            keccak256(result.output),
            result.finishReason
        );
    }

    /// @dev An upper bound on the gas that encoding the callback's arguments (`text` bytes of output, a
    /// few words more) costs: copying them plus growing memory, which is quadratic in its size. By then
    /// `submitResult` holds at most the ids and the text twice each (hashing, the event) and a few
    /// KiB of terms in memory; a larger assumed size only overestimates, as the cost is convex.
    function _encodingGas(uint256 textBytes, uint256 idBytes) private pure returns (uint256) {
        uint256 used = (2 * (textBytes + idBytes) + 8192) / 32 + 1;
        uint256 added = textBytes / 32 + 8;
        return _memoryGas(used + added) - _memoryGas(used) + 3 * added;
    }

    /// @dev The EVM's cost of `words` words of memory.
    function _memoryGas(uint256 words) private pure returns (uint256) {
        return 3 * words + words * words / 512;
    }

    /// @dev `amount × bps / 10,000`, rounded up (amounts here are far below overflow: escrows are bounded
    /// by uint64 prices × uint32 token counts).
    function _bpsCeil(uint256 amount, uint256 bps) private pure returns (uint256) {
        return (amount * bps + BPS - 1) / BPS;
    }

    function _maxCost(JobSpec calldata spec) private pure returns (uint256) {
        return (uint256(spec.maxInputTokens)
                * spec.maxInputPrice
                + uint256(spec.maxOutputTokens)
                * spec.maxOutputPrice) / PRICE_UNIT;
    }

    function _record(uint256 jobId) private view returns (JobRecord storage record) {
        record = _jobs[jobId];
        if (record.status == JobStatus.None) revert UnknownJob(jobId);
    }

    /// @dev Checks the job's status and that the hash of the terms passed in matches its digest.
    function _check(uint256 jobId, JobStatus expected, bytes32 termsHash)
        private
        view
        returns (JobRecord storage record)
    {
        record = _record(jobId);
        if (record.status != expected) revert WrongStatus(jobId, record.status);
        if (record.digest != bytes31(termsHash)) revert TermsMismatch(jobId);
    }

    /// @dev `_check`, then moves the job to the terminal or next `status` (effects before interactions).
    function _enter(uint256 jobId, JobStatus expected, bytes32 termsHash, JobStatus status) private {
        _check(jobId, expected, termsHash).status = status;
    }

    /// @dev Digest of a posted job's terms: `keccak256(abi.encode(job))`, as `postJob` computed it, but
    /// hashed straight from the calldata. `Job` is a static tuple and every function taking one has
    /// `(uint256 jobId, Job job, …)` first, so its canonical encoding is the calldata at
    /// [JOB_OFFSET, JOB_OFFSET + JOB_SIZE). Copying it field by field with `abi.encode` cost ~2,100 gas
    /// per step; a non-canonical encoding (dirty high bits) only hashes differently and is refused as a
    /// `TermsMismatch`. The unit suites pin this (every tampered field, and the digest of each step).
    function _hash(Job calldata job) private pure returns (bytes32) {
        job; // the terms are read from msg.data below; the parameter documents which
        return keccak256(msg.data[JOB_OFFSET:JOB_OFFSET + JOB_SIZE]);
    }

    /// @dev Digest of an accepted job: chained on the posted digest, so accepting re-hashes only the assignment.
    function _hash(Job calldata job, Assignment calldata assignment) private pure returns (bytes32) {
        return keccak256(abi.encode(_hash(job), assignment));
    }

    /// @dev Digest of a submitted job.
    function _hash(Settlement calldata settlement) private pure returns (bytes32) {
        return keccak256(abi.encode(settlement));
    }
}
