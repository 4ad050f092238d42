// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {bound} from "../utils/Base.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {MockSettlementToken} from "../../src/mocks/MockSettlementToken.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {Staking} from "../../src/Staking.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {JobEscrow} from "../../src/JobEscrow.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {SamplingParams, FinishReason} from "../../src/libraries/Commitment.sol";

/// @notice Stand-in for the dispute contract: wired on both the escrow and staking, driven by the handler.
contract InvMockDisputes {
    JobEscrow internal immutable escrow;
    Staking internal immutable staking;
    address internal immutable driver;

    constructor(JobEscrow escrow_, Staking staking_) {
        escrow = escrow_;
        staking = staking_;
        driver = msg.sender;
    }

    modifier onlyDriver() {
        require(msg.sender == driver, "InvMockDisputes: driver only");
        _;
    }

    function freeze(uint256 jobId, IJobEscrow.Settlement calldata s) external onlyDriver {
        escrow.freeze(jobId, s);
    }

    function resolve(uint256 jobId, IJobEscrow.Settlement calldata s, bool faulty) external onlyDriver {
        escrow.resolve(jobId, s, faulty);
    }

    function payReward(address to, uint256 amount) external onlyDriver {
        escrow.payReward(to, amount);
    }

    function slash(address account, IStaking.Role role, uint256 amount, address to)
        external
        onlyDriver
        returns (uint256)
    {
        return staking.slash(account, role, amount, to);
    }

    function withdrawCredits() external onlyDriver {
        escrow.withdraw();
    }
}

/// @notice A consumer whose callback always reverts.
contract InvRevertingConsumer {
    function onJobResult(uint256, bytes calldata, uint8) external pure {
        revert("InvRevertingConsumer");
    }
}

/// @notice A consumer that burns all the gas it is given.
contract InvGasBombConsumer {
    uint256 internal sink;

    function onJobResult(uint256, bytes calldata, uint8) external {
        for (uint256 i = 0;; ++i) {
            sink = i;
        }
    }
}

/// @notice A consumer that tries to re-enter the escrow from its callback.
contract InvReentrantConsumer {
    JobEscrow internal immutable escrow;

    constructor(JobEscrow escrow_) {
        escrow = escrow_;
    }

    function onJobResult(uint256, bytes calldata, uint8) external {
        escrow.withdraw();
    }
}

/// @notice Drives JobEscrow (and the executors' stake in Staking) through random but well-formed
/// lifecycles, keeping every job's terms so calls carry correct calldata, plus ghost accounting.
contract EscrowHandler {
    struct Tracked {
        uint256 id;
        IJobEscrow.Job job;
        IJobEscrow.Assignment assignment;
        IJobEscrow.Settlement settlement;
        IJobEscrow.JobStatus status; // ghost: the status the handler saw the job reach
        uint8 paid; // finalize / honest resolve
        uint8 refunded; // cancel / expire / reject / finalize with a refund
        uint8 slashed; // expire / reject seizing collateral
        uint8 settled; // any move into a terminal status
    }

    uint256 public constant N = 3;
    uint64 internal constant START = 1_700_000_000;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant UNBONDING_PERIOD = 1 days;

    MockSettlementToken public token;
    ModelRegistry public registry;
    Staking public staking;
    JobEscrow public escrow;
    InvMockDisputes public disputes;
    InvRevertingConsumer public revertingConsumer;
    InvGasBombConsumer public gasBombConsumer;
    InvReentrantConsumer public reentrantConsumer;
    bytes32 public modelId;

    address public governance = address(0x60F);
    address public stranger = address(0xBAD);
    address[N] public requesters;
    address[N] public executors;

    Tracked[] internal _jobs;

    // ---------------------------------------------------------------- ghosts
    uint256 public currentTime;
    uint256 public ghostOpenEscrow;
    uint256 public ghostCreditSum;
    uint256 public ghostRewardPool;
    mapping(address => uint256) public ghostCredits;
    mapping(address => uint256) public ghostLocked;
    uint256 public ghostStakedIn; // every token ever staked
    uint256 public ghostSlashed; // taken by disputes through `slash`
    uint256 public ghostSeized; // collateral seized on expiry / rejection
    /// @notice Results accepted from someone other than the bound executor (must stay 0).
    uint256 public ghostNonBoundSubmits;
    /// @notice Successful calls that no rule allows: a terminal job moving, a stranger cancelling, a
    /// slash over the stake, an unstake over the free stake, … (must stay 0). `lastViolation` says which.
    uint256 public ghostViolations;
    string public lastViolation;
    mapping(bytes32 => uint256) public calls;
    /// @notice Revert selectors seen per action (to check the fuzzer reaches every path).
    mapping(bytes32 => mapping(bytes4 => uint256)) public reverts;

    constructor() {
        vm.warp(START);
        currentTime = START;
        token = new MockSettlementToken();
        registry = new ModelRegistry(governance);
        staking = new Staking(IERC20(address(token)), registry, governance, UNBONDING_PERIOD);
        escrow = new JobEscrow(
            IERC20(address(token)), staking, registry, governance, 1 hours, 1 hours, 6 hours, 500, 20_000
        );
        disputes = new InvMockDisputes(escrow, staking);
        revertingConsumer = new InvRevertingConsumer();
        gasBombConsumer = new InvGasBombConsumer();
        reentrantConsumer = new InvReentrantConsumer(escrow);

        vm.startPrank(governance);
        staking.setJobEscrow(address(escrow));
        staking.setDisputes(address(disputes));
        escrow.setDisputes(address(disputes));
        modelId = registry.registerModel(
            IModelRegistry.Model({
                name: "invariant-model",
                weightsSha256: keccak256("weights"),
                tokenizerHash: keccak256("tokenizer"),
                terms: IModelRegistry.ModelTerms({
                    active: true,
                    samplerVersion: 1,
                    maxContext: 8192,
                    auditRatePpm: 50_000,
                    minExecutorStake: 1e6,
                    rulesVersion: 0
                }),
                thresholds: IModelRegistry.VerificationThresholds({
                    maxMarginPpm: 2_000_000, maxFlipRatePpm: 50_000
                })
            })
        );
        vm.stopPrank();

        uint64[N] memory inPrice = [uint64(1_000_000), 5_000_000, 20_000_000];
        uint64[N] memory outPrice = [uint64(4_000_000), 10_000_000, 40_000_000];
        requesters = [address(0xA000), address(0xA001), address(0xA002)];
        executors = [address(0xE000), address(0xE001), address(0xE002)];
        for (uint256 i = 0; i < N; ++i) {
            _approve(requesters[i]);
            _approve(executors[i]);
            token.mint(executors[i], 10e6);
            vm.startPrank(executors[i]);
            staking.stake(IStaking.Role.Executor, 10e6);
            staking.registerExecutor("http://127.0.0.1/executor", "cpu");
            staking.setPrice(modelId, inPrice[i], outPrice[i]);
            vm.stopPrank();
            ghostStakedIn += 10e6;
        }
    }

    // ---------------------------------------------------------------- views for the invariant contract

    function jobCount() external view returns (uint256) {
        return _jobs.length;
    }

    function jobAt(uint256 i)
        external
        view
        returns (
            uint256 id,
            IJobEscrow.JobStatus status,
            uint256 escrowAmount,
            address boundExecutor,
            uint256 collateral,
            uint8 paid,
            uint8 refunded,
            uint8 slashed,
            uint8 settled
        )
    {
        Tracked storage t = _jobs[i];
        return (
            t.id,
            t.status,
            t.job.escrow,
            t.assignment.executor,
            t.assignment.collateral,
            t.paid,
            t.refunded,
            t.slashed,
            t.settled
        );
    }

    /// @notice Every account that can ever hold credits or stake.
    function accounts() public view returns (address[] memory list) {
        list = new address[](2 * N + 2);
        for (uint256 i = 0; i < N; ++i) {
            list[i] = requesters[i];
            list[N + i] = executors[i];
        }
        list[2 * N] = stranger;
        list[2 * N + 1] = address(disputes);
    }

    // ---------------------------------------------------------------- requesters

    function postJob(
        uint256 requesterSeed,
        uint256 mode,
        uint32 maxIn,
        uint32 maxOut,
        uint64 priceIn,
        uint64 priceOut,
        uint64 duration,
        uint32 callbackGas
    ) external {
        _sync();
        calls["postJob"]++;
        address requester = requesters[requesterSeed % N];
        IJobEscrow.JobSpec memory spec;
        spec.modelId = modelId;
        if (mode % 4 == 0) spec.executor = executors[(mode / 4) % N];
        uint256 callbackKind = (mode / 16) % 6;
        if (callbackKind == 1) spec.callback = address(revertingConsumer);
        else if (callbackKind == 2) spec.callback = address(gasBombConsumer);
        else if (callbackKind == 3) spec.callback = address(reentrantConsumer);
        else if (callbackKind == 4) spec.callback = address(0xC0DE); // no code
        if (spec.callback != address(0)) spec.callbackGasLimit = uint32(bound(callbackGas, 0, 100_000));
        // Rarely 0 input tokens: such a job could never take a valid result, so posting it must revert.
        spec.maxInputTokens = uint32(bound(maxIn, (mode / 96) % 16 == 0 ? 0 : 1, 4096));
        spec.maxOutputTokens = uint32(bound(maxOut, 1, 2048));
        // Mostly prices every executor accepts; sometimes any.
        bool generous = priceIn % 4 != 0;
        spec.maxInputPrice = uint64(bound(priceIn >> 2, generous ? 20e6 : 0, 60e6));
        spec.maxOutputPrice = uint64(bound(priceOut, generous ? 40e6 : 0, 60e6));
        spec.deadline = uint64(
            block.timestamp + bound(duration, duration % 8 == 0 ? 1 : 15 minutes, escrow.maxJobDuration())
        );
        spec.sampling = SamplingParams({temperature: 700_000, topK: 40, topP: 950_000});

        uint256 cost = escrow.maxCost(spec);
        if (token.balanceOf(requester) < cost) token.mint(requester, cost);
        uint256 balanceBefore = token.balanceOf(address(escrow));

        vm.prank(requester);
        try escrow.postJob(spec, bytes("prompt")) returns (uint256 jobId, IJobEscrow.Job memory job) {
            calls["postJob.ok"]++;
            if (cost == 0) _violation("posted an empty job");
            if (spec.maxInputTokens == 0) _violation("posted a job that can never take a result");
            if (
                job.validatorFeeBps != escrow.validatorFeeBps() || job.collateralBps != escrow.collateralBps()
                    || job.challengeWindow != escrow.challengeWindow()
                    || job.disputeWindow != escrow.disputeWindow()
            ) _violation("posted job does not snapshot the market parameters");
            if (job.escrow != cost || job.requester != requester) _violation("posted terms wrong");
            if (token.balanceOf(address(escrow)) != balanceBefore + cost) _violation("escrow not pulled");
            Tracked storage t = _jobs.push();
            t.id = jobId;
            t.job = job;
            t.status = IJobEscrow.JobStatus.Posted;
            ghostOpenEscrow += job.escrow;
        } catch {}
    }

    function cancelJob(uint256 jobSeed, uint256 callerSeed) external {
        _sync();
        if (_jobs.length == 0) return;
        calls["cancelJob"]++;
        Tracked storage t = _pick(jobSeed, IJobEscrow.JobStatus.Posted);
        IJobEscrow.Job memory job = t.job;
        // Mostly someone else (reverts before the deadline), so that jobs live long enough to be accepted.
        address caller = callerSeed % 4 == 0 ? job.requester : _anyActor(callerSeed / 4);

        vm.prank(caller);
        try escrow.cancelJob(t.id, job) {
            calls["cancelJob.ok"]++;
            if (caller != job.requester && block.timestamp < job.spec.deadline) {
                _violation("non-requester cancelled before the deadline");
            }
            _terminal(t, IJobEscrow.JobStatus.Cancelled, IJobEscrow.JobStatus.Posted);
            t.refunded++;
            ghostOpenEscrow -= job.escrow;
            _credit(job.requester, job.escrow);
        } catch {}
    }

    // ---------------------------------------------------------------- executors

    function acceptJob(uint256 jobSeed, uint256 executorSeed) external {
        _sync();
        if (_jobs.length == 0) return;
        calls["acceptJob"]++;
        Tracked storage t = _pick(jobSeed, IJobEscrow.JobStatus.Posted);
        IJobEscrow.Job memory job = t.job;
        address executor = executorSeed % 4 == 0 && job.spec.executor != address(0)
            ? job.spec.executor
            : executors[executorSeed % N];
        uint256 expectedCollateral = job.escrow * job.collateralBps / BPS;
        uint256 freeBefore = staking.freeStake(executor, IStaking.Role.Executor);

        vm.prank(executor);
        try escrow.acceptJob(t.id, job) returns (IJobEscrow.Assignment memory a) {
            calls["acceptJob.ok"]++;
            if (t.status != IJobEscrow.JobStatus.Posted) _violation("accepted a job not posted");
            if (job.spec.executor != address(0) && job.spec.executor != executor) {
                _violation("accepted by a non-designated executor");
            }
            if (block.timestamp >= job.spec.deadline) _violation("accepted after the deadline");
            if (a.executor != executor || a.collateral != expectedCollateral) _violation("assignment wrong");
            if (expectedCollateral > freeBefore) _violation("locked more than the free stake");
            t.assignment = a;
            t.status = IJobEscrow.JobStatus.Accepted;
            ghostLocked[executor] += a.collateral;
        } catch (bytes memory err) {
            reverts["acceptJob"][bytes4(err)]++;
        }
    }

    function submitResult(
        uint256 jobSeed,
        uint256 callerSeed,
        uint32 inputTokens,
        uint32 outputCount,
        bool length
    ) external {
        _sync();
        if (_jobs.length == 0) return;
        calls["submitResult"]++;
        Tracked storage t = _pick(jobSeed, IJobEscrow.JobStatus.Accepted);
        IJobEscrow.Job memory job = t.job;
        IJobEscrow.Assignment memory a = t.assignment;
        bool bound_ = callerSeed % 4 != 0;
        address caller = bound_ ? a.executor : _anyActor(callerSeed / 4);
        bound_ = caller == a.executor;

        uint256 count = length ? job.spec.maxOutputTokens : bound(outputCount, 0, job.spec.maxOutputTokens);
        IJobEscrow.Result memory result = IJobEscrow.Result({
            inputTokens: uint32(
                bound(inputTokens, 1, job.spec.maxInputTokens == 0 ? 1 : job.spec.maxInputTokens)
            ),
            finishReason: length ? FinishReason.Length : FinishReason.Stop,
            promptTokensHash: keccak256("prompt ids"),
            outputTokens: new bytes(count * 4),
            output: bytes("output")
        });
        uint256 expectedPayment = (uint256(result.inputTokens) * a.inputPrice + count * a.outputPrice) / 1e6;

        vm.prank(caller);
        try escrow.submitResult(t.id, job, a, result) returns (IJobEscrow.Settlement memory s) {
            calls["submitResult.ok"]++;
            if (!bound_) ghostNonBoundSubmits++;
            if (t.status != IJobEscrow.JobStatus.Accepted) _violation("submitted to a job not accepted");
            if (block.timestamp > job.spec.deadline) _violation("submitted after the deadline");
            if (s.payment != expectedPayment || s.payment > s.escrow) _violation("payment wrong");
            if (s.escrow != job.escrow || s.collateral != a.collateral || s.executor != a.executor) {
                _violation("settlement terms wrong");
            }
            if (
                s.challengeEnd != block.timestamp + job.challengeWindow
                    || s.disputeEnd != s.challengeEnd + job.disputeWindow
            ) _violation("windows not the ones fixed at posting");
            if (s.validatorFee != s.payment * job.validatorFeeBps / BPS) {
                _violation("fee not the one fixed at posting");
            }
            t.settlement = s;
            t.status = IJobEscrow.JobStatus.Submitted;
        } catch (bytes memory err) {
            reverts["submitResult"][bytes4(err)]++;
        }
    }

    // ---------------------------------------------------------------- anyone

    function finalize(uint256 jobSeed, uint256 callerSeed) external {
        _sync();
        if (_jobs.length == 0) return;
        calls["finalize"]++;
        Tracked storage t =
            _pick(jobSeed, jobSeed % 3 == 0 ? IJobEscrow.JobStatus.Disputed : IJobEscrow.JobStatus.Submitted);
        IJobEscrow.Settlement memory s = t.settlement;
        IJobEscrow.JobStatus before = t.status;
        // Half the time, let the window run out first (time only moves forward).
        if (callerSeed % 2 == 0) {
            _warpTo(before == IJobEscrow.JobStatus.Disputed ? s.disputeEnd : s.challengeEnd);
        }

        vm.prank(_anyActor(callerSeed / 2));
        try escrow.finalize(t.id, s) {
            calls["finalize.ok"]++;
            if (before == IJobEscrow.JobStatus.Submitted && block.timestamp < s.challengeEnd) {
                _violation("finalized inside the challenge window");
            }
            if (before == IJobEscrow.JobStatus.Disputed && block.timestamp < s.disputeEnd) {
                _violation("finalized a live dispute");
            }
            if (before != IJobEscrow.JobStatus.Submitted && before != IJobEscrow.JobStatus.Disputed) {
                _violation("finalized from a wrong status");
            }
            _terminal(t, IJobEscrow.JobStatus.Finalized, before);
            _settlePaid(t, s);
        } catch {}
    }

    function expire(uint256 jobSeed, uint256 callerSeed) external {
        _sync();
        if (_jobs.length == 0) return;
        calls["expire"]++;
        Tracked storage t = _pick(jobSeed, IJobEscrow.JobStatus.Accepted);
        IJobEscrow.Job memory job = t.job;
        IJobEscrow.Assignment memory a = t.assignment;
        uint256 stakedBefore = staking.stakeOf(a.executor, IStaking.Role.Executor).staked;
        // Half the time, let the deadline pass first (time only moves forward).
        if (callerSeed % 3 == 0) _warpTo(uint256(job.spec.deadline) + 1);

        vm.prank(_anyActor(callerSeed / 2));
        try escrow.expire(t.id, job, a) {
            calls["expire.ok"]++;
            if (block.timestamp <= job.spec.deadline) _violation("expired before the deadline");
            _terminal(t, IJobEscrow.JobStatus.Expired, IJobEscrow.JobStatus.Accepted);
            t.refunded++;
            if (a.collateral != 0) t.slashed++;
            if (a.collateral > stakedBefore) _violation("seized more than the stake");
            ghostOpenEscrow -= job.escrow;
            ghostLocked[a.executor] -= a.collateral;
            ghostSeized += a.collateral;
            _credit(job.requester, job.escrow + a.collateral);
        } catch {}
    }

    function withdraw(uint256 actorSeed) external {
        _sync();
        calls["withdraw"]++;
        address[] memory list = accounts();
        address who = list[actorSeed % list.length];
        // Mostly an account that has something to withdraw.
        for (uint256 k = 0; k < list.length && actorSeed % 4 != 0 && escrow.credits(who) == 0; ++k) {
            who = list[(actorSeed % list.length + k) % list.length];
        }
        uint256 credit = escrow.credits(who);
        uint256 balanceBefore = token.balanceOf(who);

        bool ok;
        if (who == address(disputes)) {
            try disputes.withdrawCredits() {
                ok = true;
            } catch {}
        } else {
            vm.prank(who);
            try escrow.withdraw() {
                ok = true;
            } catch {}
        }
        if (!ok) return;
        calls["withdraw.ok"]++;
        if (token.balanceOf(who) != balanceBefore + credit || credit == 0) {
            _violation("withdrew a wrong amount");
        }
        ghostCreditSum -= ghostCredits[who];
        ghostCredits[who] = 0;
    }

    /// @notice One fuzzed entry for the dispute contract's calls.
    function disputeOp(uint256 op, uint256 seed, uint256 amount) external {
        uint256 k = op % 8;
        if (k < 3) freeze(seed);
        else if (k < 6) resolve(seed, (op / 8) % 2 == 0);
        else if (k == 6) payReward(seed, amount);
        else slash(seed, amount, (op / 8) % 4 == 0);
    }

    /// @notice One fuzzed entry for the executors' own stake and (rarely) governance.
    function stakeOp(uint256 op, uint256 seed, uint256 amount) external {
        uint256 k = op % 8;
        if (k < 3) {
            stakeMore(seed, amount);
        } else if (k < 5) {
            requestUnstake(seed, amount);
        } else if (k < 7) {
            withdrawStake(seed);
        } else {
            setParameters(
                uint64(seed), uint64(seed >> 64), uint64(seed >> 128), uint16(amount), uint16(amount >> 16)
            );
        }
    }

    function warp(uint256 seconds_) external {
        calls["warp"]++;
        currentTime += seconds_ % 8 == 0
            ? bound(seconds_ >> 3, 1, 2 days)
            : bound(seconds_ >> 3, 1, 90 minutes);
        vm.warp(currentTime);
    }

    // ---------------------------------------------------------------- dispute contract

    function freeze(uint256 jobSeed) public {
        _sync();
        if (_jobs.length == 0) return;
        calls["freeze"]++;
        Tracked storage t = _pick(jobSeed, IJobEscrow.JobStatus.Submitted);
        IJobEscrow.Settlement memory s = t.settlement;
        try disputes.freeze(t.id, s) {
            calls["freeze.ok"]++;
            if (block.timestamp >= s.challengeEnd) _violation("frozen after the challenge window");
            if (t.status != IJobEscrow.JobStatus.Submitted) _violation("froze a job not submitted");
            t.status = IJobEscrow.JobStatus.Disputed;
        } catch {}
    }

    function resolve(uint256 jobSeed, bool faulty) public {
        _sync();
        if (_jobs.length == 0) return;
        calls["resolve"]++;
        Tracked storage t = _pick(jobSeed, IJobEscrow.JobStatus.Disputed);
        IJobEscrow.Settlement memory s = t.settlement;
        uint256 stakedBefore = staking.stakeOf(s.executor, IStaking.Role.Executor).staked;
        uint256 disputesBefore = token.balanceOf(address(disputes));

        try disputes.resolve(t.id, s, faulty) {
            if (faulty) calls["resolve.faulty.ok"]++;
            else calls["resolve.honest.ok"]++;
            if (!faulty) {
                _terminal(t, IJobEscrow.JobStatus.Finalized, IJobEscrow.JobStatus.Disputed);
                _settlePaid(t, s);
                return;
            }
            _terminal(t, IJobEscrow.JobStatus.Rejected, IJobEscrow.JobStatus.Disputed);
            t.refunded++;
            if (s.collateral != 0) t.slashed++;
            if (s.collateral > stakedBefore) _violation("seized more than the stake");
            if (token.balanceOf(address(disputes)) != disputesBefore + s.collateral) {
                _violation("collateral not sent to disputes");
            }
            ghostOpenEscrow -= s.escrow;
            ghostLocked[s.executor] -= s.collateral;
            ghostSeized += s.collateral;
            _credit(s.requester, s.escrow);
        } catch {}
    }

    function payReward(uint256 actorSeed, uint256 amount) public {
        _sync();
        calls["payReward"]++;
        address[] memory list = accounts();
        address to = list[actorSeed % list.length];
        uint256 pool = escrow.rewardPool();
        amount = actorSeed % 7 == 0 ? bound(amount, pool + 1, pool + 1e6) : bound(amount, 0, pool);
        try disputes.payReward(to, amount) {
            calls["payReward.ok"]++;
            if (amount > pool) _violation("paid more than the pool");
            ghostRewardPool -= amount;
            _credit(to, amount);
        } catch {}
    }

    function slash(uint256 executorSeed, uint256 amount, bool validatorRole) public {
        _sync();
        calls["slash"]++;
        address who = executors[executorSeed % N];
        IStaking.Role role = validatorRole ? IStaking.Role.Validator : IStaking.Role.Executor;
        IStaking.StakeInfo memory info = staking.stakeOf(who, role);
        uint256 unbonding = staking.unbondingOf(who, role).amount;
        uint256 total = uint256(info.staked) + unbonding;
        // Mostly a small slash; sometimes one well over the stake.
        amount = amount % 8 == 0 ? bound(amount >> 3, 0, 2 * total + 1) : bound(amount >> 3, 0, total / 8 + 1);
        uint256 disputesBefore = token.balanceOf(address(disputes));

        try disputes.slash(who, role, amount, address(disputes)) returns (uint256 slashed) {
            calls["slash.ok"]++;
            if (slashed > amount) _violation("slashed more than asked");
            if (slashed > uint256(info.staked) - info.locked + unbonding) {
                _violation("slashed more than the stake");
            }
            if (staking.stakeOf(who, role).locked != info.locked) _violation("slash touched locked stake");
            if (token.balanceOf(address(disputes)) != disputesBefore + slashed) {
                _violation("slash not delivered");
            }
            ghostSlashed += slashed;
        } catch {}
    }

    // ---------------------------------------------------------------- executors' stake

    function stakeMore(uint256 executorSeed, uint256 amount) public {
        _sync();
        calls["stakeMore"]++;
        address who = executors[executorSeed % N];
        amount = bound(amount, 1, 5e6);
        token.mint(who, amount);
        vm.prank(who);
        try staking.stake(IStaking.Role.Executor, amount) {
            ghostStakedIn += amount;
        } catch {}
    }

    function requestUnstake(uint256 executorSeed, uint256 amount) public {
        _sync();
        calls["requestUnstake"]++;
        address who = executors[executorSeed % N];
        uint256 free = staking.freeStake(who, IStaking.Role.Executor);
        // Mostly within the free stake; sometimes over it (must revert).
        amount = amount % 8 == 0
            ? bound(amount >> 3, 1, free + free / 4 + 1)
            : bound(amount >> 3, 1, free / 3 + 1);
        vm.prank(who);
        try staking.requestUnstake(IStaking.Role.Executor, amount) {
            calls["requestUnstake.ok"]++;
            if (amount > free) _violation("unstaked more than the free stake");
        } catch {}
    }

    function withdrawStake(uint256 executorSeed) public {
        _sync();
        calls["withdrawStake"]++;
        address who = executors[executorSeed % N];
        IStaking.Unbonding memory pending = staking.unbondingOf(who, IStaking.Role.Executor);
        uint256 balanceBefore = token.balanceOf(who);
        vm.prank(who);
        try staking.withdraw(IStaking.Role.Executor) {
            calls["withdrawStake.ok"]++;
            if (block.timestamp < pending.releaseAt) _violation("withdrew stake still unbonding");
            if (token.balanceOf(who) != balanceBefore + pending.amount) {
                _violation("withdrew a wrong stake amount");
            }
        } catch {}
    }

    // ---------------------------------------------------------------- governance

    function setParameters(
        uint64 challenge,
        uint64 dispute,
        uint64 duration,
        uint16 feeBps,
        uint16 collateralBps
    ) public {
        _sync();
        calls["setParameters"]++;
        vm.prank(governance);
        try escrow.setParameters(
            uint64(bound(challenge, 10 minutes, 2 hours)),
            uint64(bound(dispute, 1 hours, 6 hours)),
            uint64(bound(duration, 1 hours, 12 hours)),
            uint16(bound(feeBps, 0, 2_000)),
            uint16(bound(collateralBps, 5_000, 50_000))
        ) {}
            catch {}
    }

    // ---------------------------------------------------------------- end of a run (not fuzzed)

    /// @notice Warps past every deadline, challenge and dispute window and ends every open job the way
    /// the protocol allows, as a third party: cancel, expire, finalize. Returns how many calls failed.
    function finishAll() external returns (uint256 failures) {
        uint256 latest = currentTime;
        for (uint256 i = 0; i < _jobs.length; ++i) {
            Tracked storage t = _jobs[i];
            latest = _max(latest, t.job.spec.deadline);
            latest = _max(latest, t.settlement.challengeEnd);
            latest = _max(latest, t.settlement.disputeEnd);
        }
        currentTime = latest + 1;
        vm.warp(currentTime);

        for (uint256 i = 0; i < _jobs.length; ++i) {
            Tracked storage t = _jobs[i];
            IJobEscrow.JobStatus status = escrow.jobStatus(t.id);
            if (status == IJobEscrow.JobStatus.Posted) {
                IJobEscrow.Job memory job = t.job;
                vm.prank(address(0xC0FFEE)); // past the deadline anyone may close a posted job
                try escrow.cancelJob(t.id, job) {
                    _terminal(t, IJobEscrow.JobStatus.Cancelled, IJobEscrow.JobStatus.Posted);
                    t.refunded++;
                    ghostOpenEscrow -= job.escrow;
                    _credit(job.requester, job.escrow);
                } catch {
                    failures++;
                }
            } else if (status == IJobEscrow.JobStatus.Accepted) {
                IJobEscrow.Job memory job = t.job;
                IJobEscrow.Assignment memory a = t.assignment;
                try escrow.expire(t.id, job, a) {
                    _terminal(t, IJobEscrow.JobStatus.Expired, IJobEscrow.JobStatus.Accepted);
                    t.refunded++;
                    if (a.collateral != 0) t.slashed++;
                    ghostOpenEscrow -= job.escrow;
                    ghostLocked[a.executor] -= a.collateral;
                    ghostSeized += a.collateral;
                    _credit(job.requester, job.escrow + a.collateral);
                } catch {
                    failures++;
                }
            } else if (status == IJobEscrow.JobStatus.Submitted || status == IJobEscrow.JobStatus.Disputed) {
                IJobEscrow.Settlement memory s = t.settlement;
                try escrow.finalize(t.id, s) {
                    _terminal(t, IJobEscrow.JobStatus.Finalized, status);
                    _settlePaid(t, s);
                } catch {
                    failures++;
                }
            }
        }
    }

    /// @notice Withdraws every credit. Returns how many withdrawals failed.
    function withdrawAll() external returns (uint256 failures) {
        address[] memory list = accounts();
        for (uint256 i = 0; i < list.length; ++i) {
            address who = list[i];
            if (escrow.credits(who) == 0) continue;
            bool ok;
            if (who == address(disputes)) {
                try disputes.withdrawCredits() {
                    ok = true;
                } catch {}
            } else {
                vm.prank(who);
                try escrow.withdraw() {
                    ok = true;
                } catch {}
            }
            if (!ok) {
                failures++;
                continue;
            }
            ghostCreditSum -= ghostCredits[who];
            ghostCredits[who] = 0;
        }
    }

    // ---------------------------------------------------------------- internals

    function _sync() internal {
        vm.warp(currentTime);
    }

    function _warpTo(uint256 timestamp) internal {
        if (timestamp <= currentTime) return;
        currentTime = timestamp;
        vm.warp(timestamp);
    }

    function _approve(address who) internal {
        vm.startPrank(who);
        token.approve(address(escrow), type(uint256).max);
        token.approve(address(staking), type(uint256).max);
        vm.stopPrank();
    }

    /// @dev Mostly a job in `wanted` status (scanning from a random start); sometimes any job, so calls in
    /// the wrong status are tried too.
    function _pick(uint256 seed, IJobEscrow.JobStatus wanted) internal view returns (Tracked storage) {
        uint256 len = _jobs.length;
        uint256 start = seed % len;
        if ((seed / len) % 8 != 0) {
            for (uint256 k = 0; k < len; ++k) {
                uint256 i = (start + k) % len;
                if (_jobs[i].status == wanted) return _jobs[i];
            }
        }
        return _jobs[start];
    }

    function _anyActor(uint256 seed) internal view returns (address) {
        uint256 k = seed % (2 * N + 1);
        if (k < N) return requesters[k];
        if (k < 2 * N) return executors[k - N];
        return stranger;
    }

    function _terminal(Tracked storage t, IJobEscrow.JobStatus to, IJobEscrow.JobStatus expectedFrom)
        internal
    {
        if (t.status != expectedFrom) _violation("terminal transition from an unexpected status");
        t.status = to;
        t.settled++;
    }

    function _settlePaid(Tracked storage t, IJobEscrow.Settlement memory s) internal {
        t.paid++;
        uint256 fee = s.validatorFee;
        if (fee > s.payment || s.payment > s.escrow) _violation("settled more than the escrow");
        uint256 refund = s.escrow - s.payment;
        if (refund != 0) t.refunded++;
        ghostOpenEscrow -= s.escrow;
        ghostRewardPool += fee;
        ghostLocked[s.executor] -= s.collateral;
        _credit(s.executor, s.payment - fee);
        _credit(s.requester, refund);
    }

    function _credit(address who, uint256 amount) internal {
        ghostCredits[who] += amount;
        ghostCreditSum += amount;
    }

    function _violation(string memory what) internal {
        ghostViolations++;
        lastViolation = what;
    }

    function _max(uint256 a, uint256 b) internal pure returns (uint256) {
        return a > b ? a : b;
    }
}
