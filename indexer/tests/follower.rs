//! The follower misses nothing and stops for nothing it can recover from:
//!
//! - behind a pool of nodes that lag the head by up to three blocks, whose log index lags, and
//!   that rate-limit (a proxy in front of anvil, see `common::proxy`), the database still equals a
//!   from-scratch index of the chain made directly against anvil;
//! - a reorg whose common ancestor is exactly the finalized block rolls back to it instead of
//!   stopping the indexer.
//!
//! On SQLite and on PostgreSQL.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use alloy::{eips::BlockNumberOrTag, providers::Provider, providers::ext::AnvilApi};
use common::{
    Chain, Db, assert_same, chain_posts,
    proxy::{Faults, Proxy},
    read_posts, reference, wait_caught_up,
};
use eyre::{Result, ensure, eyre};
use infera_indexer::{Indexer, Position};

/// `slots_in_an_epoch` for these chains: anvil's finalized block is two epochs below the head,
/// which leaves room above the proxy's lag of up to three blocks.
const SLOTS: u64 = 4;

async fn through_a_flaky_pool(chain: &mut Chain, db: &Db, reference_db: &Db) -> Result<()> {
    // History before the indexer starts, so that it backfills through the proxy too.
    let mut open = Vec::new();
    for i in 0..8 {
        chain.activity(i, &mut open).await?;
    }
    chain.mine(12).await?;

    let proxy = Proxy::start(&chain.devnet.anvil.endpoint(), Faults::from_env(9)).await?;
    let mut config = chain.config(&db.url);
    config.rpc_url = proxy.url.clone();
    let indexer = Indexer::connect(config).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);

    // Activity while it follows: a block with events nearly every time, now and then empty ones.
    for i in 8..48 {
        chain.activity(i, &mut open).await?;
        if i % 7 == 0 {
            chain.mine(1).await?;
        }
        if i % 3 == 0 {
            // Let it reach the tip now and then, where the pool's lag matters.
            wait_caught_up(&store, chain, Duration::from_secs(60)).await?;
        }
    }
    wait_caught_up(&store, chain, Duration::from_secs(120)).await?;
    follower.stop().await?;

    let counts = &proxy.counts;
    let (rate_limited, stale, emptied) = (
        counts.rate_limited.load(Ordering::Relaxed),
        counts.stale.load(Ordering::Relaxed),
        counts.emptied.load(Ordering::Relaxed),
    );
    eprintln!(
        "proxy: {} forwarded, {rate_limited} rate-limited, {stale} stale, {emptied} empty",
        counts.forwarded.load(Ordering::Relaxed)
    );
    ensure!(
        rate_limited > 0 && stale > 0 && emptied > 0,
        "the proxy injected too little: {rate_limited} rate limits, {stale} stale, {emptied} empty"
    );

    let expected = reference(chain, reference_db).await?;
    let rows = assert_same(&store, &expected, chain.chain_id()).await?;
    ensure!(rows > 20, "only {rows} typed rows compared");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_rate_limited_pool_misses_nothing_on_sqlite() -> Result<()> {
    let mut chain = Chain::start("flaky", SLOTS).await?;
    let (db, reference_db) = (
        Db::sqlite(&chain, "following"),
        Db::sqlite(&chain, "reference"),
    );
    through_a_flaky_pool(&mut chain, &db, &reference_db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_rate_limited_pool_misses_nothing_on_postgres() -> Result<()> {
    let (Some(db), Some(reference_db)) = (
        Db::postgres("flaky").await?,
        Db::postgres("flaky_ref").await?,
    ) else {
        return Ok(());
    };
    let mut chain = Chain::start("flaky-pg", SLOTS).await?;
    let result = through_a_flaky_pool(&mut chain, &db, &reference_db).await;
    db.drop_database().await?;
    reference_db.drop_database().await?;
    result
}

async fn finalized_block(chain: &Chain) -> Result<u64> {
    Ok(chain
        .provider()
        .get_block_by_number(BlockNumberOrTag::Finalized)
        .await?
        .ok_or_else(|| eyre!("no finalized block"))?
        .header
        .number)
}

async fn reorg_at_the_finalized_block(chain: &mut Chain, db: &Db, reference_db: &Db) -> Result<()> {
    chain.mine(3 * SLOTS).await?;
    let gap = chain.head().await? - finalized_block(chain).await?;
    ensure!(gap > 1, "finalized is {gap} below the head");
    let indexer = Indexer::connect(chain.config(&db.url)).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);
    let provider = chain.provider();
    let mut open = Vec::new();
    for i in 0..4 {
        chain.activity(i, &mut open).await?;
    }
    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;

    // A branch exactly `gap` blocks long: when the indexer has it all, the fork block is the
    // finalized one.
    let fork = chain.head().await?;
    let snapshot = provider.anvil_snapshot().await?;
    let mut branch_open = open.clone();
    for i in 0..gap {
        chain.activity(100 + i, &mut branch_open).await?;
    }
    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    let cursor = store
        .cursor(chain.chain_id())
        .await?
        .ok_or_else(|| eyre!("no cursor"))?;
    ensure!(
        cursor.finalized == fork && finalized_block(chain).await? == fork,
        "finalized {} (cursor {}), fork {fork}",
        finalized_block(chain).await?,
        cursor.finalized
    );

    // Another branch of the same length from the fork: the common ancestor is the finalized
    // block, which stays finalized.
    ensure!(provider.anvil_revert(snapshot).await?, "revert failed");
    chain.reconnect()?;
    for i in 0..gap {
        chain.activity(200 + i, &mut open).await?;
    }
    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    ensure!(finalized_block(chain).await? == fork);
    // A fatal stop (the old "reorganised below finalized") fails here.
    follower.stop().await?;

    let expected = reference(chain, reference_db).await?;
    let rows = assert_same(&store, &expected, chain.chain_id()).await?;
    ensure!(rows > 5, "only {rows} typed rows compared");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_down_to_the_finalized_block_rolls_back_on_sqlite() -> Result<()> {
    let mut chain = Chain::start("finalized-fork", SLOTS).await?;
    let (db, reference_db) = (
        Db::sqlite(&chain, "following"),
        Db::sqlite(&chain, "reference"),
    );
    reorg_at_the_finalized_block(&mut chain, &db, &reference_db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_down_to_the_finalized_block_rolls_back_on_postgres() -> Result<()> {
    let (Some(db), Some(reference_db)) = (
        Db::postgres("finalized_fork").await?,
        Db::postgres("finalized_fork_ref").await?,
    ) else {
        return Ok(());
    };
    let mut chain = Chain::start("finalized-fork-pg", SLOTS).await?;
    let result = reorg_at_the_finalized_block(&mut chain, &db, &reference_db).await;
    db.drop_database().await?;
    reference_db.drop_database().await?;
    result
}

async fn feed_through_a_reorg(chain: &mut Chain, db: &Db) -> Result<()> {
    chain.mine(3 * SLOTS).await?;
    let indexer = Indexer::connect(chain.config(&db.url)).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);
    for i in 0..3 {
        chain.post(&format!("before {i}")).await?;
    }
    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    let mut seen = Vec::new();
    let (position, _) = read_posts(&store, chain, Position::before(0), &mut seen).await?;
    ensure!(seen.len() == 3, "{} posts read", seen.len());

    // A branch the consumer reads, then another one replaces it.
    let provider = chain.provider();
    let snapshot = provider.anvil_snapshot().await?;
    for i in 0..2 {
        chain.post(&format!("orphaned {i}")).await?;
    }
    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    let (position, _) = read_posts(&store, chain, position, &mut seen).await?;
    ensure!(seen.len() == 5, "{} posts read", seen.len());
    ensure!(provider.anvil_revert(snapshot).await?, "revert failed");
    chain.reconnect()?;
    for i in 0..3 {
        chain.post(&format!("canonical {i}")).await?;
    }
    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    let (_, reorgs) = read_posts(&store, chain, position, &mut seen).await?;
    follower.stop().await?;
    ensure!(reorgs >= 1, "the consumer was not told of the reorg");

    // What the chain says now, straight from the node.
    let expected = chain_posts(chain).await?;
    ensure!(
        seen == expected,
        "the consumer read {seen:?}\nthe chain has {expected:?}"
    );
    ensure!(expected.len() == 6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_of_the_feed_follows_a_reorg_on_sqlite() -> Result<()> {
    let mut chain = Chain::start("feed", SLOTS).await?;
    let db = Db::sqlite(&chain, "following");
    feed_through_a_reorg(&mut chain, &db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_of_the_feed_follows_a_reorg_on_postgres() -> Result<()> {
    let Some(db) = Db::postgres("feed").await? else {
        return Ok(());
    };
    let mut chain = Chain::start("feed-pg", SLOTS).await?;
    let result = feed_through_a_reorg(&mut chain, &db).await;
    db.drop_database().await?;
    result
}
