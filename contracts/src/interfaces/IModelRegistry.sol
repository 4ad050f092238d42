// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IModelRegistry
/// @notice Governance-curated list of the models executors may serve. A model's weights and tokenizer
/// are pinned by hash; everything the protocol needs at job time sits in one storage slot (`ModelTerms`).
interface IModelRegistry {
    /// @notice Per-model thresholds of the teacher-forced verification (see DESIGN.md §4).
    /// @param maxMarginPpm Largest log-probability margin (nats × 1e6) tolerated at one position.
    /// @param maxFlipRatePpm Largest share of positions (× 1e6) where the validator's pick may differ.
    struct VerificationThresholds {
        uint32 maxMarginPpm;
        uint32 maxFlipRatePpm;
    }

    /// @notice What the job market reads for a model, packed in one slot.
    /// @param active Whether new jobs may be posted for the model.
    /// @param samplerVersion Version of the verifiable sampler the commitment is made with.
    /// @param maxContext Largest prompt + output token count the model accepts.
    /// @param auditRatePpm Share of jobs (× 1e6) validators audit.
    /// @param minExecutorStake Stake an executor needs before it may accept a job for the model.
    /// @param rulesVersion Version of the model's verification rules (audit rate and thresholds), kept by
    /// the registry: ignored in `setTerms`, bumped by every change of those rules. Jobs snapshot it, so
    /// governance can never change the rules a posted job is judged by (`rulesAt`).
    struct ModelTerms {
        bool active;
        uint32 samplerVersion;
        uint32 maxContext;
        uint32 auditRatePpm;
        uint96 minExecutorStake;
        uint32 rulesVersion;
    }

    /// @notice The rules a job is verified by, as they stood at one `rulesVersion`.
    struct Rules {
        uint32 auditRatePpm;
        VerificationThresholds thresholds;
    }

    /// @notice A full model entry.
    /// @param name Human-readable unique name; the model id is `keccak256(bytes(name))`.
    /// @param weightsSha256 sha256 of the weights file (GGUF).
    /// @param tokenizerHash Hash of the tokenizer and chat template the prompt is rendered with.
    struct Model {
        string name;
        bytes32 weightsSha256;
        bytes32 tokenizerHash;
        ModelTerms terms;
        VerificationThresholds thresholds;
    }

    /// @notice The model id is not registered.
    error UnknownModel(bytes32 modelId);
    /// @notice A model with this name is already registered.
    error ModelExists(bytes32 modelId);
    /// @notice A field is outside the bounds governance may set.
    error InvalidModelParameter();
    /// @notice The model has no rules of this version.
    error UnknownRulesVersion(bytes32 modelId, uint32 version);

    /// @notice Emitted when governance registered a model.
    event ModelRegistered(bytes32 indexed modelId, string name, bytes32 weightsSha256, bytes32 tokenizerHash);
    /// @notice Emitted when governance changed a model's job-time terms.
    event ModelTermsUpdated(bytes32 indexed modelId, ModelTerms terms);
    /// @notice Emitted when governance changed a model's verification thresholds.
    event ThresholdsUpdated(bytes32 indexed modelId, VerificationThresholds thresholds);
    /// @notice Emitted when a model's verification rules (audit rate or thresholds) took a new version.
    event RulesVersioned(bytes32 indexed modelId, uint32 version, Rules rules);

    /// @notice Registers a model. Its weights and tokenizer hashes can never change afterwards:
    /// a new version of the weights is a new model.
    /// @return modelId `keccak256(bytes(model.name))`.
    function registerModel(Model calldata model) external returns (bytes32 modelId);

    /// @notice Updates a model's job-time terms (activation, stake, audit rate, context).
    /// The sampler version cannot be lowered; `terms.rulesVersion` is ignored (a changed audit rate
    /// bumps it). Jobs already posted keep the terms and rules they snapshotted.
    function setTerms(bytes32 modelId, ModelTerms calldata terms) external;

    /// @notice Updates a model's verification thresholds as a new rules version; posted jobs keep theirs.
    function setThresholds(bytes32 modelId, VerificationThresholds calldata thresholds) external;

    /// @notice The job-time terms of a model; reverts with `UnknownModel` when it is not registered.
    function terms(bytes32 modelId) external view returns (ModelTerms memory);

    /// @notice The full entry of a model; reverts with `UnknownModel` when it is not registered.
    function model(bytes32 modelId) external view returns (Model memory);

    /// @notice The rules of `modelId` at `version` (1 = as registered); reverts with `UnknownRulesVersion`.
    function rulesAt(bytes32 modelId, uint32 version) external view returns (Rules memory);

    /// @notice Number of registered models.
    function modelCount() external view returns (uint256);

    /// @notice The id of the `index`-th registered model.
    function modelIdAt(uint256 index) external view returns (bytes32);
}
