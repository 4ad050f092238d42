// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IClaimSource
/// @notice A contract whose paid results can be disputed: the job escrow (on-chain jobs) today, the gateway
/// settlement contract (signed receipts) later. The dispute contract judges *claims* through this interface
/// only, so a new source plugs into the same disputes without changing them.
///
/// A claim is identified by `(source, claimId)` and its terms are opaque bytes the source defines and checks
/// against its own record (for JobEscrow: `abi.encode(IJobEscrow.Settlement)`, as emitted in
/// `ResultSubmitted`). Validators find the transcript to check from the source's events.
interface IClaimSource {
    /// @notice What a dispute needs to know about a claim.
    /// @param executor Who produced the result and backs it with collateral.
    /// @param payer Who paid for it; refunded `amount` in full if the executor is found faulty.
    /// @param commitment The executor's commitment to the computation (DESIGN.md §4).
    /// @param amount What the payer paid (the escrow or the receipt's charge).
    /// @param collateral Executor stake locked behind the claim, seized if it is found faulty.
    /// @param challengeEnd A challenge must come strictly before this time.
    /// @param disputeEnd A dispute not resolved before this time settles as if the executor were honest.
    struct Claim {
        address executor;
        address payer;
        bytes32 commitment;
        uint256 amount;
        uint256 collateral;
        uint64 challengeEnd;
        uint64 disputeEnd;
    }

    /// @notice The claim `claimId` with `terms`, checked against the source's record. Reverts when the
    /// terms do not match or the claim cannot be disputed (unknown, not submitted, already settled).
    function claimOf(uint256 claimId, bytes calldata terms) external view returns (Claim memory claim);

    /// @notice Freezes a claim inside its challenge window: it can no longer settle by itself before its
    /// `disputeEnd`. Dispute contract only.
    function freezeClaim(uint256 claimId, bytes calldata terms) external returns (Claim memory claim);

    /// @notice The outcome callback. Faulty: the payer is refunded `amount` in full and the collateral is
    /// seized and sent to the dispute contract. Honest: the claim settles as if it had never been
    /// challenged. Dispute contract only; reverts once the claim has settled (e.g. after `disputeEnd`).
    /// @return seized The collateral the dispute contract received.
    function resolveClaim(uint256 claimId, bytes calldata terms, bool executorFaulty)
        external
        returns (uint256 seized);
}
