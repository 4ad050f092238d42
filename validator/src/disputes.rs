//! The validator in disputes: it follows every dispute of the escrow's claims (state read from the
//! dispute contract each tick, so a reorganisation changes nothing it relies on), draws the jury
//! of those it opened, votes when drawn (check, commit with a salt stored first, reveal once
//! allowed) and resolves those that can be.

use std::{sync::Arc, time::Duration};

use alloy::{
    primitives::{Address, B256, Bytes, U256, keccak256},
    providers::Provider,
    sol_types::SolValue,
};

use infera_chain::bindings::{Disputes, IDisputes};

use crate::{
    Inner, StepError,
    chain::SendError,
    store::{Audit, DisputeRow},
};

/// Blocks after a dispute's draw block before validators other than its challenger draw the jury
/// (so a challenger that went away does not leave it undrawn).
const DRAW_GRACE_BLOCKS: u64 = 5;

/// Seconds past a dispute's reveal deadline before validators other than its challenger resolve it.
const RESOLVE_GRACE_SECS: u64 = 120;

/// The commitment of a vote, as `Disputes.revealVote` checks it:
/// `keccak256(abi.encode(disputeId, juror, vote, salt))`.
pub fn vote_commitment(dispute_id: U256, juror: Address, vote: u8, salt: B256) -> B256 {
    keccak256((dispute_id, juror, U256::from(vote), salt).abi_encode())
}

/// `IDisputes.Phase` values.
pub(crate) mod phase {
    pub const DRAWING: u8 = 1;
    pub const VOTING: u8 = 2;
    pub const RESOLVED: u8 = 3;
}

/// `IDisputes.Vote` values.
pub(crate) mod vote {
    pub const NONE: u8 = 0;
    pub const HONEST: u8 = 1;
    pub const FAULTY: u8 = 2;
}

impl Inner {
    pub(crate) async fn dispute_loop(self: Arc<Self>) {
        let mut last_withdraw = tokio::time::Instant::now();
        loop {
            if let Err(error) = self.disputes_tick().await {
                tracing::warn!(%error, "dispute pass failed; trying again");
            }
            let interval = self.config.withdraw_interval_secs;
            if interval > 0 && last_withdraw.elapsed() >= Duration::from_secs(interval) {
                last_withdraw = tokio::time::Instant::now();
                if let Err(error) = crate::withdraw_credits(&self.chain).await {
                    tracing::warn!(%error, "withdrawing credits failed");
                }
            }
            if !self.pause(self.config.poll_interval()).await {
                return;
            }
        }
    }

    async fn disputes_tick(&self) -> Result<(), StepError> {
        self.discover_disputes().await?;
        for row in self.chain.store().open_disputes().await? {
            let dispute_id = row.dispute_id;
            if let Err(error) = self.drive_dispute(row).await {
                tracing::warn!(dispute_id = %dispute_id, %error, "dispute step failed; will retry");
            }
            if *self.stop.borrow() {
                break;
            }
        }
        Ok(())
    }

    /// Follows the disputes opened since the last look (those about the escrow's claims).
    async fn discover_disputes(&self) -> Result<(), StepError> {
        let store = self.chain.store();
        let mut next: U256 = match store.meta("next_dispute").await? {
            Some(value) => value.parse().unwrap_or(U256::from(1)),
            None => U256::from(1),
        };
        let end = self.chain.disputes.nextDisputeId().call().await?;
        let escrow = *self.chain.escrow.address();
        while next < end {
            let dispute = self.chain.disputes.disputeOf(next).call().await?;
            if dispute.source == escrow {
                store
                    .follow_dispute(
                        next,
                        dispute.claimId,
                        dispute.challenger == self.chain.address,
                    )
                    .await?;
                tracing::info!(dispute_id = %next, job_id = %dispute.claimId, challenger = %dispute.challenger, "dispute found");
            }
            next += U256::from(1);
            store.set_meta("next_dispute", &next.to_string()).await?;
        }
        Ok(())
    }

    async fn drive_dispute(&self, row: DisputeRow) -> Result<(), StepError> {
        let chain = &self.chain;
        let store = chain.store();
        let id = row.dispute_id;
        let me = chain.address;
        let dispute = chain.disputes.disputeOf(id).call().await?;
        let block = chain.provider.get_block_number().await?;
        let now = chain.now().await?;
        match dispute.phase {
            phase::DRAWING => {
                let mine = dispute.challenger == me;
                if block > dispute.drawBlock
                    && now < dispute.commitEnd
                    && (mine || block > dispute.drawBlock + DRAW_GRACE_BLOCKS)
                {
                    let call = chain.disputes.drawJury(id);
                    // One step per draw block: a draw that seated nobody re-arms on a later block
                    // and must be sent again, not read back from the log.
                    let kind = format!("draw@{}", dispute.drawBlock);
                    match chain.step(&kind, id, call.into_transaction_request()).await {
                        Ok(receipt) => match receipt.decoded_log::<Disputes::JuryDrawn>() {
                            Some(log) => {
                                tracing::info!(dispute_id = %id, tx_hash = %receipt.transaction_hash, block = receipt.block_number, jurors = ?log.data.jurors, "jury drawn");
                            }
                            None => {
                                tracing::info!(dispute_id = %id, tx_hash = %receipt.transaction_hash, block = receipt.block_number, "draw re-armed: nobody could be seated yet");
                            }
                        },
                        Err(error @ (SendError::Chain(_) | SendError::Reverted { .. })) => {
                            tracing::debug!(dispute_id = %id, %error, "draw refused (drawn by someone else?)");
                        }
                        Err(error) => return Err(error.into()),
                    }
                } else if now >= dispute.commitEnd {
                    // Nobody drew in time: resolvable as honest.
                    self.resolve(&row, &dispute).await?;
                }
            }
            phase::VOTING => {
                let jurors = chain.disputes.jurorsOf(id).call().await?;
                if jurors.contains(&me) {
                    if !row.juror {
                        store.set_juror(id).await?;
                        tracing::info!(dispute_id = %id, job_id = %row.job_id, "drawn as a juror");
                    }
                    self.vote(&row, &dispute, &jurors, now).await?;
                }
                // Resolvable once every juror revealed or the reveal deadline passed.
                let mut revealed = 0usize;
                for juror in &jurors {
                    if chain.disputes.ballotOf(id, *juror).call().await?.vote != vote::NONE {
                        revealed += 1;
                    }
                }
                // The challenger resolves as soon as it can; the others (anyone may) after a
                // grace past the reveal deadline, so that one transaction, not several, closes it.
                if (revealed == jurors.len() || now >= dispute.revealEnd)
                    && (row.challenger || now >= dispute.revealEnd + RESOLVE_GRACE_SECS)
                {
                    self.resolve(&row, &dispute).await?;
                }
            }
            phase::RESOLVED => {
                let outcome = if dispute.executorFaulty {
                    "faulty"
                } else {
                    "honest"
                };
                store.set_resolved(id, outcome).await?;
                tracing::info!(dispute_id = %id, job_id = %row.job_id, outcome, "dispute resolved");
            }
            _ => {}
        }
        Ok(())
    }

    /// A juror's part: decide (check), commit, reveal.
    async fn vote(
        &self,
        row: &DisputeRow,
        dispute: &IDisputes::Dispute,
        jurors: &[Address],
        now: u64,
    ) -> Result<(), StepError> {
        let chain = &self.chain;
        let store = chain.store();
        let id = row.dispute_id;
        let me = chain.address;
        let ballot = chain.disputes.ballotOf(id, me).call().await?;
        if ballot.commitment == B256::ZERO {
            if now >= dispute.commitEnd {
                return Ok(());
            }
            let (vote, salt) = match (row.vote, row.salt) {
                (Some(vote), Some(salt)) => (vote, salt),
                _ => {
                    let honest = if self.config.faults.always_approve {
                        true
                    } else {
                        let job = self.job(row.job_id).await?.ok_or_else(|| {
                            StepError::Refused(format!("job {} not found", row.job_id))
                        })?;
                        let (honest, verdict) = match &job.verdict {
                            Some(verdict)
                                if matches!(
                                    job.audit,
                                    Audit::Honest
                                        | Audit::Fraud
                                        | Audit::Challenged
                                        | Audit::Missed
                                ) =>
                            {
                                (verdict_is_honest(verdict), verdict.clone())
                            }
                            _ => self.verdict(&job).await?,
                        };
                        store.set_verdict(row.job_id, &verdict).await?;
                        honest
                    };
                    let vote = if honest { 1 } else { 2 };
                    // Decided once and stored before the commitment is sent: a restart reveals
                    // exactly what was committed.
                    store
                        .decide_vote(id, vote, infera_chain::market::new_salt())
                        .await?
                }
            };
            let commitment = vote_commitment(id, me, vote, salt);
            let call = chain.disputes.commitVote(id, commitment);
            let receipt = chain
                .step("commit", id, call.into_transaction_request())
                .await?;
            store.set_committed(id).await?;
            tracing::info!(dispute_id = %id, job_id = %row.job_id, vote = if vote == 2 { "faulty" } else { "honest" }, tx_hash = %receipt.transaction_hash, block = receipt.block_number, "vote committed");
            if self.config.faults.stop_after_commit {
                tracing::warn!(dispute_id = %id, "stop_after_commit: stopping (fault injection)");
                let _ = self.stop.send(true);
            }
            return Ok(());
        }
        if !row.committed {
            store.set_committed(id).await?;
        }
        if ballot.vote != vote::NONE {
            if !row.revealed {
                store.set_revealed(id).await?;
            }
            return Ok(());
        }
        if self.config.faults.never_reveal || now >= dispute.revealEnd {
            return Ok(());
        }
        let mut committed = 0usize;
        for juror in jurors {
            if chain.disputes.ballotOf(id, *juror).call().await?.commitment != B256::ZERO {
                committed += 1;
            }
        }
        if committed < jurors.len() && now < dispute.commitEnd {
            return Ok(());
        }
        let (Some(vote), Some(salt)) = (row.vote, row.salt) else {
            tracing::error!(dispute_id = %id, "committed but the vote and salt are not in the database: cannot reveal");
            return Ok(());
        };
        let call = chain.disputes.revealVote(id, vote, salt);
        let receipt = chain
            .step("reveal", id, call.into_transaction_request())
            .await?;
        store.set_revealed(id).await?;
        tracing::info!(dispute_id = %id, job_id = %row.job_id, tx_hash = %receipt.transaction_hash, block = receipt.block_number, "vote revealed");
        Ok(())
    }

    /// Resolves a dispute (anyone may): the terms are the job's settlement as challenged.
    async fn resolve(
        &self,
        row: &DisputeRow,
        dispute: &IDisputes::Dispute,
    ) -> Result<(), StepError> {
        let chain = &self.chain;
        let id = row.dispute_id;
        let Some(job) = self.job(row.job_id).await? else {
            return Err(StepError::Refused(format!("job {} not found", row.job_id)));
        };
        let Some(settlement) = &job.settlement else {
            return Err(StepError::Refused(format!(
                "job {} has no settlement",
                row.job_id
            )));
        };
        let terms = Bytes::from(settlement.abi_encode());
        if keccak256(&terms) != dispute.termsHash {
            return Err(StepError::Refused(format!(
                "dispute {id}: the job's settlement does not match the terms challenged"
            )));
        }
        let call = chain.disputes.resolve(id, terms);
        match chain
            .step("resolve", id, call.into_transaction_request())
            .await
        {
            Ok(receipt) => {
                let resolved = receipt
                    .decoded_log::<Disputes::DisputeResolved>()
                    .map(|log| log.data);
                if let Some(resolved) = resolved {
                    tracing::info!(
                        dispute_id = %id,
                        job_id = %row.job_id,
                        executor_faulty = resolved.executorFaulty,
                        faulty_votes = %resolved.faultyVotes,
                        honest_votes = %resolved.honestVotes,
                        seized = %resolved.collateralSeized,
                        burned = %resolved.burned,
                        tx_hash = %receipt.transaction_hash,
                        block = receipt.block_number,
                        "dispute resolved"
                    );
                }
                Ok(())
            }
            Err(error @ (SendError::Chain(_) | SendError::Reverted { .. })) => {
                tracing::debug!(dispute_id = %id, %error, "resolve refused (resolved by someone else?)");
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Whether a stored verdict (JSON) says honest.
fn verdict_is_honest(verdict: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(verdict)
        .ok()
        .and_then(|v| {
            v.get("verdict")
                .and_then(|v| v.as_str())
                .map(|v| v == "honest")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commitment is `keccak256(abi.encode(uint256, address, uint8, bytes32))`: four words.
    #[test]
    fn the_vote_commitment_is_the_abi_encoding_the_contract_hashes() {
        let (id, juror, salt) = (
            U256::from(7),
            Address::repeat_byte(0x11),
            B256::repeat_byte(0x22),
        );
        let mut words = Vec::new();
        words.extend_from_slice(&B256::from(id).0);
        words.extend_from_slice(&B256::left_padding_from(juror.as_slice()).0);
        words.extend_from_slice(&B256::with_last_byte(2).0);
        words.extend_from_slice(&salt.0);
        assert_eq!(vote_commitment(id, juror, 2, salt), keccak256(&words));
        assert_ne!(
            vote_commitment(id, juror, 1, salt),
            vote_commitment(id, juror, 2, salt)
        );
    }

    #[test]
    fn stored_verdicts_are_read_back() {
        assert!(verdict_is_honest(
            r#"{"verdict":"honest","failed_rules":[]}"#
        ));
        assert!(!verdict_is_honest(r#"{"verdict":"fraud"}"#));
        assert!(!verdict_is_honest("not json"));
    }
}
