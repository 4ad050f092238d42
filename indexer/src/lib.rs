//! Infera's indexer: follows JobEscrow, Staking and ModelRegistry into SQL (SQLite by default,
//! PostgreSQL for several instances) exactly once and reorg-safe, and serves what the gateway and
//! operators read (see [`api`]).
//!
//! - Raw logs are keyed by `(chain_id, block_hash, log_index)`; typed rows, undo images, headers
//!   and the cursor are committed in one transaction, and the cursor only moves from where the
//!   writer found it ([`store`]).
//! - Finality comes from the node's `safe`/`finalized` tags. Above finalized, every block's header
//!   is kept and each changed row's prior image is recorded, so a reorg (detected by parent hash)
//!   rolls back to the common ancestor in one transaction. A reorg below finalized, a head below
//!   finalized or a syncing node stops the indexer with a message instead of touching data.
//! - Finalized history is backfilled in adaptive `eth_getLogs` ranges, several in flight. Above
//!   it, logs are asked by block hash for the blocks whose bloom may hold them and checked
//!   against the header, so a node a block behind cannot make a block look empty ([`sync`]).
//!   Rate limits back off with jitter; URLs are logged with credentials masked.
//! - Other services follow the chain through the indexer's raw logs ([`feed`]).

pub mod api;
pub mod config;
pub mod feed;
pub mod rows;
pub mod state;
pub mod store;
pub mod sync;

use std::future::Future;

pub use config::IndexerConfig;
pub use feed::{Feed, Position, REREAD_DEPTH};
pub use state::Contracts;
pub use store::{Backend, Cursor, Store, StoreError};
pub use sync::{Indexer, IndexerError, Step};

/// `infera indexer`: connect, serve the read API, follow the chain until `shutdown` resolves or a
/// fatal error stops it.
///
/// # Errors
/// [`IndexerError`] when it cannot start or a fatal condition stops it.
pub async fn run(
    config: IndexerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IndexerError> {
    let listen = config.listen;
    let indexer = Indexer::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| IndexerError::Config(format!("cannot listen on {listen}: {e}")))?;
    tracing::info!(listen = %listener.local_addr().unwrap_or(listen), "indexer read API listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let app = api::router(indexer.store().clone(), indexer.chain_id());
    let mut api_stopped = stopped.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = api_stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let result = indexer.follow_until(shutdown).await;
    let _ = stop.send(true);
    let _ = server.await;
    tracing::info!("indexer stopped");
    result
}
