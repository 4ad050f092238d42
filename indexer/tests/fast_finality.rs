//! A chain whose finalized block is close to its head (here finalized = head - 2) behind a
//! load-balanced pool whose nodes lag up to 3 blocks (found by the audit of issue 9):
//! - one answer from a node whose head is below the kept finalized block, or below the indexed
//!   block, is a node behind, not a reorg and not a fatal error: the follower waits (before, it
//!   stopped for good — and the executor, which embeds it, with it);
//! - the newest blocks are followed header by header even when finalized, so a node behind cannot
//!   make a finalized range look empty: the database equals a from-scratch index.

#![allow(dead_code)]

mod common;

use std::time::Duration;

use common::{
    Chain, Db, assert_same,
    proxy::{Faults, Proxy},
    reference, wait_caught_up,
};
use eyre::Result;
use infera_indexer::Indexer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_pool_on_a_fast_finality_chain_neither_stops_nor_misses() -> Result<()> {
    let chain = Chain::start("audit-backfill", 1).await?;
    let (db, reference_db) = (
        Db::sqlite(&chain, "following"),
        Db::sqlite(&chain, "reference"),
    );
    let mut open = Vec::new();
    for i in 0..12 {
        chain.activity(i, &mut open).await?;
    }
    let faults = Faults {
        seed: 5,
        rate_limit: 0.0,
        stale: 0.6,
        empty: 0.0,
        max_lag: 3,
    };
    let proxy = Proxy::start(&chain.devnet.anvil.endpoint(), faults).await?;
    let mut config = chain.config(&db.url);
    config.rpc_url = proxy.url.clone();
    let indexer = Indexer::connect(config).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);
    for i in 12..30 {
        chain.activity(i, &mut open).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = follower.stop().await;
    eprintln!("follower while the pool lagged: {stopped:?}");
    // Whatever happened, let a follower on the lagging pool catch up, then compare.
    let follower = common::Follower::start(&indexer);
    let caught_up = wait_caught_up(&store, &chain, Duration::from_secs(60)).await;
    let _ = follower.stop().await;
    let expected = reference(&chain, &reference_db).await?;
    let same = assert_same(&store, &expected, chain.chain_id()).await;
    eprintln!("caught up: {caught_up:?}; same as a from-scratch index: {same:?}");
    if let Err(error) = stopped {
        eyre::bail!("the indexer stopped for good on a lagging answer: {error}");
    }
    same?;
    Ok(())
}
