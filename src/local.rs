//! `infera devnet`: a local chain with the protocol deployed and, when the default model is in
//! the cache, an executor serving it, and the indexer with its read API — one process, one
//! command.

use std::{future::Future, net::SocketAddr, path::PathBuf};

use alloy::primitives::Address;
use infera_chain::devnet::{self, DevnetConfig, DevnetError, DevnetSummary};
use infera_executor::{Executor, ExecutorConfig, ExecutorError};
use infera_protocol::models::DEFAULT_MODEL;
use serde::Serialize;

/// The dev account the devnet's executor signs with (0 is governance, 1 a requester).
pub const EXECUTOR_ACCOUNT: usize = 2;

/// What `infera devnet` runs.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The chain.
    pub devnet: DevnetConfig,
    /// Start an executor with the default model (skipped, with a warning, when it is not cached).
    pub executor: bool,
    /// Where the executor listens.
    pub executor_listen: SocketAddr,
    /// Where the indexer's read API listens (`None`: no indexer).
    pub indexer_listen: Option<SocketAddr>,
}

/// Why the devnet stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The chain could not be started.
    #[error(transparent)]
    Devnet(#[from] DevnetError),
    /// The executor failed.
    #[error("executor: {0}")]
    Executor(#[from] ExecutorError),
    /// The indexer could not start.
    #[error("indexer: {0}")]
    Indexer(#[from] infera_indexer::IndexerError),
}

/// What the devnet prints on stdout.
#[derive(Debug, Serialize)]
pub struct LocalSummary {
    /// The chain, the contracts and the funded accounts.
    #[serde(flatten)]
    pub devnet: DevnetSummary,
    /// The executor, when one runs.
    pub executor: Option<ExecutorSummary>,
    /// The indexer, when one runs.
    pub indexer: Option<IndexerSummary>,
}

/// The devnet's indexer.
#[derive(Debug, Clone, Serialize)]
pub struct IndexerSummary {
    /// Its read API.
    pub api: String,
    /// Its database.
    pub database_url: String,
}

/// The devnet's executor.
#[derive(Debug, Serialize)]
pub struct ExecutorSummary {
    /// Its address (dev account 2).
    pub address: Address,
    /// Its HTTP endpoint.
    pub endpoint: String,
    /// Its job database.
    pub database: PathBuf,
}

/// Runs the devnet until `shutdown` resolves.
///
/// # Errors
/// [`LocalError`] when the chain or the executor cannot start.
pub async fn run(
    config: LocalConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LocalError> {
    let devnet = devnet::start(&config.devnet).await?;
    let summary = devnet.summary(config.devnet.funded_accounts);
    let dir = std::env::temp_dir().join(format!("infera-devnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| {
        ExecutorError::Config(infera_executor::ConfigError::Invalid(format!(
            "cannot create {}: {e}",
            dir.display()
        )))
    })?;
    let model_cached = infera_models::cached_path(&DEFAULT_MODEL).is_ok_and(|p| p.exists());
    let executor = match (
        config.executor,
        model_cached,
        devnet.signer(EXECUTOR_ACCOUNT),
    ) {
        (true, true, Some(signer)) => {
            let executor_config = ExecutorConfig {
                rpc_url: devnet.anvil.endpoint(),
                job_escrow: Some(devnet.deployment.job_escrow),
                database: Some(dir.join("executor.db")),
                listen: config.executor_listen,
                start_block: Some(devnet.deployment.deployed_at_block),
                ..ExecutorConfig::default()
            };
            let executor = Executor::start_with_signer(executor_config, signer).await?;
            let database = executor.database().to_owned();
            Some((executor, database))
        }
        (true, false, _) => {
            tracing::warn!(
                "the default model is not in the cache: run `infera model fetch` (or scripts/setup) to start an executor with the devnet"
            );
            None
        }
        _ => None,
    };

    // The indexer follows the devnet into a SQLite file next to the executor's.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let indexer = match config.indexer_listen {
        Some(listen) => {
            let indexer_config = infera_indexer::IndexerConfig {
                rpc_url: devnet.anvil.endpoint(),
                job_escrow: Some(devnet.deployment.job_escrow),
                database_url: format!("sqlite://{}", dir.join("indexer.db").display()),
                start_block: Some(0),
                listen,
                ..infera_indexer::IndexerConfig::default()
            };
            let database_url = infera_chain::redact::redact_url(&indexer_config.database_url);
            let task = tokio::spawn(infera_indexer::run(
                indexer_config,
                until_stopped(stopped.clone()),
            ));
            Some((
                task,
                IndexerSummary {
                    api: format!("http://{listen}"),
                    database_url,
                },
            ))
        }
        None => None,
    };

    let printed = LocalSummary {
        devnet: summary,
        executor: executor
            .as_ref()
            .map(|(executor, database)| ExecutorSummary {
                address: executor.address(),
                endpoint: format!("http://{}", executor.local_addr()),
                database: database.clone(),
            }),
        indexer: indexer.as_ref().map(|(_, summary)| summary.clone()),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&printed).unwrap_or_default()
    );
    let serve = async {
        match executor {
            Some((executor, _)) => executor.serve(until_stopped(stopped.clone())).await,
            None => {
                until_stopped(stopped.clone()).await;
                Ok(())
            }
        }
    };
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => served?,
        () = shutdown => {
            let _ = stop.send(true);
            serve.await?;
        }
    }
    let _ = stop.send(true);
    tracing::info!("devnet stopping");
    if let Some((task, _)) = indexer {
        match task.await {
            Ok(Err(error)) => tracing::error!(%error, "the devnet's indexer stopped"),
            Err(error) => tracing::error!(%error, "the devnet's indexer panicked"),
            Ok(Ok(())) => {}
        }
    }
    drop(devnet);
    Ok(())
}
