//! A typed client for the job market: one method per lifecycle step, each sending the transaction,
//! insisting it succeeded and returning what the step's event carries (the terms the next step
//! needs) together with the receipt.

use crate::bindings::{IJobEscrow, JobEscrow, MockSettlementToken, Staking};
use alloy::{
    primitives::{Address, B256, Bytes, U256, keccak256},
    providers::Provider,
    rpc::types::TransactionReceipt,
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};

use crate::deploy::{ChainError, Deployment, ensure_success};

/// Staking role of executors, as the `Staking.Role` enum encodes it.
pub const EXECUTOR_ROLE: u8 = 0;

/// The job market as seen by one signer.
#[derive(Debug, Clone)]
pub struct JobMarket<P> {
    /// JobEscrow.
    pub escrow: JobEscrow::JobEscrowInstance<P>,
    /// Staking.
    pub staking: Staking::StakingInstance<P>,
    /// The settlement token (only `mint` is specific to the devnet mock).
    pub token: MockSettlementToken::MockSettlementTokenInstance<P>,
}

/// A fresh salt for a job spec (`JobSpec.salt`, the requester's contribution to the seed), from
/// the operating system's CSPRNG (through a random secp256k1 key, hashed). Any value is valid: the
/// seed is fixed at acceptance from the job's terms, salt included, and the accepting block's
/// randomness, so the salt only has to be committed before that block exists; a fresh one gives
/// two jobs with otherwise equal terms, accepted in one block, different seeds.
pub fn new_salt() -> B256 {
    keccak256(PrivateKeySigner::random().to_bytes())
}

/// Decodes the first `E` event of a receipt.
pub fn event<E: SolEvent>(receipt: &TransactionReceipt) -> Result<E, ChainError> {
    receipt
        .decoded_log::<E>()
        .map(|log| log.data)
        .ok_or(ChainError::MissingEvent {
            event: E::SIGNATURE,
            tx_hash: receipt.transaction_hash,
        })
}

/// Sends a contract call and waits for a successful receipt.
macro_rules! send {
    ($call:expr, $what:literal) => {{
        let receipt = $call.send().await?.get_receipt().await?;
        ensure_success(receipt, $what)?
    }};
}

impl<P: Provider + Clone> JobMarket<P> {
    /// Handles on the deployed contracts through `provider` (which signs as the actor).
    pub fn new(deployment: &Deployment, provider: P) -> Self {
        Self {
            escrow: JobEscrow::new(deployment.job_escrow, provider.clone()),
            staking: Staking::new(deployment.staking, provider.clone()),
            token: MockSettlementToken::new(deployment.token, provider),
        }
    }

    /// Approves `spender` to pull any amount of the settlement token.
    pub async fn approve(&self, spender: Address) -> Result<TransactionReceipt, ChainError> {
        Ok(send!(
            self.token.approve(spender, U256::MAX),
            "token.approve"
        ))
    }

    /// Stakes as an executor, registers and prices `model_id` (per million tokens).
    pub async fn become_executor(
        &self,
        stake: U256,
        endpoint: &str,
        hardware: &str,
        model_id: B256,
        input_price: u64,
        output_price: u64,
    ) -> Result<(), ChainError> {
        self.approve(*self.staking.address()).await?;
        send!(self.staking.stake(EXECUTOR_ROLE, stake), "Staking.stake");
        send!(
            self.staking
                .registerExecutor(endpoint.to_owned(), hardware.to_owned()),
            "Staking.registerExecutor"
        );
        send!(
            self.staking.setPrice(model_id, input_price, output_price),
            "Staking.setPrice"
        );
        Ok(())
    }

    /// Posts a job; returns its id and terms.
    pub async fn post_job(
        &self,
        spec: IJobEscrow::JobSpec,
        prompt: Bytes,
    ) -> Result<(JobEscrow::JobPosted, TransactionReceipt), ChainError> {
        let receipt = send!(self.escrow.postJob(spec, prompt), "JobEscrow.postJob");
        Ok((event(&receipt)?, receipt))
    }

    /// Accepts a posted job; returns the assignment.
    pub async fn accept_job(
        &self,
        job_id: U256,
        job: IJobEscrow::Job,
    ) -> Result<(IJobEscrow::Assignment, TransactionReceipt), ChainError> {
        let receipt = send!(self.escrow.acceptJob(job_id, job), "JobEscrow.acceptJob");
        Ok((
            event::<JobEscrow::JobAccepted>(&receipt)?.assignment,
            receipt,
        ))
    }

    /// Submits a result; returns the `ResultSubmitted` event (settlement and output).
    pub async fn submit_result(
        &self,
        job_id: U256,
        job: IJobEscrow::Job,
        assignment: IJobEscrow::Assignment,
        result: IJobEscrow::Result,
    ) -> Result<(JobEscrow::ResultSubmitted, TransactionReceipt), ChainError> {
        let receipt = send!(
            self.escrow.submitResult(job_id, job, assignment, result),
            "JobEscrow.submitResult"
        );
        Ok((event(&receipt)?, receipt))
    }

    /// Finalizes a submitted job after its challenge window.
    pub async fn finalize(
        &self,
        job_id: U256,
        settlement: IJobEscrow::Settlement,
    ) -> Result<(JobEscrow::JobFinalized, TransactionReceipt), ChainError> {
        let receipt = send!(
            self.escrow.finalize(job_id, settlement),
            "JobEscrow.finalize"
        );
        Ok((event(&receipt)?, receipt))
    }

    /// Expires an accepted job past its deadline.
    pub async fn expire(
        &self,
        job_id: U256,
        job: IJobEscrow::Job,
        assignment: IJobEscrow::Assignment,
    ) -> Result<(JobEscrow::JobExpired, TransactionReceipt), ChainError> {
        let receipt = send!(
            self.escrow.expire(job_id, job, assignment),
            "JobEscrow.expire"
        );
        Ok((event(&receipt)?, receipt))
    }

    /// Cancels an unaccepted job.
    pub async fn cancel_job(
        &self,
        job_id: U256,
        job: IJobEscrow::Job,
    ) -> Result<(JobEscrow::JobCancelled, TransactionReceipt), ChainError> {
        let receipt = send!(self.escrow.cancelJob(job_id, job), "JobEscrow.cancelJob");
        Ok((event(&receipt)?, receipt))
    }

    /// Withdraws the signer's credited balance, plus its locked credit (no-show compensation) once
    /// released.
    pub async fn withdraw(&self) -> Result<(JobEscrow::Withdrawn, TransactionReceipt), ChainError> {
        let receipt = send!(self.escrow.withdraw(), "JobEscrow.withdraw");
        Ok((event(&receipt)?, receipt))
    }

    /// [`JobMarket::withdraw`], paid to `to`.
    pub async fn withdraw_to(
        &self,
        to: Address,
    ) -> Result<(JobEscrow::Withdrawn, TransactionReceipt), ChainError> {
        let receipt = send!(self.escrow.withdrawTo(to), "JobEscrow.withdrawTo");
        Ok((event(&receipt)?, receipt))
    }
}
