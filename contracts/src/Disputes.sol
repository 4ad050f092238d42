// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IDisputes} from "./interfaces/IDisputes.sol";
import {IClaimSource} from "./interfaces/IClaimSource.sol";
import {IStaking} from "./interfaces/IStaking.sol";
import {TokenTransfers} from "./libraries/TokenTransfers.sol";

/// @title Disputes
/// @notice Challenges of paid results, judged by a stake-weighted jury of validators (see IDisputes).
/// The token balance of this contract always equals the bonds of the open disputes plus every credited
/// payout: seized collateral and juror penalties are paid out (credited or burned) in the transaction that
/// brings them in.
///
/// Votes are committed as `keccak256(abi.encode(disputeId, juror, vote, salt))` (`vote` encodes as a
/// uint8 word: 1 Honest, 2 Faulty).
contract Disputes is IDisputes, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using TokenTransfers for IERC20;

    /// @notice Per-dispute snapshot of the reward terms and the running tally, one slot.
    struct Tally {
        uint8 jurySize;
        uint16 challengerRewardBps;
        uint16 jurorRewardBps;
        uint8 commits;
        uint8 reveals;
        uint8 faultyVotes;
        uint8 honestVotes;
    }

    /// @notice A juror's seat in one dispute.
    struct Ballot {
        bytes32 commitment;
        Vote vote;
        bool seated;
    }

    /// @notice The outcome's payouts, worked out once at resolution.
    struct Payout {
        uint256 seized;
        uint256 toChallenger;
        uint256 toExecutor;
        uint256 jurorPool;
        uint256 burned;
    }

    /// @notice A draw's excluded validators: `count` ranges (`starts[i]`, `weights[i]`) of the cumulative
    /// validator stake, sorted by start, and the stake `left` to draw from.
    struct Exclusions {
        uint256[] starts;
        uint256[] weights;
        uint256 count;
        uint256 left;
    }

    uint256 internal constant BPS = 10_000;
    /// @notice Where burned tokens go: the token may have no burn function.
    address public constant BURN = 0x000000000000000000000000000000000000dEaD;
    /// @notice Largest jury governance may ask for (bounds the work of drawing and resolving).
    uint8 public constant MAX_JURY_SIZE = 15;
    /// @notice Draw attempts per seat: a candidate without enough free stake uses an attempt (and is not drawn
    /// again), so a draw is bounded even when few validators are eligible. Parties and seated jurors are never
    /// drawn.
    uint256 public constant DRAW_ATTEMPTS_PER_SEAT = 4;
    /// @notice Time between the reveal deadline and the claim's dispute end, for anyone to resolve.
    uint64 public constant RESOLVE_GRACE = 10 minutes;
    /// @notice Least time a challenge must leave for committing and revealing together.
    uint64 public constant MIN_VOTING_PERIOD = 20 minutes;
    /// @notice Blocks between a challenge (or a re-arm) and the block whose hash seeds the draw.
    uint64 public constant DRAW_DELAY = 1;
    /// @notice Bounds of the bond and the juror penalty governance may set.
    uint256 public constant MAX_BOND = 1e30;
    uint256 public constant MAX_JUROR_PENALTY = 1e30;

    IERC20 public immutable token;
    IStaking public immutable staking;

    /// @notice What a challenger posts (snapshotted per dispute).
    uint256 public bond;
    /// @notice Validator stake each juror puts at risk (snapshotted per dispute).
    uint256 public jurorPenalty;
    /// @notice Seats per jury.
    uint8 public jurySize;
    /// @notice Share of seized collateral that rewards a challenger who was right.
    uint16 public challengerRewardBps;
    /// @notice Share of seized collateral (faulty) or of the bond (honest) the majority jurors share.
    uint16 public jurorRewardBps;

    /// @inheritdoc IDisputes
    uint256 public nextDisputeId = 1;
    /// @inheritdoc IDisputes
    uint256 public pendingDraws;
    /// @inheritdoc IDisputes
    mapping(address account => uint256) public credits;
    /// @notice Claim sources governance allowed.
    mapping(address source => bool) public allowedSource;

    mapping(uint256 disputeId => Dispute) private _disputes;
    mapping(uint256 disputeId => Tally) private _tallies;
    mapping(uint256 disputeId => address[]) private _jurors;
    mapping(uint256 disputeId => mapping(address juror => Ballot)) private _ballots;
    mapping(address source => mapping(uint256 claimId => uint256 disputeId)) private _disputeOfClaim;
    /// @dev Latest claim dispute end of any dispute opened so far (an upper bound of the open ones').
    uint256 private _horizon;

    /// @notice A source was allowed already.
    error SourceAlreadyAllowed(address source);

    /// @notice A dispute was resolved after its claim's dispute end: the claim settled as honest by itself;
    /// the jury's verdict (`juryFoundFaulty`) still decided the bond and the penalties.
    event ResolvedAfterDisputeEnd(uint256 indexed disputeId, bool juryFoundFaulty);

    constructor(
        IERC20 token_,
        IStaking staking_,
        address governance,
        uint256 bond_,
        uint256 jurorPenalty_,
        uint8 jurySize_,
        uint16 challengerRewardBps_,
        uint16 jurorRewardBps_
    ) Ownable(governance) {
        if (address(token_) == address(0) || address(staking_) == address(0)) {
            revert ZeroAddress();
        }
        token = token_;
        staking = staking_;
        _setParameters(bond_, jurorPenalty_, jurySize_, challengerRewardBps_, jurorRewardBps_);
    }

    // ---------------------------------------------------------------- validators

    /// @inheritdoc IDisputes
    function challenge(IClaimSource source, uint256 claimId, bytes calldata terms)
        external
        nonReentrant
        returns (uint256 disputeId)
    {
        if (!allowedSource[address(source)]) revert UnknownSource(address(source));
        if (_disputeOfClaim[address(source)][claimId] != 0) {
            revert AlreadyChallenged(address(source), claimId);
        }
        uint256 penalty = jurorPenalty;
        if (
            staking.stakeOf(msg.sender, IStaking.Role.Validator).staked == 0
                || staking.freeStake(msg.sender, IStaking.Role.Validator) < penalty
        ) revert NotValidator(msg.sender);

        IClaimSource.Claim memory claim = source.claimOf(claimId, terms);
        if (block.timestamp >= claim.challengeEnd) revert TooLate(claim.challengeEnd);
        if (claim.disputeEnd < block.timestamp + RESOLVE_GRACE + MIN_VOTING_PERIOD) {
            revert TooLate(claim.disputeEnd);
        }
        uint64 revealEnd = claim.disputeEnd - RESOLVE_GRACE;
        uint64 commitEnd = (block.timestamp + (revealEnd - block.timestamp) / 2).toUint64();
        uint64 drawBlock = (block.number + DRAW_DELAY).toUint64();
        uint256 amount = bond;

        disputeId = nextDisputeId++;
        pendingDraws += 1;
        _disputeOfClaim[address(source)][claimId] = disputeId;
        _disputes[disputeId] = Dispute({
            source: source,
            claimId: claimId,
            termsHash: keccak256(terms),
            challenger: msg.sender,
            executor: claim.executor,
            payer: claim.payer,
            bond: amount,
            jurorPenalty: penalty,
            drawBlock: drawBlock,
            commitEnd: commitEnd,
            revealEnd: revealEnd,
            disputeEnd: claim.disputeEnd,
            phase: Phase.Drawing,
            executorFaulty: false
        });
        _tallies[disputeId] = Tally({
            jurySize: jurySize,
            challengerRewardBps: challengerRewardBps,
            jurorRewardBps: jurorRewardBps,
            commits: 0,
            reveals: 0,
            faultyVotes: 0,
            honestVotes: 0
        });
        if (claim.disputeEnd > _horizon) _horizon = claim.disputeEnd;
        emit Challenged(
            disputeId,
            address(source),
            claimId,
            msg.sender,
            claim.executor,
            amount,
            drawBlock,
            commitEnd,
            revealEnd
        );

        source.freezeClaim(claimId, terms);
        token.pullExact(msg.sender, amount);
    }

    /// @inheritdoc IDisputes
    function drawJury(uint256 disputeId) external nonReentrant {
        Dispute storage d = _dispute(disputeId);
        if (d.phase != Phase.Drawing) revert WrongPhase(disputeId, d.phase);
        uint256 drawBlock = d.drawBlock;
        if (block.number <= drawBlock) revert TooEarly(drawBlock + 1);
        if (block.timestamp >= d.commitEnd) revert TooLate(d.commitEnd);
        bytes32 randomness = blockhash(drawBlock);
        // More than 256 blocks ago: a later block's hash, unknown until then, seeds the draw instead.
        if (randomness == bytes32(0)) {
            _rearm(disputeId, d);
            return;
        }
        address[] storage jurors = _jurors[disputeId];
        // Nobody could be seated: a later block draws again (until `commitEnd`, when `resolve` settles the
        // dispute without a jury).
        if (_draw(disputeId, d, randomness, jurors) == 0) {
            _rearm(disputeId, d);
            return;
        }
        d.phase = Phase.Voting;
        pendingDraws -= 1;
        emit JuryDrawn(disputeId, jurors);
    }

    /// @inheritdoc IDisputes
    function commitVote(uint256 disputeId, bytes32 commitment) external nonReentrant {
        Dispute storage d = _dispute(disputeId);
        if (d.phase != Phase.Voting) revert WrongPhase(disputeId, d.phase);
        if (block.timestamp >= d.commitEnd) revert TooLate(d.commitEnd);
        Ballot storage ballot = _ballots[disputeId][msg.sender];
        if (!ballot.seated) revert NotJuror(disputeId, msg.sender);
        if (ballot.commitment != bytes32(0)) revert AlreadyCommitted(disputeId, msg.sender);
        if (commitment == bytes32(0)) revert InvalidVote();
        ballot.commitment = commitment;
        _tallies[disputeId].commits += 1;
        emit VoteCommitted(disputeId, msg.sender);
    }

    /// @inheritdoc IDisputes
    function revealVote(uint256 disputeId, Vote vote, bytes32 salt) external nonReentrant {
        Dispute storage d = _dispute(disputeId);
        if (d.phase != Phase.Voting) revert WrongPhase(disputeId, d.phase);
        if (block.timestamp >= d.revealEnd) revert TooLate(d.revealEnd);
        Tally storage tally = _tallies[disputeId];
        if (tally.commits < _jurors[disputeId].length && block.timestamp < d.commitEnd) {
            revert TooEarly(d.commitEnd);
        }
        Ballot storage ballot = _ballots[disputeId][msg.sender];
        if (!ballot.seated) revert NotJuror(disputeId, msg.sender);
        if (ballot.vote != Vote.None) revert AlreadyRevealed(disputeId, msg.sender);
        if (vote == Vote.None) revert InvalidVote();
        if (
            ballot.commitment == bytes32(0)
                || keccak256(abi.encode(disputeId, msg.sender, vote, salt)) != ballot.commitment
        ) revert CommitmentMismatch(disputeId, msg.sender);
        ballot.vote = vote;
        tally.reveals += 1;
        if (vote == Vote.Faulty) tally.faultyVotes += 1;
        else tally.honestVotes += 1;
        emit VoteRevealed(disputeId, msg.sender, vote);
    }

    // ---------------------------------------------------------------- anyone

    /// @inheritdoc IDisputes
    function resolve(uint256 disputeId, bytes calldata terms) external nonReentrant {
        Dispute storage d = _dispute(disputeId);
        Tally memory tally = _tallies[disputeId];
        if (d.phase == Phase.Drawing) {
            // Nobody drew the jury in time: no jury, the executor is presumed honest.
            if (block.timestamp < d.commitEnd) revert TooEarly(d.commitEnd);
            pendingDraws -= 1; // never drawn: no longer pending
        } else if (d.phase == Phase.Voting) {
            if (tally.reveals < _jurors[disputeId].length && block.timestamp < d.revealEnd) {
                revert TooEarly(d.revealEnd);
            }
        } else {
            revert WrongPhase(disputeId, d.phase);
        }
        if (keccak256(terms) != d.termsHash) revert TermsMismatch(disputeId);

        bool juryFoundFaulty = tally.faultyVotes > tally.honestVotes;
        Payout memory p = _settleClaim(disputeId, d, terms, tally, juryFoundFaulty);
        _payJurors(
            disputeId,
            d.jurorPenalty,
            juryFoundFaulty ? Vote.Faulty : Vote.Honest,
            juryFoundFaulty ? tally.faultyVotes : tally.honestVotes,
            p
        );
        if (p.toChallenger != 0) _credit(d.challenger, p.toChallenger);
        if (p.toExecutor != 0) _credit(d.executor, p.toExecutor);
        emit DisputeResolved(
            disputeId, d.executorFaulty, tally.faultyVotes, tally.honestVotes, p.seized, p.burned
        );
        if (p.burned != 0) token.safeTransfer(BURN, p.burned);
    }

    /// @inheritdoc IDisputes
    function withdraw() external nonReentrant {
        uint256 amount = credits[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        credits[msg.sender] = 0;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, msg.sender, amount);
    }

    // ---------------------------------------------------------------- governance

    /// @notice Allows a claim source (JobEscrow, the gateway settlement), once. It must be wired to this
    /// contract as its dispute contract.
    function allowSource(address source) external onlyOwner {
        if (source == address(0)) revert ZeroAddress();
        if (source.code.length == 0) revert UnknownSource(source);
        if (allowedSource[source]) revert SourceAlreadyAllowed(source);
        allowedSource[source] = true;
        emit SourceAllowed(source);
    }

    /// @notice Sets the dispute parameters within fixed bounds. Open disputes keep the ones they started
    /// with.
    function setParameters(
        uint256 bond_,
        uint256 jurorPenalty_,
        uint8 jurySize_,
        uint16 challengerRewardBps_,
        uint16 jurorRewardBps_
    ) external onlyOwner {
        _setParameters(bond_, jurorPenalty_, jurySize_, challengerRewardBps_, jurorRewardBps_);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IDisputes
    function disputeOf(uint256 disputeId) external view returns (Dispute memory) {
        return _disputes[disputeId];
    }

    /// @inheritdoc IDisputes
    function jurorsOf(uint256 disputeId) external view returns (address[] memory) {
        return _jurors[disputeId];
    }

    /// @inheritdoc IDisputes
    function ballotOf(uint256 disputeId, address juror)
        external
        view
        returns (bytes32 commitment, Vote vote)
    {
        Ballot memory ballot = _ballots[disputeId][juror];
        return (ballot.commitment, ballot.vote);
    }

    /// @notice A dispute's snapshotted reward terms and its running tally.
    function tallyOf(uint256 disputeId) external view returns (Tally memory) {
        return _tallies[disputeId];
    }

    /// @inheritdoc IDisputes
    function disputeOfClaim(address source, uint256 claimId) external view returns (uint256) {
        return _disputeOfClaim[source][claimId];
    }

    /// @inheritdoc IDisputes
    /// @dev The latest claim dispute end of every dispute opened so far (never lowered: an upper bound of
    /// the open disputes' deadlines), or now.
    function riskHorizon() external view returns (uint256) {
        return _horizon > block.timestamp ? _horizon : block.timestamp;
    }

    // ---------------------------------------------------------------- internals

    /// @dev Closes the dispute and settles its claim: through the source before the claim's dispute end;
    /// after it the claim settled (or settles) as honest by itself, the source is not called and only the
    /// dispute's own money moves. Returns the payouts before the jurors' (which `_payJurors` adds).
    function _settleClaim(
        uint256 disputeId,
        Dispute storage d,
        bytes calldata terms,
        Tally memory tally,
        bool juryFoundFaulty
    ) private returns (Payout memory p) {
        bool inTime = block.timestamp < d.disputeEnd;
        bool executorFaulty = juryFoundFaulty && inTime;
        d.phase = Phase.Resolved;
        d.executorFaulty = executorFaulty;

        if (inTime) p.seized = d.source.resolveClaim(d.claimId, terms, executorFaulty);
        else emit ResolvedAfterDisputeEnd(disputeId, juryFoundFaulty);

        if (executorFaulty) {
            uint256 reward = p.seized * tally.challengerRewardBps / BPS;
            p.jurorPool = p.seized * tally.jurorRewardBps / BPS;
            p.toChallenger = d.bond + reward;
            p.burned = p.seized - reward - p.jurorPool;
        } else if (juryFoundFaulty) {
            // The jury was right but the claim settled before anyone resolved: the bond goes back.
            p.toChallenger = d.bond;
        } else {
            p.jurorPool = d.bond * tally.jurorRewardBps / BPS;
            p.toExecutor = d.bond - p.jurorPool;
        }
    }

    /// @dev Unlocks every seat, slashes the jurors who did not vote `winning`, and shares the jurors' part of
    /// the outcome plus those penalties among the `majority` jurors who did (rounding dust burned). With no
    /// majority juror, the jurors' part of a bond goes to the executor, and the rest is burned.
    function _payJurors(uint256 disputeId, uint256 penalty, Vote winning, uint256 majority, Payout memory p)
        private
    {
        address[] storage jurors = _jurors[disputeId];
        if (majority == 0) {
            if (p.seized != 0) p.burned += p.jurorPool;
            else p.toExecutor += p.jurorPool;
            p.jurorPool = 0;
        }
        p.jurorPool += _penalise(disputeId, penalty, jurors, winning);
        if (majority == 0) {
            p.burned += p.jurorPool;
            return;
        }
        uint256 share = p.jurorPool / majority;
        p.burned += p.jurorPool - share * majority;
        if (share == 0) return;
        uint256 count = jurors.length;
        for (uint256 i; i < count; ++i) {
            address juror = jurors[i];
            if (_ballots[disputeId][juror].vote == winning) _credit(juror, share);
        }
    }

    /// @dev Unlocks every juror's seat and slashes those who did not vote `winning` (not revealed, or
    /// against the verdict) by `penalty`, into this contract. Returns what was slashed.
    function _penalise(uint256 disputeId, uint256 penalty, address[] storage jurors, Vote winning)
        private
        returns (uint256 penalties)
    {
        uint256 count = jurors.length;
        for (uint256 i; i < count; ++i) {
            address juror = jurors[i];
            staking.unlockStake(juror, penalty);
            if (_ballots[disputeId][juror].vote != winning) {
                uint256 slashed = staking.slash(juror, IStaking.Role.Validator, penalty, address(this));
                penalties += slashed;
                emit JurorPenalised(disputeId, juror, slashed);
            }
        }
    }

    /// @dev Moves the draw to a block after this one, whose hash nobody knows yet.
    function _rearm(uint256 disputeId, Dispute storage d) private {
        uint64 rearmed = (block.number + DRAW_DELAY).toUint64();
        d.drawBlock = rearmed;
        emit DrawRearmed(disputeId, rearmed);
    }

    /// @dev Seats up to the dispute's jury size of distinct validators drawn by stake, in a bounded number
    /// of attempts, and returns how many it seated. Each attempt draws only over the stake not excluded: the
    /// parties' (challenger, executor, payer), the seated jurors' and that of every candidate found without
    /// `jurorPenalty` of free stake. The draw's weights cannot move during a draw (locking a seat leaves
    /// them as they are), so each excluded validator's range is read once, kept sorted by start, and a point
    /// drawn over the rest is moved past the ranges below it.
    function _draw(uint256 disputeId, Dispute storage d, bytes32 randomness, address[] storage jurors)
        private
        returns (uint256 seated)
    {
        uint256 seats = _tallies[disputeId].jurySize;
        uint256 attempts = seats * DRAW_ATTEMPTS_PER_SEAT;
        // Every attempt excludes its candidate: at most the three parties and one range per attempt.
        Exclusions memory ex = Exclusions({
            starts: new uint256[](attempts + 3),
            weights: new uint256[](attempts + 3),
            count: 0,
            left: staking.totalValidatorStake()
        });
        _exclude(ex, d.challenger);
        if (d.executor != d.challenger) _exclude(ex, d.executor);
        if (d.payer != d.challenger && d.payer != d.executor) _exclude(ex, d.payer);
        uint256 penalty = d.jurorPenalty;
        for (uint256 attempt; attempt < attempts && seated < seats && ex.left != 0; ++attempt) {
            uint256 point = uint256(keccak256(abi.encode(randomness, disputeId, attempt))) % ex.left;
            for (uint256 i; i < ex.count && point >= ex.starts[i]; ++i) {
                point += ex.weights[i];
            }
            address candidate = staking.validatorAt(point);
            _exclude(ex, candidate);
            if (staking.freeStake(candidate, IStaking.Role.Validator) < penalty) continue;
            _ballots[disputeId][candidate].seated = true;
            jurors.push(candidate);
            seated += 1;
            staking.lockStake(candidate, penalty);
        }
    }

    /// @dev Inserts `account`'s range of the draw (if it has stake there) into the excluded ranges, sorted by
    /// start, and takes its weight off the stake left to draw from.
    function _exclude(Exclusions memory ex, address account) private view {
        (uint256 start, uint256 weight) = staking.validatorRange(account);
        if (weight == 0) return;
        uint256 i = ex.count;
        for (; i != 0 && ex.starts[i - 1] > start; --i) {
            ex.starts[i] = ex.starts[i - 1];
            ex.weights[i] = ex.weights[i - 1];
        }
        ex.starts[i] = start;
        ex.weights[i] = weight;
        ex.count += 1;
        ex.left -= weight;
    }

    function _credit(address account, uint256 amount) private {
        credits[account] += amount;
        emit Credited(account, amount);
    }

    function _dispute(uint256 disputeId) private view returns (Dispute storage d) {
        d = _disputes[disputeId];
        if (d.phase == Phase.None) revert UnknownDispute(disputeId);
    }

    function _setParameters(
        uint256 bond_,
        uint256 jurorPenalty_,
        uint8 jurySize_,
        uint16 challengerRewardBps_,
        uint16 jurorRewardBps_
    ) private {
        if (
            bond_ == 0 || bond_ > MAX_BOND || jurorPenalty_ == 0 || jurorPenalty_ > MAX_JUROR_PENALTY
                || jurySize_ == 0 || jurySize_ > MAX_JURY_SIZE
                || uint256(challengerRewardBps_) + jurorRewardBps_ > BPS
        ) revert ParameterOutOfBounds();
        bond = bond_;
        jurorPenalty = jurorPenalty_;
        jurySize = jurySize_;
        challengerRewardBps = challengerRewardBps_;
        jurorRewardBps = jurorRewardBps_;
        emit ParametersSet(bond_, jurorPenalty_, jurySize_, challengerRewardBps_, jurorRewardBps_);
    }
}
