// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "../utils/Vm.sol";
import {bound} from "../utils/Base.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ModelRegistry} from "../../src/ModelRegistry.sol";
import {IModelRegistry} from "../../src/interfaces/IModelRegistry.sol";
import {Staking} from "../../src/Staking.sol";
import {IStaking} from "../../src/interfaces/IStaking.sol";
import {JobEscrow} from "../../src/JobEscrow.sol";
import {IJobEscrow} from "../../src/interfaces/IJobEscrow.sol";
import {EscrowHandler, Market} from "./EscrowHandler.sol";

/// @notice Calls every dispute-only, escrow-only and owner-only function from addresses that are not
/// allowed to, with arguments that would otherwise succeed (a live job's settlement, free stake, parameters
/// within bounds), plus the once-only wiring from the owner itself. Any success is a violation.
contract OutsiderHandler {
    EscrowHandler public immutable h;
    JobEscrow internal immutable escrow;
    Staking internal immutable staking;
    ModelRegistry internal immutable registry;
    bytes32 internal immutable modelId;
    address internal immutable governance;
    address internal immutable disputes;

    uint256 internal constant OPS = 18;

    constructor(EscrowHandler handler) {
        h = handler;
        escrow = handler.escrow();
        staking = handler.staking();
        registry = handler.registry();
        modelId = handler.modelId();
        governance = handler.governance();
        disputes = address(handler.disputes());
    }

    /// @notice One unauthorised call: `op` picks the function, `callerSeed` the caller (never the one the
    /// function allows), `amount` a small amount where one is needed.
    function outsider(uint256 op, uint256 callerSeed, uint256 amount) external {
        vm.warp(h.now_());
        h.count("outsider");
        uint256 k = op % OPS;
        callerSeed = uint256(keccak256(abi.encode(callerSeed, "caller")));
        // Dispute-only functions from everyone but the dispute contract, escrow-only ones from everyone but
        // the escrow, owner-only ones from everyone but the owner.
        address allowed = k < 5 || k == 8 ? disputes : k < 8 ? address(escrow) : governance;
        address caller = _caller(callerSeed, allowed);
        address target = h.executors((callerSeed >> 8) % h.N());
        amount = bound(amount, 1, 1e6);
        bool ok;
        if (k < 5) ok = _escrowOnlyDisputes(k, caller, callerSeed, amount);
        else if (k < 9) ok = _stakingProtocolOnly(k, caller, target, amount);
        else if (k < 17) ok = _ownerOnly(k, caller, callerSeed);
        else ok = _wiring(callerSeed);
        if (ok) h.report("an unauthorised call succeeded");
        else h.countOk("outsider.reverted");
    }

    function _escrowOnlyDisputes(uint256 k, address caller, uint256 seed, uint256 amount)
        internal
        returns (bool ok)
    {
        if (k < 2) {
            (uint256 id, IJobEscrow.Settlement memory s) =
                h.settlementFor(seed, IJobEscrow.JobStatus.Submitted);
            vm.prank(caller);
            try escrow.freezeClaim(id, abi.encode(s)) {
                ok = true;
            } catch {}
        } else if (k < 4) {
            (uint256 id, IJobEscrow.Settlement memory s) =
                h.settlementFor(seed, IJobEscrow.JobStatus.Disputed);
            vm.prank(caller);
            try escrow.resolveClaim(id, abi.encode(s), k == 2) {
                ok = true;
            } catch {}
        } else {
            uint256 pool = escrow.rewardPool();
            vm.prank(caller);
            try escrow.payReward(caller, amount < pool ? amount : pool) {
                ok = true;
            } catch {}
        }
    }

    function _stakingProtocolOnly(uint256 k, address caller, address target, uint256 amount)
        internal
        returns (bool ok)
    {
        vm.prank(caller);
        if (k == 5) {
            try staking.lockForJob(target, 1, modelId, 0, 1) {
                ok = true;
            } catch {}
        } else if (k == 6) {
            try staking.releaseCollateral(target, 1, amount, 1) {
                ok = true;
            } catch {}
        } else if (k == 7) {
            try staking.seizeCollateral(target, 1, amount, IStaking.Fault.NoShow, caller) {
                ok = true;
            } catch {}
        } else {
            try staking.slash(target, IStaking.Role.Executor, amount, caller) {
                ok = true;
            } catch {}
        }
    }

    function _ownerOnly(uint256 k, address caller, uint256 seed) internal returns (bool ok) {
        Market memory m = h.market();
        IModelRegistry.Model memory fresh = _freshModel(seed);
        vm.prank(caller);
        if (k == 9) {
            try escrow.setParameters(
                m.challengeWindow, m.disputeWindow, m.maxJobDuration, m.validatorFeeBps, m.collateralBps
            ) {
                ok = true;
            } catch {}
        } else if (k == 10) {
            try staking.setUnbondingPeriod(m.unbondingPeriod) {
                ok = true;
            } catch {}
        } else if (k == 11) {
            try registry.setTerms(modelId, m.terms) {
                ok = true;
            } catch {}
        } else if (k == 12) {
            try registry.setThresholds(modelId, m.thresholds) {
                ok = true;
            } catch {}
        } else if (k == 13) {
            try registry.registerModel(fresh) {
                ok = true;
            } catch {}
        } else if (k == 14) {
            try Ownable2Step(_ownable(seed)).transferOwnership(caller) {
                ok = true;
            } catch {}
        } else if (k == 15) {
            try Ownable2Step(_ownable(seed)).acceptOwnership() {
                ok = true;
            } catch {}
        } else {
            try Ownable2Step(_ownable(seed)).renounceOwnership() {
                ok = true;
            } catch {}
        }
    }

    /// @notice The dispute contract and the job escrow are wired once: not even the owner rewires them.
    function _wiring(uint256 seed) internal returns (bool ok) {
        uint256 which = (seed >> 16) % 3;
        vm.prank(governance);
        if (which == 0) {
            try escrow.setDisputes(address(escrow)) {
                ok = true;
            } catch {}
        } else if (which == 1) {
            try staking.setDisputes(address(escrow)) {
                ok = true;
            } catch {}
        } else {
            try staking.setJobEscrow(address(escrow)) {
                ok = true;
            } catch {}
        }
    }

    function _freshModel(uint256 seed) internal pure returns (IModelRegistry.Model memory) {
        return IModelRegistry.Model({
            name: string.concat("outsider-model-", vm.toString(seed % 1000)),
            weightsSha256: keccak256("outsider weights"),
            tokenizerHash: keccak256("outsider tokenizer"),
            terms: IModelRegistry.ModelTerms({
                active: true,
                samplerVersion: 1,
                maxContext: 4096,
                auditRatePpm: 0,
                minExecutorStake: 0,
                rulesVersion: 0
            }),
            thresholds: IModelRegistry.VerificationThresholds({maxMarginPpm: 1, maxFlipRatePpm: 0})
        });
    }

    function _ownable(uint256 seed) internal view returns (address) {
        uint256 which = (seed >> 24) % 3;
        return which == 0 ? address(escrow) : which == 1 ? address(staking) : address(registry);
    }

    /// @dev Any of the requesters, executors, a stranger, the owner and the protocol contracts, except
    /// `allowed`, the one address the function lets in.
    function _caller(uint256 seed, address allowed) internal view returns (address caller) {
        address[13] memory list = [
            h.requesters(0),
            h.requesters(1),
            h.requesters(2),
            h.executors(0),
            h.executors(1),
            h.executors(2),
            h.stranger(),
            governance,
            disputes,
            address(escrow),
            address(staking),
            address(registry),
            address(h)
        ];
        caller = list[seed % 13];
        if (caller == allowed) caller = list[(seed % 13 + 1) % 13];
    }
}
