// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IModelRegistry} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice Governance-curated models (see IModelRegistry). Governance can add models and tune their
/// terms within fixed bounds; it can never change a registered model's weights or tokenizer.
contract ModelRegistry is IModelRegistry, Ownable2Step {
    /// @notice Highest audit rate governance may set: every job.
    uint32 public constant MAX_AUDIT_RATE_PPM = 1_000_000;
    /// @notice Largest context governance may set.
    uint32 public constant MAX_CONTEXT_LIMIT = 1 << 20;
    /// @notice Largest tolerated flip rate: 1e6 would disable the check.
    uint32 public constant MAX_FLIP_RATE_PPM = 500_000;

    mapping(bytes32 modelId => Model) private _models;
    bytes32[] private _modelIds;
    mapping(bytes32 modelId => mapping(uint32 version => Rules)) private _rules;

    constructor(address governance) Ownable(governance) {}

    /// @inheritdoc IModelRegistry
    function registerModel(Model calldata entry) external onlyOwner returns (bytes32 modelId) {
        if (
            bytes(entry.name).length == 0 || entry.weightsSha256 == bytes32(0)
                || entry.tokenizerHash == bytes32(0)
        ) {
            revert InvalidModelParameter();
        }
        modelId = keccak256(bytes(entry.name));
        if (_models[modelId].weightsSha256 != bytes32(0)) revert ModelExists(modelId);
        _checkTerms(entry.terms);
        _checkThresholds(entry.thresholds);

        Model storage stored = _models[modelId];
        stored.name = entry.name;
        stored.weightsSha256 = entry.weightsSha256;
        stored.tokenizerHash = entry.tokenizerHash;
        stored.terms = entry.terms;
        stored.terms.rulesVersion = 0; // the registry numbers the versions, from 1
        stored.thresholds = entry.thresholds;
        _modelIds.push(modelId);
        emit ModelRegistered(modelId, entry.name, entry.weightsSha256, entry.tokenizerHash);
        _newRulesVersion(modelId, stored);
        emit ModelTermsUpdated(modelId, stored.terms);
        emit ThresholdsUpdated(modelId, entry.thresholds);
    }

    /// @inheritdoc IModelRegistry
    function setTerms(bytes32 modelId, ModelTerms calldata newTerms) external onlyOwner {
        Model storage entry = _existing(modelId);
        _checkTerms(newTerms);
        if (newTerms.samplerVersion < entry.terms.samplerVersion) revert InvalidModelParameter();
        uint32 rulesVersion = entry.terms.rulesVersion;
        bool rulesChanged = newTerms.auditRatePpm != entry.terms.auditRatePpm;
        entry.terms = newTerms;
        entry.terms.rulesVersion = rulesVersion;
        if (rulesChanged) _newRulesVersion(modelId, entry);
        emit ModelTermsUpdated(modelId, entry.terms);
    }

    /// @inheritdoc IModelRegistry
    function setThresholds(bytes32 modelId, VerificationThresholds calldata thresholds) external onlyOwner {
        Model storage entry = _existing(modelId);
        _checkThresholds(thresholds);
        entry.thresholds = thresholds;
        _newRulesVersion(modelId, entry);
        emit ThresholdsUpdated(modelId, thresholds);
    }

    /// @inheritdoc IModelRegistry
    function terms(bytes32 modelId) external view returns (ModelTerms memory t) {
        // One storage read on the job path: registered models always have a sampler version.
        t = _models[modelId].terms;
        if (t.samplerVersion == 0) revert UnknownModel(modelId);
    }

    /// @inheritdoc IModelRegistry
    function model(bytes32 modelId) external view returns (Model memory) {
        return _existing(modelId);
    }

    /// @inheritdoc IModelRegistry
    function rulesAt(bytes32 modelId, uint32 version) external view returns (Rules memory rules) {
        rules = _rules[modelId][version];
        // Every stored version has a non-zero margin threshold (`_checkThresholds`).
        if (rules.thresholds.maxMarginPpm == 0) revert UnknownRulesVersion(modelId, version);
    }

    /// @inheritdoc IModelRegistry
    function modelCount() external view returns (uint256) {
        return _modelIds.length;
    }

    /// @inheritdoc IModelRegistry
    function modelIdAt(uint256 index) external view returns (bytes32) {
        return _modelIds[index];
    }

    /// @dev Records the entry's current audit rate and thresholds as the model's next rules version.
    function _newRulesVersion(bytes32 modelId, Model storage entry) private {
        uint32 version = entry.terms.rulesVersion + 1;
        entry.terms.rulesVersion = version;
        Rules memory rules = Rules(entry.terms.auditRatePpm, entry.thresholds);
        _rules[modelId][version] = rules;
        emit RulesVersioned(modelId, version, rules);
    }

    function _existing(bytes32 modelId) private view returns (Model storage entry) {
        entry = _models[modelId];
        if (entry.weightsSha256 == bytes32(0)) revert UnknownModel(modelId);
    }

    function _checkTerms(ModelTerms calldata t) private pure {
        if (
            t.samplerVersion == 0 || t.maxContext == 0 || t.maxContext > MAX_CONTEXT_LIMIT
                || t.auditRatePpm > MAX_AUDIT_RATE_PPM
        ) revert InvalidModelParameter();
    }

    function _checkThresholds(VerificationThresholds calldata v) private pure {
        if (v.maxMarginPpm == 0 || v.maxFlipRatePpm > MAX_FLIP_RATE_PPM) revert InvalidModelParameter();
    }
}
