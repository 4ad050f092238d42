//! A local chain with the whole protocol deployed: anvil, the contracts, the default model and
//! funded accounts. Later issues add the executor, validators, indexer and gateway to it.

use std::{future::Future, path::PathBuf};

use crate::bindings::MockSettlementToken;
use alloy::{
    node_bindings::{Anvil, AnvilInstance, NodeError},
    primitives::{Address, B256, U256},
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use serde::Serialize;

use crate::deploy::{self, ChainError, Deployment, DisputeParams, MarketParams};

/// Errors while starting a devnet.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// anvil could not be started.
    #[error("could not start anvil at {path}: {source} (run scripts/setup, or set INFERA_ANVIL)")]
    Anvil {
        /// The binary that was tried.
        path: PathBuf,
        /// Why it failed.
        source: NodeError,
    },
    /// Deploying or configuring the contracts failed.
    #[error(transparent)]
    Deploy(#[from] ChainError),
}

/// How to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Port for anvil's RPC; `None` picks a free one.
    pub port: Option<u16>,
    /// The anvil binary.
    pub anvil: PathBuf,
    /// Market parameters for the contracts.
    pub params: MarketParams,
    /// Dispute parameters.
    pub dispute_params: DisputeParams,
    /// How many of anvil's dev accounts get settlement tokens.
    pub funded_accounts: usize,
    /// Tokens (base units) each funded account gets.
    pub fund_amount: U256,
    /// Blocks per epoch: anvil reports `safe` this many blocks below the head and `finalized`
    /// twice as many (anvil's default when `None`: 32).
    pub slots_in_an_epoch: Option<u64>,
    /// Block gas limit (anvil's default when `None`).
    pub gas_limit: Option<u64>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        Self {
            port: Some(8545),
            anvil: anvil_path(),
            params: MarketParams::default(),
            dispute_params: DisputeParams::default(),
            funded_accounts: 5,
            fund_amount: U256::from(1_000_000_000_000u64), // 1,000,000 tokens of 6 decimals
            slots_in_an_epoch: None,
            gas_limit: None,
        }
    }
}

/// The anvil binary: `$INFERA_ANVIL`, else the one `scripts/setup` installed in this checkout,
/// else `anvil` from `PATH`.
///
/// The checkout is the one cargo runs from (`CARGO_MANIFEST_DIR` at run time: a test's crate or
/// the root package) before the one this crate was compiled in: a build cache shared between
/// checkouts keeps binaries whose compile-time path may be another, deleted clone.
pub fn anvil_path() -> PathBuf {
    if let Some(path) = std::env::var_os("INFERA_ANVIL") {
        return PathBuf::from(path);
    }
    let running = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let compiled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    running
        .iter()
        .flat_map(|dir| [dir.clone(), dir.join("..")])
        .chain([compiled])
        .map(|dir| dir.join("node_modules/.bin/anvil"))
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("anvil"))
}

/// A running devnet. Dropping it stops anvil.
#[derive(Debug)]
pub struct Devnet {
    /// The anvil process and its dev accounts.
    pub anvil: AnvilInstance,
    /// Where the contracts are.
    pub deployment: Deployment,
    /// The default model's id in the registry.
    pub model_id: B256,
}

/// What a devnet prints for its users: endpoints, addresses and the funded dev accounts.
#[derive(Debug, Serialize)]
pub struct DevnetSummary {
    /// RPC endpoint.
    pub rpc_url: String,
    /// Contract addresses.
    pub deployment: Deployment,
    /// The default model's id.
    pub model_id: B256,
    /// Funded dev accounts (anvil's well-known test keys; never use them on a real chain).
    pub accounts: Vec<Address>,
}

impl Devnet {
    /// The signer of anvil's `index`-th dev account.
    pub fn signer(&self, index: usize) -> Option<PrivateKeySigner> {
        self.anvil
            .keys()
            .get(index)
            .map(|key| PrivateKeySigner::from(key.clone()))
    }

    /// A summary for printing.
    pub fn summary(&self, funded_accounts: usize) -> DevnetSummary {
        DevnetSummary {
            rpc_url: self.anvil.endpoint(),
            deployment: self.deployment,
            model_id: self.model_id,
            accounts: self
                .anvil
                .addresses()
                .iter()
                .take(funded_accounts)
                .copied()
                .collect(),
        }
    }
}

/// Starts anvil, deploys and wires the contracts with dev account 0 as governance, registers the
/// default model and mints settlement tokens to the first `funded_accounts` dev accounts.
pub async fn start(config: &DevnetConfig) -> Result<Devnet, DevnetError> {
    let mut anvil = Anvil::at(&config.anvil);
    if let Some(port) = config.port {
        anvil = anvil.port(port);
    }
    if let Some(slots) = config.slots_in_an_epoch {
        anvil = anvil.args(["--slots-in-an-epoch".to_owned(), slots.to_string()]);
    }
    if let Some(gas_limit) = config.gas_limit {
        anvil = anvil.args(["--gas-limit".to_owned(), gas_limit.to_string()]);
    }
    let anvil = anvil.try_spawn().map_err(|source| DevnetError::Anvil {
        path: config.anvil.clone(),
        source,
    })?;

    let governance = PrivateKeySigner::from(anvil.first_key().clone());
    let governance_address = governance.address();
    let provider = ProviderBuilder::new()
        .wallet(governance)
        .connect_http(anvil.endpoint_url());

    let deployment = deploy::deploy(
        &provider,
        governance_address,
        None,
        &config.params,
        &config.dispute_params,
    )
    .await?;
    let model_id = deploy::register_model(
        &provider,
        deployment.model_registry,
        deploy::default_model(),
    )
    .await?;

    let token = MockSettlementToken::new(deployment.token, &provider);
    for account in anvil.addresses().iter().take(config.funded_accounts) {
        let receipt = token
            .mint(*account, config.fund_amount)
            .send()
            .await
            .map_err(ChainError::from)?;
        let receipt = receipt.get_receipt().await.map_err(ChainError::from)?;
        deploy::ensure_success(receipt, "MockSettlementToken.mint")?;
    }
    tracing::info!(
        rpc = %anvil.endpoint(),
        job_escrow = %deployment.job_escrow,
        block = provider.get_block_number().await.unwrap_or_default(),
        "devnet ready"
    );
    Ok(Devnet {
        anvil,
        deployment,
        model_id,
    })
}

/// Runs a devnet until `shutdown` resolves, printing its summary as JSON on stdout.
pub async fn run(
    config: DevnetConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DevnetError> {
    let devnet = start(&config).await?;
    let summary = devnet.summary(config.funded_accounts);
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    shutdown.await;
    tracing::info!("devnet stopping");
    Ok(())
}
