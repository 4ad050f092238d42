// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {vm} from "./utils/Vm.sol";
import {Base} from "./utils/Base.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";

contract ModelRegistryTest is Base {
    function otherModel() internal pure returns (IModelRegistry.Model memory m) {
        m = defaultModel();
        m.name = "llama-3.2-1b-instruct-q8_0";
        m.weightsSha256 = keccak256("llama weights");
        m.tokenizerHash = keccak256("llama tokenizer");
    }

    function register(IModelRegistry.Model memory m) internal returns (bytes32) {
        vm.prank(governance);
        return registry.registerModel(m);
    }

    function expectInvalidRegistration(IModelRegistry.Model memory m) internal {
        vm.prank(governance);
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.registerModel(m);
    }

    function test_register_storesEntryAndEmits() public {
        IModelRegistry.Model memory m = otherModel();
        m.terms.rulesVersion = 77; // the registry numbers rules versions itself
        bytes32 id = keccak256(bytes(m.name));
        IModelRegistry.Rules memory rules = IModelRegistry.Rules(m.terms.auditRatePpm, m.thresholds);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IModelRegistry.ModelRegistered(id, m.name, m.weightsSha256, m.tokenizerHash);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IModelRegistry.RulesVersioned(id, 1, rules);
        m.terms.rulesVersion = 1;
        vm.expectEmit(true, true, true, true, address(registry));
        emit IModelRegistry.ModelTermsUpdated(id, m.terms);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IModelRegistry.ThresholdsUpdated(id, m.thresholds);
        m.terms.rulesVersion = 77;
        vm.assertEq(register(m), id, "id = keccak256(name)");
        m.terms.rulesVersion = 1;
        vm.assertEq(
            keccak256(abi.encode(registry.rulesAt(id, 1))), keccak256(abi.encode(rules)), "rules version 1"
        );
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownRulesVersion.selector, id, 0));
        registry.rulesAt(id, 0);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownRulesVersion.selector, id, 2));
        registry.rulesAt(id, 2);

        vm.assertEq(registry.modelCount(), 2, "count");
        vm.assertEq(registry.modelIdAt(0), modelId, "first");
        vm.assertEq(registry.modelIdAt(1), id, "second");
        vm.assertEq(keccak256(abi.encode(registry.model(id))), keccak256(abi.encode(m)), "full entry");
        vm.assertEq(keccak256(abi.encode(registry.terms(id))), keccak256(abi.encode(m.terms)), "terms");
    }

    function test_register_duplicateReverts() public {
        IModelRegistry.Model memory m = defaultModel();
        m.weightsSha256 = keccak256("different weights, same name");
        vm.prank(governance);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.ModelExists.selector, modelId));
        registry.registerModel(m);
        vm.assertEq(registry.model(modelId).weightsSha256, defaultModel().weightsSha256, "weights unchanged");
    }

    function test_register_invalidEntriesRevert() public {
        IModelRegistry.Model memory m;
        m = otherModel();
        m.name = "";
        expectInvalidRegistration(m);
        m = otherModel();
        m.weightsSha256 = 0;
        expectInvalidRegistration(m);
        m = otherModel();
        m.tokenizerHash = 0;
        expectInvalidRegistration(m);
        m = otherModel();
        m.terms.samplerVersion = 0;
        expectInvalidRegistration(m);
        m = otherModel();
        m.terms.maxContext = 0;
        expectInvalidRegistration(m);
        m = otherModel();
        m.terms.maxContext = registry.MAX_CONTEXT_LIMIT() + 1;
        expectInvalidRegistration(m);
        m = otherModel();
        m.terms.auditRatePpm = registry.MAX_AUDIT_RATE_PPM() + 1;
        expectInvalidRegistration(m);
        m = otherModel();
        m.thresholds.maxMarginPpm = 0;
        expectInvalidRegistration(m);
        m = otherModel();
        m.thresholds.maxFlipRatePpm = registry.MAX_FLIP_RATE_PPM() + 1;
        expectInvalidRegistration(m);
        vm.assertEq(registry.modelCount(), 1, "nothing registered");
    }

    function test_register_boundaryValuesAccepted() public {
        IModelRegistry.Model memory m = otherModel();
        m.terms.maxContext = registry.MAX_CONTEXT_LIMIT();
        m.terms.auditRatePpm = registry.MAX_AUDIT_RATE_PPM();
        m.thresholds.maxFlipRatePpm = registry.MAX_FLIP_RATE_PPM();
        m.thresholds.maxMarginPpm = 1;
        m.terms.active = false;
        m.terms.minExecutorStake = 0;
        bytes32 id = register(m);
        vm.assertEq(registry.terms(id).maxContext, 1 << 20, "max context");
        vm.assertFalse(registry.terms(id).active, "registered inactive");
    }

    function test_setTerms() public {
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        t.samplerVersion = 2;
        t.active = false;
        t.minExecutorStake = 5e6;
        t.maxContext = 8_192;
        t.auditRatePpm = 0;
        t.rulesVersion = 1_000; // ignored: a changed audit rate makes the next version, 2
        IModelRegistry.Rules memory rules = IModelRegistry.Rules(0, defaultModel().thresholds);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IModelRegistry.RulesVersioned(modelId, 2, rules);
        vm.expectEmit(true, true, true, true, address(registry));
        t.rulesVersion = 2;
        emit IModelRegistry.ModelTermsUpdated(modelId, t);
        t.rulesVersion = 1_000;
        vm.prank(governance);
        registry.setTerms(modelId, t);
        t.rulesVersion = 2;
        vm.assertEq(keccak256(abi.encode(registry.terms(modelId))), keccak256(abi.encode(t)), "updated");
        vm.assertEq(
            keccak256(abi.encode(registry.rulesAt(modelId, 2))), keccak256(abi.encode(rules)), "new rules"
        );
        vm.assertEq(registry.rulesAt(modelId, 1).auditRatePpm, 50_000, "old rules kept");
        IModelRegistry.Model memory m = registry.model(modelId);
        vm.assertEq(m.weightsSha256, defaultModel().weightsSha256, "weights pinned");
        vm.assertEq(m.tokenizerHash, defaultModel().tokenizerHash, "tokenizer pinned");
        vm.assertEq(m.name, defaultModel().name, "name pinned");

        // Same version again is fine (and, with the same audit rate, no new rules version); lowering it
        // is not.
        vm.prank(governance);
        registry.setTerms(modelId, t);
        vm.assertEq(registry.terms(modelId).rulesVersion, 2, "unchanged rules keep their version");
        t.samplerVersion = 1;
        vm.prank(governance);
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.setTerms(modelId, t);
        vm.assertEq(registry.terms(modelId).samplerVersion, 2, "version kept");
    }

    function test_setTerms_boundsAndUnknown() public {
        IModelRegistry.ModelTerms memory t = registry.terms(modelId);
        bytes32 unknown = keccak256("nope");
        vm.startPrank(governance);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownModel.selector, unknown));
        registry.setTerms(unknown, t);
        t.maxContext = 0;
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.setTerms(modelId, t);
        t.maxContext = (1 << 20) + 1;
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.setTerms(modelId, t);
        t.maxContext = 1;
        t.auditRatePpm = 1_000_001;
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.setTerms(modelId, t);
        t.auditRatePpm = 0;
        t.samplerVersion = 0;
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.setTerms(modelId, t);
        vm.stopPrank();
    }

    function test_setThresholds() public {
        IModelRegistry.VerificationThresholds memory v =
            IModelRegistry.VerificationThresholds(3_000_000, 500_000);
        vm.expectEmit(true, true, true, true, address(registry));
        emit IModelRegistry.ThresholdsUpdated(modelId, v);
        vm.prank(governance);
        registry.setThresholds(modelId, v);
        IModelRegistry.Model memory m = registry.model(modelId);
        vm.assertEq(m.thresholds.maxMarginPpm, 3_000_000, "margin");
        vm.assertEq(m.thresholds.maxFlipRatePpm, 500_000, "flip rate");
        vm.assertEq(m.terms.rulesVersion, 2, "new rules version");
        vm.assertEq(registry.rulesAt(modelId, 2).thresholds.maxMarginPpm, 3_000_000, "version 2");
        vm.assertEq(registry.rulesAt(modelId, 1).thresholds.maxMarginPpm, 2_000_000, "version 1 kept");

        bytes32 unknown = keccak256("nope");
        vm.startPrank(governance);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownModel.selector, unknown));
        registry.setThresholds(unknown, v);
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.setThresholds(modelId, IModelRegistry.VerificationThresholds(0, 1));
        vm.expectRevert(IModelRegistry.InvalidModelParameter.selector);
        registry.setThresholds(modelId, IModelRegistry.VerificationThresholds(1, 500_001));
        vm.stopPrank();
    }

    function test_views_unknownModel() public {
        bytes32 unknown = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownModel.selector, unknown));
        registry.terms(unknown);
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownModel.selector, unknown));
        registry.model(unknown);
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x32));
        registry.modelIdAt(1);
    }

    function test_freshRegistryIsEmpty() public {
        ModelRegistry fresh = new ModelRegistry(governance);
        vm.assertEq(fresh.modelCount(), 0, "empty");
        vm.assertEq(fresh.owner(), governance, "owner");
        vm.expectRevert(abi.encodeWithSelector(IModelRegistry.UnknownModel.selector, modelId));
        fresh.terms(modelId);
    }
}
