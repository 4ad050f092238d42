//! A validator that approves without checking is caught by a canary: validator P plants a job whose
//! answer it knows is bad (through an executor identity of its own: a job designated to it,
//! accepted, a fabricated result submitted) and challenges it; the jury is L (`always_approve`),
//! H1 and H2. H1 and H2 check and vote Faulty, L votes Honest: L is in the minority and loses
//! exactly its juror penalty, which H1 and H2 share with the jurors' part of the seized collateral.

mod common;

use std::time::Duration;

use alloy::primitives::U256;
use common::{
    Net,
    disputes::{self, Contracts, Miner, Running, STEP, validator_config},
    require_model,
};
use eyre::{Result, ensure, eyre};
use infera_validator::{Faults, ValidatorConfig, store::Store};

const BPS: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_always_approving_validator_is_caught_by_a_canary() -> Result<()> {
    require_model()?;
    disputes::init_logs();
    let started = std::time::Instant::now();
    let net = Net::start("validator-canary").await?;
    // P 5 (plants canaries through executor identity 9), L 6 (always approves), H1 7, H2 8.
    disputes::fund(&net, &[5, 6, 7, 8, 9]).await?;
    disputes::set_jury_size(&net, 15).await?;
    let _miner = Miner::start(&net, Duration::from_millis(500));
    let checker = disputes::checker().await?;
    let contracts = Contracts::new(&net);

    let canary_key = net.dir.join("canary-executor.key");
    let canary_signer = net.devnet.signer(9).ok_or_else(|| eyre!("no dev key 9"))?;
    std::fs::write(&canary_key, canary_signer.to_bytes().to_string())?;
    let p_config = ValidatorConfig {
        canary_executor_key: Some(canary_key),
        canary_rate_ppm: 1_000_000,
        canary_period_secs: 1,
        max_canaries: Some(1),
        ..validator_config(&net, 5)?
    };
    let p_database = p_config
        .database
        .clone()
        .ok_or_else(|| eyre!("no database"))?;
    let l = Running::start(
        &net,
        6,
        ValidatorConfig {
            faults: Faults {
                always_approve: true,
                ..Faults::default()
            },
            ..validator_config(&net, 6)?
        },
        &checker,
    )
    .await?;
    let h1 = Running::start(&net, 7, validator_config(&net, 7)?, &checker).await?;
    let h2 = Running::start(&net, 8, validator_config(&net, 8)?, &checker).await?;
    let l_stake = contracts.validator_stake(l.address).await?;
    let h_stakes = [
        contracts.validator_stake(h1.address).await?,
        contracts.validator_stake(h2.address).await?,
    ];
    let p = Running::start(&net, 5, p_config, &checker).await?;
    let canary_executor = canary_signer.address();
    ensure!(
        contracts.executor_stake(canary_executor).await?.staked > 0,
        "the canary identity is not staked"
    );

    // ---- The canary: planted, challenged by P, judged by L, H1 and H2.
    let job_id = U256::from(1);
    let dispute_id = contracts.wait_dispute(job_id, STEP).await?;
    let dispute = contracts.disputes.disputeOf(dispute_id).call().await?;
    ensure!(
        (dispute.challenger, dispute.executor, dispute.payer)
            == (p.address, canary_executor, p.address),
        "dispute parties {dispute:?}"
    );
    eprintln!("canary challenged after {:?}", started.elapsed());
    let mut jurors = contracts.wait_jury(dispute_id, STEP).await?;
    jurors.sort();
    let mut expected = vec![l.address, h1.address, h2.address];
    expected.sort();
    ensure!(jurors == expected, "jury {jurors:?}");
    let resolved = contracts.wait_resolved(dispute_id, STEP).await?;
    eprintln!("canary resolved after {:?}", started.elapsed());
    ensure!(resolved.executorFaulty, "the canary was found honest");
    ensure!(
        (resolved.faultyVotes, resolved.honestVotes) == (U256::from(2), U256::from(1)),
        "votes {} faulty, {} honest",
        resolved.faultyVotes,
        resolved.honestVotes
    );
    for (juror, vote) in [(l.address, 1), (h1.address, 2), (h2.address, 2)] {
        let ballot = contracts
            .disputes
            .ballotOf(dispute_id, juror)
            .call()
            .await?;
        ensure!(ballot.vote == vote, "{juror} voted {}", ballot.vote);
    }

    // ---- L pays exactly its penalty; H1 and H2 share it with the jurors' part.
    let penalty = dispute.jurorPenalty;
    ensure!(
        contracts.validator_stake(l.address).await? == l_stake - penalty,
        "L's stake {l_stake} -> {}",
        contracts.validator_stake(l.address).await?
    );
    ensure!(
        contracts
            .disputes
            .credits(l.address)
            .call()
            .await?
            .is_zero()
    );
    let juror_bps = U256::from(contracts.disputes.jurorRewardBps().call().await?);
    let challenger_bps = U256::from(contracts.disputes.challengerRewardBps().call().await?);
    let seized = resolved.collateralSeized;
    ensure!(!seized.is_zero(), "no collateral seized");
    let share = (seized * juror_bps / U256::from(BPS) + penalty) / U256::from(2);
    for (juror, before) in [(h1.address, h_stakes[0]), (h2.address, h_stakes[1])] {
        ensure!(contracts.validator_stake(juror).await? == before);
        let credited = contracts.disputes.credits(juror).call().await?;
        ensure!(
            credited == share,
            "{juror} credited {credited}, expected {share}"
        );
    }
    // P, challenger and payer of its own canary: the bond back with the challenger's share, and
    // the escrow refunded.
    ensure!(
        contracts.disputes.credits(p.address).call().await?
            == dispute.bond + seized * challenger_bps / U256::from(BPS)
    );
    let settlement_escrow = escrow_of(&net, job_id).await?;
    ensure!(contracts.escrow.credits(p.address).call().await? == settlement_escrow);

    // ---- P logged the canary and who approved it.
    let store = Store::open(&p_database).await?;
    let canary = disputes::wait("the canary's outcome", STEP, || async {
        Ok(store
            .canaries()
            .await?
            .into_iter()
            .find(|c| c.stage == "resolved"))
    })
    .await?;
    let outcome = canary.outcome.unwrap_or_default();
    ensure!(
        outcome.contains(&format!("{:#x}", l.address)),
        "canary outcome {outcome}"
    );
    ensure!(canary.job_id == Some(job_id));

    for validator in [p, l, h1, h2] {
        validator.stop().await?;
    }
    eprintln!("total {:?}", started.elapsed());
    Ok(())
}

/// The escrow of a job, from its `JobPosted`.
async fn escrow_of(net: &Net, job_id: U256) -> Result<U256> {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    use infera_chain::bindings::JobEscrow;
    let filter = Filter::new()
        .address(net.devnet.deployment.job_escrow)
        .event_signature(JobEscrow::JobPosted::SIGNATURE_HASH)
        .topic1(alloy::primitives::B256::from(job_id))
        .from_block(0);
    let logs = net.provider().get_logs(&filter).await?;
    let posted = logs
        .first()
        .ok_or_else(|| eyre!("no JobPosted"))?
        .log_decode::<JobEscrow::JobPosted>()?;
    Ok(posted.inner.data.job.escrow)
}
