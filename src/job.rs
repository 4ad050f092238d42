//! `infera job`: what a dApp does, from the command line — post a prompt to the job market with
//! its maximum cost in escrow, wait for an executor's result, and print it with its commitment —
//! or, with `--json`, as the [`Transcript`] `infera verify` checks.

use std::time::Duration;

use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::Filter,
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};
use infera_chain::bindings::{IJobEscrow, JobEscrow};
use infera_chain::{
    deploy::{ChainError, Deployment},
    market::{JobMarket, new_salt},
};
use infera_protocol::{
    FinishReason, SamplingParams, models::DEFAULT_MODEL, unpack_tokens, verify::Transcript,
};
use serde::Serialize;

/// What to post.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// The chain.
    pub rpc_url: alloy::transports::http::reqwest::Url,
    /// The JobEscrow contract.
    pub job_escrow: Address,
    /// The requester (pays the escrow).
    pub signer: PrivateKeySigner,
    /// The prompt: chat messages as JSON, or plain text.
    pub prompt: String,
    /// The model's registry id (default: the default model).
    pub model_id: B256,
    /// Most output tokens.
    pub max_tokens: u32,
    /// Most prompt tokens after the chat template.
    pub max_input_tokens: u32,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Highest prices accepted, base units per million tokens.
    pub max_input_price: u64,
    /// Highest prices accepted, base units per million tokens.
    pub max_output_price: u64,
    /// Seconds the executor has to deliver.
    pub deadline_secs: u64,
    /// How long to wait for the result.
    pub wait: Duration,
}

impl JobRequest {
    /// A request for `prompt` with devnet-friendly defaults.
    pub fn new(
        rpc_url: alloy::transports::http::reqwest::Url,
        job_escrow: Address,
        signer: PrivateKeySigner,
        prompt: String,
    ) -> Self {
        Self {
            rpc_url,
            job_escrow,
            signer,
            prompt,
            model_id: DEFAULT_MODEL.model_id(),
            max_tokens: 64,
            max_input_tokens: 512,
            sampling: SamplingParams::GREEDY,
            max_input_price: 1_000_000,
            max_output_price: 2_000_000,
            deadline_secs: 1_800,
            wait: Duration::from_secs(300),
        }
    }
}

/// What `infera job` prints.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    /// The job id.
    #[serde(serialize_with = "decimal")]
    pub job_id: U256,
    /// The posting transaction.
    pub tx_hash: B256,
    /// What was put in escrow.
    #[serde(serialize_with = "decimal")]
    pub escrow: U256,
    /// The executor that delivered.
    pub executor: Address,
    /// The salt the job was posted with (the requester's part of the seed).
    pub salt: B256,
    /// The sampling seed, fixed when the executor accepted the job.
    pub seed: B256,
    /// The output text.
    pub output: String,
    /// The output token ids.
    pub output_tokens: Vec<u32>,
    /// Prompt tokens counted.
    pub input_tokens: u32,
    /// 1 = stop, 2 = length.
    pub finish_reason: u8,
    /// The commitment the contract computed.
    pub commitment: B256,
    /// What the job costs (the rest of the escrow is refunded at finalization).
    #[serde(serialize_with = "decimal")]
    pub payment: U256,
    /// When the result can be finalized.
    pub challenge_end: u64,
    /// Everything needed to check the result by hand (`infera job --json` prints it).
    #[serde(skip)]
    pub transcript: Transcript,
}

/// Amounts and ids print in decimal, as users read them.
fn decimal<S: serde::Serializer>(value: &U256, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Why a job could not be run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A transaction or call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The node failed (credentials in URLs of the message masked).
    #[error("rpc: {}", infera_chain::redact::redact_text(&.0.to_string()))]
    Rpc(#[from] alloy::transports::TransportError),
    /// The chain's record of the result cannot be read as a transcript.
    #[error("job {job_id}: malformed result: {reason}")]
    Malformed {
        /// The job.
        job_id: U256,
        /// What is wrong.
        reason: String,
    },
    /// No result in time.
    #[error("no result for job {job_id} after {waited:?} (is an executor serving the model?)")]
    Timeout {
        /// The job.
        job_id: U256,
        /// How long it waited.
        waited: Duration,
    },
}

/// Posts the job (approving the escrow first when needed) and waits for its result.
///
/// # Errors
/// [`JobError`].
pub async fn post_and_wait(request: JobRequest) -> Result<JobOutcome, JobError> {
    let requester = request.signer.address();
    let provider: DynProvider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(request.signer.clone()))
        .connect_http(request.rpc_url.clone())
        .erased();
    let escrow = JobEscrow::new(request.job_escrow, provider.clone());
    let deployment = Deployment {
        chain_id: provider.get_chain_id().await?,
        token: escrow.token().call().await.map_err(ChainError::from)?,
        model_registry: escrow.registry().call().await.map_err(ChainError::from)?,
        staking: escrow.staking().call().await.map_err(ChainError::from)?,
        job_escrow: request.job_escrow,
        disputes: escrow.disputes().call().await.map_err(ChainError::from)?,
        deployed_at_block: 0,
    };
    let market = JobMarket::new(&deployment, provider.clone());
    let allowance = market
        .token
        .allowance(requester, request.job_escrow)
        .call()
        .await
        .map_err(ChainError::from)?;
    if allowance < U256::from(u64::MAX) {
        market.approve(request.job_escrow).await?;
    }
    let now = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await?
        .map_or(0, |block| block.header.timestamp);
    let spec = IJobEscrow::JobSpec {
        modelId: request.model_id,
        executor: Address::ZERO,
        callback: Address::ZERO,
        callbackGasLimit: 0,
        maxInputTokens: request.max_input_tokens,
        maxOutputTokens: request.max_tokens,
        maxInputPrice: request.max_input_price,
        maxOutputPrice: request.max_output_price,
        deadline: now + request.deadline_secs,
        sampling: request.sampling.into(),
        // Our contribution to the seed, committed now; the seed itself is fixed at acceptance.
        salt: new_salt(),
    };
    let (posted, receipt) = market
        .post_job(spec, Bytes::from(request.prompt.into_bytes()))
        .await?;
    let job_id = posted.jobId;
    tracing::info!(job_id = %job_id, tx_hash = %receipt.transaction_hash, escrow = %posted.job.escrow, "job posted; waiting for a result");
    let filter = Filter::new()
        .address(request.job_escrow)
        .event_signature(vec![
            JobEscrow::JobAccepted::SIGNATURE_HASH,
            JobEscrow::ResultSubmitted::SIGNATURE_HASH,
        ])
        .topic1(B256::from(job_id))
        .from_block(receipt.block_number.unwrap_or_default());
    let started = tokio::time::Instant::now();
    loop {
        let logs = provider.get_logs(&filter).await?;
        let accepted = logs
            .iter()
            .find_map(|log| log.log_decode::<JobEscrow::JobAccepted>().ok());
        let submitted = logs
            .iter()
            .find_map(|log| log.log_decode::<JobEscrow::ResultSubmitted>().ok());
        if let (Some(accepted), Some(submitted)) = (accepted, submitted) {
            let submitted = submitted.inner.data;
            let assignment = accepted.inner.data.assignment;
            let transcript = transcript(&posted.job, &posted.prompt, &assignment, &submitted)
                .map_err(|reason| JobError::Malformed { job_id, reason })?;
            return Ok(JobOutcome {
                job_id,
                tx_hash: receipt.transaction_hash,
                escrow: posted.job.escrow,
                executor: submitted.executor,
                salt: posted.job.spec.salt,
                seed: assignment.seed,
                output: String::from_utf8_lossy(&submitted.output).into_owned(),
                output_tokens: unpack_tokens(&submitted.outputTokens).unwrap_or_default(),
                input_tokens: submitted.inputTokens,
                finish_reason: submitted.finishReason,
                commitment: submitted.settlement.commitment,
                payment: submitted.settlement.payment,
                challenge_end: submitted.settlement.challengeEnd,
                transcript,
            });
        }
        if started.elapsed() > request.wait {
            return Err(JobError::Timeout {
                job_id,
                waited: request.wait,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The transcript of a submitted job from the chain's events: the terms and prompt of
/// `JobPosted`, the seed of `JobAccepted`, the result and commitment of `ResultSubmitted`. The
/// prompt ids are left empty: the chain carries only their hash (bound by the commitment), and
/// `infera verify` renders them from the prompt.
///
/// # Errors
/// A message when the output ids are not whole `uint32` words or the finish reason is unknown.
pub fn transcript(
    job: &IJobEscrow::Job,
    prompt: &[u8],
    assignment: &IJobEscrow::Assignment,
    submitted: &JobEscrow::ResultSubmitted,
) -> Result<Transcript, String> {
    let output_ids = unpack_tokens(&submitted.outputTokens).map_err(|e| e.to_string())?;
    let finish_reason =
        FinishReason::try_from(submitted.finishReason).map_err(|e| e.to_string())?;
    Ok(Transcript {
        model_id: job.spec.modelId,
        sampler_version: job.samplerVersion,
        sampling: job.spec.sampling.clone().into(),
        seed: assignment.seed,
        prompt: Some(String::from_utf8_lossy(prompt).into_owned()),
        prompt_ids: Vec::new(),
        output_tokens: u32::try_from(output_ids.len()).map_err(|e| e.to_string())?,
        output_ids,
        max_output_tokens: job.spec.maxOutputTokens,
        finish_reason,
        text: String::from_utf8_lossy(&submitted.output).into_owned(),
        input_tokens: submitted.inputTokens,
        commitment: submitted.settlement.commitment,
    })
}
