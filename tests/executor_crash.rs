//! Crash safety of the real `infera executor` process: killed between accepting and submitting,
//! and killed after broadcasting its submission before reading the receipt, a restarted executor
//! completes the job exactly once — one acceptance, one submission, no transaction sent twice.

mod common;

use std::{process::Child, time::Duration};

use alloy::{
    primitives::{B256, U256},
    providers::Provider,
    rpc::types::Filter,
    sol_types::SolEvent,
};
use common::{EXECUTOR, Net, require_model, status, wait_crash};
use eyre::{Result, ensure, eyre};
use infera_chain::bindings::JobEscrow;
use infera_executor::ExecutorConfig;

const PROMPT: &[u8] = b"Count from one to five.";

fn spawn(net: &Net, config: &ExecutorConfig, crash_after: Option<&str>) -> Result<Child> {
    common::spawn_executor(net, config, crash_after)
}

async fn count<E: SolEvent>(net: &Net, job_id: U256) -> Result<usize> {
    let filter = Filter::new()
        .address(net.devnet.deployment.job_escrow)
        .event_signature(E::SIGNATURE_HASH)
        .topic1(B256::from(job_id))
        .from_block(0);
    Ok(net.provider().get_logs(&filter).await?.len())
}

/// Transactions the executor has sent, from its nonce.
async fn sent(net: &Net, config: &ExecutorConfig) -> Result<u64> {
    let signer = infera::keys::load_signer(config.private_key_file.as_deref())?;
    Ok(net
        .provider()
        .get_transaction_count(signer.address())
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_completes_each_job_exactly_once() -> Result<()> {
    require_model()?;
    let net = Net::start("crash").await?;
    let config = ExecutorConfig {
        start_block: Some(0),
        auto_finalize: false,
        // A fixed endpoint: restarts must not re-register (the test counts transactions).
        endpoint: Some("http://127.0.0.1:1".into()),
        ..net.executor_config(EXECUTOR, Vec::new())?
    };

    // 1. Killed right after its acceptance was mined and recorded.
    let (first, _) = net.post(net.spec(8).await?, PROMPT).await?;
    let mut child = spawn(&net, &config, Some("accepted"))?;
    wait_crash(&mut child, Duration::from_secs(120)).await?;
    ensure!(
        net.status(first).await? == status::ACCEPTED,
        "crashed before accepting"
    );
    let mut child = spawn(&net, &config, None)?;
    let resumed = net
        .wait_status(first, status::SUBMITTED, Duration::from_secs(120))
        .await;
    child.kill()?;
    child.wait()?;
    resumed?;
    ensure!(count::<JobEscrow::JobAccepted>(&net, first).await? == 1);
    ensure!(count::<JobEscrow::ResultSubmitted>(&net, first).await? == 1);

    // 2. Killed after broadcasting its submission, before reading the receipt: the restart finds
    //    the logged transaction and does not send another.
    let (second, _) = net.post(net.spec(8).await?, PROMPT).await?;
    let before = sent(&net, &config).await?;
    let mut child = spawn(&net, &config, Some("submitting"))?;
    wait_crash(&mut child, Duration::from_secs(120)).await?;
    // anvil mines the broadcast transaction on its own.
    net.wait_status(second, status::SUBMITTED, Duration::from_secs(30))
        .await?;
    let mut child = spawn(&net, &config, None)?;
    // Let the restarted executor run through its recovery and a few polls.
    let store = infera_executor::store::Store::open(common::database(&config)?).await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    let recorded = loop {
        let stage = store.job(second).await?.map(|row| row.stage);
        if stage == Some(infera_executor::store::Stage::Submitted) {
            break Ok(());
        }
        if tokio::time::Instant::now() >= until {
            break Err(eyre!(
                "the restarted executor never recorded the submission ({stage:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.kill()?;
    child.wait()?;
    recorded?;
    ensure!(count::<JobEscrow::JobAccepted>(&net, second).await? == 1);
    ensure!(count::<JobEscrow::ResultSubmitted>(&net, second).await? == 1);
    // Exactly two transactions for the second job: accept and submit.
    ensure!(
        sent(&net, &config).await? == before + 2,
        "a step was sent twice"
    );
    Ok(())
}
