// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {bound} from "../utils/Base.sol";
import {vmExtra} from "./VmExtra.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {MockSettlementToken} from "../../src/mocks/MockSettlementToken.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {Staking} from "../../src/Staking.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {JobEscrow} from "../../src/JobEscrow.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {Commitment, SamplingParams, FinishReason} from "../../src/libraries/Commitment.sol";

interface IGovernanceOps {
    function govOp(uint256 op, uint256 a, uint256 b) external;
}

interface IOutsiderOps {
    function outsider(uint256 op, uint256 callerSeed, uint256 amount) external;
}

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
        escrow.freezeClaim(jobId, abi.encode(s));
    }

    function resolve(uint256 jobId, IJobEscrow.Settlement calldata s, bool faulty) external onlyDriver {
        escrow.resolveClaim(jobId, abi.encode(s), faulty);
    }

    function payReward(address to, uint256 amount) external onlyDriver {
        escrow.payReward(to, amount);
    }

    /// @notice As IDisputes: no dispute of its own outlasts the jobs it freezes (the escrow's horizon).
    function riskHorizon() external pure returns (uint256) {
        return 0;
    }

    /// @notice As IDisputes: no jury draw is ever pending here.
    function pendingDraws() external pure returns (uint256) {
        return 0;
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

/// @notice A consumer that records the gas it was given and the text it received.
contract InvMeasuringConsumer {
    uint256 public lastJob;
    uint256 public lastGas;
    bytes32 public lastOutput;

    function onJobResult(uint256 jobId, bytes calldata output, uint8) external {
        uint256 gas = gasleft();
        lastJob = jobId;
        lastGas = gas;
        lastOutput = keccak256(output);
    }
}

/// @notice The market as governance last set it (the handler's model; GovernanceHandler moves it).
struct Market {
    uint64 challengeWindow;
    uint64 disputeWindow;
    uint64 maxJobDuration;
    uint16 validatorFeeBps;
    uint16 collateralBps;
    uint256 unbondingPeriod;
    /// @notice Latest end of a job posted under earlier parameters (raised by each `setParameters`).
    uint256 earlierJobsHorizon;
    IModelRegistry.ModelTerms terms;
    IModelRegistry.VerificationThresholds thresholds;
}

/// @notice Drives JobEscrow (and the executors' stake in Staking) through random lifecycles, valid and
/// invalid calls alike, against an independent model of what every call must do: each call's outcome
/// (success or revert) is predicted from the model, and each success is checked field by field. The
/// model also keeps the books the invariants compare with: credits, locked credits, the reward pool,
/// every executor's staked / locked / unbonding stake.
///
/// Self-dealing: one owner controls `requesters[0]`, `executors[0]` and `vault`; `selfDeal` has it post a
/// job for itself with a near deadline and let it expire. The owner ledger (`owner*`) proves that no stake
/// reaches those addresses faster than the unbonding period.
contract EscrowHandler {
    struct Tracked {
        uint256 id;
        IJobEscrow.Job job;
        IJobEscrow.Assignment assignment;
        IJobEscrow.Settlement settlement;
        IJobEscrow.JobStatus status; // the status the model expects
        uint8 paid; // finalize / honest resolve
        uint8 refunded; // cancel / expire / reject / finalize with a refund
        uint8 slashed; // expire / reject seizing collateral
        uint8 settled; // any move into a terminal status
        uint256 acceptSeq; // order of acceptance, against the executor's last slash of locked stake
        IModelRegistry.Rules rules; // the verification rules in force at posting
    }

    /// @notice The model of one executor's stake.
    struct StakeModel {
        uint256 staked;
        uint256 locked;
        uint256 pending;
        uint256 releaseAt;
        uint256 completed;
        uint256 expired;
        uint256 disputesLost;
        uint256 lockedSlashSeq; // acceptance counter when a slash last reached locked stake
    }

    struct Price {
        bool active;
        uint64 input;
        uint64 output;
    }

    uint256 public constant N = 3;
    uint256 internal constant NONE = type(uint256).max;
    uint64 internal constant START = 1_700_000_000;
    uint256 internal constant BPS = 10_000;
    uint256 internal constant PRICE_UNIT = 1_000_000;
    uint256 internal constant INITIAL_STAKE = 10e6;
    uint256 internal constant TEXT_PER_TOKEN = 128; // JobEscrow.MAX_TEXT_BYTES_PER_TOKEN
    uint256 internal constant COMPENSATION_BPS = 1_000; // JobEscrow.NO_SHOW_COMPENSATION_BPS
    uint32 internal constant MAX_CALLBACK_GAS = 2_000_000;

    MockSettlementToken public token;
    ModelRegistry public registry;
    Staking public staking;
    JobEscrow public escrow;
    InvMockDisputes public disputes;
    InvRevertingConsumer public revertingConsumer;
    InvGasBombConsumer public gasBombConsumer;
    InvReentrantConsumer public reentrantConsumer;
    InvMeasuringConsumer public measuringConsumer;
    bytes32 public modelId;

    address public governance = address(0x60F);
    address public stranger = address(0xBAD);
    /// @notice A third address of the self-dealing owner (withdrawals go there too).
    address public vault = address(0x0A17);
    /// @notice Where other accounts send withdrawals to (`withdrawTo`).
    address public sink = address(0x5111C);
    address[N] public requesters;
    address[N] public executors;

    /// @notice The sibling handlers (governance, outsider): they report through this one.
    address public governanceHandler;
    address public outsiderHandler;

    Tracked[] internal _jobs;
    mapping(address => StakeModel) internal _stake;
    mapping(address => Price) internal _price;
    Market internal _market;
    uint256 internal _acceptSeq;

    // ---------------------------------------------------------------- ghosts
    uint256 public currentTime;
    uint256 public ghostNextJobId = 1;
    uint256 public ghostOpenEscrow;
    uint256 public ghostCreditSum;
    uint256 public ghostLockedCreditSum;
    uint256 public ghostRewardPool;
    /// @notice Latest deadline + challenge + dispute window of any posted job: when its last dispute ends.
    uint256 public ghostHorizon;
    mapping(address => uint256) public ghostCredits;
    mapping(address => uint256) public ghostLockedCredit;
    mapping(address => uint256) public ghostLockedCreditRelease;
    uint256 public ghostStakedIn; // every token ever staked
    uint256 public ghostSlashed; // taken by disputes through `slash`
    uint256 public ghostSeized; // collateral seized on expiry / rejection

    // The self-dealing owner's ledger.
    uint256 public ownerMinted; // tokens the handler minted to the owner's addresses
    uint256 public ownerPaidIn; // escrow and stake the owner's addresses paid in
    uint256 public ownerFastIncome; // refunds, payouts and rewards credited to them (withdrawable at once)
    uint256 public ownerStakeMatured; // stake the owner withdrew from Staking after its own unbonding
    uint256[] internal _maturingAmount; // no-show compensation credited to the owner ...
    /// @dev ... and when the model lets it out: an unbonding period after the seizure, or after any later
    /// moment at which the owner could have started unbonding under a shorter period.
    uint256[] internal _maturingAt;

    /// @notice Results accepted from someone other than the bound executor (must stay 0).
    uint256 public ghostNonBoundSubmits;
    /// @notice Calls whose outcome differs from the model's: a forbidden call that succeeded, an allowed one
    /// that reverted, a success with wrong effects (must stay 0). `lastViolation` says which.
    uint256 public ghostViolations;
    string public lastViolation;
    mapping(bytes32 => uint256) public calls;

    constructor() {
        vm.warp(START);
        currentTime = START;
        token = new MockSettlementToken();
        registry = new ModelRegistry(governance);
        _market = Market({
            challengeWindow: 1 hours,
            disputeWindow: 1 hours,
            maxJobDuration: 6 hours,
            validatorFeeBps: 500,
            collateralBps: 20_000,
            unbondingPeriod: 1 days,
            earlierJobsHorizon: START,
            terms: IModelRegistry.ModelTerms({
                active: true,
                samplerVersion: 2, // so that governance can try to lower it to a valid-looking 1
                maxContext: 8192,
                auditRatePpm: 50_000,
                minExecutorStake: 1e6,
                rulesVersion: 1
            }),
            thresholds: IModelRegistry.VerificationThresholds({
                maxMarginPpm: 2_000_000, maxFlipRatePpm: 50_000
            })
        });
        staking = new Staking(IERC20(address(token)), registry, governance, _market.unbondingPeriod);
        escrow = new JobEscrow(
            IERC20(address(token)),
            staking,
            registry,
            governance,
            _market.challengeWindow,
            _market.disputeWindow,
            _market.maxJobDuration,
            _market.validatorFeeBps,
            _market.collateralBps
        );
        disputes = new InvMockDisputes(escrow, staking);
        revertingConsumer = new InvRevertingConsumer();
        gasBombConsumer = new InvGasBombConsumer();
        reentrantConsumer = new InvReentrantConsumer(escrow);
        measuringConsumer = new InvMeasuringConsumer();

        IModelRegistry.ModelTerms memory terms = _market.terms;
        terms.rulesVersion = 0;
        vm.startPrank(governance);
        staking.setJobEscrow(address(escrow));
        staking.setDisputes(address(disputes));
        escrow.setDisputes(address(disputes));
        modelId = registry.registerModel(
            IModelRegistry.Model({
                name: "invariant-model",
                weightsSha256: keccak256("weights"),
                tokenizerHash: keccak256("tokenizer"),
                terms: terms,
                thresholds: _market.thresholds
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
            token.mint(executors[i], INITIAL_STAKE);
            vm.startPrank(executors[i]);
            staking.stake(IStaking.Role.Executor, INITIAL_STAKE);
            staking.registerExecutor("http://127.0.0.1/executor", "cpu");
            staking.setPrice(modelId, inPrice[i], outPrice[i]);
            vm.stopPrank();
            _stake[executors[i]].staked = INITIAL_STAKE;
            _price[executors[i]] = Price(true, inPrice[i], outPrice[i]);
            ghostStakedIn += INITIAL_STAKE;
        }
        _approve(vault);
    }

    /// @notice Wires the sibling handlers, once (by the invariant contract's setUp).
    function wire(address governanceHandler_, address outsiderHandler_) external {
        require(governanceHandler == address(0), "wired");
        governanceHandler = governanceHandler_;
        outsiderHandler = outsiderHandler_;
    }

    // ---------------------------------------------------------------- for the sibling handlers

    function market() external view returns (Market memory) {
        return _market;
    }

    function setMarket(Market calldata m) external {
        require(msg.sender == governanceHandler, "governance handler only");
        if (m.unbondingPeriod < _market.unbondingPeriod) {
            // An unstake requested from now on waits only the new period: seized stake may come out no
            // later than that either (Staking restarts a pending unbonding the same way).
            uint256 releaseAt = currentTime + m.unbondingPeriod;
            for (uint256 i = 0; i < _maturingAt.length; ++i) {
                if (_maturingAt[i] > releaseAt) _maturingAt[i] = releaseAt;
            }
        }
        _market = m;
    }

    function report(string calldata what) external {
        require(msg.sender == governanceHandler || msg.sender == outsiderHandler, "sibling only");
        _violation(what);
    }

    function count(bytes32 key) external {
        require(msg.sender == governanceHandler || msg.sender == outsiderHandler, "sibling only");
        calls[key]++;
    }

    function countOk(bytes32 key) external {
        require(msg.sender == governanceHandler || msg.sender == outsiderHandler, "sibling only");
        _ok(key);
    }

    function now_() external view returns (uint256) {
        return currentTime;
    }

    /// @notice The model's `riskHorizon()`: jobs posted under the current parameters end within a lifetime
    /// of now, earlier ones by the horizon the last `setParameters` recorded.
    function riskHorizonModel() public view returns (uint256) {
        Market storage m = _market;
        return
            _max(m.earlierJobsHorizon, currentTime + m.challengeWindow + m.disputeWindow + m.maxJobDuration);
    }

    /// @notice A tracked job's id and settlement, mostly one in `wanted` status (for the outsider's calls).
    function settlementFor(uint256 seed, IJobEscrow.JobStatus wanted)
        external
        view
        returns (uint256 id, IJobEscrow.Settlement memory settlement)
    {
        uint256 len = _jobs.length;
        if (len == 0) return (0, settlement);
        uint256 i = _find(seed, wanted);
        Tracked storage t = _jobs[i == NONE ? seed % len : i];
        return (t.id, t.settlement);
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

    /// @notice A job's rules version and the rules the model says it was posted under.
    function jobRules(uint256 i) external view returns (uint32 version, IModelRegistry.Rules memory rules) {
        return (_jobs[i].job.rulesVersion, _jobs[i].rules);
    }

    /// @notice Escrow of the jobs the escrow contract reports open (Posted, Accepted, Submitted, Disputed).
    function openEscrowByContract() external view returns (uint256 open) {
        for (uint256 i = 0; i < _jobs.length; ++i) {
            if (_isOpen(escrow.jobStatus(_jobs[i].id))) open += _jobs[i].job.escrow;
        }
    }

    /// @notice The first job whose status in the escrow differs from the model's, or that was paid,
    /// refunded, slashed or settled twice: (index + 1, what), or (0, "") if none.
    function settlementMismatch() external view returns (uint256, string memory) {
        for (uint256 i = 0; i < _jobs.length; ++i) {
            Tracked storage t = _jobs[i];
            if (escrow.jobStatus(t.id) != t.status) return (i + 1, "status != model");
            if (t.paid > 1) return (i + 1, "job paid twice");
            if (t.refunded > 1) return (i + 1, "job refunded twice");
            if (t.slashed > 1) return (i + 1, "job slashed twice");
            if (t.settled > 1) return (i + 1, "job settled twice");
        }
        return (0, "");
    }

    /// @notice Collateral of the executor's accepted, submitted and disputed jobs (the model's statuses,
    /// which `settlementMismatch` holds to the contract's), and the part of it from jobs accepted after the
    /// executor's last slash into the stake behind its jobs.
    function openCollateral(address executor) external view returns (uint256 open, uint256 later) {
        uint256 lastSlash = _stake[executor].lockedSlashSeq;
        for (uint256 i = 0; i < _jobs.length; ++i) {
            Tracked storage t = _jobs[i];
            IJobEscrow.JobStatus status = t.status;
            if (
                t.assignment.executor == executor
                    && (status == IJobEscrow.JobStatus.Accepted
                        || status == IJobEscrow.JobStatus.Submitted
                        || status == IJobEscrow.JobStatus.Disputed)
            ) {
                open += t.assignment.collateral;
                if (t.acceptSeq > lastSlash) later += t.assignment.collateral;
            }
        }
    }

    function stakeModel(address executor) external view returns (StakeModel memory) {
        return _stake[executor];
    }

    /// @notice Every account that can ever hold credits or stake.
    function accounts() public view returns (address[] memory list) {
        list = new address[](2 * N + 3);
        for (uint256 i = 0; i < N; ++i) {
            list[i] = requesters[i];
            list[N + i] = executors[i];
        }
        list[2 * N] = stranger;
        list[2 * N + 1] = address(disputes);
        list[2 * N + 2] = vault;
    }

    /// @notice The self-dealing owner's addresses.
    function ownerAddresses() public view returns (address[] memory list) {
        list = new address[](3);
        list[0] = requesters[0];
        list[1] = executors[0];
        list[2] = vault;
    }

    /// @notice No-show compensation the model lets the owner have by now.
    function ownerMaturedCompensation() public view returns (uint256 matured) {
        for (uint256 i = 0; i < _maturingAt.length; ++i) {
            if (_maturingAt[i] <= currentTime) matured += _maturingAmount[i];
        }
    }

    // ---------------------------------------------------------------- requesters

    function postJob(
        uint256 requesterSeed,
        uint256 mode,
        uint256 sizes,
        uint256 prices,
        uint64 duration,
        uint32 callbackGas
    ) external {
        _sync();
        calls["postJob"]++;
        (IJobEscrow.JobSpec memory spec, bytes memory prompt) =
            _randomSpec(mode, sizes, prices, duration, callbackGas);
        _post(requesters[requesterSeed % N], spec, prompt);
    }

    function cancelJob(uint256 jobSeed, uint256 callerSeed) external {
        _sync();
        calls["cancelJob"]++;
        (bool found, uint256 index) = _target(jobSeed, IJobEscrow.JobStatus.Posted);
        if (!found) return;
        Tracked storage t = _jobs[index];
        // Sometimes wait for the deadline, after which anyone may cancel.
        if (callerSeed % 8 == 1) _warpTo(t.job.spec.deadline);
        // Mostly someone else (reverts before the deadline), so that jobs live long enough to be accepted.
        _cancel(t, callerSeed % 4 == 0 ? t.job.requester : _anyActor(callerSeed / 4));
    }

    // ---------------------------------------------------------------- executors

    function acceptJob(uint256 jobSeed, uint256 executorSeed, bytes32 randao) external {
        _sync();
        calls["acceptJob"]++;
        (bool found, uint256 index) = _target(jobSeed, IJobEscrow.JobStatus.Posted);
        if (!found) return;
        Tracked storage t = _jobs[index];
        address executor = executorSeed % 4 == 0 && t.job.spec.executor != address(0)
            ? t.job.spec.executor
            : executors[(executorSeed / 4) % N];
        _accept(t, executor, randao);
    }

    function submitResult(
        uint256 jobSeed,
        uint256 callerSeed,
        uint256 mode,
        uint32 inputTokens,
        uint32 outputCount,
        uint256 outputLength
    ) external {
        _sync();
        calls["submitResult"]++;
        (bool found, uint256 index) = _target(jobSeed, IJobEscrow.JobStatus.Accepted);
        if (!found) return;
        Tracked storage t = _jobs[index];
        address caller = callerSeed % 8 != 0 ? t.assignment.executor : _anyActor(callerSeed / 8);
        if (caller == address(0)) caller = stranger;
        IJobEscrow.Result memory result = _randomResult(t.job, mode, inputTokens, outputCount, outputLength);
        // Now and then the executor forwards little gas: the callback must never be starved by it.
        uint256 gas = _rand(mode, 8) % 8 == 0
            ? bound(callerSeed >> 8, 30_000, uint256(t.job.spec.callbackGasLimit) * 65 / 63 + 600_000)
            : 0;
        _submit(t, caller, result, gas);
    }

    // ---------------------------------------------------------------- anyone

    function finalize(uint256 jobSeed, uint256 callerSeed) external {
        _sync();
        calls["finalize"]++;
        (bool found, uint256 index) = _target(
            jobSeed, jobSeed % 3 == 0 ? IJobEscrow.JobStatus.Disputed : IJobEscrow.JobStatus.Submitted
        );
        if (!found) return;
        Tracked storage t = _jobs[index];
        // Half the time, let the window run out first (time only moves forward).
        if (callerSeed % 2 == 0) {
            _warpTo(
                t.status == IJobEscrow.JobStatus.Disputed
                    ? t.settlement.disputeEnd
                    : t.settlement.challengeEnd
            );
        }
        _finalize(t, _anyActor(callerSeed / 2));
    }

    function expire(uint256 jobSeed, uint256 callerSeed) external {
        _sync();
        calls["expire"]++;
        (bool found, uint256 index) = _target(jobSeed, IJobEscrow.JobStatus.Accepted);
        if (!found) return;
        Tracked storage t = _jobs[index];
        // Now and then, let the deadline pass first (time only moves forward).
        if (callerSeed % 6 == 0) _warpTo(uint256(t.job.spec.deadline) + 1);
        _expire(t, _anyActor(callerSeed / 6));
    }

    function withdraw(uint256 actorSeed, uint256 mode) external {
        _sync();
        calls["withdraw"]++;
        address[] memory list = accounts();
        address who = list[actorSeed % list.length];
        // Mostly an account that has something to withdraw (or a locked credit).
        for (
            uint256 k = 0;
            k < list.length && actorSeed % 4 != 0 && ghostCredits[who] == 0 && ghostLockedCredit[who] == 0;
            ++k
        ) {
            who = list[(actorSeed % list.length + k) % list.length];
        }
        uint256 r = _rand(mode, 5);
        if (r % 4 == 0 && ghostLockedCredit[who] != 0) _warpTo(ghostLockedCreditRelease[who]);
        bool useTo = who != address(disputes) && (r >> 2) % 4 == 0;
        address to = who;
        if (useTo) {
            if ((r >> 4) % 16 == 0) to = address(0);
            else if (_isOwner(who)) to = ownerAddresses()[(r >> 8) % 3];
            else to = (r >> 8) % 2 == 0 ? sink : stranger;
        }
        _withdraw(who, to, useTo);
    }

    function warp(uint256 seconds_) external {
        calls["steps"]++;
        calls["warp"]++;
        // Mostly minutes, so that jobs live through their steps; now and then days. (Withdrawals of locked
        // credit and stake wait out their own release times; `finishAll` and `drainAll` wait out the rest.)
        currentTime += seconds_ % 16 == 0
            ? bound(seconds_ >> 4, 1, 2 days)
            : bound(seconds_ >> 4, 1, 30 minutes);
        vm.warp(currentTime);
    }

    /// @notice The owner of `requesters[0]` and `executors[0]` posts a job for itself, takes it, and (mostly)
    /// lets it expire at once, then tries to take the money out.
    function selfDeal(uint256 seed, uint64 duration, uint32 size) external {
        _sync();
        calls["selfDeal"]++;
        uint256 r = _rand(seed, 9);
        IJobEscrow.JobSpec memory spec;
        spec.modelId = modelId;
        spec.executor = executors[0];
        spec.maxInputTokens = uint32(bound(size, 1, 4096));
        spec.maxOutputTokens = uint32(1 + (r >> 8) % 64);
        spec.maxInputPrice = 60e6;
        spec.maxOutputPrice = 60e6;
        spec.sampling = SamplingParams({temperature: 0, topK: 0, topP: 0});
        spec.salt = bytes32(r);
        // Mostly a deadline seconds away; sometimes a long job that locks stake (it must stay slashable).
        spec.deadline = uint64(
            currentTime + (r % 4 == 0 ? bound(duration, 1, _market.maxJobDuration) : bound(duration, 1, 600))
        );
        (bool posted, uint256 index) = _post(requesters[0], spec, bytes("self-dealt"));
        if (!posted) return;
        if (!_accept(_jobs[index], executors[0], bytes32(r >> 1))) return;
        calls["selfDeal.accepted"]++;
        if (r % 4 == 0) return;
        _warpTo(uint256(spec.deadline) + 1);
        if (!_expire(_jobs[index], vault)) return;
        calls["selfDeal.expired"]++;
        // Straight away: the refund comes out, the compensation must not.
        _withdraw(requesters[0], (r >> 3) % 2 == 0 ? vault : requesters[0], (r >> 4) % 2 == 0);
        // Sometimes the executor side runs for the exit too: it must wait out the unbonding period.
        if ((r >> 5) % 4 != 0) return;
        StakeModel storage st = _stake[executors[0]];
        if (_free(st) != 0) _requestUnstake(executors[0], _free(st));
        _withdrawStake(executors[0]);
    }

    /// @notice One fuzzed governance call (GovernanceHandler); forwarded so that forge, which picks a
    /// target contract before a function, weighs it like any other action.
    function governanceOp(uint256 op, uint256 a, uint256 b) external {
        _sync();
        IGovernanceOps(governanceHandler).govOp(op, a, b);
    }

    /// @notice One unauthorised call (OutsiderHandler); forwarded like `governanceOp`.
    function outsiderOp(uint256 op, uint256 callerSeed, uint256 amount) external {
        _sync();
        IOutsiderOps(outsiderHandler).outsider(op, callerSeed, amount);
    }

    /// @notice One fuzzed entry for the dispute contract's calls.
    function disputeOp(uint256 op, uint256 seed, uint256 amount) external {
        _sync();
        uint256 r = _rand(op, 13);
        uint256 k = r % 8;
        if (k < 1) freeze(seed);
        else if (k < 5) resolve(seed, (r >> 3) % 2 == 0);
        else if (k == 5) payReward(seed, amount);
        else slash(seed, amount, (r >> 3) % 8 == 0);
    }

    /// @notice One fuzzed entry for the executors' own stake and prices.
    function stakeOp(uint256 op, uint256 seed, uint256 amount) external {
        _sync();
        address who = executors[seed % N];
        op = _rand(op, 14);
        uint256 k = op % 8;
        if (k < 2) {
            calls["stake"]++;
            _stakeMore(who, (op >> 3) % 32 == 0 ? 0 : bound(amount, 1, 5e6));
        } else if (k < 4) {
            calls["requestUnstake"]++;
            uint256 free = _free(_stake[who]);
            // Mostly within the free stake; sometimes over it or zero (must revert).
            uint256 m = (op >> 3) % 8;
            _requestUnstake(
                who, m == 0 ? bound(amount, 0, free + free / 4 + 2) : bound(amount, 1, free / 3 + 1)
            );
        } else if (k < 6) {
            calls["withdrawStake"]++;
            for (uint256 i = 0; i < N && _stake[who].pending == 0 && (op >> 3) % 4 != 0; ++i) {
                who = executors[(seed % N + i) % N];
            }
            if ((op >> 5) % 4 != 0) _warpTo(_stake[who].releaseAt);
            _withdrawStake(who);
        } else {
            calls["reprice"]++;
            _reprice(who, op >> 3, amount);
        }
    }

    // ---------------------------------------------------------------- dispute contract

    function freeze(uint256 jobSeed) public {
        calls["freeze"]++;
        (bool found, uint256 index) = _target(jobSeed, IJobEscrow.JobStatus.Submitted);
        if (!found) return;
        if (_rand(jobSeed, 12) % 8 == 0) _warpTo(_jobs[index].settlement.challengeEnd);
        _freeze(_jobs[index]);
    }

    function _freeze(Tracked storage t) internal returns (bool ok) {
        IJobEscrow.Settlement memory s = t.settlement;
        bool valid = t.status == IJobEscrow.JobStatus.Submitted && currentTime < s.challengeEnd;
        try disputes.freeze(t.id, s) {
            _ok("freeze.ok");
            if (!valid) _violation("froze a job not submitted or after its challenge window");
            t.status = IJobEscrow.JobStatus.Disputed;
            ok = true;
        } catch {
            if (valid) _violation("could not freeze a job inside its challenge window");
        }
    }

    function resolve(uint256 jobSeed, bool faulty) public {
        calls["resolve"]++;
        (bool found, uint256 index) = _target(jobSeed, IJobEscrow.JobStatus.Disputed);
        if (!found) return;
        Tracked storage t = _jobs[index];
        IJobEscrow.Settlement memory s = t.settlement;
        // After its dispute end a disputed job settles only through `finalize` (as honest).
        bool valid = t.status == IJobEscrow.JobStatus.Disputed && block.timestamp < s.disputeEnd;
        StakeModel storage st = _stake[s.executor];
        uint256 seized = _seizable(st, s.collateral);
        uint256 disputesBefore = token.balanceOf(address(disputes));

        try disputes.resolve(t.id, s, faulty) {
            if (!valid) _violation("resolved a job not disputed");
            if (!faulty) {
                _ok("resolve.honest.ok");
                _terminal(t, IJobEscrow.JobStatus.Finalized, IJobEscrow.JobStatus.Disputed);
                _settlePaid(t, s);
                return;
            }
            _ok("resolve.faulty.ok");
            _terminal(t, IJobEscrow.JobStatus.Rejected, IJobEscrow.JobStatus.Disputed);
            t.refunded++;
            if (seized != 0) t.slashed++;
            if (token.balanceOf(address(disputes)) != disputesBefore + seized) {
                _violation("rejection did not seize what is left of the collateral");
            }
            ghostOpenEscrow -= s.escrow;
            st.locked -= s.collateral;
            st.staked -= seized;
            st.disputesLost++;
            ghostSeized += seized;
            _credit(s.requester, s.escrow);
        } catch {
            if (valid) _violation("could not resolve a disputed job");
        }
    }

    function payReward(uint256 actorSeed, uint256 amount) public {
        calls["payReward"]++;
        address[] memory list = accounts();
        address to = list[actorSeed % list.length];
        uint256 pool = ghostRewardPool;
        amount = actorSeed % 7 == 0 ? bound(amount, pool + 1, pool + 1e6) : bound(amount, 0, pool);
        try disputes.payReward(to, amount) {
            _ok("payReward.ok");
            if (amount > pool) _violation("paid more than the pool");
            ghostRewardPool -= amount;
            _credit(to, amount);
        } catch {
            if (amount <= pool) _violation("could not pay a reward the pool holds");
        }
    }

    /// @notice Slashes free stake, then unbonding stake, then locked stake; the model follows exactly.
    function slash(uint256 executorSeed, uint256 amount, bool validatorRole) public {
        calls["slash"]++;
        address who = executors[executorSeed % N];
        // Mostly an executor with stake locked in jobs.
        for (uint256 i = 0; i < N && _stake[who].locked == 0 && _rand(executorSeed, 15) % 4 != 0; ++i) {
            who = executors[(executorSeed % N + i) % N];
        }
        IStaking.Role role = validatorRole ? IStaking.Role.Validator : IStaking.Role.Executor;
        StakeModel storage st = _stake[who];
        uint256 total = validatorRole ? 0 : st.staked + st.pending;
        uint256 unlocked = validatorRole ? 0 : _free(st) + st.pending;
        // A small slash; one that reaches into locked stake; one well over the whole stake.
        uint256 k = amount % 8;
        amount = k < 3
            ? bound(amount >> 3, unlocked + 1, total + 1)
            : k == 3 ? bound(amount >> 3, 0, 2 * total + 1) : bound(amount >> 3, 0, total / 8 + 1);
        uint256 fromFree;
        uint256 fromUnbonding;
        uint256 fromLocked;
        if (!validatorRole) {
            fromFree = _min(amount, _free(st));
            fromUnbonding = _min(amount - fromFree, st.pending);
            fromLocked = _min(amount - fromFree - fromUnbonding, st.staked - fromFree);
        }
        uint256 disputesBefore = token.balanceOf(address(disputes));

        try disputes.slash(who, role, amount, address(disputes)) returns (uint256 slashed) {
            _ok("slash.ok");
            if (slashed != fromFree + fromUnbonding + fromLocked) {
                _violation("slash did not take free, then unbonding, then locked stake");
            }
            if (token.balanceOf(address(disputes)) != disputesBefore + slashed) {
                _violation("slash not delivered");
            }
            // What came from behind open jobs leaves `locked` as it is: a deficit (locked > staked).
            st.staked -= fromFree + fromLocked;
            st.pending -= fromUnbonding;
            if (fromLocked != 0) {
                _ok("slash.locked.ok");
                st.lockedSlashSeq = _acceptSeq;
            }
            ghostSlashed += slashed;
        } catch {
            _violation("slash reverted");
        }
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
        _warpTo(latest + 1);

        for (uint256 i = 0; i < _jobs.length; ++i) {
            Tracked storage t = _jobs[i];
            IJobEscrow.JobStatus status = t.status;
            bool ok = true;
            if (status == IJobEscrow.JobStatus.Posted) {
                ok = _cancel(t, address(0xC0FFEE)); // past the deadline anyone may close a posted job
            } else if (status == IJobEscrow.JobStatus.Accepted) {
                ok = _expire(t, address(0xC0FFEE));
            } else if (status == IJobEscrow.JobStatus.Submitted || status == IJobEscrow.JobStatus.Disputed) {
                ok = _finalize(t, address(0xC0FFEE));
            }
            if (!ok) failures++;
        }
    }

    /// @notice Waits out every locked credit and every unbonding, then withdraws every credit and all
    /// unbonded stake. Returns how many withdrawals failed.
    function drainAll() external returns (uint256 failures) {
        address[] memory list = accounts();
        uint256 latest = currentTime;
        for (uint256 i = 0; i < list.length; ++i) {
            latest = _max(latest, ghostLockedCreditRelease[list[i]]);
            latest = _max(latest, _stake[list[i]].releaseAt);
        }
        _warpTo(latest);
        for (uint256 i = 0; i < list.length; ++i) {
            address who = list[i];
            if (ghostCredits[who] != 0 || ghostLockedCredit[who] != 0) {
                if (!_withdraw(who, who, false)) failures++;
            }
            if (_stake[who].pending != 0 && !_withdrawStake(who)) failures++;
        }
    }

    // ---------------------------------------------------------------- steps, checked against the model

    function _post(address requester, IJobEscrow.JobSpec memory spec, bytes memory prompt)
        internal
        returns (bool ok, uint256 index)
    {
        uint256 cost = _cost(spec);
        bool valid = _postValid(spec, prompt, cost);
        if (token.balanceOf(requester) < cost) {
            token.mint(requester, cost);
            if (_isOwner(requester)) ownerMinted += cost;
        }
        uint256 balanceBefore = token.balanceOf(address(escrow));

        vm.prank(requester);
        try escrow.postJob(spec, prompt) returns (uint256 jobId, IJobEscrow.Job memory job) {
            _ok("postJob.ok");
            if (!valid) _violation("postJob took an invalid spec");
            IJobEscrow.Job memory expected = _expectedJob(spec, prompt, requester, cost);
            if (keccak256(abi.encode(job)) != keccak256(abi.encode(expected))) {
                _violation("posted job does not snapshot the model terms and market parameters");
            }
            if (jobId != ghostNextJobId) _violation("job id not the next one");
            if (token.balanceOf(address(escrow)) != balanceBefore + cost) _violation("escrow not pulled");
            ghostNextJobId++;
            index = _jobs.length;
            Tracked storage t = _jobs.push();
            t.id = jobId;
            t.job = job;
            t.status = IJobEscrow.JobStatus.Posted;
            t.rules = IModelRegistry.Rules(_market.terms.auditRatePpm, _market.thresholds);
            if (
                keccak256(abi.encode(registry.rulesAt(modelId, job.rulesVersion)))
                    != keccak256(abi.encode(t.rules))
            ) {
                _violation("a posted job's rules version does not give the rules in force");
            }
            ghostOpenEscrow += cost;
            ghostHorizon =
                _max(ghostHorizon, uint256(spec.deadline) + job.challengeWindow + job.disputeWindow);
            if (_isOwner(requester)) ownerPaidIn += cost;
            ok = true;
        } catch {
            if (valid) _violation("postJob rejected a valid spec");
            else calls["postJob.rejected"]++;
        }
    }

    function _cancel(Tracked storage t, address caller) internal returns (bool ok) {
        IJobEscrow.Job memory job = t.job;
        bool valid = t.status == IJobEscrow.JobStatus.Posted
            && (caller == job.requester || currentTime >= job.spec.deadline);
        vm.prank(caller);
        try escrow.cancelJob(t.id, job) {
            _ok("cancelJob.ok");
            if (!valid) _violation("cancelled a job not posted, or by a stranger before the deadline");
            _terminal(t, IJobEscrow.JobStatus.Cancelled, IJobEscrow.JobStatus.Posted);
            t.refunded++;
            ghostOpenEscrow -= job.escrow;
            _credit(job.requester, job.escrow);
            ok = true;
        } catch {
            if (valid) _violation("could not cancel a posted job");
        }
    }

    function _accept(Tracked storage t, address executor, bytes32 randao) internal returns (bool ok) {
        IJobEscrow.Job memory job = t.job;
        uint256 collateral = _bpsCeil(job.escrow, job.collateralBps);
        bool valid = _acceptValid(t, executor, collateral);
        vmExtra.prevrandao(randao);

        vm.prank(executor);
        try escrow.acceptJob(t.id, job) returns (IJobEscrow.Assignment memory a) {
            _ok("acceptJob.ok");
            if (!valid) _violation("acceptJob took an ineligible executor or a closed job");
            Price memory p = _price[executor];
            IJobEscrow.Assignment memory expected =
                IJobEscrow.Assignment(executor, p.input, p.output, collateral, _seed(job, randao));
            if (keccak256(abi.encode(a)) != keccak256(abi.encode(expected))) {
                _violation(
                    a.seed != expected.seed
                        ? "seed not keccak(tag, chain, escrow, job digest, prevrandao)"
                        : a.collateral != expected.collateral
                            ? "collateral not the escrow x the job's ratio, rounded up"
                            : "assignment wrong: executor or prices"
                );
            }
            t.assignment = a;
            t.status = IJobEscrow.JobStatus.Accepted;
            t.acceptSeq = ++_acceptSeq;
            _stake[executor].locked += collateral;
            ok = true;
        } catch {
            if (valid) _violation("acceptJob rejected an eligible executor");
            else calls["acceptJob.rejected"]++;
        }
    }

    function _submit(Tracked storage t, address caller, IJobEscrow.Result memory result, uint256 gas)
        internal
    {
        (bool valid, bool onlyTextTooLong) = _submitValid(t, caller, result);
        IJobEscrow.Job memory job = t.job;
        IJobEscrow.Assignment memory a = t.assignment;
        bool ok;
        IJobEscrow.Settlement memory s;
        vm.prank(caller);
        if (gas == 0) {
            try escrow.submitResult(t.id, job, a, result) returns (IJobEscrow.Settlement memory s_) {
                (ok, s) = (true, s_);
            } catch {}
        } else {
            calls["submitResult.gasLimited"]++;
            try escrow.submitResult{gas: gas}(t.id, job, a, result) returns (
                IJobEscrow.Settlement memory s_
            ) {
                (ok, s) = (true, s_);
            } catch {}
        }
        if (!ok) {
            // With little gas forwarded, a revert is the protocol's answer to a starved callback.
            if (valid && gas == 0) _violation("submitResult rejected a valid result");
            if (!valid) calls["submitResult.rejected"]++;
            if (onlyTextTooLong) calls["submitResult.textTooLong"]++;
            return;
        }
        _ok("submitResult.ok");
        if (!valid) _violation("submitResult took an invalid result, a late one or one from a stranger");
        if (caller != a.executor) ghostNonBoundSubmits++;
        _checkSettlement(t, result, s);
        _checkCallback(t, result);
        t.settlement = s;
        t.status = IJobEscrow.JobStatus.Submitted;
    }

    function _finalize(Tracked storage t, address caller) internal returns (bool ok) {
        IJobEscrow.Settlement memory s = t.settlement;
        IJobEscrow.JobStatus before = t.status;
        bool valid = (before == IJobEscrow.JobStatus.Submitted && currentTime >= s.challengeEnd)
            || (before == IJobEscrow.JobStatus.Disputed && currentTime >= s.disputeEnd);
        vm.prank(caller);
        try escrow.finalize(t.id, s) {
            _ok("finalize.ok");
            if (!valid) _violation("finalized inside a window or from a wrong status");
            _terminal(t, IJobEscrow.JobStatus.Finalized, before);
            _settlePaid(t, s);
            ok = true;
        } catch {
            if (valid) _violation("could not finalize a job whose window ended");
        }
    }

    /// @notice Expiry: the escrow back to the requester at once; of the collateral (less a slash's deficit), at most
    /// NO_SHOW_COMPENSATION_BPS of the escrow locked for the requester for an unbonding period, the rest
    /// to the reward pool.
    function _expire(Tracked storage t, address caller) internal returns (bool ok) {
        IJobEscrow.Job memory job = t.job;
        IJobEscrow.Assignment memory a = t.assignment;
        bool valid = t.status == IJobEscrow.JobStatus.Accepted && currentTime > job.spec.deadline;
        StakeModel storage st = _stake[a.executor];
        uint256 seized = _seizable(st, a.collateral);
        uint256 compensation = _min(seized, job.escrow * COMPENSATION_BPS / BPS);

        vm.prank(caller);
        try escrow.expire(t.id, job, a) {
            _ok("expire.ok");
            if (!valid) _violation("expired a job not accepted or before its deadline");
            _terminal(t, IJobEscrow.JobStatus.Expired, IJobEscrow.JobStatus.Accepted);
            t.refunded++;
            if (seized != 0) t.slashed++;
            ghostOpenEscrow -= job.escrow;
            st.locked -= a.collateral;
            st.staked -= seized;
            st.expired++;
            ghostSeized += seized;
            _credit(job.requester, job.escrow);
            if (compensation != 0) {
                calls["expire.compensated"]++;
                uint256 releaseAt = currentTime + _market.unbondingPeriod;
                ghostLockedCredit[job.requester] += compensation;
                ghostLockedCreditRelease[job.requester] = releaseAt;
                ghostLockedCreditSum += compensation;
                if (_isOwner(job.requester)) {
                    _maturingAmount.push(compensation);
                    _maturingAt.push(releaseAt);
                }
            }
            ghostRewardPool += seized - compensation;
            ok = true;
        } catch {
            if (valid) _violation("could not expire an accepted job past its deadline");
        }
    }

    /// @notice `withdraw` (or `withdrawTo(to)`): the credit, plus the locked credit once released.
    function _withdraw(address who, address to, bool useTo) internal returns (bool ok) {
        uint256 credit = ghostCredits[who];
        uint256 lockedCredit = ghostLockedCredit[who];
        bool released = lockedCredit != 0 && currentTime >= ghostLockedCreditRelease[who];
        uint256 amount = credit + (released ? lockedCredit : 0);
        address receiver = useTo ? to : who;
        bool valid = amount != 0 && receiver != address(0);
        uint256 before = token.balanceOf(receiver);

        if (who == address(disputes)) {
            try disputes.withdrawCredits() {
                ok = true;
            } catch {}
        } else if (useTo) {
            vm.prank(who);
            try escrow.withdrawTo(to) {
                ok = true;
            } catch {}
        } else {
            vm.prank(who);
            try escrow.withdraw() {
                ok = true;
            } catch {}
        }
        if (ok != valid) {
            _violation(
                ok ? "withdrew with nothing due, or to the zero address" : "could not withdraw what is due"
            );
        }
        if (!ok) return false;
        _ok("withdraw.ok");
        if (useTo) _ok("withdrawTo.ok");
        if (token.balanceOf(receiver) != before + amount) {
            _violation("withdrew a wrong amount (a locked credit before its release?)");
        }
        ghostCreditSum -= credit;
        ghostCredits[who] = 0;
        if (released) {
            _ok("withdraw.locked.ok");
            ghostLockedCreditSum -= lockedCredit;
            ghostLockedCredit[who] = 0;
            ghostLockedCreditRelease[who] = 0;
        }
    }

    function _stakeMore(address who, uint256 amount) internal {
        token.mint(who, amount);
        if (_isOwner(who)) ownerMinted += amount;
        vm.prank(who);
        try staking.stake(IStaking.Role.Executor, amount) {
            _ok("stake.ok");
            if (amount == 0) _violation("staked nothing");
            _stake[who].staked += amount;
            ghostStakedIn += amount;
            if (_isOwner(who)) ownerPaidIn += amount;
        } catch {
            if (amount != 0) _violation("could not stake");
        }
    }

    function _requestUnstake(address who, uint256 amount) internal {
        StakeModel storage st = _stake[who];
        bool valid = amount != 0 && amount <= _free(st);
        vm.prank(who);
        try staking.requestUnstake(IStaking.Role.Executor, amount) {
            _ok("requestUnstake.ok");
            if (!valid) _violation("unstaked nothing, or more than the free stake");
            st.staked -= amount;
            st.pending += amount;
            st.releaseAt = currentTime + _market.unbondingPeriod;
            // Stake unbonding from now on stays slashable until every posted job's last dispute has ended.
            if (st.releaseAt < ghostHorizon) _violation("stake unbonds before a posted job's last dispute");
        } catch {
            if (valid) _violation("could not unstake free stake");
        }
    }

    function _withdrawStake(address who) internal returns (bool ok) {
        StakeModel storage st = _stake[who];
        uint256 pending = st.pending;
        bool valid = pending != 0 && currentTime >= st.releaseAt;
        uint256 balanceBefore = token.balanceOf(who);
        vm.prank(who);
        try staking.withdraw(IStaking.Role.Executor) {
            _ok("withdrawStake.ok");
            if (!valid) _violation("withdrew stake still unbonding, or none");
            if (token.balanceOf(who) != balanceBefore + pending) _violation("withdrew a wrong stake amount");
            if (_isOwner(who) && currentTime >= st.releaseAt) ownerStakeMatured += pending;
            st.pending = 0;
            st.releaseAt = 0;
            ok = true;
        } catch {
            if (valid) _violation("could not withdraw unbonded stake");
        }
    }

    function _reprice(address who, uint256 mode, uint256 prices) internal {
        vm.prank(who);
        if (mode % 16 == 0) {
            bool valid = _price[who].active;
            try staking.removeModel(modelId) {
                _ok("reprice.ok");
                if (!valid) _violation("removed a model not served");
                delete _price[who];
            } catch {
                if (valid) _violation("could not stop serving a model");
            }
            return;
        }
        uint64 input = uint64(bound(uint64(prices), 0, 20e6));
        uint64 output = uint64(bound(_rand(prices, 18), 0, 40e6));
        try staking.setPrice(modelId, input, output) {
            _ok("reprice.ok");
            _price[who] = Price(true, input, output);
        } catch {
            _violation("a registered executor could not price a registered model");
        }
    }

    // ---------------------------------------------------------------- the model's rules

    function _postValid(IJobEscrow.JobSpec memory spec, bytes memory prompt, uint256 cost)
        internal
        view
        returns (bool)
    {
        if (!_market.terms.active) return false;
        if (spec.maxInputTokens == 0 || spec.maxOutputTokens == 0 || prompt.length == 0) return false;
        if (uint256(spec.maxInputTokens) + spec.maxOutputTokens > _market.terms.maxContext) return false;
        if (spec.sampling.topP > PRICE_UNIT || spec.callbackGasLimit > MAX_CALLBACK_GAS) return false;
        if (spec.callback == address(0) && spec.callbackGasLimit != 0) return false;
        if (spec.deadline <= currentTime || spec.deadline > currentTime + _market.maxJobDuration) {
            return false;
        }
        return cost != 0;
    }

    function _expectedJob(
        IJobEscrow.JobSpec memory spec,
        bytes memory prompt,
        address requester,
        uint256 cost
    ) internal view returns (IJobEscrow.Job memory) {
        Market memory m = _market;
        return IJobEscrow.Job({
            spec: spec,
            requester: requester,
            promptHash: keccak256(prompt),
            samplerVersion: m.terms.samplerVersion,
            rulesVersion: m.terms.rulesVersion,
            minExecutorStake: m.terms.minExecutorStake,
            validatorFeeBps: m.validatorFeeBps,
            collateralBps: m.collateralBps,
            challengeWindow: uint32(m.challengeWindow),
            disputeWindow: uint32(m.disputeWindow),
            escrow: cost
        });
    }

    function _acceptValid(Tracked storage t, address executor, uint256 collateral)
        internal
        view
        returns (bool)
    {
        IJobEscrow.JobSpec memory spec = t.job.spec;
        if (t.status != IJobEscrow.JobStatus.Posted || currentTime >= spec.deadline) return false;
        if (spec.executor != address(0) && spec.executor != executor) return false;
        Price memory p = _price[executor];
        if (!p.active || p.input > spec.maxInputPrice || p.output > spec.maxOutputPrice) return false;
        StakeModel storage st = _stake[executor];
        return st.staked >= t.job.minExecutorStake && collateral <= _free(st);
    }

    /// @return valid Whether the protocol must take the result.
    /// @return onlyTextTooLong Whether the text's length is the one thing wrong with it.
    function _submitValid(Tracked storage t, address caller, IJobEscrow.Result memory result)
        internal
        view
        returns (bool valid, bool onlyTextTooLong)
    {
        IJobEscrow.JobSpec memory spec = t.job.spec;
        if (t.status != IJobEscrow.JobStatus.Accepted || caller != t.assignment.executor) {
            return (false, false);
        }
        if (currentTime > spec.deadline || result.outputTokens.length % 4 != 0) return (false, false);
        uint256 outputCount = result.outputTokens.length / 4;
        if (outputCount > spec.maxOutputTokens) return (false, false);
        if (result.inputTokens == 0 || result.inputTokens > spec.maxInputTokens) return (false, false);
        if (result.finishReason == FinishReason.None) return (false, false);
        if (result.finishReason == FinishReason.Length && outputCount != spec.maxOutputTokens) {
            return (false, false);
        }
        if (result.output.length > outputCount * TEXT_PER_TOKEN) return (false, true);
        return (true, false);
    }

    function _checkSettlement(
        Tracked storage t,
        IJobEscrow.Result memory result,
        IJobEscrow.Settlement memory s
    ) internal {
        IJobEscrow.Job memory job = t.job;
        IJobEscrow.Assignment memory a = t.assignment;
        uint256 payment =
            (uint256(result.inputTokens) * a.inputPrice + (result.outputTokens.length / 4) * a.outputPrice)
                / PRICE_UNIT;
        uint64 challengeEnd = uint64(currentTime) + job.challengeWindow;
        IJobEscrow.Settlement memory expected = IJobEscrow.Settlement({
            requester: job.requester,
            executor: a.executor,
            escrow: job.escrow,
            payment: payment,
            validatorFee: _bpsCeil(payment, job.validatorFeeBps),
            collateral: a.collateral,
            commitment: _commitment(job, a.seed, result),
            challengeEnd: challengeEnd,
            disputeEnd: challengeEnd + job.disputeWindow
        });
        if (keccak256(abi.encode(s)) != keccak256(abi.encode(expected))) {
            _violation(
                "settlement wrong: payment, rounded-up fee, commitment or the windows fixed at posting"
            );
        }
        if (payment > job.escrow) _violation("payment above the escrow");
    }

    function _commitment(IJobEscrow.Job memory job, bytes32 seed, IJobEscrow.Result memory result)
        internal
        pure
        returns (bytes32)
    {
        return Commitment.compute(
            job.spec.modelId,
            job.samplerVersion,
            job.spec.sampling,
            seed,
            result.promptTokensHash,
            result.inputTokens,
            keccak256(result.outputTokens),
            keccak256(result.output),
            result.finishReason
        );
    }

    /// @notice A callback whose gas limit covers its work must run to completion, with its whole limit, and
    /// receive the committed text, whatever gas the executor forwarded.
    function _checkCallback(Tracked storage t, IJobEscrow.Result memory result) internal {
        if (t.job.spec.callback != address(measuringConsumer)) return;
        uint256 words = (result.output.length + 31) / 32;
        if (t.job.spec.callbackGasLimit < 90_000 + 12 * words + words * words / 512) return;
        calls["callback.measured"]++;
        if (measuringConsumer.lastJob() != t.id) {
            _violation("callback starved: it did not run although its gas limit covers it");
        } else if (measuringConsumer.lastGas() + 3_000 < t.job.spec.callbackGasLimit) {
            _violation("callback given less than its gas limit");
        } else if (measuringConsumer.lastOutput() != keccak256(result.output)) {
            _violation("callback delivered other text than the committed one");
        }
    }

    /// @notice Finalize or honest resolve: payout, fee, refund; releases what is left of the collateral.
    function _settlePaid(Tracked storage t, IJobEscrow.Settlement memory s) internal {
        t.paid++;
        uint256 fee = s.validatorFee;
        if (fee > s.payment || s.payment > s.escrow) _violation("settled more than the escrow");
        uint256 refund = s.escrow - s.payment;
        if (refund != 0) t.refunded++;
        ghostOpenEscrow -= s.escrow;
        ghostRewardPool += fee;
        StakeModel storage st = _stake[s.executor];
        st.locked -= s.collateral;
        if (s.payment != 0) st.completed++; // only paid jobs build reputation
        _credit(s.executor, s.payment - fee);
        _credit(s.requester, refund);
    }

    // ---------------------------------------------------------------- random inputs

    function _randomSpec(uint256 mode, uint256 sizes, uint256 prices, uint64 duration, uint32 callbackGas)
        internal
        view
        returns (IJobEscrow.JobSpec memory spec, bytes memory prompt)
    {
        uint256 r = _rand(mode, 1);
        spec.modelId = modelId;
        if (r % 4 == 0) spec.executor = executors[(r >> 2) % N];
        spec.callback = _randomCallback((r >> 8) % 16);
        uint256 gasMode = (r >> 16) % 16;
        if (spec.callback != address(0)) {
            // Over the whole range, around its maximum, and mostly small.
            spec.callbackGasLimit = uint32(
                gasMode == 0
                    ? bound(callbackGas, MAX_CALLBACK_GAS - 100, MAX_CALLBACK_GAS + 100)
                    : bound(callbackGas, 0, gasMode == 1 ? MAX_CALLBACK_GAS : 300_000)
            );
        } else if (gasMode == 0) {
            spec.callbackGasLimit = uint32(bound(callbackGas, 1, 100)); // gas for no callback: invalid
        }
        // Rarely zero tokens or more than the context (invalid); mostly short outputs, sometimes long ones.
        spec.maxInputTokens = (r >> 24) % 32 == 0 ? 0 : uint32(bound(uint32(sizes), 1, 4096));
        spec.maxOutputTokens =
            (r >> 29) % 32 == 0 ? 0 : uint32(bound(_rand(sizes, 16), 1, (r >> 34) % 8 == 0 ? 2048 : 64));
        if ((r >> 37) % 32 == 0) spec.maxInputTokens = _market.terms.maxContext;
        // Mostly prices every executor accepts; sometimes any (including an empty escrow).
        bool generous = (r >> 42) % 4 != 0;
        spec.maxInputPrice = uint64(bound(uint64(prices), generous ? 20e6 : 0, 60e6));
        spec.maxOutputPrice = uint64(bound(_rand(prices, 17), generous ? 40e6 : 0, 60e6));
        spec.sampling = SamplingParams({
            temperature: uint32((r >> 44) % 2_000_000),
            topK: uint32((r >> 66) % 100),
            topP: (r >> 80) % 32 == 0
                ? uint32(PRICE_UNIT + 1 + (r >> 85) % 1000)
                : uint32((r >> 95) % PRICE_UNIT)
        });
        spec.salt = bytes32(_rand(mode, 2));
        spec.deadline = uint64(currentTime + _randomDuration((r >> 120) % 16, duration));
        prompt = (r >> 130) % 32 == 0 ? bytes("") : bytes("prompt");
    }

    /// @notice Very near deadlines (and none at all), ordinary ones, any up to the maximum, and either side
    /// of the maximum.
    function _randomDuration(uint256 kind, uint64 duration) internal view returns (uint256) {
        uint256 maxDuration = _market.maxJobDuration;
        if (kind < 3) return bound(duration, 0, 60);
        if (kind < 11) return bound(duration, 1, maxDuration < 4 hours ? maxDuration : 4 hours);
        if (kind < 14) return bound(duration, 1, maxDuration);
        return bound(duration, maxDuration > 5 ? maxDuration - 5 : 0, maxDuration + 5);
    }

    function _randomCallback(uint256 kind) internal view returns (address) {
        if (kind < 6) return address(0);
        if (kind == 6) return address(revertingConsumer);
        if (kind == 7) return address(gasBombConsumer);
        if (kind == 8) return address(reentrantConsumer);
        if (kind == 9) return address(0xC0DE); // no code
        return address(measuringConsumer); // 10..15
    }

    function _randomResult(
        IJobEscrow.Job memory job,
        uint256 mode,
        uint32 inputTokens,
        uint32 outputCount,
        uint256 outputLength
    ) internal pure returns (IJobEscrow.Result memory result) {
        uint256 r = _rand(mode, 3);
        uint256 maxOut = job.spec.maxOutputTokens;
        bool length = r % 4 == 0;
        uint256 outputs;
        if (length) outputs = (r >> 2) % 8 == 0 ? bound(outputCount, 0, maxOut + 1) : maxOut;
        else outputs = bound(outputCount, 0, (r >> 5) % 32 == 0 ? maxOut + 2 : maxOut);
        // The text: up to its limit of MAX_TEXT_BYTES_PER_TOKEN per output token, exactly at it, or over it.
        uint256 limit = outputs * TEXT_PER_TOKEN;
        uint256 textMode = (r >> 9) % 16;
        uint256 textLength;
        if (textMode == 0) textLength = limit;
        else if (textMode < 4) textLength = limit + 1 + outputLength % 64;
        else if (textMode == 4) textLength = bound(outputLength, 0, limit);
        else textLength = bound(outputLength, 0, limit < 256 ? limit : 256);
        result.output = new bytes(textLength);
        if (textLength != 0) result.output[0] = bytes1(uint8(r >> 200));
        result.outputTokens = new bytes(outputs * 4 + ((r >> 13) % 32 == 0 ? 1 + (r >> 18) % 3 : 0));
        if (outputs != 0) result.outputTokens[0] = bytes1(uint8(r >> 208));
        uint256 inputMode = (r >> 20) % 32;
        uint256 maxIn = job.spec.maxInputTokens;
        if (inputMode == 0) result.inputTokens = 0;
        else if (inputMode == 1) result.inputTokens = uint32(maxIn + 1 + (r >> 24) % 4);
        else result.inputTokens = uint32(bound(inputTokens, 1, maxIn == 0 ? 1 : maxIn));
        result.finishReason =
            (r >> 30) % 32 == 0 ? FinishReason.None : length ? FinishReason.Length : FinishReason.Stop;
        result.promptTokensHash = keccak256(abi.encode(r, "prompt ids"));
    }

    // ---------------------------------------------------------------- internals

    /// @dev Every fuzzed action starts here (or in `warp`), so `calls["steps"]` counts the run's calls.
    function _sync() internal {
        calls["steps"]++;
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

    /// @dev Index of a job in `wanted` status, scanning from a random start; NONE if there is none.
    function _find(uint256 seed, IJobEscrow.JobStatus wanted) internal view returns (uint256) {
        uint256 len = _jobs.length;
        for (uint256 k = 0; k < len; ++k) {
            uint256 i = (seed % len + k) % len;
            if (_jobs[i].status == wanted) return i;
        }
        return NONE;
    }

    /// @dev `_find`, among jobs that can still take their next step: accepted ones before their deadline,
    /// submitted ones inside their challenge window.
    function _findLive(uint256 seed, IJobEscrow.JobStatus wanted) internal view returns (uint256) {
        uint256 len = _jobs.length;
        for (uint256 k = 0; k < len; ++k) {
            uint256 i = (seed % len + k) % len;
            Tracked storage t = _jobs[i];
            if (t.status != wanted) continue;
            if (wanted == IJobEscrow.JobStatus.Accepted && currentTime > t.job.spec.deadline) continue;
            if (wanted == IJobEscrow.JobStatus.Submitted && currentTime >= t.settlement.challengeEnd) {
                continue;
            }
            return i;
        }
        return NONE;
    }

    /// @dev A job in `wanted` status, brought there through the earlier steps when there is none (so that
    /// the deep paths run within a run's few calls); one time in eight any job, so that every call is also
    /// tried in the wrong status.
    function _target(uint256 seed, IJobEscrow.JobStatus wanted) internal returns (bool found, uint256 index) {
        uint256 len = _jobs.length;
        if (len != 0 && _rand(seed, 19) % 8 == 0) return (true, seed % len);
        index = _find(seed, wanted);
        if (index == NONE) index = _advance(seed, wanted);
        if (index != NONE) return (true, index);
        if (len != 0) return (true, seed % len);
    }

    /// @dev Takes a job to `wanted` status through valid steps (each checked like a fuzzed one); NONE when a
    /// step is not possible now (an inactive model, no eligible executor, a passed deadline…).
    function _advance(uint256 seed, IJobEscrow.JobStatus wanted) internal returns (uint256 i) {
        seed = _rand(seed, 20);
        if (wanted == IJobEscrow.JobStatus.Posted) {
            (IJobEscrow.JobSpec memory spec, bytes memory prompt) =
                _randomSpec(seed, seed >> 64, seed >> 128, uint64(seed >> 32), uint32(seed >> 96));
            (bool posted, uint256 index) = _post(requesters[seed % N], spec, prompt);
            return posted ? index : NONE;
        }
        IJobEscrow.JobStatus previous = wanted == IJobEscrow.JobStatus.Accepted
            ? IJobEscrow.JobStatus.Posted
            : wanted == IJobEscrow.JobStatus.Submitted
                ? IJobEscrow.JobStatus.Accepted
                : IJobEscrow.JobStatus.Submitted;
        i = _findLive(seed, previous);
        if (i == NONE) i = _advance(seed, previous);
        if (i == NONE) return NONE;
        Tracked storage t = _jobs[i];
        bool ok;
        if (wanted == IJobEscrow.JobStatus.Accepted) {
            address executor = t.job.spec.executor != address(0) ? t.job.spec.executor : executors[seed % N];
            ok = _accept(t, executor, bytes32(seed));
        } else if (wanted == IJobEscrow.JobStatus.Submitted) {
            if (currentTime > t.job.spec.deadline) return NONE;
            _submit(
                t,
                t.assignment.executor,
                _randomResult(t.job, seed, uint32(seed >> 8), uint32(seed >> 40), seed >> 72),
                0
            );
            ok = t.status == IJobEscrow.JobStatus.Submitted;
        } else {
            if (currentTime >= t.settlement.challengeEnd) return NONE;
            ok = _freeze(t);
        }
        return ok ? i : NONE;
    }

    function _isOpen(IJobEscrow.JobStatus status) internal pure returns (bool) {
        return status == IJobEscrow.JobStatus.Posted || status == IJobEscrow.JobStatus.Accepted
            || status == IJobEscrow.JobStatus.Submitted || status == IJobEscrow.JobStatus.Disputed;
    }

    function _anyActor(uint256 seed) internal view returns (address) {
        uint256 k = seed % (2 * N + 1);
        if (k < N) return requesters[k];
        if (k < 2 * N) return executors[k - N];
        return stranger;
    }

    function _isOwner(address who) internal view returns (bool) {
        return who == requesters[0] || who == executors[0] || who == vault;
    }

    function _terminal(Tracked storage t, IJobEscrow.JobStatus to, IJobEscrow.JobStatus expectedFrom)
        internal
    {
        if (t.status != expectedFrom) _violation("terminal transition from an unexpected status");
        t.status = to;
        t.settled++;
    }

    function _credit(address who, uint256 amount) internal {
        ghostCredits[who] += amount;
        ghostCreditSum += amount;
        if (_isOwner(who)) ownerFastIncome += amount;
    }

    /// @dev The seed `IJobEscrow.Assignment` documents: the job's terms and the accepting block's randomness.
    function _seed(IJobEscrow.Job memory job, bytes32 randao) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("infera.seed.v2"),
                block.chainid,
                address(escrow),
                keccak256(abi.encode(job)),
                randao
            )
        );
    }

    function _cost(IJobEscrow.JobSpec memory spec) internal pure returns (uint256) {
        return (uint256(spec.maxInputTokens)
                * spec.maxInputPrice
                + uint256(spec.maxOutputTokens)
                * spec.maxOutputPrice) / PRICE_UNIT;
    }

    function _bpsCeil(uint256 amount, uint256 bps) internal pure returns (uint256) {
        return (amount * bps + BPS - 1) / BPS;
    }

    function _rand(uint256 seed, uint256 salt) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed, salt)));
    }

    /// @dev Stake that backs no open job: none while a slash's deficit (locked > staked) is uncovered.
    function _free(StakeModel storage st) internal view returns (uint256) {
        return st.staked > st.locked ? st.staked - st.locked : 0;
    }

    /// @dev What seizing a job's collateral takes: the collateral less the part a slash already took.
    function _seizable(StakeModel storage st, uint256 collateral) internal view returns (uint256) {
        uint256 deficit = st.locked > st.staked ? st.locked - st.staked : 0;
        return collateral > deficit ? collateral - deficit : 0;
    }

    /// @dev Counts a success, and every success together (the per-run floor of `Coverage`).
    function _ok(bytes32 key) internal {
        calls[key]++;
        calls["any.ok"]++;
    }

    function _violation(string memory what) internal {
        ghostViolations++;
        lastViolation = what;
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    function _max(uint256 a, uint256 b) internal pure returns (uint256) {
        return a > b ? a : b;
    }
}
