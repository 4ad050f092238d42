//! Every lifecycle event lands in the typed tables, and the derived state equals what the
//! contracts' own views say: job statuses, seeds fixed at acceptance, the expiry split between the
//! requester's locked compensation and the reward pool, credits and locked credits, stakes,
//! reputation, prices, models and their rules versions. The read API serves it with finality. On
//! SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use alloy::primitives::{Address, U256};
use common::{Chain, Db, wait_caught_up};
use eyre::{Result, ensure};
use infera_chain::bindings::{Disputes, JobEscrow, ModelRegistry, Staking};
use infera_indexer::{
    Indexer, Store,
    rows::{
        BalanceRow, DisputeRow, ExecutorRow, JobRow, JobStatus, ModelRow, PriceRow, RulesRow,
        StakeRow,
    },
};

/// `NO_SHOW_COMPENSATION_BPS` of JobEscrow: the requester's share of an expired job's collateral,
/// at most, as a share of its escrow.
const NO_SHOW_COMPENSATION_BPS: u64 = 1_000;

/// The indexed credit and locked credit of `account` equal the escrow's `credits` and
/// `lockedCreditOf`.
async fn same_balance(
    store: &Store,
    chain: &Chain,
    escrow: &JobEscrow::JobEscrowInstance<alloy::providers::DynProvider>,
    account: Address,
) -> Result<BalanceRow> {
    let row = store
        .get::<BalanceRow>(chain.chain_id(), &account)
        .await?
        .unwrap_or_else(|| BalanceRow::empty(account, 0));
    let credit = escrow.credits(account).call().await?;
    let locked = escrow.lockedCreditOf(account).call().await?;
    ensure!(
        row.credit == credit
            && row.locked_credit == locked.amount
            && U256::from(row.locked_release_at) == locked.releaseAt,
        "balance of {account}: indexed {row:?}, chain credit {credit}, locked {} until {}",
        locked.amount,
        locked.releaseAt
    );
    Ok(row)
}

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
    let dispute_d = chain.dispute(d, &settled_d, true).await?;
    let assigned_e = chain.accept(e, &job_e).await?;
    let settled_e = chain.submit(e, &job_e, &assigned_e, 3).await?;
    let dispute_e = chain.dispute(e, &settled_e, false).await?;
    chain.advance(3_600).await?; // past a's challenge window and c's deadline
    chain.finalize(a, &settled_a).await?;
    let (expired_c, _) = chain
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

    // Seeds are fixed at acceptance (by the assignment), not at posting; each job keeps its salt
    // and the rules version it was posted under.
    for (id, job, assigned) in [
        (a, &job_a, Some(&assigned_a)),
        (b, &job_b, None),
        (c, &job_c, Some(&assigned_c)),
        (d, &job_d, Some(&assigned_d)),
        (e, &job_e, Some(&assigned_e)),
    ] {
        let row = by_id(id).ok_or_else(|| eyre::eyre!("job {id}"))?;
        ensure!(
            row.seed == assigned.map(|x| x.seed),
            "job {id}: seed {:?}",
            row.seed
        );
        ensure!(row.salt == job.spec.salt && row.rules_version == job.rulesVersion);
        ensure!(
            row.rules_version == 1,
            "rules version {}",
            row.rules_version
        );
    }
    ensure!(by_id(f).is_some_and(|j| j.seed.is_none()));
    ensure!(
        assigned_a.seed != assigned_c.seed,
        "one seed per acceptance"
    );

    // The expired job: the escrow refunded at once, the collateral (rounded up) seized and split
    // between the requester's compensation (capped, locked) and the reward pool.
    let job_c_row = by_id(c).ok_or_else(|| eyre::eyre!("job c"))?;
    let collateral =
        (job_c.escrow * U256::from(job_c.collateralBps) + U256::from(9_999)) / U256::from(10_000);
    let compensation = job_c.escrow * U256::from(NO_SHOW_COMPENSATION_BPS) / U256::from(10_000);
    ensure!(assigned_c.collateral == collateral && !compensation.is_zero());
    ensure!(
        job_c_row.refund == Some(job_c.escrow)
            && job_c_row.collateral_seized == Some(collateral)
            && job_c_row.compensation == Some(compensation)
            && job_c_row.to_reward_pool == Some(collateral - compensation),
        "expired job {job_c_row:?}"
    );
    ensure!(
        job_c_row.compensation == Some(expired_c.compensation)
            && job_c_row.to_reward_pool == Some(expired_c.toRewardPool)
    );
    // The reward pool holds the finalized jobs' validator fees and the expired job's remainder.
    let pool: U256 = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Finalized)
        .filter_map(|j| j.validator_fee)
        .chain(jobs.iter().filter_map(|j| j.to_reward_pool))
        .sum();
    let on_chain_pool = escrow.rewardPool().call().await?;
    ensure!(
        pool == on_chain_pool,
        "reward pool: indexed {pool}, chain {on_chain_pool}"
    );

    // Credits and locked credits equal the escrow's pull-payment balances.
    for account in [
        chain.requester.address,
        chain.executor.address,
        chain.slasher.address,
    ] {
        same_balance(&store, chain, &escrow, account).await?;
    }
    let requester = same_balance(&store, chain, &escrow, chain.requester.address).await?;
    ensure!(
        requester.locked_credit == compensation && requester.locked_release_at > 0,
        "{requester:?}"
    );
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
            && model.rules_version == registered.terms.rulesVersion
            && model.rules_version == 1
    );
    let rules = store.all::<RulesRow>(chain_id).await?;
    let v1 = registry.rulesAt(chain.devnet.model_id, 1).call().await?;
    ensure!(
        rules.len() == 1
            && rules[0].version == 1
            && rules[0].audit_rate_ppm == v1.auditRatePpm
            && rules[0].max_margin_ppm == v1.thresholds.maxMarginPpm
            && rules[0].max_flip_rate_ppm == v1.thresholds.maxFlipRatePpm,
        "{rules:?} vs {v1:?}"
    );

    // Disputes: one lost by the executor, one won, each as the Disputes contract has it.
    let disputes = store.all::<DisputeRow>(chain_id).await?;
    ensure!(disputes.len() == 2, "{disputes:?}");
    let contract = Disputes::new(chain.devnet.deployment.disputes, provider.clone());
    for (dispute_id, job_id, faulty) in [(dispute_d, d, true), (dispute_e, e, false)] {
        let row = disputes
            .iter()
            .find(|x| U256::from(x.dispute_id) == dispute_id)
            .ok_or_else(|| eyre::eyre!("dispute {dispute_id} not indexed: {disputes:?}"))?;
        let on_chain = contract.disputeOf(dispute_id).call().await?;
        let vote = if faulty { "faulty" } else { "honest" };
        ensure!(
            row.source == chain.devnet.deployment.job_escrow
                && row.claim_id == job_id
                && row.challenger == chain.challenger.address
                && row.executor == chain.executor.address
                && row.bond == on_chain.bond
                && row.commit_end == on_chain.commitEnd
                && row.reveal_end == on_chain.revealEnd
                && row.draw_block == on_chain.drawBlock
                && row.status
                    == if faulty {
                        "executor_faulty"
                    } else {
                        "executor_honest"
                    }
                && on_chain.executorFaulty == faulty
                && row.jurors.len() == 1
                && row.jurors[0].juror == chain.juror.address
                && row.jurors[0].committed
                && row.jurors[0].vote.as_deref() == Some(vote)
                && (row.faulty_votes, row.honest_votes) == if faulty { (1, 0) } else { (0, 1) }
                && row.resolved_block.is_some()
                && !row.is_open(),
            "dispute {dispute_id}: indexed {row:?}, chain {on_chain:?}"
        );
        let seized = row.collateral_seized.unwrap_or_default();
        ensure!(
            faulty != seized.is_zero(),
            "collateral seized only from the faulty executor: {row:?}"
        );
    }

    api(chain, &store, a).await?;

    // Once the unbonding period has passed, the requester's withdrawal takes its credit and the
    // released compensation together.
    let unbonding = staking.unbondingPeriod().call().await?;
    chain.advance(u64::try_from(unbonding)? + 1).await?;
    let (withdrawal, _) = chain.requester.market.withdraw().await?;
    ensure!(withdrawal.amount == requester.credit + compensation);
    ensure!(withdrawal.to == chain.requester.address);
    wait_caught_up(&store, chain, Duration::from_secs(30)).await?;
    let after = same_balance(&store, chain, &escrow, chain.requester.address).await?;
    ensure!(
        after.credit.is_zero()
            && after.locked_credit.is_zero()
            && after.withdrawn == requester.withdrawn + withdrawal.amount,
        "{after:?}"
    );

    slash_behind_open_job(chain, &store).await?;

    follower.stop().await?;
    Ok(())
}

/// A slash reaches the stake behind an open job, leaving a deficit (locked above staked); the job's
/// expiry then forfeits nothing more, and the indexed stake follows the contract's all the way.
async fn slash_behind_open_job(chain: &Chain, store: &Store) -> Result<()> {
    let chain_id = chain.chain_id();
    let provider = chain.provider();
    let staking = &Staking::new(chain.devnet.deployment.staking, provider.clone());
    let same_stake = || async move {
        let row = store
            .get::<StakeRow>(chain_id, &(chain.executor.address, 0))
            .await?
            .ok_or_else(|| eyre::eyre!("no stake row"))?;
        let info = staking.stakeOf(chain.executor.address, 0).call().await?;
        ensure!(
            row.staked == U256::from(info.staked) && row.locked == U256::from(info.locked),
            "stake {row:?} vs chain {info:?}"
        );
        Ok::<_, eyre::Report>(row)
    };

    let (g, job_g) = chain.post("g").await?;
    let assigned_g = chain.accept(g, &job_g).await?;
    wait_caught_up(store, chain, Duration::from_secs(30)).await?;
    let before = same_stake().await?;
    let slasher = Staking::new(
        chain.devnet.deployment.staking,
        chain.slasher.provider.clone(),
    );
    let receipt = slasher
        .slash(
            chain.executor.address,
            0,
            before.staked,
            chain.slasher.address,
        )
        .from(chain.slasher.address)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "slash reverted");
    wait_caught_up(store, chain, Duration::from_secs(30)).await?;
    let slashed = same_stake().await?;
    ensure!(
        slashed.staked.is_zero() && slashed.locked == assigned_g.collateral,
        "the whole stake is gone, the open job's collateral still counted: {slashed:?}"
    );

    chain.advance(1_801).await?;
    let (expired, _) = chain.requester.market.expire(g, job_g, assigned_g).await?;
    ensure!(expired.compensation.is_zero() && expired.toRewardPool.is_zero());
    wait_caught_up(store, chain, Duration::from_secs(30)).await?;
    let settled = same_stake().await?;
    ensure!(settled.locked.is_zero() && settled.staked.is_zero());
    let row = store
        .get::<JobRow>(chain_id, &u64::try_from(g)?)
        .await?
        .ok_or_else(|| eyre::eyre!("job g"))?;
    ensure!(
        row.status == JobStatus::Expired
            && row.collateral_seized == Some(U256::ZERO)
            && row.compensation == Some(U256::ZERO),
        "{row:?}"
    );
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
    ensure!(
        status == 200 && body["credit"].is_string() && body["locked_credit"].is_string(),
        "{body}"
    );
    ensure!(
        body["locked_release_at"].as_u64().is_some_and(|t| t > 0),
        "{body}"
    );
    let (status, body) = get(format!("/v1/models/{}/rules", chain.devnet.model_id)).await?;
    ensure!(status == 200 && body["rules"][0]["version"] == 1, "{body}");
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
