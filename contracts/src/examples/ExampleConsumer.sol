// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IJobEscrow} from "../interfaces/IJobEscrow.sol";
import {IInferaConsumer} from "../interfaces/IInferaConsumer.sol";

/// @title ExampleConsumer
/// @notice A minimal dApp on Infera: its owner funds it with the settlement token, it posts jobs
/// paid from that balance and receives each result through the escrow's callback, keeping the
/// result's hash on-chain and the text in an event. Refunds of unused escrow come back with `reclaim`.
contract ExampleConsumer is IInferaConsumer {
    using SafeERC20 for IERC20;

    IJobEscrow public immutable escrow;
    IERC20 public immutable token;
    address public immutable owner;

    /// @notice keccak256 of each job's output, once delivered.
    mapping(uint256 jobId => bytes32) public resultHash;
    /// @notice Each job's finish reason, once delivered (1 = stop, 2 = length).
    mapping(uint256 jobId => uint8) public finishReason;

    /// @notice The caller is not the owner.
    error NotOwner(address caller);
    /// @notice The callback did not come from the escrow.
    error NotEscrow(address caller);
    /// @notice The job's callback is not this contract.
    error WrongCallback(address callback);

    /// @notice Emitted when a job was posted.
    event Asked(uint256 indexed jobId);
    /// @notice Emitted when a job's result arrived.
    event ResultReceived(uint256 indexed jobId, bytes output, uint8 finishReason);

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
        emit Asked(jobId);
    }

    /// @inheritdoc IInferaConsumer
    function onJobResult(uint256 jobId, bytes calldata output, uint8 reason) external {
        if (msg.sender != address(escrow)) revert NotEscrow(msg.sender);
        resultHash[jobId] = keccak256(output);
        finishReason[jobId] = reason;
        emit ResultReceived(jobId, output, reason);
    }

    /// @notice Pulls refunds credited by the escrow (if any) and sends this contract's whole balance to `to`.
    function reclaim(address to) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (escrow.credits(address(this)) != 0) escrow.withdraw();
        token.safeTransfer(to, token.balanceOf(address(this)));
    }
}
