//! `kill -9` during backfill, ten times at random moments, then a restart that finishes: the
//! database holds every log exactly once and the same typed rows as an uninterrupted run. The
//! indexer runs as its own process (`infera-indexer`), as an operator runs it. SQLite and PostgreSQL.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy::{providers::Provider, rpc::types::Filter};
use common::{Chain, Db, assert_same, reference, wait_caught_up};
use eyre::{Result, ensure};
use infera_indexer::{Store, rows::JobRow};

const KILLS: usize = 10;

fn spawn(chain: &Chain, db: &Db) -> Result<Child> {
    Ok(Command::new(env!("CARGO_BIN_EXE_infera-indexer"))
        .env("INFERA_INDEXER_RPC_URL", chain.devnet.anvil.endpoint())
        .env(
            "INFERA_INDEXER_JOB_ESCROW",
            chain.devnet.deployment.job_escrow.to_string(),
        )
        .env("INFERA_INDEXER_DATABASE_URL", &db.url)
        .env("INFERA_INDEXER_START_BLOCK", "0")
        .env("INFERA_INDEXER_LISTEN", "\"127.0.0.1:0\"")
        // One block per range, one range in flight: many commits, many places to die.
        .env("INFERA_INDEXER_INITIAL_BLOCK_RANGE", "1")
        .env("INFERA_INDEXER_MAX_BLOCK_RANGE", "1")
        .env("INFERA_INDEXER_CONCURRENCY", "1")
        .env("INFERA_INDEXER_POLL_INTERVAL_MS", "20")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?)
}

/// A small xorshift: kill times vary from run to run, and the seed is printed for replays.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

async fn killed_and_restarted(chain: &mut Chain, db: &Db, reference_db: &Db) -> Result<()> {
    // Varied activity, then 1,200 blocks of 2 posts each (a backfill of a few seconds at one block
    // per commit); all but the last two blocks finalized.
    let mut open = Vec::new();
    for i in 0..40 {
        chain.activity(i, &mut open).await?;
    }
    chain.burst(1_200, 2).await?;
    let head = chain.head().await?;
    let provider = chain.provider();
    let logs = provider
        .get_logs(
            &Filter::new()
                .address(vec![
                    chain.devnet.deployment.job_escrow,
                    chain.devnet.deployment.staking,
                    chain.devnet.deployment.model_registry,
                    chain.devnet.deployment.disputes,
                ])
                .from_block(0)
                .to_block(head),
        )
        .await?;

    // The schema is created first, as by an operator's first start: the kills then land in the
    // backfill rather than in the migrations (transactional, so a kill there only reruns them,
    // and on a loaded machine they can outlast the kill windows below).
    Store::connect(&db.url).await?.pool().close().await;

    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed: {seed}");
    let mut progress = Vec::new();
    for _ in 0..KILLS {
        let mut child = spawn(chain, db)?;
        let started = Instant::now();
        // Somewhere between startup and well into the backfill.
        let at = Duration::from_millis(50 + next(&mut seed) % 200);
        tokio::time::sleep(at).await;
        child.kill()?; // SIGKILL
        child.wait()?;
        let store = Store::connect(&db.url).await?;
        let cursor = store.cursor(chain.chain_id()).await?;
        progress.push((
            started.elapsed().as_millis(),
            cursor.map(|c| c.block_number),
        ));
    }
    eprintln!("killed at (ms, committed block): {progress:?}");
    let indexed: Vec<_> = progress.iter().filter_map(|(_, b)| *b).collect();
    ensure!(
        indexed.windows(2).all(|w| w[0] <= w[1]),
        "the cursor went backwards across kills: {indexed:?}"
    );
    let mid_backfill = indexed.iter().filter(|b| **b > 0 && **b < head).count();
    ensure!(
        mid_backfill >= 7,
        "only {mid_backfill} of {KILLS} kills landed mid-backfill (head {head}): {indexed:?}"
    );

    let mut child = spawn(chain, db)?;
    let store = Store::connect(&db.url).await?;
    let done = wait_caught_up(&store, chain, Duration::from_secs(120)).await;
    child.kill()?;
    child.wait()?;
    done?;

    let chain_id = chain.chain_id();
    ensure!(
        store.count(chain_id, "logs").await? == logs.len() as u64,
        "{} logs stored, {} on chain",
        store.count(chain_id, "logs").await?,
        logs.len()
    );
    let posted = logs
        .iter()
        .filter(|l| {
            l.topic0()
                == Some(&<infera_chain::bindings::JobEscrow::JobPosted as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
        })
        .count();
    ensure!(store.all::<JobRow>(chain_id).await?.len() == posted);
    let expected = reference(chain, reference_db).await?;
    assert_same(&store, &expected, chain_id).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_backfill_loses_and_duplicates_nothing_on_sqlite() -> Result<()> {
    let mut chain = Chain::start("crash", 1).await?;
    let (db, reference_db) = (
        Db::sqlite(&chain, "killed"),
        Db::sqlite(&chain, "reference"),
    );
    killed_and_restarted(&mut chain, &db, &reference_db).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_backfill_loses_and_duplicates_nothing_on_postgres() -> Result<()> {
    let (Some(db), Some(reference_db)) = (
        Db::postgres("crash").await?,
        Db::postgres("crash_ref").await?,
    ) else {
        return Ok(());
    };
    let mut chain = Chain::start("crash-pg", 1).await?;
    let result = killed_and_restarted(&mut chain, &db, &reference_db).await;
    db.drop_database().await?;
    reference_db.drop_database().await?;
    result
}
