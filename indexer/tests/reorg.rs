//! Reorg injection: anvil snapshots the chain, a branch of `depth` blocks with job activity is
//! indexed, the chain is reverted to the snapshot and a different branch is mined (longer, or
//! shorter). The following indexer must end up with exactly the database that indexing the final
//! canonical chain from scratch gives, for depths 1 to 64, on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use alloy::providers::ext::AnvilApi;
use common::{Chain, Db, assert_same, reference, wait_caught_up};
use eyre::{Result, ensure};
use infera_indexer::Indexer;

const DEPTHS: &[u64] = &[1, 2, 3, 7, 16, 31, 64];

async fn reorgs(chain: &mut Chain, db: &Db, reference_db: &Db) -> Result<()> {
    // Enough history that `finalized` (two epochs of 64 blocks below the head) is past genesis.
    chain.mine(140).await?;
    let indexer = Indexer::connect(chain.config(&db.url)).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);
    let provider = chain.provider();
    let mut open = Vec::new();
    for i in 0..6 {
        chain.activity(i, &mut open).await?;
    }

    for (round, &depth) in DEPTHS.iter().enumerate() {
        wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
        let fork = chain.head().await?;
        let snapshot = provider.anvil_snapshot().await?;
        let mut branch_open = open.clone();
        for i in 0..depth {
            chain.activity(100 * depth + i, &mut branch_open).await?;
        }
        let orphaned = wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
        ensure!(orphaned == fork + depth);

        ensure!(provider.anvil_revert(snapshot).await?, "revert failed");
        chain.reconnect()?;
        ensure!(chain.head().await? == fork);
        // Odd rounds replace the branch with a shorter one, even rounds with a longer one; each
        // block of it differs (other prompts, other actions).
        let replacement = if round % 2 == 1 { depth - 1 } else { depth + 1 };
        for i in 0..replacement {
            chain.activity(100 * depth + i + 1, &mut open).await?;
        }
        if replacement == 0 {
            // Nothing mined: the indexer's head block is simply gone.
            ensure!(chain.head().await? == fork);
        }
        wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    }

    follower.stop().await?;

    let expected = reference(chain, reference_db).await?;
    let rows = assert_same(&store, &expected, chain.chain_id()).await?;
    ensure!(rows > 20, "only {rows} typed rows compared");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_at_depths_1_to_64_leave_the_canonical_chain_on_sqlite() -> Result<()> {
    let mut chain = Chain::start("reorg", 64).await?;
    let (db, reference_db) = (
        Db::sqlite(&chain, "following"),
        Db::sqlite(&chain, "reference"),
    );
    reorgs(&mut chain, &db, &reference_db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_at_depths_1_to_64_leave_the_canonical_chain_on_postgres() -> Result<()> {
    let (Some(db), Some(reference_db)) = (
        Db::postgres("reorg").await?,
        Db::postgres("reorg_ref").await?,
    ) else {
        return Ok(());
    };
    let mut chain = Chain::start("reorg-pg", 64).await?;
    let result = reorgs(&mut chain, &db, &reference_db).await;
    db.drop_database().await?;
    reference_db.drop_database().await?;
    result
}
