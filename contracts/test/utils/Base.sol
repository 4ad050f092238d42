// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./Vm.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {MockSettlementToken} from "../../src/mocks/MockSettlementToken.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {Staking} from "../../src/Staking.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {JobEscrow} from "../../src/JobEscrow.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {SamplingParams, FinishReason} from "../../src/libraries/Commitment.sol";

/// @notice Bounds a fuzzed value into [min, max] (as forge-std's `bound`, without its logging).
function bound(uint256 x, uint256 min, uint256 max) pure returns (uint256) {
    require(min <= max, "bound: min > max");
    if (x >= min && x <= max) return x;
    uint256 size = max - min + 1;
    return min + (x % size);
}

/// @notice Deploys the whole protocol the way the devnet does and offers one helper per lifecycle step.
abstract contract Base {
    uint64 internal constant CHALLENGE_WINDOW = 1 hours;
    uint64 internal constant DISPUTE_WINDOW = 1 days;
    uint64 internal constant MAX_JOB_DURATION = 1 days;
    uint16 internal constant VALIDATOR_FEE_BPS = 500; // 5%
    uint16 internal constant COLLATERAL_BPS = 20_000; // 2x the escrow
    uint256 internal constant UNBONDING_PERIOD = 7 days;

    uint64 internal constant INPUT_PRICE = 100_000; // 0.10 token per million input tokens
    uint64 internal constant OUTPUT_PRICE = 400_000; // 0.40 token per million output tokens
    uint96 internal constant MIN_EXECUTOR_STAKE = 100e6;

    address internal governance = address(0x60F);
    address internal requester = address(0xA11CE);
    address internal executor = address(0xE1E1);
    address internal otherExecutor = address(0xE2E2);
    address internal stranger = address(0xBAD);

    MockSettlementToken internal token;
    ModelRegistry internal registry;
    Staking internal staking;
    JobEscrow internal escrow;
    bytes32 internal modelId;

    bytes internal constant PROMPT = bytes('[{"role":"user","content":"Write a haiku about settlement."}]');

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        vm.roll(100);
        token = new MockSettlementToken();
        registry = new ModelRegistry(governance);
        staking = new Staking(IERC20(address(token)), registry, governance, UNBONDING_PERIOD);
        escrow = newEscrow(IERC20(address(token)), staking, registry);
        vm.startPrank(governance);
        staking.setJobEscrow(address(escrow));
        modelId = registry.registerModel(defaultModel());
        vm.stopPrank();

        setUpExecutor(executor, 1_000e6);
        setUpExecutor(otherExecutor, 1_000e6);
        fund(requester, 1_000_000e6);
    }

    /// @notice A JobEscrow with the default market parameters, owned by `governance`.
    function newEscrow(IERC20 token_, Staking staking_, ModelRegistry registry_)
        internal
        returns (JobEscrow)
    {
        return new JobEscrow(
            token_,
            staking_,
            registry_,
            governance,
            CHALLENGE_WINDOW,
            DISPUTE_WINDOW,
            MAX_JOB_DURATION,
            VALIDATOR_FEE_BPS,
            COLLATERAL_BPS
        );
    }

    function defaultModel() internal pure returns (IModelRegistry.Model memory) {
        return IModelRegistry.Model({
            name: "qwen2.5-coder-0.5b-instruct-q4_k_m",
            weightsSha256: 0x1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32,
            tokenizerHash: keccak256("qwen2.5 tokenizer + chat template"),
            terms: IModelRegistry.ModelTerms({
                active: true,
                samplerVersion: 1,
                maxContext: 32_768,
                auditRatePpm: 50_000,
                minExecutorStake: MIN_EXECUTOR_STAKE,
                rulesVersion: 0
            }),
            thresholds: IModelRegistry.VerificationThresholds({
                maxMarginPpm: 2_000_000, maxFlipRatePpm: 50_000
            })
        });
    }

    function fund(address account, uint256 amount) internal {
        token.mint(account, amount);
        vm.prank(account);
        token.approve(address(escrow), type(uint256).max);
        vm.prank(account);
        token.approve(address(staking), type(uint256).max);
    }

    function setUpExecutor(address who, uint256 stakeAmount) internal {
        fund(who, stakeAmount);
        vm.startPrank(who);
        staking.stake(IStaking.Role.Executor, stakeAmount);
        staking.registerExecutor("http://127.0.0.1:8545/executor", "cpu:2c;ram:24G");
        staking.setPrice(modelId, INPUT_PRICE, OUTPUT_PRICE);
        vm.stopPrank();
    }

    function defaultSpec() internal view returns (IJobEscrow.JobSpec memory) {
        return IJobEscrow.JobSpec({
            modelId: modelId,
            executor: address(0),
            callback: address(0),
            callbackGasLimit: 0,
            maxInputTokens: 512,
            maxOutputTokens: 256,
            maxInputPrice: 1_000_000,
            maxOutputPrice: 2_000_000,
            deadline: uint64(block.timestamp + 1 hours),
            sampling: SamplingParams({temperature: 700_000, topK: 40, topP: 950_000}),
            salt: keccak256("requester salt")
        });
    }

    /// @notice Packs `count` token ids (1, 2, …) as the escrow expects them.
    function tokens(uint256 count) internal pure returns (bytes memory packed) {
        packed = new bytes(count * 4);
        for (uint256 i = 0; i < count; ++i) {
            bytes4 id = bytes4(uint32(i + 1));
            for (uint256 j = 0; j < 4; ++j) {
                packed[i * 4 + j] = id[j];
            }
        }
    }

    function defaultResult(uint32 inputTokens, uint256 outputCount)
        internal
        pure
        returns (IJobEscrow.Result memory)
    {
        return IJobEscrow.Result({
            inputTokens: inputTokens,
            finishReason: FinishReason.Stop,
            promptTokensHash: keccak256("prompt token ids"),
            outputTokens: tokens(outputCount),
            output: bytes("Escrow holds the fee / tokens fall like autumn leaves / finality comes")
        });
    }

    function post(IJobEscrow.JobSpec memory spec)
        internal
        returns (uint256 jobId, IJobEscrow.Job memory job)
    {
        vm.prank(requester);
        (jobId, job) = escrow.postJob(spec, PROMPT);
    }

    function accept(address who, uint256 jobId, IJobEscrow.Job memory job)
        internal
        returns (IJobEscrow.Assignment memory assignment)
    {
        vm.prank(who);
        assignment = escrow.acceptJob(jobId, job);
    }

    function submit(
        uint256 jobId,
        IJobEscrow.Job memory job,
        IJobEscrow.Assignment memory assignment,
        IJobEscrow.Result memory result
    ) internal returns (IJobEscrow.Settlement memory settlement) {
        vm.prank(assignment.executor);
        settlement = escrow.submitResult(jobId, job, assignment, result);
    }

    /// @notice Posts, accepts and submits the default job; returns everything needed to finish it.
    function submittedJob(uint32 inputTokens, uint256 outputCount)
        internal
        returns (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Settlement memory settlement)
    {
        (jobId, job) = post(defaultSpec());
        IJobEscrow.Assignment memory assignment = accept(executor, jobId, job);
        settlement = submit(jobId, job, assignment, defaultResult(inputTokens, outputCount));
    }

    function finalizeAfterWindow(uint256 jobId, IJobEscrow.Settlement memory settlement) internal {
        vm.warp(settlement.challengeEnd);
        escrow.finalize(jobId, settlement);
    }

    // ---------------------------------------------------------------- helpers added for the unit suites

    /// @notice Wires `disputes_` (any contract) as the dispute contract of the escrow and of staking.
    function wireDisputes(address disputes_) internal {
        vm.startPrank(governance);
        escrow.setDisputes(disputes_);
        staking.setDisputes(disputes_);
        vm.stopPrank();
    }

    /// @notice Posts `spec` and has the default executor accept it.
    function acceptedJob(IJobEscrow.JobSpec memory spec)
        internal
        returns (uint256 jobId, IJobEscrow.Job memory job, IJobEscrow.Assignment memory assignment)
    {
        (jobId, job) = post(spec);
        assignment = accept(executor, jobId, job);
    }

    /// @notice `amount × bps / 10,000` rounded up, as the escrow rounds collateral and validator fees.
    function bpsCeil(uint256 amount, uint256 bps) internal pure returns (uint256) {
        return (amount * bps + 9_999) / 10_000;
    }

    /// @notice The validator fee of a payment at the default fee rate (rounded up).
    function feeOf(uint256 payment) internal pure returns (uint256) {
        return bpsCeil(payment, VALIDATOR_FEE_BPS);
    }

    /// @notice The collateral of an escrow at the default collateral ratio (rounded up).
    function collateralOf(uint256 escrowAmount) internal pure returns (uint256) {
        return bpsCeil(escrowAmount, COLLATERAL_BPS);
    }

    /// @notice The most a requester is compensated from a no-show's seized collateral (rounded down).
    function compensationCap(uint256 escrowAmount) internal view returns (uint256) {
        return escrowAmount * escrow.NO_SHOW_COMPENSATION_BPS() / 10_000;
    }

    /// @notice The seed `acceptJob` fixes for `job` in the current block (see `IJobEscrow.Assignment.seed`).
    function expectedSeed(uint256, IJobEscrow.Job memory job) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("infera.seed.v2"),
                block.chainid,
                address(escrow),
                keccak256(abi.encode(job)),
                block.prevrandao
            )
        );
    }
}
