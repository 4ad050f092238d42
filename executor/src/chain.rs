//! The executor's side of the chain: contract handles and a transaction sender that owns the nonce.
//!
//! Every transaction goes through [`Chain::send`], one at a time: it is estimated, signed with an
//! explicit nonce, **logged in the store before it is broadcast**, then sent and awaited. After a
//! crash, [`Chain::recover`] re-broadcasts the logged transactions that never made it into a block
//! (the same bytes, so the same hash and nonce: a step can never be sent twice) and waits for them.

use std::time::Duration;

use alloy::{
    eips::eip2718::Encodable2718,
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    transports::{RpcError, TransportErrorKind},
};
use infera_chain::deploy::ChainError;
use infera_protocol::bindings::{JobEscrow, MockSettlementToken, ModelRegistry, Staking};
use tokio::sync::Mutex;

use crate::store::{Store, StoreError, TxRecord};

/// Errors talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The node could not be reached or answered an error.
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError<TransportErrorKind>),
    /// A contract refused the call (decoded when it is one of ours).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The transaction could not be signed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The transaction was mined but reverted.
    #[error("transaction {tx_hash} ({kind}) reverted")]
    Reverted {
        /// What it was for.
        kind: String,
        /// Its hash.
        tx_hash: B256,
    },
    /// No receipt arrived in time.
    #[error("transaction {0} was not mined in time")]
    Timeout(B256),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SendError {
    /// Whether retrying later may help (the node was unreachable or slow), as opposed to a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Rpc(_) | Self::Timeout(_))
    }
}

/// Contract handles and the nonce-owning sender of one executor.
#[derive(Debug)]
pub struct Chain {
    /// Read-only provider (no wallet, no fillers): calls, logs, receipts, raw broadcasts.
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
    wallet: EthereumWallet,
    store: Store,
    /// The next nonce; held for the whole of a send, so sends are serial.
    nonce: Mutex<u64>,
    receipt_timeout: Duration,
    /// Fault injection: abort right after broadcasting a transaction of this kind.
    crash_after_broadcast: Option<String>,
}

impl Chain {
    /// Connects to `rpc_url` and resolves the contracts from the escrow's immutables.
    ///
    /// # Errors
    /// [`SendError`] when the node cannot be reached or the address is not a JobEscrow.
    pub async fn connect(
        rpc_url: &str,
        job_escrow: Address,
        signer: PrivateKeySigner,
        store: Store,
    ) -> Result<Self, SendError> {
        let url = rpc_url
            .parse()
            .map_err(|e| SendError::Sign(format!("invalid rpc url {rpc_url}: {e}")))?;
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
        let chain = Self {
            escrow,
            staking: Staking::new(staking, provider.clone()),
            registry: ModelRegistry::new(registry, provider.clone()),
            token: MockSettlementToken::new(token, provider.clone()),
            provider,
            address,
            chain_id,
            wallet: EthereumWallet::from(signer),
            store,
            nonce: Mutex::new(0),
            receipt_timeout: Duration::from_secs(120),
            crash_after_broadcast: None,
        };
        Ok(chain)
    }

    /// Re-broadcasts logged transactions that were never mined, waits for them, and sets the nonce
    /// past everything sent. Returns the receipts of the transactions it finished.
    ///
    /// # Errors
    /// [`SendError`] when the node cannot be reached.
    pub async fn recover(&self) -> Result<Vec<(TxRecord, TransactionReceipt)>, SendError> {
        let mut nonce = self.nonce.lock().await;
        let mut finished = Vec::new();
        for tx in self.store.pending_txs().await? {
            if let Some(receipt) = self.provider.get_transaction_receipt(tx.tx_hash).await? {
                self.settle(&tx, &receipt).await?;
                finished.push((tx, receipt));
                continue;
            }
            let mined = self.provider.get_transaction_count(self.address).await?;
            if mined > tx.nonce {
                // Its nonce was used by another transaction (e.g. a manual one): it can never
                // be mined. The job logic re-reads the chain and decides again.
                tracing::warn!(tx_hash = %tx.tx_hash, kind = tx.kind, nonce = tx.nonce, "logged transaction was replaced");
                self.store.set_tx_status(tx.nonce, "dropped").await?;
                continue;
            }
            tracing::info!(tx_hash = %tx.tx_hash, kind = tx.kind, nonce = tx.nonce, "re-broadcasting a transaction sent before a restart");
            self.broadcast(&tx.raw).await?;
            let receipt = self.wait(tx.tx_hash).await?;
            self.settle(&tx, &receipt).await?;
            finished.push((tx, receipt));
        }
        *nonce = self.next_nonce().await?;
        Ok(finished)
    }

    /// Sends a transaction: estimate, sign with the next nonce, log, broadcast, await the receipt.
    /// A reverted transaction is an error carrying its hash.
    ///
    /// # Errors
    /// [`SendError`]; a contract refusal at estimation is decoded.
    pub async fn send(
        &self,
        kind: &str,
        job_id: Option<U256>,
        tx: TransactionRequest,
    ) -> Result<TransactionReceipt, SendError> {
        let mut nonce = self.nonce.lock().await;
        let tx = tx.with_from(self.address).with_chain_id(self.chain_id);
        let gas = match self.provider.estimate_gas(tx.clone()).await {
            Ok(gas) => gas,
            Err(error) => return Err(decode_refusal(error)),
        };
        let fees = self.provider.estimate_eip1559_fees().await?;
        for attempt in 0..2 {
            let signed = tx
                .clone()
                .with_nonce(*nonce)
                // Headroom over the estimate: the callback gas rule makes estimates tight.
                .with_gas_limit(gas + gas / 4)
                .with_max_fee_per_gas(fees.max_fee_per_gas)
                .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
                .build(&self.wallet)
                .await
                .map_err(|e| SendError::Sign(e.to_string()))?;
            let record = TxRecord {
                nonce: *nonce,
                kind: kind.to_owned(),
                job_id,
                tx_hash: *signed.tx_hash(),
                raw: Bytes::from(signed.encoded_2718()),
            };
            self.store.log_tx(&record).await?;
            match self.broadcast(&record.raw).await {
                Ok(()) => {}
                Err(SendError::Rpc(error)) if attempt == 0 && is_nonce_error(&error) => {
                    // Someone else used this key (e.g. `infera executor withdraw` while running).
                    self.store.set_tx_status(record.nonce, "dropped").await?;
                    *nonce = self.next_nonce().await?;
                    tracing::warn!(
                        nonce = *nonce,
                        "nonce was taken; re-signed with the next one"
                    );
                    continue;
                }
                Err(error) => return Err(error),
            }
            *nonce += 1;
            tracing::debug!(tx_hash = %record.tx_hash, kind, "transaction sent");
            if self.crash_after_broadcast.as_deref() == Some(kind) {
                tracing::error!(tx_hash = %record.tx_hash, kind, "crash_after: aborting after broadcast (fault injection)");
                std::process::abort();
            }
            let receipt = self.wait(record.tx_hash).await?;
            self.settle(&record, &receipt).await?;
            return if receipt.status() {
                Ok(receipt)
            } else {
                Err(SendError::Reverted {
                    kind: kind.to_owned(),
                    tx_hash: record.tx_hash,
                })
            };
        }
        Err(SendError::Sign("nonce kept being taken".into()))
    }

    /// Fault injection for crash tests: abort the process right after broadcasting a transaction of
    /// `kind`, before its receipt is read.
    pub fn crash_after_broadcast(mut self, kind: Option<String>) -> Self {
        self.crash_after_broadcast = kind;
        self
    }

    /// The store this chain logs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's pending transaction count: after `recover` every logged transaction that can
    /// still be mined is in it.
    async fn next_nonce(&self) -> Result<u64, SendError> {
        Ok(self
            .provider
            .get_transaction_count(self.address)
            .pending()
            .await?)
    }

    async fn broadcast(&self, raw: &[u8]) -> Result<(), SendError> {
        match self.provider.send_raw_transaction(raw).await {
            Ok(_) => Ok(()),
            // The node already has it (a re-broadcast): that is what we want.
            Err(RpcError::ErrorResp(e)) if e.message.to_lowercase().contains("already known") => {
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn wait(&self, tx_hash: B256) -> Result<TransactionReceipt, SendError> {
        let deadline = tokio::time::Instant::now() + self.receipt_timeout;
        let mut delay = Duration::from_millis(50);
        loop {
            if let Some(receipt) = self.provider.get_transaction_receipt(tx_hash).await? {
                return Ok(receipt);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SendError::Timeout(tx_hash));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn settle(&self, tx: &TxRecord, receipt: &TransactionReceipt) -> Result<(), SendError> {
        let status = if receipt.status() {
            "mined"
        } else {
            "reverted"
        };
        self.store.set_tx_status(tx.nonce, status).await?;
        Ok(())
    }
}

/// Decodes a refusal at gas estimation into our contracts' custom errors where possible.
fn decode_refusal(error: RpcError<TransportErrorKind>) -> SendError {
    let contract_error = alloy::contract::Error::TransportError(error);
    match ChainError::from(contract_error) {
        ChainError::Contract(alloy::contract::Error::TransportError(error)) => {
            SendError::Rpc(error)
        }
        other => SendError::Chain(other),
    }
}

fn is_nonce_error(error: &RpcError<TransportErrorKind>) -> bool {
    matches!(error, RpcError::ErrorResp(e) if e.message.to_lowercase().contains("nonce"))
}
