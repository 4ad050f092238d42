//! The validator's side of the chain: contract handles, its database, and the shared transaction
//! manager ([`TxManager`]) that owns its nonce. Every transaction is logged before it is broadcast;
//! a step ([`Chain::step`], keyed by kind and job or dispute id) awaits the same step sent before a
//! restart instead of sending it twice.

use std::{fmt, path::Path};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    transports::{RpcError, TransportErrorKind},
};
use infera_chain::{
    bindings::{JobEscrow, MockSettlementToken, ModelRegistry, Staking},
    deploy::ChainError,
    tx::{TxConfig, TxError, TxLog, TxManager, TxOutcome},
};

use infera_chain::bindings::Disputes;

use crate::store::{self, Fingerprint, Store, StoreError};

/// Errors talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The node could not be reached or answered an error.
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError<TransportErrorKind>),
    /// A contract refused the call.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The transaction was mined but reverted.
    #[error("transaction {tx_hash} ({kind}) reverted")]
    Reverted {
        /// What it was for.
        kind: String,
        /// Its hash.
        tx_hash: alloy::primitives::B256,
    },
    /// The transaction manager failed.
    #[error(transparent)]
    Tx(TxError),
    /// The RPC URL is not a URL.
    #[error("invalid rpc url: {0}")]
    Url(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TxError> for SendError {
    fn from(error: TxError) -> Self {
        match error {
            TxError::Refused(error) => Self::Chain(error),
            TxError::Rpc(error) => Self::Rpc(error),
            TxError::Reverted { kind, tx_hash, .. } => Self::Reverted { kind, tx_hash },
            other => Self::Tx(other),
        }
    }
}

impl From<alloy::contract::Error> for SendError {
    fn from(error: alloy::contract::Error) -> Self {
        Self::Chain(ChainError::from(error))
    }
}

impl SendError {
    /// Whether retrying later may help, as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Rpc(_) => true,
            Self::Tx(error) => {
                error.is_transient()
                    || matches!(
                        error,
                        TxError::InsufficientFunds(_) | TxError::Replaced { .. }
                    )
            }
            _ => false,
        }
    }
}

/// Contract handles, the database and the transaction manager of one validator.
pub struct Chain {
    /// Read-only provider: calls, logs, receipts.
    pub provider: DynProvider,
    /// The validator's address.
    pub address: Address,
    /// The chain id.
    pub chain_id: u64,
    /// JobEscrow.
    pub escrow: JobEscrow::JobEscrowInstance<DynProvider>,
    /// The dispute contract.
    pub disputes: Disputes::DisputesInstance<DynProvider>,
    /// Staking.
    pub staking: Staking::StakingInstance<DynProvider>,
    /// ModelRegistry.
    pub registry: ModelRegistry::ModelRegistryInstance<DynProvider>,
    /// The settlement token.
    pub token: MockSettlementToken::MockSettlementTokenInstance<DynProvider>,
    tx: TxManager,
    store: Store,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("address", &self.address)
            .field("chain_id", &self.chain_id)
            .field("escrow", self.escrow.address())
            .field("disputes", self.disputes.address())
            .field("database", &self.store.path())
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Connects, resolves the contracts from the escrow (the dispute contract too, unless
    /// `disputes` names it), opens the database for this deployment and loads the transaction
    /// log.
    ///
    /// # Errors
    /// [`SendError`] when the node cannot be reached, the escrow names no dispute contract, or the
    /// database belongs to another deployment.
    pub async fn connect(
        rpc_url: &str,
        job_escrow: Address,
        disputes: Option<Address>,
        signer: PrivateKeySigner,
        database: Option<&Path>,
        tx_config: TxConfig,
    ) -> Result<Self, SendError> {
        let url = rpc_url
            .parse()
            .map_err(|e| SendError::Url(format!("{e}")))?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        let chain_id = provider.get_chain_id().await?;
        let escrow = JobEscrow::new(job_escrow, provider.clone());
        let staking = escrow.staking().call().await?;
        let registry = escrow.registry().call().await?;
        let token = escrow.token().call().await?;
        let disputes = match disputes {
            Some(disputes) => disputes,
            None => escrow.disputes().call().await?,
        };
        if disputes == Address::ZERO {
            return Err(SendError::Chain(ChainError::Refused(format!(
                "JobEscrow {job_escrow} has no dispute contract"
            ))));
        }
        let address = signer.address();
        let fingerprint = Fingerprint {
            chain_id,
            job_escrow,
            disputes,
            staking,
            token,
            validator: address,
        };
        let path = match database {
            Some(path) => path.to_owned(),
            None => store::default_path(chain_id, address)?,
        };
        let store = Store::open_for(&path, &fingerprint).await?;
        let log = TxLog::open(store.pool().clone()).await?;
        let tx = TxManager::new(provider.clone(), signer, chain_id, log, tx_config).await?;
        Ok(Self {
            escrow,
            disputes: Disputes::new(disputes, provider.clone()),
            staking: Staking::new(staking, provider.clone()),
            registry: ModelRegistry::new(registry, provider.clone()),
            token: MockSettlementToken::new(token, provider.clone()),
            provider,
            address,
            chain_id,
            tx,
            store,
        })
    }

    /// A transaction manager for another key (the canary executor), logging in the same database.
    ///
    /// # Errors
    /// [`SendError`] when the log cannot be read.
    pub async fn manager_for(
        &self,
        signer: PrivateKeySigner,
        config: TxConfig,
    ) -> Result<TxManager, SendError> {
        let log = TxLog::open(self.store.pool().clone()).await?;
        Ok(TxManager::new(self.provider.clone(), signer, self.chain_id, log, config).await?)
    }

    /// The transaction manager.
    pub fn tx(&self) -> &TxManager {
        &self.tx
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The latest block's timestamp.
    ///
    /// # Errors
    /// [`SendError::Rpc`].
    pub async fn now(&self) -> Result<u64, SendError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| SendError::Chain(ChainError::Refused("no latest block".into())))?;
        Ok(block.header.timestamp)
    }

    /// Sends a transaction for no job and awaits it.
    ///
    /// # Errors
    /// [`SendError`].
    pub async fn send(
        &self,
        kind: &str,
        request: TransactionRequest,
    ) -> Result<TransactionReceipt, SendError> {
        let pending = self.tx.send(kind, None, request).await?;
        tracing::debug!(tx_hash = %pending.first_hash, kind, nonce = pending.nonce, "transaction sent");
        Ok(pending.confirmed().await?)
    }

    /// Step `kind` for `key` (a job or dispute id), at most once: see [`step_with`].
    ///
    /// # Errors
    /// [`SendError`].
    pub async fn step(
        &self,
        kind: &str,
        key: U256,
        request: TransactionRequest,
    ) -> Result<TransactionReceipt, SendError> {
        step_with(&self.tx, &self.provider, kind, key, request).await
    }
}

/// Step `kind` for `key` through `tx`, at most once: a transaction of this step still in flight
/// (sent before a restart) is awaited instead of sending another; one already mined successfully is
/// read back. Otherwise `request` is sent.
///
/// # Errors
/// [`SendError`]; a refusal at estimation is [`SendError::Chain`].
pub async fn step_with(
    tx: &TxManager,
    provider: &DynProvider,
    kind: &str,
    key: U256,
    request: TransactionRequest,
) -> Result<TransactionReceipt, SendError> {
    if let Some(pending) = tx.in_flight(kind, key).await? {
        tracing::info!(job_id = %key, tx_hash = %pending.first_hash, kind, "awaiting a transaction sent before a restart");
        return Ok(pending.confirmed().await?);
    }
    if let Some(TxOutcome::Mined(tx_hash)) = tx.outcome(kind, key).await?
        && let Some(receipt) = provider.get_transaction_receipt(tx_hash).await?
        && receipt.status()
    {
        tracing::info!(job_id = %key, %tx_hash, kind, "step already mined");
        return Ok(receipt);
    }
    let pending = tx.send(kind, Some(key), request).await?;
    tracing::debug!(job_id = %key, tx_hash = %pending.first_hash, kind, nonce = pending.nonce, "transaction sent");
    Ok(pending.confirmed().await?)
}
