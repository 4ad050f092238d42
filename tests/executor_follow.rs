//! The executor finds jobs through its embedded indexer (issue 9), on a real anvil chain with the
//! real default model on CPU:
//! - behind a node that refuses `eth_getLogs` over more than 1,000 blocks (as many providers do),
//!   an executor started at block 0 finds and serves jobs posted more than 2,000 blocks apart;
//! - after a reorganisation that removes jobs the executor had seen, it closes the one that no
//!   longer exists instead of retrying it forever, and serves the job the new branch posted under
//!   the same id (job ids are sequential).

mod common;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::{
    primitives::{Bytes, U256},
    providers::{Provider, ext::AnvilApi},
};
use common::{Actor, EXECUTOR, Net, REQUESTER, require_model, status};
use eyre::{Result, ensure, eyre};
use infera_chain::bindings::IJobEscrow;
use infera_executor::{
    Executor, ExecutorConfig,
    store::{JobRow, Stage, Store},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

const PROMPT: &[u8] = br#"[{"role":"user","content":"Say hello."}]"#;

/// Most blocks the proxy's node answers `eth_getLogs` for (the old scan asked for 2,000).
const MAX_RANGE: u64 = 1_000;

/// A JSON-RPC proxy in front of anvil that refuses `eth_getLogs` over more than `max_range`
/// blocks, as providers with block range limits do, and forwards everything else.
struct RangeLimited {
    url: String,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RangeLimited {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RangeLimited {
    async fn start(upstream: String, max_range: u64) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let refused = Arc::new(AtomicU64::new(0));
        let client = reqwest::Client::new();
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (client, upstream, refused) =
                    (client.clone(), upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, &client, &upstream, max_range, &refused).await;
                });
            }
        });
        Ok(Self { url, refused, task })
    }
}

/// One keep-alive HTTP/1.1 connection: requests with a `content-length` body, answered in turn.
async fn serve(
    socket: TcpStream,
    client: &reqwest::Client,
    upstream: &str,
    max_range: u64,
    refused: &AtomicU64,
) -> Result<()> {
    let mut reader = BufReader::new(socket);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut length = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let answer = match refusal(&body, max_range) {
            Some(answer) => {
                refused.fetch_add(1, Ordering::Relaxed);
                answer
            }
            None => client
                .post(upstream)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?
                .bytes()
                .await?
                .to_vec(),
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        let socket = reader.get_mut();
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(&answer).await?;
        socket.flush().await?;
    }
}

/// The provider's error for an `eth_getLogs` over more than `max_range` blocks.
fn refusal(body: &[u8], max_range: u64) -> Option<Vec<u8>> {
    let request: Value = serde_json::from_slice(body).ok()?;
    if request["method"] != "eth_getLogs" {
        return None;
    }
    let filter = &request["params"][0];
    let number = |key: &str| {
        filter[key]
            .as_str()
            .and_then(|s| s.strip_prefix("0x"))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
    };
    let (from, to) = (number("fromBlock")?, number("toBlock")?);
    if to.saturating_sub(from) < max_range {
        return None;
    }
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": request["id"],
        "error": {"code": -32602, "message": format!("query exceeds max block range {max_range}")},
    }))
    .ok()
}

/// Starts `config`'s executor in this process; stops it when the returned sender is dropped.
async fn serve_executor(
    config: ExecutorConfig,
) -> Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), infera_executor::ExecutorError>>,
)> {
    let executor = Executor::start(config).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(executor.serve(async {
        let _ = stopped.await;
    }));
    Ok((stop, serving))
}

async fn post(actor: &Actor, spec: IJobEscrow::JobSpec) -> Result<(U256, IJobEscrow::Job)> {
    let (posted, _) = actor
        .market
        .post_job(spec, Bytes::from_static(PROMPT))
        .await?;
    Ok((posted.jobId, posted.job))
}

/// Waits until the executor's store holds `job_id` and `done` says it is where it should be.
async fn wait_job(
    database: &Path,
    job_id: U256,
    timeout: Duration,
    done: impl Fn(&JobRow) -> bool,
) -> Result<JobRow> {
    let store = Store::open(database).await?;
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let row = store.job(job_id).await?;
        if let Some(row) = &row
            && done(row)
        {
            return Ok(row.clone());
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "job {job_id}: the executor's store has {:?}",
            row.map(|r| (r.stage, r.reason))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Jobs posted more than 2,000 blocks apart, before an executor starts at block 0 behind a node
/// that answers `eth_getLogs` for 1,000 blocks at most, are all found and served. The old scan
/// asked for fixed 2,000-block ranges, was refused forever and found nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_behind_a_block_range_limit_is_found_from_start_block_zero() -> Result<()> {
    require_model()?;
    let net = Net::start("executor-follow-history").await?;
    let provider = net.provider();
    let mut spec = net.spec(4).await?;
    spec.deadline = net.now().await? + 3_000;
    let (first, _) = net.post(spec, PROMPT).await?;
    provider.anvil_mine(Some(2_100), None).await?;
    let mut spec = net.spec(4).await?;
    spec.deadline = net.now().await? + 3_000;
    let (second, _) = net.post(spec, PROMPT).await?;
    provider.anvil_mine(Some(10), None).await?;
    let head = provider.get_block_number().await?;
    ensure!(head > 2 * MAX_RANGE + 100, "head {head}");

    let proxy = RangeLimited::start(net.devnet.anvil.endpoint(), MAX_RANGE).await?;
    let mut config = net.executor_config(EXECUTOR, Vec::new())?;
    config.rpc_url = proxy.url.clone();
    config.start_block = Some(0);
    let (stop, serving) = serve_executor(config.clone()).await?;

    for job_id in [first, second] {
        net.wait_status(job_id, status::SUBMITTED, Duration::from_secs(240))
            .await?;
    }
    let database = common::database(&config)?;
    for job_id in [first, second] {
        let row = wait_job(database, job_id, Duration::from_secs(30), |row| {
            matches!(row.stage, Stage::Submitted | Stage::Finalized)
        })
        .await?;
        ensure!(row.posted_block <= head);
    }
    eprintln!(
        "head {head}; eth_getLogs ranges refused by the proxy: {}",
        proxy.refused.load(Ordering::Relaxed)
    );
    let _ = stop.send(());
    serving.await??;
    Ok(())
}

/// A reorganisation removes two jobs the executor had seen (and could not take yet: their
/// collateral exceeds its free stake); the new branch, shorter than the old one, posts another
/// job, which gets the first one's id. The executor closes the job that no longer exists (on-chain status none) instead of
/// retrying it, and serves the new branch's job with its own terms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorganisation_closes_void_jobs_and_serves_the_new_branch() -> Result<()> {
    require_model()?;
    let net = Net::start("executor-follow-reorg").await?;
    let provider = net.provider();
    let config = net.executor_config(EXECUTOR, Vec::new())?;
    let database = common::database(&config)?.to_owned();
    let (stop, serving) = serve_executor(config.clone()).await?;

    let snapshot = provider.anvil_snapshot().await?;
    // Collateral (twice the escrow) above the executor's whole stake: seen, left posted.
    let big = |mut spec: IJobEscrow::JobSpec| {
        spec.maxOutputTokens = 8;
        spec.maxOutputPrice = 100_000_000_000_000;
        spec
    };
    let (void, _) = net.post(big(net.spec(8).await?), PROMPT).await?;
    let (vanished, _) = net.post(big(net.spec(8).await?), PROMPT).await?;
    provider.anvil_mine(Some(5), None).await?;
    for job_id in [void, vanished] {
        wait_job(&database, job_id, Duration::from_secs(60), |row| {
            row.stage == Stage::Posted
        })
        .await?;
    }
    // Let the executor look at them and find its stake short (they stay posted).
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        net.status(void).await? == status::POSTED,
        "the executor took a job it cannot cover"
    );

    // The executor is down while the chain reorganises: on restart its indexer rolls back and
    // indexes the new branch (shorter than the one the executor read) while the job loop reads.
    let _ = stop.send(());
    serving.await?.map_err(|e| eyre!("executor: {e}"))?;
    ensure!(provider.anvil_revert(snapshot).await?, "revert failed");
    let requester = Actor::new(&net.devnet, REQUESTER)?;
    let (job_id, job) = post(&requester, net.spec(4).await?).await?;
    ensure!(
        job_id == void,
        "the new branch's job has id {job_id}, not {void}"
    );
    provider.anvil_mine(Some(2), None).await?;
    let (stop, serving) = serve_executor(config).await?;

    net.wait_status(job_id, status::SUBMITTED, Duration::from_secs(240))
        .await?;
    let served = wait_job(&database, job_id, Duration::from_secs(30), |row| {
        matches!(row.stage, Stage::Submitted | Stage::Finalized)
    })
    .await?;
    ensure!(
        served.job == job,
        "the executor served job {job_id} with the void job's terms"
    );
    let closed = wait_job(&database, vanished, Duration::from_secs(60), |row| {
        row.stage.is_terminal()
    })
    .await?;
    ensure!(
        closed.stage == Stage::Closed && net.status(vanished).await? == 0,
        "the vanished job ended {:?} ({:?})",
        closed.stage,
        closed.reason
    );
    let _ = stop.send(());
    serving.await?.map_err(|e| eyre!("executor: {e}"))?;
    Ok(())
}
