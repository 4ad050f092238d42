//! The indexer's benchmark (run by `scripts/bench-indexer`): fills a local anvil with job events,
//! then measures, on that chain, backfill throughput, live lag (block mined → row committed) and
//! the time to roll back a 64-block reorg; prints `key=value` lines. The Ponder peer runs on the
//! same chain from the script, which prints the ratio.
//!
//! Environment: BENCH_EVENTS (default 100000), BENCH_PER_BLOCK (posts per block, default 500),
//! BENCH_LAG_SAMPLES (default 50), BENCH_DATABASE_URL (default: a fresh SQLite file).

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::{Duration, Instant};

use alloy::providers::{Provider, ext::AnvilApi};
use common::{Chain, wait_caught_up};
use eyre::{Result, ensure, eyre};
use infera_indexer::{Indexer, Step, rows::JobRow};

fn env(name: &str, default: u64) -> Result<u64> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.parse().map_err(|e| eyre!("{name}={v}: {e}"))
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<()> {
    let events = env("BENCH_EVENTS", 100_000)?;
    let per_block = env("BENCH_PER_BLOCK", 500)?.max(1);
    let samples = env("BENCH_LAG_SAMPLES", 50)?.max(1);
    let blocks = events.div_ceil(per_block);

    // Epochs of 64 blocks: `finalized` is 128 below the head, so a 64-deep reorg stays above it.
    let mut chain = Chain::start("bench", 64).await?;
    let fill_start = chain.head().await? + 1;
    let started = Instant::now();
    eprintln!("bench: posting {events} jobs in {blocks} blocks of {per_block}");
    chain.burst(blocks, per_block).await?;
    let fill_end = chain.head().await?;
    chain.mine(140).await?; // the filled range finalized, and 30+ blocks past it for Ponder
    eprintln!(
        "bench: chain filled in {:.1}s (blocks {fill_start}..={fill_end})",
        started.elapsed().as_secs_f64()
    );
    println!("events={}", blocks * per_block);
    println!("fill_start_block={fill_start}");
    println!("fill_end_block={fill_end}");
    println!("job_escrow={:#x}", chain.devnet.deployment.job_escrow);
    println!("rpc_url={}", chain.devnet.anvil.endpoint());
    println!("chain_id={}", chain.chain_id());

    // What one following step costs the node, on this chain (diagnostics for the live lag).
    if std::env::var("BENCH_RPC").as_deref() == Ok("1") {
        use alloy::{eips::BlockNumberOrTag, rpc::types::Filter};
        let provider = chain.provider();
        let head = chain.head().await?;
        let time = |started: Instant| started.elapsed().as_secs_f64() * 1e3 / 20.0;
        let started = Instant::now();
        for _ in 0..20 {
            provider
                .get_block_by_number(BlockNumberOrTag::Finalized)
                .await?;
        }
        println!("rpc_finalized_ms={:.2}", time(started));
        let started = Instant::now();
        for _ in 0..20 {
            provider
                .get_block_by_number(BlockNumberOrTag::Number(head))
                .await?;
        }
        println!("rpc_block_ms={:.2}", time(started));
        let started = Instant::now();
        for _ in 0..20 {
            provider.syncing().await?;
        }
        println!("rpc_syncing_ms={:.2}", time(started));
        let started = Instant::now();
        for _ in 0..20 {
            provider
                .get_logs(
                    &Filter::new()
                        .address(chain.devnet.deployment.job_escrow)
                        .from_block(head)
                        .to_block(head),
                )
                .await?;
        }
        println!("rpc_logs_one_block_ms={:.2}", time(started));
    }

    // Backfill: a fresh database, every finalized block.
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", chain.dir.join("bench.db").display()));
    // The operator's defaults (poll interval, ranges, concurrency), not the tests' quick polling.
    let config = infera_indexer::IndexerConfig {
        database_url: url.clone(),
        ..infera_indexer::IndexerConfig {
            poll_interval_ms: infera_indexer::IndexerConfig::default().poll_interval_ms,
            ..chain.config(&url)
        }
    };
    let indexer = Indexer::connect(config.clone()).await?;
    let store = indexer.store().clone();
    let started = Instant::now();
    let target = chain.head().await?.saturating_sub(128);
    loop {
        match indexer.step().await? {
            Step::Advanced(block) if block >= target => break,
            Step::Idle => break,
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let indexed = store.count(chain.chain_id(), "logs").await?;
    let jobs = store.count(chain.chain_id(), "jobs").await?;
    ensure!(jobs >= blocks * per_block, "only {jobs} jobs indexed");
    println!("database={:?}", indexer.store().backend());
    println!("backfill_seconds={secs:.3}");
    println!("events_per_s={:.0}", indexed as f64 / secs);
    println!("blocks_per_s={:.0}", target as f64 / secs);

    // The peer, side by side on the same chain and the same blocks.
    if std::env::var("BENCH_PEER").as_deref() != Ok("none") {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/ponder/run");
        let output = std::process::Command::new(script)
            .env("RPC_URL", chain.devnet.anvil.endpoint())
            .env("CHAIN_ID", chain.chain_id().to_string())
            .env(
                "JOB_ESCROW",
                format!("{:#x}", chain.devnet.deployment.job_escrow),
            )
            .env("START_BLOCK", fill_start.to_string())
            .env("END_BLOCK", fill_end.to_string())
            .env("EXPECTED_EVENTS", (blocks * per_block).to_string())
            .stderr(std::process::Stdio::inherit())
            .output()?;
        ensure!(output.status.success(), "the Ponder peer failed");
        let text = String::from_utf8_lossy(&output.stdout);
        print!("{text}");
        let peer: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("peer_events_per_s="))
            .ok_or_else(|| eyre!("no peer_events_per_s from the peer"))?
            .trim()
            .parse()?;
        // events_per_s counts every log stored; the peer indexes only JobPosted: compare those.
        let ours_posted = (blocks * per_block) as f64 / secs;
        println!("peer_ratio={:.1}", ours_posted / peer.max(1e-9));
    }

    // Live lag: a job posted in a new block, until its row is committed.
    let follower = common::Follower::start(&indexer);
    wait_caught_up(&store, &chain, Duration::from_secs(120)).await?;
    // The job's transaction waits in the pool until its block is mined.
    let provider = chain.provider();
    let mut lags = Vec::new();
    for i in 0..samples {
        provider.anvil_set_auto_mine(false).await?;
        let escrow = infera_chain::bindings::JobEscrow::new(
            chain.devnet.deployment.job_escrow,
            chain.requester.provider.clone(),
        );
        let id = escrow.nextJobId().call().await?;
        let pending = escrow
            .postJob(
                chain.spec(1_800).await?,
                format!("lag {i}").into_bytes().into(),
            )
            .gas(400_000)
            .send()
            .await?;
        // Mine at a random moment of the indexer's polling cycle, not right after its last commit.
        let jitter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos() as u64
            % (config.poll_interval_ms * 1_000);
        tokio::time::sleep(Duration::from_micros(jitter)).await;
        // anvil takes long to seal a block on a big state (its own cost, ~100 ms at 100k jobs):
        // the clock starts when the block exists.
        provider.anvil_mine(Some(1), None).await?;
        let mined = Instant::now();
        provider.anvil_set_auto_mine(true).await?;
        let key = u64::try_from(id)?;
        while store.get::<JobRow>(chain.chain_id(), &key).await?.is_none() {
            ensure!(
                mined.elapsed() < Duration::from_secs(30),
                "job {id} never indexed"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        lags.push(mined.elapsed().as_secs_f64() * 1e3);
        ensure!(
            provider
                .get_transaction_receipt(*pending.tx_hash())
                .await?
                .is_some(),
            "lag probe not mined"
        );
    }
    lags.sort_by(f64::total_cmp);
    println!("poll_interval_ms={}", config.poll_interval_ms);
    println!("live_lag_p50_ms={:.1}", percentile(&lags, 0.5));
    println!("live_lag_p99_ms={:.1}", percentile(&lags, 0.99));

    // Reorg of depth 64: 64 indexed blocks with jobs replaced by 65 others.
    wait_caught_up(&store, &chain, Duration::from_secs(30)).await?;
    follower.stop().await?;
    let provider = chain.provider();
    let snapshot = provider.anvil_snapshot().await?;
    chain.burst(64, 5).await?;
    while !matches!(indexer.step().await?, Step::Idle) {}
    ensure!(provider.anvil_revert(snapshot).await?, "revert failed");
    chain.reconnect()?;
    chain.burst(65, 3).await?;
    let started = Instant::now();
    let step = indexer.step().await?;
    let rollback_ms = started.elapsed().as_secs_f64() * 1e3;
    ensure!(
        matches!(step, Step::RolledBack(_)),
        "expected a rollback, got {step:?}"
    );
    println!("rollback_depth=64");
    println!("rollback_ms={rollback_ms:.1}");
    while !matches!(indexer.step().await?, Step::Idle) {}
    Ok(())
}
