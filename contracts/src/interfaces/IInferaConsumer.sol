// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IInferaConsumer
/// @notice Implemented by contracts that want a job's result pushed to them when it is submitted.
/// @dev The call is made with the gas limit the requester chose, inside try/catch: a consumer that
/// reverts or runs out of gas loses its callback but never blocks the executor's payment.
interface IInferaConsumer {
    /// @param jobId The job the result belongs to.
    /// @param output The output text (UTF-8).
    /// @param finishReason 1 = stop (end of sequence), 2 = length (max output tokens reached).
    function onJobResult(uint256 jobId, bytes calldata output, uint8 finishReason) external;
}
