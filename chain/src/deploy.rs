//! Deploying and wiring the Infera contracts through the generated bindings.

use crate::bindings::{
    Disputes, IModelRegistry, JobEscrow, MockSettlementToken, ModelRegistry, Staking,
};
use alloy::{
    primitives::{Address, B256, U256, aliases::U96},
    providers::Provider,
    rpc::types::TransactionReceipt,
};
use infera_protocol::{
    models::DEFAULT_MODEL, sampler::SAMPLER_VERSION, verify::DEFAULT_THRESHOLDS,
};
use serde::{Deserialize, Serialize};

/// Errors of a transaction to the Infera contracts (deployment and every lifecycle step).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A contract call or deployment could not be sent or was rejected by the node.
    #[error("contract call failed: {0}")]
    Contract(alloy::contract::Error),
    /// A contract refused the call with one of its custom errors (decoded).
    #[error("contract refused the call: {0}")]
    Refused(String),
    /// A transaction was sent but its receipt could not be obtained.
    #[error("waiting for a receipt failed: {0}")]
    Pending(#[from] alloy::providers::PendingTransactionError),
    /// A transaction succeeded but did not emit the event it promises.
    #[error("transaction {tx_hash} did not emit {event}")]
    MissingEvent {
        /// The event's name.
        event: &'static str,
        /// The transaction.
        tx_hash: B256,
    },
    /// A transaction was mined but reverted.
    #[error("transaction {tx_hash} reverted ({what})")]
    Reverted {
        /// What the transaction was for.
        what: &'static str,
        /// Its hash.
        tx_hash: B256,
    },
}

impl From<alloy::contract::Error> for ChainError {
    /// Decodes the Infera contracts' custom errors, so a refusal reads `ParameterOutOfBounds`
    /// rather than a bare selector.
    fn from(error: alloy::contract::Error) -> Self {
        if let Some(e) = error.as_decoded_interface_error::<JobEscrow::JobEscrowErrors>() {
            return Self::Refused(format!("JobEscrow: {e:?}"));
        }
        if let Some(e) = error.as_decoded_interface_error::<Staking::StakingErrors>() {
            return Self::Refused(format!("Staking: {e:?}"));
        }
        if let Some(e) = error.as_decoded_interface_error::<Disputes::DisputesErrors>() {
            return Self::Refused(format!("Disputes: {e:?}"));
        }
        if let Some(e) = error.as_decoded_interface_error::<ModelRegistry::ModelRegistryErrors>() {
            return Self::Refused(format!("ModelRegistry: {e:?}"));
        }
        Self::Contract(error)
    }
}

/// Market parameters the job escrow and staking contracts are deployed with. The contracts enforce
/// their bounds (e.g. the unbonding period covers the longest job lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketParams {
    /// Seconds after submission during which a result can be challenged.
    pub challenge_window: u64,
    /// Seconds a dispute may take before it settles by default.
    pub dispute_window: u64,
    /// Longest time from posting to deadline a job may ask for, in seconds.
    pub max_job_duration: u64,
    /// Share of each payment that goes to the validator reward pool, in basis points.
    pub validator_fee_bps: u16,
    /// Collateral locked per job as a share of its escrow, in basis points.
    pub collateral_bps: u16,
    /// Seconds unstaked stake stays slashable before it can be withdrawn.
    pub unbonding_period: u64,
}

impl Default for MarketParams {
    /// Devnet defaults: the shortest windows the contracts allow, so a local job settles in minutes.
    fn default() -> Self {
        Self {
            challenge_window: 10 * 60,
            dispute_window: 60 * 60,
            max_job_duration: 60 * 60,
            validator_fee_bps: 500,
            collateral_bps: 20_000,
            unbonding_period: 24 * 60 * 60,
        }
    }
}

/// Parameters the dispute contract is deployed with (governance may change them within the
/// contract's bounds; open disputes keep the ones they started with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeParams {
    /// What a challenger posts, in token base units.
    pub bond: u64,
    /// Validator stake each juror puts at risk (and a challenger must have free), in base units.
    pub juror_penalty: u64,
    /// Seats per jury (at most 15).
    pub jury_size: u8,
    /// Share of seized collateral that rewards a challenger who was right, in basis points.
    pub challenger_reward_bps: u16,
    /// Share of seized collateral (faulty) or of the bond (honest) the majority jurors share, in
    /// basis points.
    pub juror_reward_bps: u16,
}

impl Default for DisputeParams {
    /// Devnet defaults (6-decimal token): a 10-token bond, a 5-token juror penalty, juries of 3;
    /// 40 % of seized collateral to the challenger, 20 % to the jurors, the rest burned.
    fn default() -> Self {
        Self {
            bond: 10_000_000,
            juror_penalty: 5_000_000,
            jury_size: 3,
            challenger_reward_bps: 4_000,
            juror_reward_bps: 2_000,
        }
    }
}

/// Addresses of a deployed protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Chain the contracts live on.
    pub chain_id: u64,
    /// The settlement token (the mock on devnets).
    pub token: Address,
    /// ModelRegistry.
    pub model_registry: Address,
    /// Staking.
    pub staking: Address,
    /// JobEscrow.
    pub job_escrow: Address,
    /// Disputes (zero in records written before it existed).
    #[serde(default)]
    pub disputes: Address,
    /// Block of the last deployment transaction: indexers start here.
    pub deployed_at_block: u64,
}

/// sha256 of the default model's GGUF (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M), see DESIGN.md §2.
pub const DEFAULT_MODEL_SHA256: B256 = DEFAULT_MODEL.sha256;

/// Registry entry of the default model. Its tokenizer and chat template are embedded in the GGUF,
/// so the GGUF's hash pins them too.
pub fn default_model() -> IModelRegistry::Model {
    IModelRegistry::Model {
        name: DEFAULT_MODEL.name.to_owned(),
        weightsSha256: DEFAULT_MODEL_SHA256,
        tokenizerHash: DEFAULT_MODEL_SHA256,
        terms: IModelRegistry::ModelTerms {
            active: true,
            samplerVersion: SAMPLER_VERSION,
            maxContext: 32_768,
            auditRatePpm: 50_000,
            minExecutorStake: U96::from(100_000_000u64),
            // Numbered by the registry (from 1); ignored on input.
            rulesVersion: 0,
        },
        // The one place the default thresholds are set (`infera verify` uses them too).
        thresholds: IModelRegistry::VerificationThresholds {
            maxMarginPpm: DEFAULT_THRESHOLDS.max_margin_ppm,
            maxFlipRatePpm: DEFAULT_THRESHOLDS.max_flip_rate_ppm,
        },
    }
}

/// Fails with [`ChainError::Reverted`] unless the receipt reports success.
pub fn ensure_success(
    receipt: TransactionReceipt,
    what: &'static str,
) -> Result<TransactionReceipt, ChainError> {
    if receipt.status() {
        Ok(receipt)
    } else {
        Err(ChainError::Reverted {
            what,
            tx_hash: receipt.transaction_hash,
        })
    }
}

/// Deploys ModelRegistry, Staking, JobEscrow and Disputes (and the mock token when `token` is
/// `None`) and wires them together: Staking and JobEscrow take Disputes as their dispute contract,
/// and Disputes allows JobEscrow as a claim source. `governance` must be the provider's signer: it
/// owns every contract.
pub async fn deploy<P: Provider + Clone>(
    provider: &P,
    governance: Address,
    token: Option<Address>,
    params: &MarketParams,
    dispute_params: &DisputeParams,
) -> Result<Deployment, ChainError> {
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(alloy::contract::Error::from)?;
    let token = match token {
        Some(token) => token,
        None => *MockSettlementToken::deploy(provider).await?.address(),
    };
    let registry = ModelRegistry::deploy(provider, governance).await?;
    let staking = Staking::deploy(
        provider,
        token,
        *registry.address(),
        governance,
        U256::from(params.unbonding_period),
    )
    .await?;
    let escrow = JobEscrow::deploy(
        provider,
        token,
        *staking.address(),
        *registry.address(),
        governance,
        params.challenge_window,
        params.dispute_window,
        params.max_job_duration,
        params.validator_fee_bps,
        params.collateral_bps,
    )
    .await?;
    let receipt = staking
        .setJobEscrow(*escrow.address())
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure_success(receipt, "Staking.setJobEscrow")?;
    let disputes = Disputes::deploy(
        provider,
        token,
        *staking.address(),
        governance,
        U256::from(dispute_params.bond),
        U256::from(dispute_params.juror_penalty),
        dispute_params.jury_size,
        dispute_params.challenger_reward_bps,
        dispute_params.juror_reward_bps,
    )
    .await?;
    let receipt = staking
        .setDisputes(*disputes.address())
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure_success(receipt, "Staking.setDisputes")?;
    let receipt = escrow
        .setDisputes(*disputes.address())
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure_success(receipt, "JobEscrow.setDisputes")?;
    let receipt = disputes
        .allowSource(*escrow.address())
        .send()
        .await?
        .get_receipt()
        .await?;
    let receipt = ensure_success(receipt, "Disputes.allowSource")?;

    Ok(Deployment {
        chain_id,
        token,
        model_registry: *registry.address(),
        staking: *staking.address(),
        job_escrow: *escrow.address(),
        disputes: *disputes.address(),
        deployed_at_block: receipt.block_number.unwrap_or_default(),
    })
}

/// Registers `model` in the registry (governance only) and returns its id.
pub async fn register_model<P: Provider>(
    provider: &P,
    registry: Address,
    model: IModelRegistry::Model,
) -> Result<B256, ChainError> {
    let registry = ModelRegistry::new(registry, provider);
    let receipt = registry
        .registerModel(model)
        .send()
        .await?
        .get_receipt()
        .await?;
    let receipt = ensure_success(receipt, "ModelRegistry.registerModel")?;
    receipt
        .decoded_log::<ModelRegistry::ModelRegistered>()
        .map(|log| log.data.modelId)
        .ok_or(ChainError::MissingEvent {
            event: "ModelRegistered",
            tx_hash: receipt.transaction_hash,
        })
}

/// What `infera deploy` does: deploy and wire the contracts on any RPC.
#[derive(Debug)]
pub struct DeployConfig {
    /// The chain's RPC endpoint.
    pub rpc_url: alloy::transports::http::reqwest::Url,
    /// The deployer; it owns the contracts until `governance` accepts them.
    pub signer: alloy::signers::local::PrivateKeySigner,
    /// The settlement token; `None` deploys the mock (devnets only).
    pub token: Option<Address>,
    /// Where governance of every contract goes (two-step: it must call `acceptOwnership`).
    pub governance: Option<Address>,
    /// Whether to register the default model.
    pub register_default_model: bool,
    /// Market parameters. The dispute contract gets [`DisputeParams::default`]; governance may change
    /// them with `Disputes.setParameters`.
    pub params: MarketParams,
}

/// What `infera deploy` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    /// The contracts.
    pub deployment: Deployment,
    /// The default model's id, when it was registered.
    pub default_model_id: Option<B256>,
    /// The address that must call `acceptOwnership` on each contract, if ownership was handed over.
    pub pending_governance: Option<Address>,
}

/// Deploys, wires, optionally registers the default model and hands governance over.
pub async fn run(config: DeployConfig) -> Result<DeployReport, ChainError> {
    let deployer = config.signer.address();
    let provider = alloy::providers::ProviderBuilder::new()
        .wallet(config.signer)
        .connect_http(config.rpc_url);
    let deployment = deploy(
        &provider,
        deployer,
        config.token,
        &config.params,
        &DisputeParams::default(),
    )
    .await?;
    tracing::info!(job_escrow = %deployment.job_escrow, block = deployment.deployed_at_block, "deployed");

    let default_model_id = if config.register_default_model {
        Some(register_model(&provider, deployment.model_registry, default_model()).await?)
    } else {
        None
    };

    let pending_governance = config
        .governance
        .filter(|governance| *governance != deployer);
    if let Some(governance) = pending_governance {
        let registry = ModelRegistry::new(deployment.model_registry, &provider);
        let staking = Staking::new(deployment.staking, &provider);
        let escrow = JobEscrow::new(deployment.job_escrow, &provider);
        let disputes = Disputes::new(deployment.disputes, &provider);
        let receipt = registry
            .transferOwnership(governance)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure_success(receipt, "ModelRegistry.transferOwnership")?;
        let receipt = staking
            .transferOwnership(governance)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure_success(receipt, "Staking.transferOwnership")?;
        let receipt = escrow
            .transferOwnership(governance)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure_success(receipt, "JobEscrow.transferOwnership")?;
        let receipt = disputes
            .transferOwnership(governance)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure_success(receipt, "Disputes.transferOwnership")?;
        tracing::info!(%governance, "governance handed over; it must call acceptOwnership on each contract");
    }
    Ok(DeployReport {
        deployment,
        default_model_id,
        pending_governance,
    })
}
