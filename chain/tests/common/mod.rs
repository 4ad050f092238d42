//! What the transaction manager's tests share: an anvil, a log opened as the executor opens its
//! store, a manager for one of anvil's keys, and anvil's RPC extensions.

#![allow(dead_code)] // each test file uses what it needs

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{
    network::TransactionBuilder,
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use eyre::{Result, WrapErr};
use infera_chain::{
    devnet::anvil_path,
    tx::{TxConfig, TxLog, TxManager},
};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// An anvil started with `args`, and a provider without fillers (the manager fills everything).
pub fn start_anvil(args: &[&str]) -> Result<(AnvilInstance, DynProvider)> {
    let anvil = Anvil::at(anvil_path())
        .args(args.iter().map(|a| (*a).to_owned()))
        .try_spawn()
        .wrap_err("starting anvil (run scripts/setup)")?;
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(anvil.endpoint_url())
        .erased();
    Ok((anvil, provider))
}

/// A fresh SQLite path for the log of test `name`.
pub fn db_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("infera-tx-{name}-{}.sqlite", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Opens the log the way the executor opens its store: WAL, `synchronous = FULL`.
pub async fn open_log(path: &Path) -> Result<TxLog> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    Ok(TxLog::open(pool).await?)
}

/// A manager for anvil's key `key`, its log at `db`.
pub async fn manager(
    anvil: &AnvilInstance,
    provider: &DynProvider,
    key: usize,
    db: &Path,
    config: TxConfig,
) -> Result<TxManager> {
    let signer = PrivateKeySigner::from(anvil.keys()[key].clone());
    Ok(TxManager::new(
        provider.clone(),
        signer,
        anvil.chain_id(),
        open_log(db).await?,
        config,
    )
    .await?)
}

/// A 1-wei transfer to `to`.
pub fn transfer(to: Address) -> TransactionRequest {
    TransactionRequest::default()
        .with_to(to)
        .with_value(U256::from(1))
}

/// A raw JSON-RPC call (anvil's extensions).
pub async fn rpc(provider: &DynProvider, method: &'static str, params: Value) -> Result<Value> {
    Ok(provider.raw_request(method.into(), params).await?)
}

/// Mines one block.
pub async fn mine(provider: &DynProvider) -> Result<()> {
    rpc(provider, "evm_mine", json!([])).await?;
    Ok(())
}
