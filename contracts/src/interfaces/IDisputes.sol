// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IClaimSource} from "./IClaimSource.sol";

/// @title IDisputes
/// @notice Challenges of paid results, judged by a jury of staked validators (DESIGN.md §3).
///
/// Life of a dispute (every phase has a deadline and a default outcome; nothing is ever stuck):
/// 1. `challenge`: a staked validator posts the bond inside the claim's challenge window; the claim is
///    frozen. Deadlines are fixed from the claim: `revealEnd = claim.disputeEnd - RESOLVE_GRACE`,
///    `commitEnd` halfway between the challenge and `revealEnd`. The jury's randomness is the hash of
///    block `drawBlock` (a block after the challenge's), which nobody knows when challenging.
/// 2. `drawJury` (anyone, from `drawBlock + 1` on, before `commitEnd`): up to `jurySize` validators are drawn
///    by stake, in at most `jurySize * DRAW_ATTEMPTS_PER_SEAT` attempts, each over the validator stake of
///    neither a party (challenger, executor, payer), nor a juror seated already, nor a candidate found
///    without `jurorPenalty` of free stake; each juror's penalty stake is locked until the dispute is
///    resolved. If the hash of `drawBlock` is no longer available (256 blocks later), or nobody could be
///    seated, the draw is re-armed on a later block (`DrawRearmed`) and the dispute stays pending: with no
///    jury by `commitEnd`, `resolve` settles it as Honest.
/// 3. `commitVote` (jurors, until `commitEnd`), then `revealVote` (jurors, once every juror committed or
///    `commitEnd` passed, until `revealEnd`).
/// 4. `resolve` (anyone, once every juror revealed or `revealEnd` passed, before the claim's `disputeEnd`):
///    the executor is faulty only when strictly more revealed votes say Faulty than Honest.
///    - Faulty: the claim source refunds the payer in full and sends the seized collateral here; the
///      challenger gets its bond back plus `challengerRewardBps` of the collateral, the majority jurors share
///      `jurorRewardBps`, the rest is burned.
///    - Honest (also with no jury, no votes or a tie): the bond pays the majority jurors `jurorRewardBps`
///      and the rest compensates the executor; the claim settles as if never challenged.
///    - Jurors that did not reveal, or voted against the outcome, are slashed `jurorPenalty`, which the
///      majority jurors share (burned when there are none).
///    All payouts are credited and pulled with `withdraw`.
interface IDisputes {
    enum Phase {
        None,
        Drawing,
        Voting,
        Resolved
    }

    enum Vote {
        None,
        Honest,
        Faulty
    }

    /// @notice One dispute. `jurors` are listed by `jurorsOf`.
    struct Dispute {
        IClaimSource source;
        uint256 claimId;
        bytes32 termsHash;
        address challenger;
        address executor;
        address payer;
        uint256 bond;
        uint256 jurorPenalty;
        uint64 drawBlock;
        uint64 commitEnd;
        uint64 revealEnd;
        uint64 disputeEnd;
        Phase phase;
        bool executorFaulty;
    }

    error UnknownDispute(uint256 disputeId);
    error WrongPhase(uint256 disputeId, Phase phase);
    error AlreadyChallenged(address source, uint256 claimId);
    error UnknownSource(address source);
    error NotValidator(address account);
    error TooLate(uint256 deadline);
    error TooEarly(uint256 notBefore);
    error NotJuror(uint256 disputeId, address account);
    error AlreadyCommitted(uint256 disputeId, address juror);
    error AlreadyRevealed(uint256 disputeId, address juror);
    error CommitmentMismatch(uint256 disputeId, address juror);
    error InvalidVote();
    error TermsMismatch(uint256 disputeId);
    error NothingToWithdraw();
    error ParameterOutOfBounds();
    error ZeroAddress();

    event SourceAllowed(address indexed source);
    event Challenged(
        uint256 indexed disputeId,
        address indexed source,
        uint256 indexed claimId,
        address challenger,
        address executor,
        uint256 bond,
        uint64 drawBlock,
        uint64 commitEnd,
        uint64 revealEnd
    );
    event JuryDrawn(uint256 indexed disputeId, address[] jurors);
    event DrawRearmed(uint256 indexed disputeId, uint64 drawBlock);
    event VoteCommitted(uint256 indexed disputeId, address indexed juror);
    event VoteRevealed(uint256 indexed disputeId, address indexed juror, Vote vote);
    event DisputeResolved(
        uint256 indexed disputeId,
        bool executorFaulty,
        uint256 faultyVotes,
        uint256 honestVotes,
        uint256 collateralSeized,
        uint256 burned
    );
    event JurorPenalised(uint256 indexed disputeId, address indexed juror, uint256 amount);
    event Credited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, address indexed to, uint256 amount);
    event ParametersSet(
        uint256 bond, uint256 jurorPenalty, uint8 jurySize, uint16 challengerRewardBps, uint16 jurorRewardBps
    );

    /// @notice Challenges the claim `claimId` of `source` (an allowed claim source) with `terms`: pulls the
    /// bond (needs an allowance), freezes the claim. The caller must be a staked validator with at least
    /// `jurorPenalty` of free validator stake.
    function challenge(IClaimSource source, uint256 claimId, bytes calldata terms)
        external
        returns (uint256 disputeId);

    /// @notice Draws the jury of a dispute (anyone, after `drawBlock`); re-arms the draw on a later block
    /// (`DrawRearmed`, the dispute still drawing) when the hash of `drawBlock` is gone or nobody could be
    /// seated.
    function drawJury(uint256 disputeId) external;

    /// @notice Commits a juror's vote: `keccak256(abi.encode(disputeId, juror, vote, salt))`.
    function commitVote(uint256 disputeId, bytes32 commitment) external;

    /// @notice Reveals a committed vote.
    function revealVote(uint256 disputeId, Vote vote, bytes32 salt) external;

    /// @notice Resolves a dispute (anyone; see the phases above). `terms` are the claim's terms as challenged.
    function resolve(uint256 disputeId, bytes calldata terms) external;

    /// @notice Withdraws the caller's credited payouts.
    function withdraw() external;

    // ---------------------------------------------------------------- views

    function disputeOf(uint256 disputeId) external view returns (Dispute memory);

    function jurorsOf(uint256 disputeId) external view returns (address[] memory);

    /// @notice A juror's committed hash and revealed vote.
    function ballotOf(uint256 disputeId, address juror) external view returns (bytes32 commitment, Vote vote);

    /// @notice The dispute of a claim, or 0.
    function disputeOfClaim(address source, uint256 claimId) external view returns (uint256);

    function credits(address account) external view returns (uint256);

    function nextDisputeId() external view returns (uint256);

    /// @notice Disputes whose jury is not drawn yet (a re-armed draw included). While any is pending,
    /// validator stake cannot change (Staking refuses validator `stake` and `requestUnstake`): the draw's
    /// weights are fixed before its randomness exists, so nobody can shift them after seeing the hash of
    /// `drawBlock`.
    function pendingDraws() external view returns (uint256);

    /// @notice The latest deadline of any open dispute: juror stake stays slashable until then, so the
    /// staking unbonding period may never end before it.
    function riskHorizon() external view returns (uint256);
}
