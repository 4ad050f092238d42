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
import {Disputes} from "../../src/Disputes.sol";
import {IDisputes} from "../../src/interfaces/IDisputes.sol";
import {SamplingParams, FinishReason} from "../../src/libraries/Commitment.sol";

/// @notice Drives the whole protocol through disputes: an honest and a cheating executor take jobs; staked
/// validators (honest models: they vote the truth, though some are lazy and skip a commit or a reveal)
/// challenge honest and cheating results alike, get drawn, vote and resolve, in any order and timing,
/// with governance changing the parameters between. The honest executor also stakes as a validator.
///
/// Ghost state: every resolution's per-juror and executor stake deltas (a slash never exceeds the
/// penalty or the stake; no seat or claim is slashed twice), and everything minted.
contract DisputeHandler {
    enum Step {
        Draw,
        Commit,
        Reveal,
        Resolve
    }

    struct TrackedJob {
        uint256 id;
        IJobEscrow.Settlement s;
        bool cheat;
    }

    address public constant BURN = 0x000000000000000000000000000000000000dEaD;
    address public constant governance = address(0x60F);
    address public constant requester = address(0xA11CE);
    address public constant honestExecutor = address(0xE1E1);
    address public constant cheatingExecutor = address(0xBADE);
    uint256 public constant EXECUTOR_STAKE = 1_000_000e6;
    uint256 public constant VALIDATOR_STAKE = 100e6;

    MockSettlementToken public token;
    ModelRegistry public registry;
    Staking public staking;
    JobEscrow public escrow;
    Disputes public disputes;
    bytes32 public modelId;

    address[] public validators;
    TrackedJob[] internal _jobs;
    uint256[] public disputeIds;
    mapping(uint256 disputeId => uint256 jobIndex) public jobOfDispute;

    mapping(bytes32 => uint256) public calls;
    uint256 public ghostMinted;
    /// @notice Times a juror lost stake in one dispute, and times a job's executor lost stake.
    mapping(uint256 disputeId => mapping(address juror => uint256)) public ghostPenalised;
    mapping(uint256 jobId => uint256) public ghostSeized;
    /// @notice Set when a resolution took more than the penalty from a juror (or more than it had).
    bool public ghostOverSlash;
    /// @notice Set when validator stake changed while a jury draw was pending.
    bool public ghostStakeMovedDuringDraw;
    uint256 public honestExecutorInitialStake;

    uint256 public currentTime;
    uint256 public currentBlock;

    function wire() external {
        currentTime = 1_700_000_000;
        currentBlock = 1_000;
        _sync();
        token = new MockSettlementToken();
        registry = new ModelRegistry(governance);
        staking = new Staking(IERC20(address(token)), registry, governance, 1 days);
        escrow = new JobEscrow(
            IERC20(address(token)), staking, registry, governance, 1 hours, 2 hours, 1 hours, 500, 20_000
        );
        disputes = new Disputes(IERC20(address(token)), staking, governance, 50e6, 10e6, 3, 4_000, 2_000);
        vm.startPrank(governance);
        staking.setJobEscrow(address(escrow));
        staking.setDisputes(address(disputes));
        escrow.setDisputes(address(disputes));
        disputes.allowSource(address(escrow));
        modelId = registry.registerModel(_model());
        vm.stopPrank();

        _mint(requester, 1e15);
        _executor(honestExecutor);
        _executor(cheatingExecutor);
        honestExecutorInitialStake = EXECUTOR_STAKE;
        for (uint256 i = 0; i < 5; ++i) {
            address v = address(uint160(0xA000 + i));
            _validator(v);
            validators.push(v);
        }
        // The honest executor is a validator too: it must never sit on its own jury.
        _validator(honestExecutor);
        validators.push(honestExecutor);
    }

    // ---------------------------------------------------------------- actions

    /// @notice A job posted, accepted and submitted by the honest or the cheating executor.
    function submitJob(uint256 seed) external {
        _sync();
        bool cheat = seed % 2 == 1;
        address exec = cheat ? cheatingExecutor : honestExecutor;
        IJobEscrow.JobSpec memory spec = IJobEscrow.JobSpec({
            modelId: modelId,
            executor: exec,
            callback: address(0),
            callbackGasLimit: 0,
            maxInputTokens: 512,
            maxOutputTokens: 64,
            maxInputPrice: 1_000_000,
            maxOutputPrice: 2_000_000,
            deadline: uint64(currentTime + 30 minutes),
            sampling: SamplingParams({temperature: 700_000, topK: 40, topP: 950_000}),
            salt: keccak256(abi.encode(seed))
        });
        vm.prank(requester);
        (uint256 jobId, IJobEscrow.Job memory job) = escrow.postJob(spec, bytes("prompt"));
        vm.prank(exec);
        IJobEscrow.Assignment memory assignment = escrow.acceptJob(jobId, job);
        IJobEscrow.Result memory result = IJobEscrow.Result({
            inputTokens: uint32(bound(seed >> 8, 1, 512)),
            finishReason: FinishReason.Stop,
            promptTokensHash: keccak256("prompt ids"),
            outputTokens: abi.encodePacked(uint32(1), uint32(2)),
            output: cheat ? bytes("fabricated") : bytes("honest")
        });
        vm.prank(exec);
        IJobEscrow.Settlement memory s = escrow.submitResult(jobId, job, assignment, result);
        _jobs.push(TrackedJob(jobId, s, cheat));
        _ok("submitJob.ok");
    }

    /// @notice A validator challenges a submitted job (honest or not: griefing is allowed, and costs).
    function challenge(uint256 jobSeed, uint256 validatorSeed) external {
        _sync();
        uint256 n = _jobs.length;
        uint256 index = type(uint256).max;
        for (uint256 k = 0; k < n; ++k) {
            uint256 i = (jobSeed + k) % n;
            TrackedJob storage candidate = _jobs[i];
            if (
                escrow.jobStatus(candidate.id) == IJobEscrow.JobStatus.Submitted
                    && currentTime < candidate.s.challengeEnd
            ) {
                index = i;
                break;
            }
        }
        if (index == type(uint256).max) return;
        TrackedJob storage job = _jobs[index];
        address challenger = validators[validatorSeed % 5];
        uint256 bond = disputes.bond();
        _mint(challenger, bond);
        vm.prank(challenger);
        token.approve(address(disputes), bond);
        vm.prank(challenger);
        try disputes.challenge(escrow, job.id, abi.encode(job.s)) returns (uint256 id) {
            disputeIds.push(id);
            jobOfDispute[id] = index;
            _ok("challenge.ok");
        } catch {
            // Too little time left to vote, or not enough free validator stake.
            calls["challenge.refused"]++;
        }
    }

    /// @notice Draws a jury, sometimes so late that the draw block's hash is gone (re-armed).
    function draw(uint256 disputeSeed, uint256 seed) external {
        _sync();
        (uint256 id, IDisputes.Dispute memory d) = _pick(disputeSeed, Step.Draw);
        if (id == 0) return;
        if (seed % 8 == 0) {
            _roll(uint256(d.drawBlock) + 300);
            vm.setBlockhash(d.drawBlock, bytes32(0));
            disputes.drawJury(id);
            calls["draw.rearmed"]++;
            d = disputes.disputeOf(id);
        }
        _roll(uint256(d.drawBlock) + 1);
        vm.setBlockhash(d.drawBlock, keccak256(abi.encode(seed)));
        disputes.drawJury(id);
        _ok("draw.ok");
    }

    /// @notice Jurors commit their (truthful) votes; bits of `lazy` make some skip.
    function commit(uint256 disputeSeed, uint256 lazy) external {
        _sync();
        (uint256 id,) = _pick(disputeSeed, Step.Commit);
        if (id == 0) return;
        address[] memory jurors = disputes.jurorsOf(id);
        IDisputes.Vote truth = _jobs[jobOfDispute[id]].cheat ? IDisputes.Vote.Faulty : IDisputes.Vote.Honest;
        for (uint256 i = 0; i < jurors.length; ++i) {
            (bytes32 c,) = disputes.ballotOf(id, jurors[i]);
            if (c != bytes32(0) || _lazy(lazy, i)) continue;
            vm.prank(jurors[i]);
            disputes.commitVote(id, keccak256(abi.encode(id, jurors[i], truth, _salt(jurors[i]))));
            _ok("commit.ok");
        }
    }

    /// @notice Jurors that committed reveal; bits of `lazy` make some skip.
    function reveal(uint256 disputeSeed, uint256 lazy) external {
        _sync();
        (uint256 id,) = _pick(disputeSeed, Step.Reveal);
        if (id == 0) return;
        address[] memory jurors = disputes.jurorsOf(id);
        IDisputes.Vote truth = _jobs[jobOfDispute[id]].cheat ? IDisputes.Vote.Faulty : IDisputes.Vote.Honest;
        for (uint256 i = 0; i < jurors.length; ++i) {
            (bytes32 c, IDisputes.Vote v) = disputes.ballotOf(id, jurors[i]);
            if (c == bytes32(0) || v != IDisputes.Vote.None || _lazy(lazy, i)) continue;
            vm.prank(jurors[i]);
            disputes.revealVote(id, truth, _salt(jurors[i]));
            _ok("reveal.ok");
        }
    }

    /// @notice Resolves a dispute, first waiting out its phase; sometimes only after its claim's dispute
    /// end (then the job may be finalized first). Records every stake the resolution took.
    function resolve(uint256 disputeSeed, uint256 seed) external {
        _sync();
        (uint256 id, IDisputes.Dispute memory d) = _pick(disputeSeed, Step.Resolve);
        if (id == 0) return;
        TrackedJob storage job = _jobs[jobOfDispute[id]];
        if (seed % 4 == 0) {
            _warpTo(d.disputeEnd);
            if (seed % 8 == 0 && escrow.jobStatus(job.id) == IJobEscrow.JobStatus.Disputed) {
                escrow.finalize(job.id, job.s);
                calls["resolve.finalizedFirst"]++;
            }
        } else {
            _warpTo(d.phase == IDisputes.Phase.Drawing ? d.commitEnd : d.revealEnd);
        }
        address[] memory jurors = disputes.jurorsOf(id);
        uint256[] memory before = new uint256[](jurors.length);
        for (uint256 i = 0; i < jurors.length; ++i) {
            before[i] = staking.stakeOf(jurors[i], IStaking.Role.Validator).staked
                + staking.unbondingOf(jurors[i], IStaking.Role.Validator).amount;
        }
        uint256 executorBefore = staking.stakeOf(d.executor, IStaking.Role.Executor).staked;
        disputes.resolve(id, abi.encode(job.s));
        for (uint256 i = 0; i < jurors.length; ++i) {
            uint256 left = staking.stakeOf(jurors[i], IStaking.Role.Validator).staked
                + staking.unbondingOf(jurors[i], IStaking.Role.Validator).amount;
            if (left > before[i]) continue;
            uint256 taken = before[i] - left;
            if (taken > d.jurorPenalty) ghostOverSlash = true;
            if (taken != 0) ghostPenalised[id][jurors[i]] += 1;
        }
        if (staking.stakeOf(d.executor, IStaking.Role.Executor).staked < executorBefore) {
            ghostSeized[job.id] += 1;
        }
        _ok(currentTime >= d.disputeEnd ? bytes32("resolve.late") : bytes32("resolve.ok"));
    }

    /// @notice Settles a job whose window passed (challenged or not).
    function finalize(uint256 jobSeed) external {
        _sync();
        if (_jobs.length == 0) return;
        TrackedJob storage job = _jobs[jobSeed % _jobs.length];
        IJobEscrow.JobStatus status = escrow.jobStatus(job.id);
        if (status == IJobEscrow.JobStatus.Submitted) _warpTo(job.s.challengeEnd);
        else if (status == IJobEscrow.JobStatus.Disputed) _warpTo(job.s.disputeEnd);
        else return;
        escrow.finalize(job.id, job.s);
        _ok("finalize.ok");
    }

    function warp(uint256 seconds_) external {
        _sync();
        _warpTo(currentTime + bound(seconds_, 1, 20 minutes));
        calls["warp"]++;
    }

    /// @notice Anyone withdraws its dispute payouts.
    function withdraw(uint256 seed) external {
        _sync();
        address who = _everyone(seed);
        if (disputes.credits(who) == 0) return;
        vm.prank(who);
        disputes.withdraw();
        _ok("withdraw.ok");
    }

    /// @notice A validator stakes more or starts unbonding free stake (changing the draw's weights).
    /// Between a challenge and its draw validator stake is frozen: a change then is a violation.
    function restake(uint256 seed, uint256 amount) external {
        _sync();
        address v = validators[seed % validators.length];
        bool pending = disputes.pendingDraws() != 0;
        bool ok;
        if (seed % 2 == 0) {
            amount = bound(amount, 1, 200e6);
            _mint(v, amount);
            vm.prank(v);
            try staking.stake(IStaking.Role.Validator, amount) {
                ok = true;
            } catch {}
        } else {
            uint256 free = staking.freeStake(v, IStaking.Role.Validator);
            if (free == 0) return;
            vm.prank(v);
            try staking.requestUnstake(IStaking.Role.Validator, bound(amount, 1, free)) {
                ok = true;
            } catch {}
        }
        if (ok && pending) ghostStakeMovedDuringDraw = true;
        if (ok) _ok("restake.ok");
        else if (pending) calls["restake.frozen"]++;
        else revert("restake refused with no draw pending");
    }

    /// @notice Governance changes the dispute parameters (open disputes keep theirs).
    function setParameters(uint256 bond, uint256 penalty, uint256 jury, uint256 bps) external {
        _sync();
        uint16 challengerBps = uint16(bound(bps, 0, 6_000));
        uint16 jurorBps = uint16(bound(bps >> 16, 0, 10_000 - challengerBps));
        vm.prank(governance);
        disputes.setParameters(
            bound(bond, 1, 100e6), bound(penalty, 1, 30e6), uint8(bound(jury, 1, 5)), challengerBps, jurorBps
        );
        _ok("setParameters.ok");
    }

    // ---------------------------------------------------------------- views for the invariants

    function jobCount() external view returns (uint256) {
        return _jobs.length;
    }

    function jobAt(uint256 index)
        external
        view
        returns (uint256 id, IJobEscrow.Settlement memory s, bool cheat)
    {
        TrackedJob storage job = _jobs[index];
        return (job.id, job.s, job.cheat);
    }

    function disputeCount() external view returns (uint256) {
        return disputeIds.length;
    }

    function validatorList() external view returns (address[] memory) {
        return validators;
    }

    /// @notice Every account that can hold tokens here.
    function everyone() public view returns (address[] memory all) {
        all = new address[](validators.length + 3);
        for (uint256 i = 0; i < validators.length; ++i) {
            all[i] = validators[i];
        }
        all[validators.length] = requester;
        all[validators.length + 1] = cheatingExecutor;
        all[validators.length + 2] = governance;
    }

    function termsOf(uint256 disputeId) external view returns (bytes memory) {
        return abi.encode(_jobs[jobOfDispute[disputeId]].s);
    }

    // ---------------------------------------------------------------- internals

    /// @dev A dispute (from `seed` on) where `step` can be taken now, or id 0.
    function _pick(uint256 seed, Step step) internal view returns (uint256, IDisputes.Dispute memory d) {
        uint256 n = disputeIds.length;
        for (uint256 k = 0; k < n; ++k) {
            uint256 id = disputeIds[(seed + k) % n];
            d = disputes.disputeOf(id);
            if (_can(id, d, step)) return (id, d);
        }
        return (0, d);
    }

    function _can(uint256 id, IDisputes.Dispute memory d, Step step) internal view returns (bool) {
        if (step == Step.Draw) return d.phase == IDisputes.Phase.Drawing && currentTime < d.commitEnd;
        if (step == Step.Commit) return d.phase == IDisputes.Phase.Voting && currentTime < d.commitEnd;
        if (step == Step.Reveal) {
            if (d.phase != IDisputes.Phase.Voting || currentTime >= d.revealEnd) return false;
            return currentTime >= d.commitEnd || disputes.tallyOf(id).commits == disputes.jurorsOf(id).length;
        }
        return d.phase == IDisputes.Phase.Drawing || d.phase == IDisputes.Phase.Voting;
    }

    /// @dev One call in four has lazy jurors: each skips with probability one half.
    function _lazy(uint256 lazy, uint256 juror) internal pure returns (bool) {
        return lazy % 4 == 0 && (lazy >> (juror + 2)) & 1 == 1;
    }

    function _everyone(uint256 seed) internal view returns (address) {
        address[] memory all = everyone();
        return all[seed % all.length];
    }

    function _salt(address juror) internal pure returns (bytes32) {
        return keccak256(abi.encode("salt", juror));
    }

    function _ok(bytes32 key) internal {
        calls[key]++;
        calls["any.ok"]++;
    }

    function _sync() internal {
        calls["steps"]++;
        vm.warp(currentTime);
        vm.roll(currentBlock);
    }

    function _warpTo(uint256 timestamp) internal {
        if (timestamp <= currentTime) return;
        currentTime = timestamp;
        vm.warp(timestamp);
        _roll(currentBlock + 1);
    }

    function _roll(uint256 number) internal {
        if (number <= currentBlock) return;
        currentBlock = number;
        vm.roll(number);
    }

    function _mint(address to, uint256 amount) internal {
        token.mint(to, amount);
        ghostMinted += amount;
    }

    function _executor(address who) internal {
        _mint(who, EXECUTOR_STAKE);
        vm.startPrank(who);
        token.approve(address(staking), type(uint256).max);
        staking.stake(IStaking.Role.Executor, EXECUTOR_STAKE);
        staking.registerExecutor("http://executor", "cpu");
        staking.setPrice(modelId, 100_000, 400_000);
        vm.stopPrank();
        vm.prank(requester);
        token.approve(address(escrow), type(uint256).max);
    }

    function _validator(address who) internal {
        _mint(who, VALIDATOR_STAKE);
        vm.startPrank(who);
        token.approve(address(staking), type(uint256).max);
        staking.stake(IStaking.Role.Validator, VALIDATOR_STAKE);
        vm.stopPrank();
    }

    function _model() internal pure returns (IModelRegistry.Model memory) {
        return IModelRegistry.Model({
            name: "model",
            weightsSha256: keccak256("weights"),
            tokenizerHash: keccak256("tokenizer"),
            terms: IModelRegistry.ModelTerms({
                active: true,
                samplerVersion: 1,
                maxContext: 32_768,
                auditRatePpm: 50_000,
                minExecutorStake: 100e6,
                rulesVersion: 0
            }),
            thresholds: IModelRegistry.VerificationThresholds({
                maxMarginPpm: 2_000_000, maxFlipRatePpm: 50_000
            })
        });
    }
}
