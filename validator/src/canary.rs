//! Canaries: jobs whose answer the validator knows is bad. Through an executor identity of its own
//! (`canary_executor_key`, staked as an executor and registered for the default model) it posts a
//! job designated to that identity, accepts it, submits a fabricated result with a consistent
//! commitment, and challenges it itself. Honest jurors vote Faulty; a juror that votes Honest (one
//! that approves without checking) ends in the minority and loses its penalty stake. Each canary
//! and its outcome is logged and kept in the database.

use alloy::{
    primitives::{Address, Bytes, U256, keccak256},
    sol_types::SolValue,
};
use infera_chain::{
    bindings::{IJobEscrow, JobEscrow},
    market::{EXECUTOR_ROLE, new_salt},
    tx::TxManager,
};
use infera_protocol::{
    FinishReason, SamplingParams, models::DEFAULT_MODEL, pack_tokens, prompt::Prompt, tokens_hash,
};

use crate::{
    Inner, StepError, ValidatorError,
    audit::{PPM, fabricated_ids},
    chain::{SendError, step_with},
    disputes::{phase, vote},
    settle_in_flight,
    store::{Audit, CanaryRow, JobRow},
};

/// The prompt canaries are posted with.
pub const CANARY_PROMPT: &str = "Name the three primary colours of light.";
/// Output tokens a canary asks for (and the fabricated result fills).
pub const CANARY_OUTPUT_TOKENS: u32 = 8;

/// The executor identity canaries are planted through.
#[derive(Debug)]
pub struct CanaryExecutor {
    /// Its transaction manager (its own nonce; logged in the validator's database).
    pub manager: TxManager,
}

/// Stakes the canary identity as an executor, registers it and prices the default model (each
/// only when missing), and lets the escrow pull the validator's canary escrows.
pub(crate) async fn register(inner: &Inner) -> Result<(), ValidatorError> {
    let Some(canary) = &inner.canary else {
        return Ok(());
    };
    let chain = &inner.chain;
    let manager = &canary.manager;
    let me = manager.address();
    settle_in_flight(manager, &["approve", "stake", "register", "price"]).await?;
    let send = |kind: &'static str, request| async move {
        let pending = manager
            .send(kind, None, request)
            .await
            .map_err(SendError::from)?;
        pending.confirmed().await.map_err(SendError::from)
    };
    let staked = U256::from(
        chain
            .staking
            .stakeOf(me, EXECUTOR_ROLE)
            .call()
            .await
            .map_err(SendError::from)?
            .staked,
    );
    let wanted = inner.config.canary_executor_stake;
    if staked < wanted {
        let missing = wanted - staked;
        send(
            "approve",
            chain
                .token
                .approve(*chain.staking.address(), missing)
                .into_transaction_request(),
        )
        .await?;
        send(
            "stake",
            chain
                .staking
                .stake(EXECUTOR_ROLE, missing)
                .into_transaction_request(),
        )
        .await?;
    }
    let profile = chain
        .staking
        .executorProfile(me)
        .call()
        .await
        .map_err(SendError::from)?;
    if !profile.registered {
        send(
            "register",
            chain
                .staking
                .registerExecutor("http://127.0.0.1:1".into(), "cpu".into())
                .into_transaction_request(),
        )
        .await?;
    }
    let model = DEFAULT_MODEL.model_id();
    let price = chain
        .staking
        .priceOf(me, model)
        .call()
        .await
        .map_err(SendError::from)?;
    if !price.active {
        send(
            "price",
            chain
                .staking
                .setPrice(model, 100_000, 400_000)
                .into_transaction_request(),
        )
        .await?;
    }
    tracing::info!(canary_executor = %me, "canary executor ready");
    Ok(())
}

/// Plants canaries at the configured rate and drives them to their outcome.
pub(crate) async fn canary_loop(inner: &Inner) {
    loop {
        if let Err(error) = tick(inner).await {
            tracing::warn!(%error, "canary pass failed; trying again");
        }
        if !inner.pause(inner.config.poll_interval()).await {
            return;
        }
    }
}

async fn tick(inner: &Inner) -> Result<(), StepError> {
    let store = inner.chain.store();
    let now = inner.chain.now().await?;
    let period = now / inner.config.canary_period_secs;
    if store.meta("canary_period").await?.as_deref() != Some(&period.to_string()) {
        store.set_meta("canary_period", &period.to_string()).await?;
        let planted = store.canaries().await?.len() as u64;
        let draw = U256::from_be_bytes(keccak256(new_salt()).0) % U256::from(PPM);
        if inner.config.max_canaries.is_none_or(|max| planted < max)
            && draw < U256::from(inner.config.canary_rate_ppm)
        {
            let seq = store.new_canary().await?;
            tracing::info!(canary = seq, "planting a canary");
        }
    }
    for canary in store.canaries().await? {
        if matches!(canary.stage.as_str(), "resolved" | "failed") {
            continue;
        }
        let seq = canary.seq;
        if let Err(error) = drive(inner, canary).await {
            if let StepError::Send(send) = &error
                && send.is_transient()
            {
                return Err(error);
            }
            tracing::warn!(canary = seq, %error, "canary step failed");
        }
    }
    Ok(())
}

async fn drive(inner: &Inner, canary: CanaryRow) -> Result<(), StepError> {
    let chain = &inner.chain;
    let store = chain.store();
    let Some(executor) = &inner.canary else {
        return Ok(());
    };
    let seq = canary.seq;
    let key = U256::from(seq);
    let job = match canary.job_id {
        Some(job_id) => store.job(job_id).await?,
        None => None,
    };
    match (canary.stage.as_str(), job) {
        ("planting", _) => {
            let spec = IJobEscrow::JobSpec {
                modelId: DEFAULT_MODEL.model_id(),
                executor: executor.manager.address(),
                callback: Address::ZERO,
                callbackGasLimit: 0,
                maxInputTokens: 256,
                maxOutputTokens: CANARY_OUTPUT_TOKENS,
                maxInputPrice: 1_000_000,
                maxOutputPrice: 2_000_000,
                deadline: chain.now().await? + 1_800,
                sampling: SamplingParams {
                    temperature_ppm: 800_000,
                    top_k: 40,
                    top_p_ppm: 950_000,
                }
                .into(),
                salt: new_salt(),
            };
            let cost = chain.escrow.maxCost(spec.clone()).call().await?;
            let escrow = *chain.escrow.address();
            if chain.token.allowance(chain.address, escrow).call().await? < cost {
                let approve = chain.token.approve(escrow, U256::MAX);
                chain
                    .step("canary-approve", key, approve.into_transaction_request())
                    .await?;
            }
            let call = chain
                .escrow
                .postJob(spec, Bytes::from(CANARY_PROMPT.as_bytes().to_vec()));
            let receipt = chain
                .step("canary-post", key, call.into_transaction_request())
                .await?;
            let posted = receipt
                .decoded_log::<JobEscrow::JobPosted>()
                .map(|log| log.data)
                .ok_or_else(|| StepError::Refused("postJob emitted no JobPosted".into()))?;
            store
                .put_job(&JobRow {
                    job_id: posted.jobId,
                    job: posted.job,
                    prompt: posted.prompt,
                    posted_block: receipt.block_number.unwrap_or_default(),
                    assignment: None,
                    result: None,
                    settlement: None,
                    submitted: None,
                    audit: Audit::Own,
                    verdict: None,
                })
                .await?;
            store
                .set_canary(seq, Some(posted.jobId), "posted", None)
                .await?;
            tracing::info!(canary = seq, job_id = %posted.jobId, tx_hash = %receipt.transaction_hash, "canary posted");
        }
        ("posted", Some(mut job)) => {
            let call = chain.escrow.acceptJob(job.job_id, job.job.clone());
            let receipt = step_with(
                &executor.manager,
                &chain.provider,
                "accept",
                job.job_id,
                call.into_transaction_request(),
            )
            .await?;
            let accepted = receipt
                .decoded_log::<JobEscrow::JobAccepted>()
                .map(|log| log.data.assignment)
                .ok_or_else(|| StepError::Refused("acceptJob emitted no JobAccepted".into()))?;
            job.assignment = Some(accepted);
            store.put_job(&job).await?;
            store.set_canary(seq, None, "accepted", None).await?;
        }
        ("accepted", Some(mut job)) => {
            let Some(assignment) = job.assignment.clone() else {
                return Err(StepError::Refused(
                    "accepted canary without assignment".into(),
                ));
            };
            let engine = inner.checker.engine();
            let prompt =
                Prompt::parse(&job.prompt).map_err(|e| StepError::Refused(e.to_string()))?;
            let prompt_ids = engine.render(&prompt).await?;
            let output_ids = fabricated_ids(assignment.seed, job.job.spec.maxOutputTokens);
            let text = engine.detokenize(&output_ids).await?;
            let result = IJobEscrow::Result {
                inputTokens: u32::try_from(prompt_ids.len()).unwrap_or(u32::MAX),
                finishReason: FinishReason::Length.as_u8(),
                promptTokensHash: tokens_hash(&prompt_ids),
                outputTokens: Bytes::from(pack_tokens(&output_ids)),
                output: Bytes::from(text.into_bytes()),
            };
            let call =
                chain
                    .escrow
                    .submitResult(job.job_id, job.job.clone(), assignment, result.clone());
            let receipt = step_with(
                &executor.manager,
                &chain.provider,
                "submit",
                job.job_id,
                call.into_transaction_request(),
            )
            .await?;
            let submitted = receipt
                .decoded_log::<JobEscrow::ResultSubmitted>()
                .map(|log| log.data)
                .ok_or_else(|| {
                    StepError::Refused("submitResult emitted no ResultSubmitted".into())
                })?;
            job.result = Some(result);
            job.settlement = Some(submitted.settlement);
            job.submitted = Some((
                receipt.block_number.unwrap_or_default(),
                receipt.block_hash.unwrap_or_default(),
            ));
            store.put_job(&job).await?;
            store.set_canary(seq, None, "submitted", None).await?;
            tracing::info!(canary = seq, job_id = %job.job_id, "canary result submitted (fabricated)");
        }
        ("submitted", Some(job)) => {
            inner.challenge_job(&job).await?;
            let dispute = chain
                .disputes
                .disputeOfClaim(*chain.escrow.address(), job.job_id)
                .call()
                .await?;
            if dispute.is_zero() {
                return Ok(());
            }
            store.set_canary(seq, None, "challenged", None).await?;
            tracing::info!(canary = seq, job_id = %job.job_id, dispute_id = %dispute, "canary challenged");
        }
        ("challenged", Some(job)) => {
            let id = chain
                .disputes
                .disputeOfClaim(*chain.escrow.address(), job.job_id)
                .call()
                .await?;
            let dispute = chain.disputes.disputeOf(id).call().await?;
            if dispute.phase != phase::RESOLVED {
                return Ok(());
            }
            let mut approved = Vec::new();
            let mut silent = Vec::new();
            for juror in chain.disputes.jurorsOf(id).call().await? {
                match chain.disputes.ballotOf(id, juror).call().await?.vote {
                    vote::HONEST => approved.push(juror),
                    vote::FAULTY => {}
                    _ => silent.push(juror),
                }
            }
            let outcome = serde_json::json!({
                "dispute_id": id.to_string(),
                "executor_faulty": dispute.executorFaulty,
                "approved_by": approved.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
                "not_revealed_by": silent.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            })
            .to_string();
            store
                .set_canary(seq, None, "resolved", Some(&outcome))
                .await?;
            if approved.is_empty() {
                tracing::info!(canary = seq, job_id = %job.job_id, dispute_id = %id, executor_faulty = dispute.executorFaulty, "canary resolved: no juror approved it");
            } else {
                tracing::warn!(canary = seq, job_id = %job.job_id, dispute_id = %id, executor_faulty = dispute.executorFaulty, approved_by = ?approved, "canary resolved: jurors approved a known-bad result");
            }
        }
        (stage, None) => {
            store
                .set_canary(
                    seq,
                    None,
                    "failed",
                    Some(&format!("no job at stage {stage}")),
                )
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// The terms a canary was challenged with (for tests): `abi.encode(settlement)`.
pub fn terms(settlement: &IJobEscrow::Settlement) -> Bytes {
    Bytes::from(settlement.abi_encode())
}
