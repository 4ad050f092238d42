// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IInferaConsumer
/// @notice Implemented by contracts that want a job's result pushed to them when it is submitted.
/// @dev The call is made with the gas limit the requester chose, inside try/catch: a consumer that
/// reverts or runs out of gas loses its callback but never blocks the executor's payment.
///
/// The result is PROVISIONAL. It arrives at submission, before the challenge window: the text is bound
/// to the executor's commitment (its hash is inside it), but a validator may still prove it wrong and
/// the job then ends `Rejected`. Act on a result only once `IJobEscrow.jobStatus(jobId)` is `Finalized`
/// (see `ExampleConsumer.confirm`). Anyone can post a job that names any contract as its callback:
/// accept callbacks only for jobs you posted yourself.
interface IInferaConsumer {
    /// @param jobId The job the result belongs to.
    /// @param output The output text (UTF-8), provisional until the job is finalized.
    /// @param finishReason 1 = stop (end of sequence), 2 = length (max output tokens reached).
    function onJobResult(uint256 jobId, bytes calldata output, uint8 finishReason) external;
}
