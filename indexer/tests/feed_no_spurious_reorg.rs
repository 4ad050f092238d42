//! On a chain whose finalized block is near its head (anvil slots_in_an_epoch = 1: finalized =
//! head - 2), a consumer holding a hashed position that finality has passed is checked against
//! the header kept below finalized and goes on — not told `Reorged` and sent REREAD_DEPTH blocks
//! back although no reorg happened, every time (found by the second audit of issue 9).

#![allow(dead_code)]

mod common;

use std::time::Duration;

use common::{Chain, Db, wait_caught_up};
use eyre::{Result, ensure};
use infera_indexer::{Feed, Indexer, Position};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_finality_passed_is_checked_not_reread() -> Result<()> {
    let chain = Chain::start("audit2-feed", 1).await?;
    let db = Db::sqlite(&chain, "following");
    chain.mine(5).await?;
    let indexer = Indexer::connect(chain.config(&db.url)).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);
    let mut spurious = 0;
    let mut position = Position::before(0);
    for round in 0..3 {
        chain.post(&format!("job {round}")).await?;
        wait_caught_up(&store, &chain, Duration::from_secs(30)).await?;
        // Read to the cursor.
        loop {
            match store
                .feed(chain.chain_id(), position, &[], &[], 5_000)
                .await?
            {
                Feed::Logs { next, .. } if next == position => break,
                Feed::Logs { next, .. } => position = next,
                Feed::Reorged { ancestor } => {
                    eprintln!(
                        "round {round}: Reorged at {position:?} -> {ancestor:?} (no reorg happened)"
                    );
                    spurious += 1;
                    position = ancestor;
                }
            }
        }
        ensure!(position.block_hash.is_some(), "hashed at the cursor");
        // A few blocks, no reorg: finality (head - 2) passes the consumer's block.
        chain.mine(4).await?;
    }
    wait_caught_up(&store, &chain, Duration::from_secs(30)).await?;
    let answer = store
        .feed(chain.chain_id(), position, &[], &[], 5_000)
        .await?;
    eprintln!("last answer: {answer:?}");
    if matches!(answer, Feed::Reorged { .. }) {
        spurious += 1;
    }
    follower.stop().await?;
    ensure!(
        spurious == 0,
        "{spurious} Reorged answers on a chain that never reorganised"
    );
    Ok(())
}
