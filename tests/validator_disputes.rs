//! A cheating executor is audited, challenged and convicted by validators running the real model,
//! while one juror never reveals and another is stopped right after committing and restarted on
//! the same database:
//!
//! - validator A audits every job (audit rate 100 %), finds the fabricated output, challenges;
//! - the jury is B, C and N (every other validator: the jury has as many seats as validators);
//! - B stops right after its commitment is mined (`stop_after_commit`) and is started again on its
//!   database: it still reveals, before the reveal deadline, the vote it committed;
//! - N commits and never reveals (`never_reveal`): once the reveal deadline passes the dispute is
//!   resolved, and N loses exactly its juror penalty;
//! - the cheater's collateral is seized, the requester refunded its escrow in full, the challenger
//!   gets its bond back plus its share, B and C share the jurors' part plus N's penalty.
//!
//! Every amount is checked against the contracts, to the base unit.

mod common;

use std::time::Duration;

use alloy::primitives::U256;
use common::{
    Net,
    disputes::{self, Cheater, Contracts, Miner, Running, STEP, validator_config},
    require_model,
};
use eyre::{Result, ensure};
use infera_validator::Faults;

const PROMPT: &[u8] = b"Name three prime numbers.";
const BPS: u64 = 10_000;
/// `IJobEscrow.JobStatus.Rejected`.
const REJECTED: u8 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cheater_is_convicted_a_silent_juror_penalised_and_a_restarted_juror_reveals()
-> Result<()> {
    require_model()?;
    disputes::init_logs();
    let started = std::time::Instant::now();
    let net = Net::start("validator-disputes").await?;
    // Validators 5 (A, auditor), 6 (B, restarted), 7 (C), 8 (N, silent); the cheater is 9.
    disputes::fund(&net, &[5, 6, 7, 8, 9]).await?;
    disputes::set_jury_size(&net, 15).await?;
    let _miner = Miner::start(&net, Duration::from_millis(500));
    let checker = disputes::checker().await?;
    let contracts = Contracts::new(&net);

    let a = Running::start(
        &net,
        5,
        ValidatorConfigExt::auditing(validator_config(&net, 5)?),
        &checker,
    )
    .await?;
    let b_config = validator_config(&net, 6)?;
    let b = Running::start(
        &net,
        6,
        infera_validator::ValidatorConfig {
            faults: Faults {
                stop_after_commit: true,
                ..Faults::default()
            },
            ..b_config.clone()
        },
        &checker,
    )
    .await?;
    let c = Running::start(&net, 7, validator_config(&net, 7)?, &checker).await?;
    let n = Running::start(
        &net,
        8,
        infera_validator::ValidatorConfig {
            faults: Faults {
                never_reveal: true,
                ..Faults::default()
            },
            ..validator_config(&net, 8)?
        },
        &checker,
    )
    .await?;
    let (a_addr, b_addr, c_addr, n_addr) = (a.address, b.address, c.address, n.address);
    let stake_before = [
        contracts.validator_stake(b_addr).await?,
        contracts.validator_stake(c_addr).await?,
        contracts.validator_stake(n_addr).await?,
    ];

    // ---- The cheat.
    let cheater = Cheater::register(&net, 9).await?;
    let cheater_before = contracts.executor_stake(cheater.actor.address).await?;
    let requester_credits = contracts
        .escrow
        .credits(net.requester.address)
        .call()
        .await?;
    let (job_id, settlement) = cheater.cheat(&net, &checker, 8, PROMPT).await?;
    eprintln!("cheat submitted after {:?}", started.elapsed());

    // ---- A audits and challenges; the jury is everyone else.
    let dispute_id = contracts.wait_dispute(job_id, STEP).await?;
    let dispute = contracts.disputes.disputeOf(dispute_id).call().await?;
    ensure!(
        dispute.challenger == a_addr,
        "challenged by {}",
        dispute.challenger
    );
    eprintln!("challenged after {:?}", started.elapsed());
    let mut jurors = contracts.wait_jury(dispute_id, STEP).await?;
    jurors.sort();
    let mut expected = vec![b_addr, c_addr, n_addr];
    expected.sort();
    ensure!(jurors == expected, "jury {jurors:?}");

    // ---- B stops right after committing; started again on its database, it reveals.
    tokio::time::timeout(STEP, async {
        while !b.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await?;
    b.stop().await?;
    let b_ballot = contracts
        .disputes
        .ballotOf(dispute_id, b_addr)
        .call()
        .await?;
    ensure!(
        !b_ballot.commitment.is_zero() && b_ballot.vote == 0,
        "B stopped without committing, or revealed"
    );
    contracts
        .wait_committed(dispute_id, &[b_addr, c_addr, n_addr], STEP)
        .await?;
    let b = Running::start(&net, 6, b_config, &checker).await?;
    let votes = contracts
        .wait_revealed(dispute_id, &[b_addr, c_addr], STEP)
        .await?;
    ensure!(votes == vec![2, 2], "B and C voted {votes:?} (2 = faulty)");
    let now = net.now().await?;
    ensure!(
        now < dispute.revealEnd,
        "revealed after the reveal deadline"
    );
    eprintln!("revealed after {:?}", started.elapsed());

    // ---- N never reveals: past the reveal deadline the dispute is resolved.
    net.advance(dispute.revealEnd - now + 1).await?;
    let resolved = contracts.wait_resolved(dispute_id, STEP).await?;
    eprintln!("resolved after {:?}", started.elapsed());
    ensure!(resolved.executorFaulty, "the cheater was found honest");
    ensure!(
        (resolved.faultyVotes, resolved.honestVotes) == (U256::from(2), U256::ZERO),
        "votes {} faulty, {} honest",
        resolved.faultyVotes,
        resolved.honestVotes
    );
    ensure!(net.status(job_id).await? == REJECTED, "job not rejected");

    // ---- Every amount, to the base unit.
    let seized = resolved.collateralSeized;
    ensure!(
        seized == settlement.collateral,
        "seized {seized}, collateral {}",
        settlement.collateral
    );
    let cheater_after = contracts.executor_stake(cheater.actor.address).await?;
    ensure!(
        U256::from(cheater_after.staked) == U256::from(cheater_before.staked) - seized,
        "cheater stake {} -> {}",
        cheater_before.staked,
        cheater_after.staked
    );
    ensure!(
        cheater_after.locked == cheater_before.locked,
        "collateral still locked"
    );
    let refunded = contracts
        .escrow
        .credits(net.requester.address)
        .call()
        .await?
        - requester_credits;
    ensure!(
        refunded == settlement.escrow,
        "requester refunded {refunded} of {}",
        settlement.escrow
    );
    let challenger_bps = U256::from(contracts.disputes.challengerRewardBps().call().await?);
    let juror_bps = U256::from(contracts.disputes.jurorRewardBps().call().await?);
    let bps = U256::from(BPS);
    let penalty = dispute.jurorPenalty;
    let challenger_share = seized * challenger_bps / bps;
    ensure!(
        contracts.disputes.credits(a_addr).call().await? == dispute.bond + challenger_share,
        "challenger credited {}",
        contracts.disputes.credits(a_addr).call().await?
    );
    let pool = seized * juror_bps / bps + penalty;
    let share = pool / U256::from(2);
    for juror in [b_addr, c_addr] {
        let credited = contracts.disputes.credits(juror).call().await?;
        ensure!(
            credited == share,
            "juror {juror} credited {credited}, expected {share}"
        );
    }
    ensure!(contracts.disputes.credits(n_addr).call().await?.is_zero());
    ensure!(
        resolved.burned
            == seized - challenger_share - seized * juror_bps / bps
                + (pool - share * U256::from(2)),
        "burned {}",
        resolved.burned
    );
    let stake_after = [
        contracts.validator_stake(b_addr).await?,
        contracts.validator_stake(c_addr).await?,
        contracts.validator_stake(n_addr).await?,
    ];
    ensure!(
        stake_after == [stake_before[0], stake_before[1], stake_before[2] - penalty],
        "validator stakes {stake_before:?} -> {stake_after:?}"
    );

    for validator in [a, b, c, n] {
        validator.stop().await?;
    }
    eprintln!("total {:?}", started.elapsed());
    Ok(())
}

/// Configuration shorthands.
trait ValidatorConfigExt {
    fn auditing(self) -> Self;
}

impl ValidatorConfigExt for infera_validator::ValidatorConfig {
    /// Audits every job.
    fn auditing(self) -> Self {
        Self {
            audit_rate_ppm: Some(1_000_000),
            ..self
        }
    }
}
