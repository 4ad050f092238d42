//! Every lifecycle event lands in the typed tables, and the derived state equals what the
//! contracts' own views say: job statuses, credits, stakes, reputation, prices, models. The read
//! API serves it with finality. On SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use alloy::primitives::U256;
use common::{Chain, Db, wait_caught_up};
use eyre::{Result, ensure};
use infera_indexer::{
    Indexer, Store,
    rows::{BalanceRow, DisputeRow, ExecutorRow, JobRow, JobStatus, ModelRow, PriceRow, StakeRow},
};
use infera_protocol::bindings::{JobEscrow, ModelRegistry, Staking};

async fn lifecycle(chain: &Chain, db: &Db) -> Result<()> {
    let indexer = Indexer::connect(chain.config(&db.url)).await?;
    let store = indexer.store().clone();
    let follower = common::Follower::start(&indexer);

    // Finalized, cancelled, expired, rejected after a dispute, finalized after a dispute, open.
    let (a, job_a) = chain.post("a").await?;
    let (b, job_b) = chain.post("b").await?;
    let (c, job_c) = chain.post("c").await?;
    let (d, job_d) = chain.post("d").await?;
    let (e, job_e) = chain.post("e").await?;
    let (f, _) = chain.post("f").await?;
    let assigned_a = chain.accept(a, &job_a).await?;
    let settled_a = chain.submit(a, &job_a, &assigned_a, 5).await?;
    chain.cancel(b, &job_b).await?;
    let assigned_c = chain.accept(c, &job_c).await?;
    let assigned_d = chain.accept(d, &job_d).await?;
    let settled_d = chain.submit(d, &job_d, &assigned_d, 16).await?;
    chain.freeze(d, &settled_d).await?;
    chain.resolve(d, &settled_d, true).await?;
    let assigned_e = chain.accept(e, &job_e).await?;
    let settled_e = chain.submit(e, &job_e, &assigned_e, 3).await?;
    chain.freeze(e, &settled_e).await?;
    chain.resolve(e, &settled_e, false).await?;
    chain.advance(3_600).await?; // past a's challenge window and c's deadline
    chain.finalize(a, &settled_a).await?;
    chain
        .requester
        .market
        .expire(c, job_c.clone(), assigned_c.clone())
        .await?;
    chain.executor.market.withdraw().await?;
    chain.stake_more(5_000).await?;

    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    let chain_id = chain.chain_id();
    let provider = chain.provider();
    let escrow = JobEscrow::new(chain.devnet.deployment.job_escrow, provider.clone());
    let staking = Staking::new(chain.devnet.deployment.staking, provider.clone());
    let registry = ModelRegistry::new(chain.devnet.deployment.model_registry, provider.clone());

    // Jobs: every status as the contract has it.
    let jobs = store.all::<JobRow>(chain_id).await?;
    ensure!(jobs.len() == 6, "{} jobs", jobs.len());
    for job in &jobs {
        let on_chain = escrow.jobStatus(U256::from(job.job_id)).call().await?;
        ensure!(
            job.status.as_u8() == on_chain,
            "job {}: indexed {:?}, chain {on_chain}",
            job.job_id,
            job.status
        );
    }
    let by_id = |id: U256| jobs.iter().find(|j| U256::from(j.job_id) == id);
    let statuses: Vec<_> = [a, b, c, d, e, f]
        .iter()
        .map(|id| by_id(*id).map(|j| j.status))
        .collect();
    ensure!(
        statuses
            == [
                JobStatus::Finalized,
                JobStatus::Cancelled,
                JobStatus::Expired,
                JobStatus::Rejected,
                JobStatus::Finalized,
                JobStatus::Posted
            ]
            .map(Some),
        "statuses {statuses:?}"
    );
    let job_a_row = by_id(a).ok_or_else(|| eyre::eyre!("job a"))?;
    ensure!(job_a_row.commitment == Some(settled_a.commitment));
    ensure!(job_a_row.output_tokens == Some(5) && job_a_row.payment == Some(settled_a.payment));
    ensure!(job_a_row.executor == Some(chain.executor.address));

    // Credits equal the escrow's pull-payment balances.
    for account in [
        chain.requester.address,
        chain.executor.address,
        chain.disputes.address,
    ] {
        let indexed = store
            .get::<BalanceRow>(chain_id, &account)
            .await?
            .map(|b| b.credit)
            .unwrap_or_default();
        let on_chain = escrow.credits(account).call().await?;
        ensure!(
            indexed == on_chain,
            "credit of {account}: indexed {indexed}, chain {on_chain}"
        );
    }
    let withdrawn = store
        .get::<BalanceRow>(chain_id, &chain.executor.address)
        .await?
        .map(|b| b.withdrawn)
        .unwrap_or_default();
    ensure!(!withdrawn.is_zero(), "the executor's withdrawal is indexed");

    // Stake, locks and reputation equal the staking contract's views.
    let stake = store
        .get::<StakeRow>(chain_id, &(chain.executor.address, 0))
        .await?
        .ok_or_else(|| eyre::eyre!("no stake row"))?;
    let info = staking.stakeOf(chain.executor.address, 0).call().await?;
    ensure!(
        stake.staked == U256::from(info.staked)
            && stake.locked == U256::from(info.locked)
            && stake.jobs_completed == info.jobsCompleted
            && stake.jobs_expired == info.jobsExpired,
        "stake {stake:?} vs chain {info:?}"
    );
    ensure!(stake.jobs_completed == 2 && stake.jobs_expired == 1);
    let profile = staking
        .executorProfile(chain.executor.address)
        .call()
        .await?;
    let executor = store
        .get::<ExecutorRow>(chain_id, &chain.executor.address)
        .await?
        .ok_or_else(|| eyre::eyre!("no executor row"))?;
    ensure!(executor.disputes_lost == profile.disputesLost && executor.disputes_lost == 1);
    ensure!(executor.endpoint == profile.endpoint);
    let price = store
        .get::<PriceRow>(chain_id, &(chain.executor.address, chain.devnet.model_id))
        .await?
        .ok_or_else(|| eyre::eyre!("no price row"))?;
    let on_chain = staking
        .priceOf(chain.executor.address, chain.devnet.model_id)
        .call()
        .await?;
    ensure!(
        price.active == on_chain.active
            && price.input_per_million == on_chain.inputPerMillion
            && price.output_per_million == on_chain.outputPerMillion
    );
    let model = store
        .get::<ModelRow>(chain_id, &chain.devnet.model_id)
        .await?
        .ok_or_else(|| eyre::eyre!("no model row"))?;
    let registered = registry.model(chain.devnet.model_id).call().await?;
    ensure!(
        model.name == registered.name
            && model.weights_sha256 == registered.weightsSha256
            && model.active == registered.terms.active
            && model.max_context == registered.terms.maxContext
            && model.max_margin_ppm == registered.thresholds.maxMarginPpm
    );

    // Disputes: one lost by the executor, one won.
    let disputes = store.all::<DisputeRow>(chain_id).await?;
    let outcome = |id: U256| {
        disputes
            .iter()
            .find(|x| U256::from(x.job_id) == id)
            .map(|x| x.status.clone())
    };
    ensure!(
        outcome(d).as_deref() == Some("executor_faulty"),
        "{disputes:?}"
    );
    ensure!(
        outcome(e).as_deref() == Some("executor_honest"),
        "{disputes:?}"
    );

    api(chain, &store, a).await?;

    follower.stop().await?;
    Ok(())
}

/// The read API serves the same rows, with finality, and clear errors.
async fn api(chain: &Chain, store: &Store, job: U256) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = infera_indexer::api::router(store.clone(), chain.chain_id());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let response = client.get(format!("{base}{path}")).send().await?;
            let status = response.status().as_u16();
            Ok::<_, eyre::Report>((status, response.json::<serde_json::Value>().await?))
        }
    };

    let (status, body) = get("/v1/status".into()).await?;
    ensure!(status == 200 && body["lag_blocks"] == 0, "{body}");
    let (status, body) = get(format!("/v1/jobs/{job}")).await?;
    ensure!(status == 200 && body["status"] == "finalized", "{body}");
    ensure!(
        ["finalized", "safe", "latest"].contains(&body["finality"].as_str().unwrap_or("")),
        "{body}"
    );
    let (status, body) = get(format!("/v1/models/{}/executors", chain.devnet.model_id)).await?;
    let executors = body["executors"].as_array().cloned().unwrap_or_default();
    ensure!(status == 200 && executors.len() == 1, "{body}");
    ensure!(
        executors[0]["endpoint"] == "http://127.0.0.1:8600"
            && executors[0]["prices"][0]["output_per_million"] == 400_000
            && executors[0]["disputes_lost"] == 1,
        "{body}"
    );
    let (status, body) = get(format!("/v1/accounts/{}", chain.requester.address)).await?;
    ensure!(status == 200 && body["credit"].is_string(), "{body}");
    let (status, body) = get("/v1/disputes?status=executor_faulty".into()).await?;
    ensure!(
        status == 200 && body["disputes"].as_array().map(Vec::len) == Some(1),
        "{body}"
    );
    let (status, body) = get("/v1/jobs/999999".into()).await?;
    ensure!(
        status == 404 && body["error"]["message"].is_string(),
        "{body}"
    );
    let (status, _) = get("/v1/accounts/not-an-address".into()).await?;
    ensure!(status == 400);
    server.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite() -> Result<()> {
    let chain = Chain::start("lifecycle", 4).await?;
    lifecycle(&chain, &Db::sqlite(&chain, "lifecycle")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_postgres() -> Result<()> {
    let Some(db) = Db::postgres("lifecycle").await? else {
        return Ok(());
    };
    let chain = Chain::start("lifecycle-pg", 4).await?;
    let result = lifecycle(&chain, &db).await;
    db.drop_database().await?;
    result
}
