//! The real `infera executor` process on a chain that does not mine every transaction at once
//! (anvil with interval mining, paused at will): its transactions go through the shared
//! transaction manager (`infera_chain::tx`).
//!
//! 1. A dropped transaction: the node forgets the executor's acceptance, then its submission
//!    (`anvil_dropTransaction`); the executor re-broadcasts each and the job completes.
//! 2. `kill -9` with the acceptance in the mempool, then a fee spike that prices it out
//!    (`anvil_setNextBlockBaseFeePerGas` before every block): the restarted executor serves while
//!    its old transaction is still unmined — startup never waits for it — then re-signs it with
//!    bumped fees at the same nonce, and completes the job before its deadline.
//!
//! Both jobs are then finalized: each accepted and submitted once, none expired, the stake
//! untouched and the earnings credited.

mod common;

use std::{process::Child, time::Duration};

use alloy::{
    consensus::Transaction as _,
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider, ext::AnvilApi, ext::TxPoolApi},
    rpc::types::Filter,
    sol_types::{SolCall, SolEvent},
};
use common::{EXECUTOR, Net, free_port, kill, require_model, spawn_executor, status, wait_crash};
use eyre::{Result, ensure, eyre};
use infera::{deploy, market::EXECUTOR_ROLE};
use infera_chain::bindings::JobEscrow;
use infera_executor::ExecutorConfig;

const PROMPT: &[u8] = b"Count from one to five.";
/// The base fee of every block during the spike: far above anything bid before it.
const SPIKE: u128 = 200_000_000_000; // 200 gwei
const WAIT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_completes_its_jobs_through_drops_restarts_and_fee_spikes() -> Result<()> {
    require_model()?;
    let net = Net::start("chain").await?;
    let provider = net.provider();
    let port = free_port()?;
    let config = ExecutorConfig {
        start_block: Some(0),
        listen: format!("127.0.0.1:{port}").parse()?,
        // A fixed endpoint: restarts do not re-register.
        endpoint: Some("http://127.0.0.1:1".into()),
        resubmit_after_secs: 2,
        // Fixed: restarts (with mining paused) must not need a registration transaction.
        hardware: Some("test".into()),
        ..net.executor_config(EXECUTOR, Vec::new())?
    };
    let me = infera::keys::load_signer(config.private_key_file.as_deref())?.address();
    // Interval mining: a block a second, whatever is in the mempool.
    provider.anvil_set_interval_mining(1).await?;
    let mut child = spawn_executor(&net, &config, None)?;
    let outcome = scenarios(&net, &provider, &config, me, &mut child).await;
    kill(&mut child)?;
    outcome
}

async fn scenarios(
    net: &Net,
    provider: &DynProvider,
    config: &ExecutorConfig,
    me: Address,
    child: &mut Child,
) -> Result<()> {
    wait_serving(config, WAIT).await?;
    let staking = &net.keeper.market.staking;
    let staked = staking.stakeOf(me, EXECUTOR_ROLE).call().await?.staked;
    ensure!(U256::from(staked) == config.stake, "staked {staked}");

    // ---- 1. The node drops the acceptance, then the submission.
    pause_mining(provider).await?;
    let (dropped_job, _) = post_mined_by_hand(net, provider, net.spec(8).await?).await?;
    let accept = wait_in_mempool(provider, me, JobEscrow::acceptJobCall::SELECTOR).await?;
    drop_from_mempool(provider, me, accept).await?;
    provider.anvil_set_interval_mining(1).await?;
    net.wait_status(dropped_job, status::ACCEPTED, WAIT).await?;
    // Mining paused again before the result is generated (it takes seconds): the submission
    // waits in the mempool.
    pause_mining(provider).await?;
    ensure!(
        net.status(dropped_job).await? == status::ACCEPTED,
        "the result was submitted before mining was paused"
    );
    let submit = wait_in_mempool(provider, me, JobEscrow::submitResultCall::SELECTOR).await?;
    drop_from_mempool(provider, me, submit).await?;
    provider.anvil_set_interval_mining(1).await?;
    net.wait_status(dropped_job, status::SUBMITTED, WAIT)
        .await?;

    // ---- 2. kill -9 with the acceptance in the mempool, then a fee spike.
    kill(child)?;
    let mut spec = net.spec(8).await?;
    // A deadline minutes away: the executor must not wait for the spike to pass.
    spec.deadline = net.now().await? + 300;
    let deadline = spec.deadline;
    let (spiked_job, _) = net.post(spec, PROMPT).await?;
    pause_mining(provider).await?;
    let mut crashing = spawn_executor(net, config, Some("accepting"))?;
    if let Err(error) = wait_crash(&mut crashing, WAIT).await {
        kill(&mut crashing)?;
        return Err(error);
    }
    let old_accept = wait_in_mempool(provider, me, JobEscrow::acceptJobCall::SELECTOR).await?;
    let old = provider
        .get_transaction_by_hash(old_accept)
        .await?
        .ok_or_else(|| eyre!("the old acceptance is not known"))?;
    let (old_fee, old_nonce) = (max_fee(&old), old.nonce());
    ensure!(old_fee < SPIKE / 2, "the old acceptance bid {old_fee}");

    let head = provider.get_block_number().await?;
    *child = spawn_executor(net, config, None)?;
    // It serves while its old acceptance is still unmined (no block at all since): startup does
    // not wait for old transactions.
    wait_serving(config, WAIT).await?;
    ensure!(
        provider.get_block_number().await? == head,
        "a block was mined"
    );
    ensure!(net.status(spiked_job).await? == status::POSTED);

    let spike = tokio::spawn(hold_base_fee(provider.clone(), SPIKE));
    provider.anvil_set_interval_mining(1).await?;
    let submitted = net.wait_status(spiked_job, status::SUBMITTED, WAIT).await;
    spike.abort();
    submitted?;
    let accepted = job_log::<JobEscrow::JobAccepted>(net, spiked_job).await?;
    let accept_hash = accepted
        .transaction_hash
        .ok_or_else(|| eyre!("log without a transaction hash"))?;
    ensure!(
        accept_hash != old_accept,
        "the old acceptance was mined as it was"
    );
    let accept_tx = provider
        .get_transaction_by_hash(accept_hash)
        .await?
        .ok_or_else(|| eyre!("acceptance not found"))?;
    // Re-signed at the same nonce: nothing else was sent in between, no gap, no second step.
    ensure!(accept_tx.nonce() == old_nonce, "the acceptance moved nonce");
    let accept_block = block_of(provider, &accepted).await?;
    ensure!(
        u128::from(accept_block.header.base_fee_per_gas.unwrap_or_default()) >= SPIKE / 2,
        "the acceptance was mined after the spike"
    );
    ensure!(max_fee(&accept_tx) >= SPIKE / 2);
    let result = job_log::<JobEscrow::ResultSubmitted>(net, spiked_job).await?;
    let result_block = block_of(provider, &result).await?;
    ensure!(
        result_block.header.timestamp <= deadline,
        "submitted after the deadline"
    );

    // ---- Both finalized after the challenge window; nothing expired, the stake is whole.
    net.advance(deploy::MarketParams::default().challenge_window)
        .await?;
    let escrow = &net.keeper.market.escrow;
    let mut earned = U256::ZERO;
    for job_id in [dropped_job, spiked_job] {
        net.wait_status(job_id, status::FINALIZED, WAIT).await?;
        ensure!(count::<JobEscrow::JobAccepted>(net, job_id).await? == 1);
        ensure!(count::<JobEscrow::ResultSubmitted>(net, job_id).await? == 1);
        ensure!(count::<JobEscrow::JobExpired>(net, job_id).await? == 0);
        let settlement = job_log::<JobEscrow::ResultSubmitted>(net, job_id)
            .await?
            .log_decode::<JobEscrow::ResultSubmitted>()?
            .inner
            .data
            .settlement;
        earned += settlement.payment - settlement.validatorFee;
    }
    let info = staking.stakeOf(me, EXECUTOR_ROLE).call().await?;
    ensure!(
        info.staked == staked,
        "stake {} became {}",
        staked,
        info.staked
    );
    ensure!(info.locked.is_zero() && info.jobsCompleted == 2, "{info:?}");
    ensure!(escrow.credits(me).call().await? == earned);
    Ok(())
}

/// The fee cap a transaction bid.
/// The block a log was emitted in.
async fn block_of(
    provider: &DynProvider,
    log: &alloy::rpc::types::Log,
) -> Result<alloy::rpc::types::Block> {
    let number = log
        .block_number
        .ok_or_else(|| eyre!("log without a block"))?;
    provider
        .get_block_by_number(number.into())
        .await?
        .ok_or_else(|| eyre!("no block {number}"))
}

fn max_fee(tx: &alloy::rpc::types::Transaction) -> u128 {
    alloy::consensus::Transaction::max_fee_per_gas(tx)
}

/// Stops mining (automine and interval alike).
async fn pause_mining(provider: &DynProvider) -> Result<()> {
    provider.anvil_set_interval_mining(0).await?;
    provider.anvil_set_auto_mine(false).await?;
    Ok(())
}

/// Posts a job while mining is paused: the test mines the block holding it.
async fn post_mined_by_hand(
    net: &Net,
    provider: &DynProvider,
    spec: infera_chain::bindings::IJobEscrow::JobSpec,
) -> Result<(U256, infera_chain::bindings::IJobEscrow::Job)> {
    let requester = net.requester.address;
    let mine = async {
        loop {
            let pool = provider.txpool_content().await?;
            if pool
                .pending
                .get(&requester)
                .is_some_and(|txs| !txs.is_empty())
            {
                provider.anvil_mine(Some(1), None).await?;
                return Ok::<_, eyre::Report>(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (posted, mined) = tokio::join!(net.post(spec, PROMPT), mine);
    mined?;
    posted
}

/// The hash of `sender`'s transaction calling `selector`, once it is in the mempool.
async fn wait_in_mempool(
    provider: &DynProvider,
    sender: Address,
    selector: [u8; 4],
) -> Result<B256> {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let pool = provider.txpool_content().await?;
        let mut found = None;
        for txs in [pool.pending.get(&sender), pool.queued.get(&sender)]
            .into_iter()
            .flatten()
        {
            if let Some(tx) = txs
                .values()
                .find(|tx| tx.inner.input().starts_with(&selector))
            {
                found = Some(*tx.inner.tx_hash());
            }
        }
        if let Some(hash) = found {
            return Ok(hash);
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "no transaction {selector:?} of the executor in the mempool"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drops `hash` from the node's mempool and checks nothing of `sender` is left there.
async fn drop_from_mempool(provider: &DynProvider, sender: Address, hash: B256) -> Result<()> {
    ensure!(
        provider.anvil_drop_transaction(hash).await? == Some(hash),
        "{hash} was not in the mempool"
    );
    let pool = provider.txpool_content().await?;
    ensure!(
        pool.pending.get(&sender).is_none_or(|txs| txs.is_empty()),
        "the executor still has transactions in the mempool"
    );
    Ok(())
}

/// Sets the next block's base fee to `fee`, over and over: a spike that does not pass.
async fn hold_base_fee(provider: DynProvider, fee: u128) {
    loop {
        if let Err(error) = provider.anvil_set_next_block_base_fee_per_gas(fee).await {
            eprintln!("cannot set the base fee: {error}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the executor's HTTP endpoint answers (it listens once started).
async fn wait_serving(config: &ExecutorConfig, timeout: Duration) -> Result<()> {
    let url = format!("http://{}/health", config.listen);
    let client = reqwest::Client::new();
    let until = tokio::time::Instant::now() + timeout;
    loop {
        // Any answer will do: the endpoint is served only once startup is over.
        if client.get(&url).send().await.is_ok() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "the executor did not start serving"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The (single) `E` log of `job_id`.
async fn job_log<E: SolEvent>(net: &Net, job_id: U256) -> Result<alloy::rpc::types::Log> {
    let logs = job_logs::<E>(net, job_id).await?;
    ensure!(logs.len() == 1, "{} {} logs", logs.len(), E::SIGNATURE);
    logs.into_iter()
        .next()
        .ok_or_else(|| eyre!("no {} log", E::SIGNATURE))
}

async fn count<E: SolEvent>(net: &Net, job_id: U256) -> Result<usize> {
    Ok(job_logs::<E>(net, job_id).await?.len())
}

async fn job_logs<E: SolEvent>(net: &Net, job_id: U256) -> Result<Vec<alloy::rpc::types::Log>> {
    let filter = Filter::new()
        .address(net.devnet.deployment.job_escrow)
        .event_signature(E::SIGNATURE_HASH)
        .topic1(B256::from(job_id))
        .from_block(0);
    Ok(net.provider().get_logs(&filter).await?)
}
