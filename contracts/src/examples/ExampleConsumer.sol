// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {IInferaConsumer} from "../interfaces/IInferaConsumer.sol";

/// @title ExampleConsumer
/// @notice A minimal dApp on Infera, written as integrators should copy it: its owner funds it with the
/// settlement token, it posts jobs paid from that balance and receives each result through the escrow's
/// callback. It only takes results for jobs it posted itself, keeps a delivered result as provisional,
/// and treats it as final only after `confirm` saw the job `Finalized` (a `Rejected` job's result is
/// dropped). Refunds of unused escrow come back with `reclaim`.
contract ExampleConsumer is IInferaConsumer {
    using SafeERC20 for IERC20;

    /// @notice Where a job this contract asked for stands.
    enum State {
        None,
        Asked,
        Delivered,
        Final,
        Dropped
    }

    IJobEscrow public immutable escrow;
    IERC20 public immutable token;
    address public immutable owner;

    /// @notice Each job's state; `None` for jobs this contract never asked for.
    mapping(uint256 jobId => State) public state;
    /// @notice keccak256 of each job's output, once delivered (provisional until `Final`).
    mapping(uint256 jobId => bytes32) public resultHash;
    /// @notice Each job's finish reason, once delivered (1 = stop, 2 = length).
    mapping(uint256 jobId => uint8) public finishReason;

    /// @notice The caller is not the owner.
    error NotOwner(address caller);
    /// @notice The callback did not come from the escrow.
    error NotEscrow(address caller);
    /// @notice The job's callback is not this contract.
    error WrongCallback(address callback);
    /// @notice `confirm` on a job without a delivered result, or whose job is not settled yet.
    error NotConfirmable(uint256 jobId);

    /// @notice Emitted when a job was posted.
    event Asked(uint256 indexed jobId);
    /// @notice Emitted when a job's (provisional) result arrived.
    event ResultReceived(uint256 indexed jobId, bytes output, uint8 finishReason);
    /// @notice Emitted when a callback for a job this contract never asked for was ignored.
    event UnsolicitedResultIgnored(uint256 indexed jobId);
    /// @notice Emitted when a delivered result became final (`accepted`) or was dropped (job rejected).
    event ResultSettled(uint256 indexed jobId, bool accepted);

    constructor(IJobEscrow escrow_, IERC20 token_, address owner_) {
        escrow = escrow_;
        token = token_;
        owner = owner_;
    }

    /// @notice Posts a job paid from this contract's balance, with this contract as its callback.
    function ask(IJobEscrow.JobSpec calldata spec, bytes calldata prompt) external returns (uint256 jobId) {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (spec.callback != address(this)) revert WrongCallback(spec.callback);
        token.forceApprove(address(escrow), escrow.maxCost(spec));
        (jobId,) = escrow.postJob(spec, prompt);
        state[jobId] = State.Asked;
        emit Asked(jobId);
    }

    /// @inheritdoc IInferaConsumer
    function onJobResult(uint256 jobId, bytes calldata output, uint8 reason) external {
        if (msg.sender != address(escrow)) revert NotEscrow(msg.sender);
        // Anyone can name this contract as a job's callback and choose its executor (and so its text):
        // only jobs posted by `ask` count. Ignored rather than reverted: the escrow would only log it.
        if (state[jobId] != State.Asked) {
            emit UnsolicitedResultIgnored(jobId);
            return;
        }
        state[jobId] = State.Delivered;
        resultHash[jobId] = keccak256(output);
        finishReason[jobId] = reason;
        emit ResultReceived(jobId, output, reason);
    }

    /// @notice Settles a delivered result against the escrow, callable by anyone: final once the job is
    /// `Finalized`, dropped once it is `Rejected` (a validator proved it wrong).
    function confirm(uint256 jobId) external {
        if (state[jobId] != State.Delivered) revert NotConfirmable(jobId);
        IJobEscrow.JobStatus status = escrow.jobStatus(jobId);
        if (status == IJobEscrow.JobStatus.Finalized) {
            state[jobId] = State.Final;
            emit ResultSettled(jobId, true);
        } else if (status == IJobEscrow.JobStatus.Rejected) {
            state[jobId] = State.Dropped;
            delete resultHash[jobId];
            delete finishReason[jobId];
            emit ResultSettled(jobId, false);
        } else {
            revert NotConfirmable(jobId);
        }
    }

    /// @notice The result hash of a job whose result is final; zero while provisional or dropped.
    function finalResult(uint256 jobId) external view returns (bytes32) {
        return state[jobId] == State.Final ? resultHash[jobId] : bytes32(0);
    }

    /// @notice Pulls refunds credited by the escrow (if any) and sends this contract's whole balance to `to`.
    function reclaim(address to) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        (uint256 locked, uint256 releaseAt) = escrow.lockedCreditOf(address(this));
        if (escrow.credits(address(this)) != 0 || (locked != 0 && block.timestamp >= releaseAt)) {
            escrow.withdraw();
        }
        token.safeTransfer(to, token.balanceOf(address(this)));
    }
}
