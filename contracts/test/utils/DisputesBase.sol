// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./Vm.sol";
import {Base} from "./Base.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Disputes} from "../../src/Disputes.sol";
import {IDisputes} from "../../src/interfaces/IDisputes.sol";
import {IClaimSource} from "../../src/interfaces/IClaimSource.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";

/// @notice The whole protocol with the real dispute contract wired, five staked validators, and one helper
/// per dispute step.
abstract contract DisputesBase is Base {
    uint256 internal constant BOND = 50e6;
    uint256 internal constant PENALTY = 10e6;
    uint8 internal constant JURY = 3;
    uint16 internal constant CHALLENGER_BPS = 4_000;
    uint16 internal constant JUROR_BPS = 2_000;
    uint256 internal constant VALIDATOR_STAKE = 100e6;
    address internal constant BURN = 0x000000000000000000000000000000000000dEaD;

    Disputes internal disputes;
    address[] internal validators;
    address internal challenger;

    function setUp() public virtual override {
        super.setUp();
        disputes = new Disputes(
            IERC20(address(token)), staking, governance, BOND, PENALTY, JURY, CHALLENGER_BPS, JUROR_BPS
        );
        wireDisputes(address(disputes));
        vm.prank(governance);
        disputes.allowSource(address(escrow));
        for (uint256 i = 0; i < 5; ++i) {
            address v = address(uint160(0xA000 + i));
            addValidator(v, VALIDATOR_STAKE);
            validators.push(v);
        }
        challenger = validators[0];
        fund(challenger, 1_000e6);
        vm.prank(challenger);
        token.approve(address(disputes), type(uint256).max);
    }

    function addValidator(address v, uint256 amount) internal {
        fund(v, amount);
        vm.prank(v);
        staking.stake(IStaking.Role.Validator, amount);
        vm.prank(v);
        token.approve(address(disputes), type(uint256).max);
    }

    function terms(IJobEscrow.Settlement memory s) internal pure returns (bytes memory) {
        return abi.encode(s);
    }

    /// @notice A submitted job and a challenge of it by `challenger`.
    function openDispute()
        internal
        returns (uint256 jobId, IJobEscrow.Settlement memory s, uint256 disputeId)
    {
        (jobId,, s) = submittedJob(300, 200);
        vm.prank(challenger);
        disputeId = disputes.challenge(escrow, jobId, terms(s));
    }

    /// @notice Draws the jury with the hash `seed` for the draw block.
    function draw(uint256 disputeId, bytes32 seed) internal returns (address[] memory jurors) {
        IDisputes.Dispute memory d = disputes.disputeOf(disputeId);
        if (block.number <= d.drawBlock) vm.roll(uint256(d.drawBlock) + 1);
        vm.setBlockhash(d.drawBlock, seed);
        disputes.drawJury(disputeId);
        jurors = disputes.jurorsOf(disputeId);
    }

    function draw(uint256 disputeId) internal returns (address[] memory) {
        return draw(disputeId, keccak256(abi.encode("draw", disputeId)));
    }

    function saltOf(address juror) internal pure returns (bytes32) {
        return keccak256(abi.encode("salt", juror));
    }

    function commitmentOf(uint256 disputeId, address juror, IDisputes.Vote v)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(disputeId, juror, v, saltOf(juror)));
    }

    function commit(uint256 disputeId, address juror, IDisputes.Vote v) internal {
        vm.prank(juror);
        disputes.commitVote(disputeId, commitmentOf(disputeId, juror, v));
    }

    function reveal(uint256 disputeId, address juror, IDisputes.Vote v) internal {
        vm.prank(juror);
        disputes.revealVote(disputeId, v, saltOf(juror));
    }

    /// @notice Every juror commits and reveals `v`.
    function voteAll(uint256 disputeId, address[] memory jurors, IDisputes.Vote v) internal {
        for (uint256 i = 0; i < jurors.length; ++i) {
            commit(disputeId, jurors[i], v);
        }
        for (uint256 i = 0; i < jurors.length; ++i) {
            reveal(disputeId, jurors[i], v);
        }
    }

    function stakedOf(address v) internal view returns (uint256) {
        return staking.stakeOf(v, IStaking.Role.Validator).staked;
    }

    function lockedOf(address v) internal view returns (uint256) {
        return staking.stakeOf(v, IStaking.Role.Validator).locked;
    }

    function isIn(address[] memory list, address a) internal pure returns (bool) {
        for (uint256 i = 0; i < list.length; ++i) {
            if (list[i] == a) return true;
        }
        return false;
    }

    function claimOf(IJobEscrow.Settlement memory s) internal pure returns (IClaimSource.Claim memory) {
        return IClaimSource.Claim({
            executor: s.executor,
            payer: s.requester,
            commitment: s.commitment,
            amount: s.escrow,
            collateral: s.collateral,
            challengeEnd: s.challengeEnd,
            disputeEnd: s.disputeEnd
        });
    }
}
