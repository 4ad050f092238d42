//! The indexer feed (found by the audit of issue 9): a consumer whose position was read above
//! finality, on a branch that a reorg then replaced, and who calls again only once finality has
//! passed that height (an executor restarted after a reorg, a slow consumer, a chain with fast
//! finality), is told to read again from below the fork and ends with exactly the chain's posts
//! (before, the feed checked the position only above finality and skipped the new branch).

#![allow(dead_code)]

mod common;

use std::time::Duration;

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Bytes, U256},
    providers::{Provider, ext::AnvilApi},
};
use common::{Chain, Db, chain_posts, read_posts, wait_caught_up};
use eyre::{Result, ensure, eyre};
use infera_indexer::{Indexer, Position};

const SLOTS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_finality_after_a_reorg_reads_the_new_branch() -> Result<()> {
    let mut chain = Chain::start("audit-feed", SLOTS).await?;
    let db = Db::sqlite(&chain, "following");
    chain.mine(3 * SLOTS).await?;
    let indexer = Indexer::connect(chain.config(&db.url)).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);
    chain.post("before").await?;
    wait_caught_up(&store, &chain, Duration::from_secs(30)).await?;
    let mut seen = Vec::new();
    let (position, _) = read_posts(&store, &chain, Position::before(0), &mut seen).await?;

    // The consumer reads a branch, above finality.
    let provider = chain.provider();
    let snapshot = provider.anvil_snapshot().await?;
    for i in 0..2 {
        chain.post(&format!("orphaned {i}")).await?;
    }
    wait_caught_up(&store, &chain, Duration::from_secs(30)).await?;
    let (position, _) = read_posts(&store, &chain, position, &mut seen).await?;
    let finalized = |p: alloy::providers::DynProvider| async move {
        Ok::<_, eyre::Report>(
            p.get_block_by_number(BlockNumberOrTag::Finalized)
                .await?
                .map(|b| b.header.number)
                .unwrap_or_default(),
        )
    };
    ensure!(
        position.block_hash.is_some()
            && position.block_number > finalized(provider.clone()).await?,
        "the consumer's position {position:?} is above finality"
    );

    // Another branch replaces it; the consumer is away until finality passes its height.
    ensure!(provider.anvil_revert(snapshot).await?, "revert failed");
    chain.reconnect()?;
    for i in 0..3 {
        chain.post(&format!("canonical {i}")).await?;
    }
    chain.mine(3 * SLOTS).await?;
    wait_caught_up(&store, &chain, Duration::from_secs(30)).await?;
    let cursor = store
        .cursor(chain.chain_id())
        .await?
        .ok_or_else(|| eyre!("no cursor"))?;
    eprintln!(
        "consumer at {} (old branch), indexer cursor {} finalized {}",
        position.block_number, cursor.block_number, cursor.finalized
    );
    let (_, reorgs) = read_posts(&store, &chain, position, &mut seen).await?;
    follower.stop().await?;

    // What the chain says now, straight from the node.
    let expected = chain_posts(&chain).await?;
    let prompts = |v: &[(u64, U256, Bytes)]| {
        v.iter()
            .map(|(b, _, p)| format!("{b}:{}", String::from_utf8_lossy(p)))
            .collect::<Vec<_>>()
    };
    ensure!(
        seen == expected,
        "reorgs told: {reorgs}\nthe consumer read {:?}\nthe chain has   {:?}",
        prompts(&seen),
        prompts(&expected)
    );
    Ok(())
}
