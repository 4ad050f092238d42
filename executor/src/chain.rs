//! The executor's side of the chain: contract handles, its database, and the shared transaction
//! manager ([`infera_chain::tx::TxManager`]) that owns the executor's nonce.
//!
//! Every transaction is estimated, signed and **logged in the executor's database before it is
//! broadcast**; the nonce lock is held only for that, not while the transaction waits for its
//! block, so jobs proceed concurrently. The manager's background task ([`TxManager::run`], spawned
//! by `Executor::start`) re-broadcasts what the node lost, re-signs stuck transactions with higher
//! fees at the same nonce and fills nonce gaps — startup never waits for an old transaction. A job
//! step ([`Chain::step`]) first awaits the same step sent before a restart, so a step is never sent
//! twice.

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

use crate::store::{self, Fingerprint, Store, StoreError};

/// Errors talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The node could not be reached or answered an error.
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError<TransportErrorKind>),
    /// A contract refused the call (decoded when it is one of ours).
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
    /// The transaction manager failed (signing, its log, funds, a nonce taken by another sender).
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

impl SendError {
    /// Whether retrying later may help, as opposed to a refusal. Running out of gas money is
    /// retried too (a job step waits for a top-up instead of being given up), and so is a nonce
    /// taken by another sender of the same key (the step was not done; the next try re-reads the
    /// chain).
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

/// Contract handles, the database and the transaction manager of one executor.
pub struct Chain {
    /// Read-only provider (no wallet, no fillers): calls, logs, receipts.
    pub provider: DynProvider,
    /// The executor's address.
    pub address: Address,
    /// The chain id.
    pub chain_id: u64,
    /// JobEscrow.
    pub escrow: JobEscrow::JobEscrowInstance<DynProvider>,
    /// Staking.
    pub staking: Staking::StakingInstance<DynProvider>,
    /// ModelRegistry.
    pub registry: ModelRegistry::ModelRegistryInstance<DynProvider>,
    /// The settlement token (any ERC-20; only `approve` and `balanceOf` are used).
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
            .field("database", &self.store.path())
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Connects to `rpc_url`, resolves the contracts from the escrow's immutables, opens the
    /// executor's database (`database`, or the default path for this chain and executor) for this
    /// deployment, and loads the transaction manager's log. Waits for no old transaction: run
    /// [`TxManager::run`] ([`Chain::tx`]) in the background for that.
    ///
    /// # Errors
    /// [`SendError`] when the node cannot be reached, the address is not a JobEscrow, or the
    /// database belongs to another deployment ([`StoreError::OtherDeployment`]).
    pub async fn connect(
        rpc_url: &str,
        job_escrow: Address,
        signer: PrivateKeySigner,
        database: Option<&Path>,
        tx_config: TxConfig,
    ) -> Result<Self, SendError> {
        // The URL may carry credentials: it is never part of an error or a log line.
        let url = rpc_url
            .parse()
            .map_err(|e| SendError::Url(format!("{e}")))?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        let chain_id = provider.get_chain_id().await?;
        let escrow = JobEscrow::new(job_escrow, provider.clone());
        let staking = escrow.staking().call().await.map_err(ChainError::from)?;
        let registry = escrow.registry().call().await.map_err(ChainError::from)?;
        let token = escrow.token().call().await.map_err(ChainError::from)?;
        let address = signer.address();
        let fingerprint = Fingerprint {
            chain_id,
            job_escrow,
            staking,
            model_registry: registry,
            token,
            executor: address,
        };
        let path = match database {
            Some(path) => path.to_owned(),
            None => store::default_path(chain_id, address)?,
        };
        let store = Store::open_for(&path, &fingerprint).await?;
        tracing::info!(database = %path.display(), "executor database");
        let log = TxLog::open(store.pool().clone()).await?;
        let tx = TxManager::new(provider.clone(), signer, chain_id, log, tx_config).await?;
        Ok(Self {
            escrow,
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

    /// Fault injection for crash tests: abort the process right after broadcasting a transaction of
    /// `kind`, before its receipt is read.
    pub fn crash_after_broadcast(mut self, kind: Option<String>) -> Self {
        self.tx = self.tx.crash_after_broadcast(kind);
        self
    }

    /// The transaction manager (for its background task and its gauges).
    pub fn tx(&self) -> &TxManager {
        &self.tx
    }

    /// The store this executor keeps its state in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sends a transaction and awaits it (fee bumps and re-broadcasts included). A step of a job
    /// (`job_id` given) goes through [`Chain::step`]: never sent twice.
    ///
    /// # Errors
    /// [`SendError`]; a contract refusal at estimation is decoded ([`SendError::Chain`]), a mined
    /// revert is [`SendError::Reverted`].
    pub async fn send(
        &self,
        kind: &str,
        job_id: Option<U256>,
        request: TransactionRequest,
    ) -> Result<TransactionReceipt, SendError> {
        if let Some(job_id) = job_id {
            return self.step(kind, job_id, request).await;
        }
        let pending = self.tx.send(kind, None, request).await?;
        tracing::debug!(tx_hash = %pending.first_hash, kind, nonce = pending.nonce, "transaction sent");
        Ok(pending.confirmed().await?)
    }

    /// Step `kind` of job `job_id`, at most once: a transaction of this step still in flight (sent
    /// before a restart) is awaited instead of sending another; one already mined successfully is
    /// read back. Otherwise (none, or the last one reverted or lost its nonce) `request` is sent.
    ///
    /// # Errors
    /// As [`Chain::send`].
    pub async fn step(
        &self,
        kind: &str,
        job_id: U256,
        request: TransactionRequest,
    ) -> Result<TransactionReceipt, SendError> {
        if let Some(pending) = self.tx.in_flight(kind, job_id).await? {
            tracing::info!(job_id = %job_id, tx_hash = %pending.first_hash, kind, nonce = pending.nonce, "awaiting a transaction sent before a restart");
            return Ok(pending.confirmed().await?);
        }
        match self.tx.outcome(kind, job_id).await? {
            Some(TxOutcome::Mined(tx_hash)) => {
                match self.provider.get_transaction_receipt(tx_hash).await? {
                    Some(receipt) if receipt.status() => {
                        tracing::info!(job_id = %job_id, %tx_hash, kind, block = receipt.block_number, "step already mined");
                        return Ok(receipt);
                    }
                    // Mined again after a reorganisation, into a state where it reverted (e.g. a
                    // submission for the assignment a re-mined acceptance replaced): not done.
                    Some(receipt) => {
                        tracing::warn!(job_id = %job_id, %tx_hash, kind, block = receipt.block_number, "logged as mined, now reverted on this branch; sending again");
                    }
                    // Mined, yet the node does not know it (a reorg, or a node behind): send
                    // again; the contract refuses a step done twice at estimation.
                    None => {
                        tracing::warn!(job_id = %job_id, %tx_hash, kind, "logged as mined but no receipt; sending again");
                    }
                }
            }
            Some(TxOutcome::Reverted(tx_hash)) => {
                tracing::info!(job_id = %job_id, %tx_hash, kind, "the last try reverted; trying again");
            }
            Some(TxOutcome::Replaced) => {
                tracing::warn!(job_id = %job_id, kind, "the last try lost its nonce to another sender; trying again");
            }
            None => {}
        }
        let pending = self.tx.send(kind, Some(job_id), request).await?;
        tracing::debug!(job_id = %job_id, tx_hash = %pending.first_hash, kind, nonce = pending.nonce, "transaction sent");
        Ok(pending.confirmed().await?)
    }
}
