// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IInferaConsumer} from "../../src/interfaces/IInferaConsumer.sol";

/// @notice A well-behaved consumer: stores what it was called with.
contract GoodConsumer is IInferaConsumer {
    uint256 public calls;
    uint256 public lastJobId;
    bytes public lastOutput;
    uint8 public lastFinishReason;
    address public lastCaller;

    function onJobResult(uint256 jobId, bytes calldata output, uint8 finishReason) external {
        calls += 1;
        lastJobId = jobId;
        lastOutput = output;
        lastFinishReason = finishReason;
        lastCaller = msg.sender;
    }
}

/// @notice Always reverts.
contract RevertingConsumer is IInferaConsumer {
    error NoThanks();

    function onJobResult(uint256, bytes calldata, uint8) external pure {
        revert NoThanks();
    }
}

/// @notice Burns every unit of gas it is given.
contract GasBurnerConsumer is IInferaConsumer {
    uint256 public counter;

    function onJobResult(uint256, bytes calldata, uint8) external {
        while (true) {
            counter += 1;
        }
    }
}

/// @notice Returns or reverts with `size` bytes of returndata (a "returndata bomb").
contract ReturnBombConsumer is IInferaConsumer {
    uint256 public immutable size;
    bool public immutable reverts;

    constructor(uint256 size_, bool reverts_) {
        size = size_;
        reverts = reverts_;
    }

    function onJobResult(uint256, bytes calldata, uint8) external view {
        uint256 n = size;
        if (reverts) {
            assembly ("memory-safe") {
                revert(0, n)
            }
        }
        assembly ("memory-safe") {
            return(0, n)
        }
    }
}

/// @notice Re-enters the escrow from its callback with `payload`; either propagates the failure
/// (`swallow` false) or records the revert data and returns normally (`swallow` true).
contract ReentrantConsumer is IInferaConsumer {
    address public immutable target;
    bytes public payload;
    bool public immutable swallow;
    bool public reentered;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(address target_, bool swallow_) {
        target = target_;
        swallow = swallow_;
    }

    function setPayload(bytes calldata payload_) external {
        payload = payload_;
    }

    function onJobResult(uint256, bytes calldata, uint8) external {
        reentered = true;
        (bool ok, bytes memory ret) = target.call(payload);
        reentrySucceeded = ok;
        reentryError = ret;
        if (!ok && !swallow) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}

/// @notice Succeeds only when it was given at least `required` gas: detects a starved callback.
contract StarvationProbe is IInferaConsumer {
    uint256 public immutable required;
    uint256 public hits;
    uint256 public gasAtEntry;

    error Starved(uint256 gasLeft);

    constructor(uint256 required_) {
        required = required_;
    }

    function onJobResult(uint256, bytes calldata, uint8) external {
        uint256 g = gasleft();
        if (g < required) revert Starved(g);
        gasAtEntry = g;
        hits += 1;
    }
}

/// @notice Records the gas it was given and never fails: what a consumer that silently degrades on
/// low gas would see.
contract GasMeterConsumer is IInferaConsumer {
    uint256 public hits;
    uint256 public gasAtEntry;
    uint256 public outputLength;

    function onJobResult(uint256, bytes calldata output, uint8) external {
        gasAtEntry = gasleft();
        hits += 1;
        outputLength = output.length;
    }
}
