//! An honest executor falsely challenged keeps its stake and is compensated from the bond: the
//! real `infera executor` serves a job with the real model; validator X (`challenge_everything`)
//! challenges it without a check; the jury J1, J2, J3 checks it teacher-forced, finds it honest
//! and votes so (J3 is the real `infera validator` process, the others run in the test's process). The executor's stake is untouched and unlocked, it is paid for the job, and it
//! gets the bond less the jurors' part, which the three jurors share.

mod common;

use std::time::Duration;

use alloy::primitives::U256;
use common::{
    EXECUTOR, Net,
    disputes::{self, Contracts, Miner, Running, STEP, validator_config},
    kill, require_model, spawn_executor,
};
use eyre::{Result, ensure};
use infera_validator::{Faults, ValidatorConfig};

const PROMPT: &[u8] = b"Count from one to five.";
const BPS: u64 = 10_000;
/// `IJobEscrow.JobStatus.Finalized`.
const FINALIZED: u8 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_honest_executor_falsely_challenged_keeps_its_stake_and_gets_the_bond() -> Result<()> {
    require_model()?;
    disputes::init_logs();
    let started = std::time::Instant::now();
    let net = Net::start("validator-false-challenge").await?;
    // X 5 (challenges everything), J1 6, J2 7, J3 8; the executor is dev account 2.
    disputes::fund(&net, &[5, 6, 7, 8]).await?;
    disputes::set_jury_size(&net, 15).await?;
    let _miner = Miner::start(&net, Duration::from_millis(500));
    let contracts = Contracts::new(&net);
    let executor_config = net.executor_config(EXECUTOR, Vec::new())?;
    let executor_address = net
        .devnet
        .signer(EXECUTOR)
        .ok_or_else(|| eyre::eyre!("no executor key"))?
        .address();
    let mut executor = spawn_executor(&net, &executor_config, None)?;
    let outcome = scenario(&net, &contracts, executor_address, started).await;
    kill(&mut executor)?;
    outcome
}

async fn scenario(
    net: &Net,
    contracts: &Contracts,
    executor: alloy::primitives::Address,
    started: std::time::Instant,
) -> Result<()> {
    let checker = disputes::checker().await?;
    let x = Running::start(
        net,
        5,
        ValidatorConfig {
            faults: Faults {
                challenge_everything: true,
                ..Faults::default()
            },
            ..validator_config(net, 5)?
        },
        &checker,
    )
    .await?;
    let j1 = Running::start(net, 6, validator_config(net, 6)?, &checker).await?;
    let j2 = Running::start(net, 7, validator_config(net, 7)?, &checker).await?;
    let j3_address = net
        .devnet
        .signer(8)
        .ok_or_else(|| eyre::eyre!("no dev key 8"))?
        .address();
    let mut j3 = disputes::spawn_validator(net, &validator_config(net, 8)?)?;
    let outcome = judged(net, contracts, executor, started, x, [j1, j2], j3_address).await;
    kill(&mut j3)?;
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn judged(
    net: &Net,
    contracts: &Contracts,
    executor: alloy::primitives::Address,
    started: std::time::Instant,
    x: Running,
    [j1, j2]: [Running; 2],
    j3: alloy::primitives::Address,
) -> Result<()> {
    let jury = [j1.address, j2.address, j3];
    let x_stake = contracts.validator_stake(x.address).await?;

    // The executor and the validator process stake when they start: wait for both.
    disputes::wait("the validator process's stake", STEP, || async {
        Ok((!contracts.validator_stake(j3).await?.is_zero()).then_some(()))
    })
    .await?;
    // The executor registers when it starts: wait for its stake.
    let executor_before = disputes::wait("the executor's stake", STEP, || async {
        let stake = contracts.executor_stake(executor).await?;
        Ok((stake.staked > 0).then_some(stake))
    })
    .await?;
    let executor_credits = contracts.escrow.credits(executor).call().await?;
    let (job_id, _) = net.post(net.spec(8).await?, PROMPT).await?;

    let dispute_id = contracts.wait_dispute(job_id, STEP).await?;
    let dispute = contracts.disputes.disputeOf(dispute_id).call().await?;
    ensure!(
        (dispute.challenger, dispute.executor) == (x.address, executor),
        "dispute parties {dispute:?}"
    );
    eprintln!("falsely challenged after {:?}", started.elapsed());
    let mut jurors = contracts.wait_jury(dispute_id, STEP).await?;
    jurors.sort();
    let mut expected = jury.to_vec();
    expected.sort();
    ensure!(jurors == expected, "jury {jurors:?}");
    let resolved = contracts.wait_resolved(dispute_id, STEP).await?;
    eprintln!("resolved after {:?}", started.elapsed());
    ensure!(
        !resolved.executorFaulty,
        "the honest executor was convicted"
    );
    ensure!(
        (resolved.faultyVotes, resolved.honestVotes) == (U256::ZERO, U256::from(3)),
        "votes {} faulty, {} honest",
        resolved.faultyVotes,
        resolved.honestVotes
    );
    ensure!(resolved.collateralSeized.is_zero());
    ensure!(net.status(job_id).await? == FINALIZED, "job not finalized");

    // ---- Not a base unit of stake lost; paid for the job; the bond less the jurors' part.
    let executor_after = contracts.executor_stake(executor).await?;
    ensure!(
        executor_after.staked == executor_before.staked
            && executor_after.locked == executor_before.locked,
        "executor stake {executor_before:?} -> {executor_after:?}"
    );
    let settlement = settlement_of(net, job_id).await?;
    ensure!(
        contracts.escrow.credits(executor).call().await? - executor_credits
            == settlement.payment - settlement.validatorFee,
        "the executor was not paid for the job"
    );
    let juror_bps = U256::from(contracts.disputes.jurorRewardBps().call().await?);
    let pool = dispute.bond * juror_bps / U256::from(BPS);
    ensure!(
        contracts.disputes.credits(executor).call().await? == dispute.bond - pool,
        "executor compensated {}",
        contracts.disputes.credits(executor).call().await?
    );
    let share = pool / U256::from(3);
    for juror in jury {
        let credited = contracts.disputes.credits(juror).call().await?;
        ensure!(
            credited == share,
            "juror {juror} credited {credited}, expected {share}"
        );
    }
    ensure!(resolved.burned == pool - share * U256::from(3));
    // The false challenger loses its bond, nothing else.
    ensure!(
        contracts
            .disputes
            .credits(x.address)
            .call()
            .await?
            .is_zero()
    );
    ensure!(contracts.validator_stake(x.address).await? == x_stake);

    for validator in [x, j1, j2] {
        validator.stop().await?;
    }
    eprintln!("total {:?}", started.elapsed());
    Ok(())
}

/// The settlement of a submitted job, from its `ResultSubmitted`.
async fn settlement_of(
    net: &Net,
    job_id: U256,
) -> Result<infera_chain::bindings::IJobEscrow::Settlement> {
    use alloy::{providers::Provider, rpc::types::Filter, sol_types::SolEvent};
    use infera_chain::bindings::JobEscrow;
    let filter = Filter::new()
        .address(net.devnet.deployment.job_escrow)
        .event_signature(JobEscrow::ResultSubmitted::SIGNATURE_HASH)
        .topic1(alloy::primitives::B256::from(job_id))
        .from_block(0);
    let logs = net.provider().get_logs(&filter).await?;
    let submitted = logs
        .first()
        .ok_or_else(|| eyre::eyre!("no ResultSubmitted"))?
        .log_decode::<JobEscrow::ResultSubmitted>()?;
    Ok(submitted.inner.data.settlement)
}
