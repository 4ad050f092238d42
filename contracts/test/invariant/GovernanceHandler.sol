// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {bound} from "../utils/Base.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {Staking} from "../../src/Staking.sol";
import {JobEscrow} from "../../src/JobEscrow.sol";
import {EscrowHandler, Market} from "./EscrowHandler.sol";

/// @notice Governance over its whole allowed range, and just past it: market parameters, the unbonding
/// period, a model's terms and thresholds, new models. Every call's outcome is predicted (it must succeed
/// exactly when every bound holds) and the handlers' model of the market follows each success, so the
/// escrow handler can check that posted jobs snapshot the terms in force and keep them afterwards.
contract GovernanceHandler {
    EscrowHandler public immutable h;
    JobEscrow internal immutable escrow;
    Staking internal immutable staking;
    ModelRegistry internal immutable registry;
    bytes32 internal immutable modelId;
    address internal immutable governance;

    /// @notice The rules of every version of the handler's model, as the handler set them.
    mapping(uint32 version => IModelRegistry.Rules) internal _history;
    /// @notice Extra models registered by this handler (names `extra-model-0..3`).
    mapping(uint256 => bool) public extraRegistered;
    uint256 public modelCount = 1;

    constructor(EscrowHandler handler) {
        h = handler;
        escrow = handler.escrow();
        staking = handler.staking();
        registry = handler.registry();
        modelId = handler.modelId();
        governance = handler.governance();
        Market memory m = handler.market();
        _history[1] = IModelRegistry.Rules(m.terms.auditRatePpm, m.thresholds);
    }

    function rulesOf(uint32 version) external view returns (IModelRegistry.Rules memory) {
        return _history[version];
    }

    /// @notice One fuzzed governance call.
    function govOp(uint256 op, uint256 a, uint256 b) external {
        vm.warp(h.now_());
        uint256 r = uint256(keccak256(abi.encode(op, "gov")));
        uint256 k = r % 16;
        r >>= 4;
        // The low bits stay as fuzzed (small values, edges); the higher ones are mixed.
        a = uint128(a) | (uint256(keccak256(abi.encode(a, "a"))) << 128);
        b = uint128(b) | (uint256(keccak256(abi.encode(b, "b"))) << 128);
        if (k < 4) {
            // Governance often shortens the windows and cuts the unbonding period in one go: the cut must
            // still respect the jobs posted under the longer windows.
            if (setParameters(r, a, b)) setUnbondingPeriod(r >> 24, a >> 7, true);
        } else if (k < 7) {
            setUnbondingPeriod(r, a, false);
        } else if (k < 11) {
            setTerms(r, a, b);
        } else if (k < 14) {
            setThresholds(r, a);
        } else {
            registerModel(r);
        }
    }

    // ---------------------------------------------------------------- JobEscrow

    function setParameters(uint256 r, uint256 a, uint256 b) public returns (bool ok) {
        h.count("setParameters");
        Market memory m = h.market();
        uint256 u = m.unbondingPeriod;
        uint256 challenge;
        uint256 dispute;
        uint256 duration;
        if (r % 2 == 0) {
            // Within the bounds, and mostly fitting the unbonding period.
            // Mostly windows of hours, so that jobs settle within a run.
            bool short_ = (r >> 10) % 4 != 0;
            challenge = bound(a, 10 minutes, _clamp(u / 3, 10 minutes, short_ ? 2 hours : 7 days));
            dispute = bound(a >> 64, 1 hours, _clamp(u / 3, 1 hours, short_ ? 6 hours : 14 days));
            uint256 cap = u;
            uint256 current = uint256(m.challengeWindow) + m.disputeWindow + m.maxJobDuration;
            // Half the time a shorter lifetime than the current one: jobs posted so far keep theirs.
            if ((r >> 12) % 2 == 0 && current > challenge + dispute + 1 && current <= u) cap = current - 1;
            duration =
                bound(a >> 128, 1, cap > challenge + dispute ? _min(cap - challenge - dispute, 30 days) : 1);
        } else {
            // The whole range and one past each end.
            challenge = bound(a, 10 minutes - 1, 7 days + 1);
            dispute = bound(a >> 64, 1 hours - 1, 14 days + 1);
            duration = bound(a >> 128, 0, 30 days + 1);
        }
        uint256 fee = bound(b, 0, (r >> 1) % 8 == 0 ? 2_001 : 2_000);
        uint256 collateral =
            bound(b >> 16, (r >> 4) % 8 == 0 ? 4_999 : 5_000, (r >> 7) % 8 == 0 ? 50_001 : 50_000);
        bool valid = challenge >= 10 minutes && challenge <= 7 days && dispute >= 1 hours
            && dispute <= 14 days && duration != 0 && duration <= 30 days && fee <= 2_000
            && collateral >= 5_000 && collateral <= 50_000 && challenge + dispute + duration <= u;

        vm.prank(governance);
        try escrow.setParameters(
            uint64(challenge), uint64(dispute), uint64(duration), uint16(fee), uint16(collateral)
        ) {
            h.countOk("setParameters.ok");
            if (!valid) {
                h.report("setParameters took a value out of bounds or a lifetime over the unbonding");
            }
            // Jobs posted so far end within the lifetime they were posted under.
            m.earlierJobsHorizon =
                _max(m.earlierJobsHorizon, h.now_() + m.challengeWindow + m.disputeWindow + m.maxJobDuration);
            m.challengeWindow = uint64(challenge);
            m.disputeWindow = uint64(dispute);
            m.maxJobDuration = uint64(duration);
            m.validatorFeeBps = uint16(fee);
            m.collateralBps = uint16(collateral);
            h.setMarket(m);
            if (
                escrow.challengeWindow() != challenge || escrow.disputeWindow() != dispute
                    || escrow.maxJobDuration() != duration || escrow.validatorFeeBps() != fee
                    || escrow.collateralBps() != collateral
            ) h.report("market parameters not the ones set");
            ok = true;
        } catch {
            if (valid) h.report("setParameters rejected parameters within bounds");
            else h.count("setParameters.rejected");
        }
    }

    // ---------------------------------------------------------------- Staking

    /// @param belowHorizon Try a cut under the windows of jobs posted before the last parameter change.
    function setUnbondingPeriod(uint256 r, uint256 a, bool belowHorizon) public {
        h.count("setUnbondingPeriod");
        Market memory m = h.market();
        uint256 lifetime = uint256(m.challengeWindow) + m.disputeWindow + m.maxJobDuration;
        // Until the last job posted so far, or posted now, can no longer be disputed.
        uint256 minPeriod = h.riskHorizonModel() - h.now_();
        uint256 open = minPeriod;
        uint256 period;
        uint256 mode = r % 8;
        if (open > lifetime && (belowHorizon || mode < 2)) period = bound(a, lifetime, open - 1); // under earlier jobs' windows
        else if (mode < 3) period = bound(a, 0, 90 days + 1); // the whole range and one past it
        else if (mode < 5) period = bound(a, minPeriod > 2 ? minPeriod - 2 : 0, minPeriod + 2); // its lower edge
        else period = bound(a, minPeriod, _min(minPeriod + 4 days, 90 days)); // mostly short enough to live with
        bool valid = period >= minPeriod && period != 0 && period <= 90 days;
        if (!valid && period >= lifetime && period < open) h.count("setUnbondingPeriod.belowHorizon");

        vm.prank(governance);
        try staking.setUnbondingPeriod(period) {
            h.countOk("setUnbondingPeriod.ok");
            if (!valid) {
                h.report(
                    "unbonding period set below the job lifetime, below the risk horizon, or out of range"
                );
            }
            m.unbondingPeriod = period;
            h.setMarket(m);
        } catch {
            if (valid) h.report("setUnbondingPeriod rejected a period within bounds");
            else h.count("setUnbondingPeriod.rejected");
        }
    }

    // ---------------------------------------------------------------- ModelRegistry

    function setTerms(uint256 r, uint256 a, uint256 b) public {
        h.count("setTerms");
        Market memory m = h.market();
        IModelRegistry.ModelTerms memory current = m.terms;
        IModelRegistry.ModelTerms memory next;
        next.active = r % 8 != 0;
        uint256 sampler = (r >> 3) % 16;
        next.samplerVersion = sampler < 2
            ? current.samplerVersion - 1
            : sampler == 2 ? 0 : current.samplerVersion + (sampler < 6 ? 1 : 0);
        uint256 context = (r >> 7) % 16;
        next.maxContext = uint32(
            context == 0
                ? 0
                : context == 1 ? (1 << 20) + 1 : context == 2 ? 1 << 20 : bound(a, 6_200, 1 << 20)
        );
        uint256 audit = (r >> 11) % 16;
        next.auditRatePpm = audit == 0
            ? 1_000_001
            : audit == 1
                ? uint32(bound(a >> 32, 0, 1_000_000))
                : audit < 8 ? current.auditRatePpm : uint32(bound(a >> 32, 0, 1_000_000));
        next.minExecutorStake = uint96((r >> 13) % 8 == 0 ? bound(b, 0, type(uint96).max) : bound(b, 0, 12e6));
        next.rulesVersion = uint32(b >> 96); // must be ignored
        bool valid = next.samplerVersion != 0 && next.samplerVersion >= current.samplerVersion
            && next.maxContext != 0 && next.maxContext <= 1 << 20 && next.auditRatePpm <= 1_000_000;

        vm.prank(governance);
        try registry.setTerms(modelId, next) {
            h.countOk("setTerms.ok");
            if (!valid) h.report("setTerms took terms out of bounds or lowered the sampler version");
            next.rulesVersion = current.rulesVersion;
            if (next.auditRatePpm != current.auditRatePpm) {
                next.rulesVersion++;
                _history[next.rulesVersion] = IModelRegistry.Rules(next.auditRatePpm, m.thresholds);
            }
            m.terms = next;
            h.setMarket(m);
            if (keccak256(abi.encode(registry.terms(modelId))) != keccak256(abi.encode(next))) {
                h.report("terms not the ones set (rules version: bumped iff the audit rate changed)");
            }
        } catch {
            if (valid) h.report("setTerms rejected terms within bounds");
            else h.count("setTerms.rejected");
        }
    }

    function setThresholds(uint256 r, uint256 a) public {
        h.count("setThresholds");
        Market memory m = h.market();
        IModelRegistry.VerificationThresholds memory next = IModelRegistry.VerificationThresholds({
            maxMarginPpm: (r >> 3) % 4 == 0 ? 0 : uint32(bound(a, 1, type(uint32).max)),
            maxFlipRatePpm: uint32(
                (r >> 6) % 4 == 0 ? bound(a >> 32, 500_001, type(uint32).max) : bound(a >> 32, 0, 500_000)
            )
        });
        bool valid = next.maxMarginPpm != 0 && next.maxFlipRatePpm <= 500_000;

        vm.prank(governance);
        try registry.setThresholds(modelId, next) {
            h.countOk("setThresholds.ok");
            if (!valid) h.report("setThresholds took thresholds out of bounds");
            m.thresholds = next;
            m.terms.rulesVersion++;
            _history[m.terms.rulesVersion] = IModelRegistry.Rules(m.terms.auditRatePpm, next);
            h.setMarket(m);
            if (registry.terms(modelId).rulesVersion != m.terms.rulesVersion) {
                h.report("new thresholds did not bump the rules version");
            }
        } catch {
            if (valid) h.report("setThresholds rejected thresholds within bounds");
            else h.count("setThresholds.rejected");
        }
    }

    function registerModel(uint256 r) public {
        h.count("registerModel");
        uint256 which = r % 4;
        IModelRegistry.Model memory entry = IModelRegistry.Model({
            name: string.concat("extra-model-", vm.toString(which)),
            weightsSha256: (r >> 2) % 8 == 0 ? bytes32(0) : keccak256(abi.encode(r, "weights")),
            tokenizerHash: keccak256("tokenizer"),
            terms: IModelRegistry.ModelTerms({
                active: true,
                samplerVersion: uint32(1 + (r >> 5) % 3),
                maxContext: 4096,
                auditRatePpm: uint32((r >> 8) % 1_000_001),
                minExecutorStake: 0,
                rulesVersion: uint32(r >> 64) // must be ignored
            }),
            thresholds: IModelRegistry.VerificationThresholds({maxMarginPpm: 1, maxFlipRatePpm: 0})
        });
        bool valid = !extraRegistered[which] && entry.weightsSha256 != bytes32(0);

        vm.prank(governance);
        try registry.registerModel(entry) returns (bytes32 id) {
            h.countOk("registerModel.ok");
            if (!valid) h.report("registered a model twice or without weights");
            extraRegistered[which] = true;
            modelCount++;
            if (id != keccak256(bytes(entry.name))) h.report("model id not the name's hash");
            if (registry.terms(id).rulesVersion != 1) {
                h.report("a new model's rules do not start at version 1");
            }
            IModelRegistry.Rules memory rules = registry.rulesAt(id, 1);
            if (rules.auditRatePpm != entry.terms.auditRatePpm || rules.thresholds.maxMarginPpm != 1) {
                h.report("a new model's first rules are not the ones registered");
            }
            if (registry.modelCount() != modelCount) h.report("model count wrong");
        } catch {
            if (valid) h.report("could not register a new valid model");
        }
    }

    // ---------------------------------------------------------------- internals

    function _clamp(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return x < lo ? lo : x > hi ? hi : x;
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    function _max(uint256 a, uint256 b) internal pure returns (uint256) {
        return a > b ? a : b;
    }
}
