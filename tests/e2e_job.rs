//! End to end on a real anvil chain: the contracts are deployed through the generated bindings and
//! whole jobs run through them — post → accept → submit → finalize → withdraw, and the timeout
//! paths — with every balance checked to the base unit, and the seed fixed at acceptance checked
//! against its definition.

use alloy::sol_types::SolValue;
use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, U256, aliases::U96, keccak256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use eyre::{Result, ensure, eyre};
use infera::{
    deploy::MarketParams,
    devnet::{self, Devnet, DevnetConfig},
    market::{EXECUTOR_ROLE, JobMarket, new_salt},
};
use infera_chain::bindings::{ExampleConsumer, IJobEscrow, JobEscrow, example_consumer};
use infera_protocol::{
    CommitmentInput, FinishReason, Transcript, pack_tokens, tokens_hash, unpack_tokens,
};

const STAKE: u64 = 1_000_000_000; // 1,000 tokens (6 decimals)
const INPUT_PRICE: u64 = 100_000; // 0.10 token per million input tokens
const OUTPUT_PRICE: u64 = 400_000; // 0.40 token per million output tokens
const FINALIZED: u8 = 5;
const PROMPT: &[u8] = br#"[{"role":"user","content":"Say hello in French."}]"#;
const EXPIRED: u8 = 7;
/// JobEscrow's `NO_SHOW_COMPENSATION_BPS`: an expired job's requester gets at most this share of its
/// escrow out of the seized collateral.
const NO_SHOW_COMPENSATION_BPS: u64 = 1_000;

/// One of anvil's dev accounts with the job market client signing as it.
struct Actor {
    address: Address,
    market: JobMarket<DynProvider>,
}

impl Actor {
    fn new(devnet: &Devnet, index: usize) -> Result<Self> {
        let signer: PrivateKeySigner = devnet
            .signer(index)
            .ok_or_else(|| eyre!("no dev key {index}"))?;
        let address = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(devnet.anvil.endpoint_url())
            .erased();
        Ok(Self {
            address,
            market: JobMarket::new(&devnet.deployment, provider),
        })
    }

    async fn balance(&self) -> Result<U256> {
        Ok(self.market.token.balanceOf(self.address).call().await?)
    }
}

/// A devnet with a requester that approved the escrow and a staked, priced executor.
struct Market {
    devnet: Devnet,
    requester: Actor,
    executor: Actor,
    keeper: Actor,
}

impl Market {
    async fn start() -> Result<Self> {
        let devnet = devnet::start(&DevnetConfig {
            port: None,
            ..DevnetConfig::default()
        })
        .await?;
        let requester = Actor::new(&devnet, 1)?;
        let executor = Actor::new(&devnet, 2)?;
        let keeper = Actor::new(&devnet, 3)?;
        requester
            .market
            .approve(devnet.deployment.job_escrow)
            .await?;
        executor
            .market
            .become_executor(
                U256::from(STAKE),
                "http://127.0.0.1:9000",
                "cpu:2c;ram:24G",
                devnet.model_id,
                INPUT_PRICE,
                OUTPUT_PRICE,
            )
            .await?;
        Ok(Self {
            devnet,
            requester,
            executor,
            keeper,
        })
    }

    fn provider(&self) -> impl Provider {
        ProviderBuilder::new().connect_http(self.devnet.anvil.endpoint_url())
    }

    async fn now(&self) -> Result<u64> {
        let block = self
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| eyre!("no latest block"))?;
        Ok(block.header.timestamp)
    }

    async fn advance(&self, seconds: u64) -> Result<()> {
        let provider = self.provider();
        provider.anvil_increase_time(seconds).await?;
        provider.anvil_mine(Some(1), None).await?;
        Ok(())
    }

    async fn token_balance(&self, account: Address) -> Result<U256> {
        Ok(self.keeper.market.token.balanceOf(account).call().await?)
    }

    async fn status(&self, job_id: U256) -> Result<u8> {
        Ok(self.keeper.market.escrow.jobStatus(job_id).call().await?)
    }

    /// The test job: up to 512 + 256 tokens, 30 minutes to deliver, no callback.
    async fn spec(&self) -> Result<IJobEscrow::JobSpec> {
        Ok(IJobEscrow::JobSpec {
            modelId: self.devnet.model_id,
            executor: Address::ZERO,
            callback: Address::ZERO,
            callbackGasLimit: 0,
            maxInputTokens: 512,
            maxOutputTokens: 256,
            maxInputPrice: 1_000_000,
            maxOutputPrice: 2_000_000,
            deadline: self.now().await? + 1_800,
            sampling: infera_protocol::SamplingParams {
                temperature_ppm: 700_000,
                top_k: 40,
                top_p_ppm: 950_000,
            }
            .into(),
            salt: new_salt(),
        })
    }

    /// Posts the test job and checks what `JobPosted` carries.
    async fn post(&self) -> Result<(U256, IJobEscrow::Job)> {
        let prompt = Bytes::from_static(PROMPT);
        let spec = self.spec().await?;
        let (posted, _) = self
            .requester
            .market
            .post_job(spec.clone(), prompt.clone())
            .await?;
        ensure!(posted.requester == self.requester.address);
        ensure!(posted.prompt == prompt, "the prompt is emitted verbatim");
        ensure!(posted.job.promptHash == keccak256(&prompt));
        ensure!(posted.job.spec == spec, "the spec, salt included, is kept");
        ensure!(
            posted.job.rulesVersion == 1,
            "the job snapshots the model's rules version"
        );
        Ok((posted.jobId, posted.job))
    }

    /// The seed `acceptJob` fixes (IJobEscrow's `Assignment.seed`): bound to the chain, the escrow,
    /// the job's terms (its requester and salt among them, not the global job id) and the accepting
    /// block's `prevrandao`.
    async fn expected_seed(
        &self,
        job: &IJobEscrow::Job,
        accepted: &alloy::rpc::types::TransactionReceipt,
    ) -> Result<B256> {
        let number = accepted
            .block_number
            .ok_or_else(|| eyre!("acceptance not mined"))?;
        let block = self
            .provider()
            .get_block_by_number(number.into())
            .await?
            .ok_or_else(|| eyre!("no block {number}"))?;
        let prevrandao = block.header.mix_hash;
        Ok(keccak256(
            (
                keccak256("infera.seed.v2"),
                U256::from(self.devnet.deployment.chain_id),
                self.devnet.deployment.job_escrow,
                keccak256(job.abi_encode()),
                prevrandao,
            )
                .abi_encode_params(),
        ))
    }
}

#[tokio::test]
async fn job_lifecycle_pays_exactly_and_commitment_matches() -> Result<()> {
    let m = Market::start().await?;
    let requester_start = m.requester.balance().await?;
    let executor_start = m.executor.balance().await?;

    let (job_id, job) = m.post().await?;
    // escrow = (512 × 1.0 + 256 × 2.0) tokens per million = 1,024 base units
    ensure!(job.escrow == U256::from(1_024), "escrow {}", job.escrow);
    ensure!(m.requester.balance().await? == requester_start - job.escrow);

    let (assignment, accepted) = m.executor.market.accept_job(job_id, job.clone()).await?;
    ensure!(assignment.executor == m.executor.address);
    ensure!((assignment.inputPrice, assignment.outputPrice) == (INPUT_PRICE, OUTPUT_PRICE));
    ensure!(
        assignment.collateral == U256::from(2_048),
        "collateral = 2 × escrow"
    );
    // The seed exists only from acceptance on, and is the one its definition gives.
    ensure!(
        assignment.seed == m.expected_seed(&job, &accepted).await?,
        "seed {}",
        assignment.seed
    );

    let prompt_ids: Vec<u32> = (0..300).map(|i| 151_000 + i).collect();
    let output_ids: Vec<u32> = (0..200).map(|i| 1_000 + 7 * i).collect();
    let result = IJobEscrow::Result {
        inputTokens: 300,
        finishReason: FinishReason::Stop.as_u8(),
        promptTokensHash: tokens_hash(&prompt_ids),
        outputTokens: pack_tokens(&output_ids).into(),
        output: Bytes::from_static(b"Bonjour !"),
    };

    // Nobody but the bound executor can deliver.
    let stolen = m
        .keeper
        .market
        .escrow
        .submitResult(job_id, job.clone(), assignment.clone(), result.clone())
        .call()
        .await;
    let decoded = stolen
        .err()
        .and_then(|e| e.as_decoded_interface_error::<JobEscrow::JobEscrowErrors>())
        .ok_or_else(|| eyre!("a stranger's submission must revert with a JobEscrow error"))?;
    ensure!(
        matches!(decoded, JobEscrow::JobEscrowErrors::NotBoundExecutor(_)),
        "{decoded:?}"
    );

    let (submitted, _) = m
        .executor
        .market
        .submit_result(job_id, job.clone(), assignment.clone(), result.clone())
        .await?;
    let settlement = submitted.settlement;
    ensure!(submitted.outputTokens.len() == 200 * 4);

    // The commitment the contract computed (v2) equals the one the protocol crate computes from
    // the on-chain data alone: the assignment's seed, the billed count and the text's hash included.
    let recomputed = CommitmentInput::from_tokens(
        job.spec.modelId,
        job.samplerVersion,
        job.spec.sampling.clone().into(),
        assignment.seed,
        Transcript {
            prompt_token_ids: &prompt_ids,
            output_token_ids: &unpack_tokens(&submitted.outputTokens)?,
            output_text: &submitted.output,
            finish_reason: FinishReason::Stop,
        },
    )?
    .commitment();
    ensure!(settlement.commitment == recomputed, "commitment mismatch");
    ensure!(
        infera_chain::bindings::commitment_input(&job, &assignment, &result)?.commitment()
            == recomputed,
        "commitment of the submitted result"
    );
    // payment = (300 × 100,000 + 200 × 400,000) / 1e6 = 30 + 80 = 110
    ensure!(
        settlement.payment == U256::from(110),
        "payment {}",
        settlement.payment
    );

    // Finalizing inside the challenge window fails; after it, anyone can, once.
    ensure!(
        m.keeper
            .market
            .escrow
            .finalize(job_id, settlement.clone())
            .call()
            .await
            .is_err()
    );
    m.advance(MarketParams::default().challenge_window).await?;
    // Validator fee: 5 %, fixed at posting, rounded up (5.5 → 6).
    let fee = U256::from(6);
    ensure!(fee == U256::from((110 * 500 + 9_999) / 10_000));
    ensure!(settlement.validatorFee == fee);
    m.keeper.market.finalize(job_id, settlement.clone()).await?;
    let escrow = &m.keeper.market.escrow;
    ensure!(escrow.credits(m.executor.address).call().await? == U256::from(110) - fee);
    ensure!(escrow.credits(m.requester.address).call().await? == U256::from(1_024 - 110));
    ensure!(
        m.keeper
            .market
            .escrow
            .finalize(job_id, settlement)
            .call()
            .await
            .is_err(),
        "paid twice"
    );

    m.executor.market.withdraw().await?;
    m.requester.market.withdraw().await?;
    ensure!(m.requester.balance().await? == requester_start - U256::from(110));
    ensure!(m.executor.balance().await? == executor_start + U256::from(110) - fee);
    ensure!(
        m.token_balance(m.devnet.deployment.job_escrow).await? == fee,
        "only the pool is left"
    );
    ensure!(m.keeper.market.escrow.rewardPool().call().await? == fee);
    ensure!(m.token_balance(m.devnet.deployment.staking).await? == U256::from(STAKE));

    let stake = m
        .keeper
        .market
        .staking
        .stakeOf(m.executor.address, EXECUTOR_ROLE)
        .call()
        .await?;
    ensure!(stake.staked == U96::from(STAKE) && stake.locked == U96::ZERO);
    ensure!(stake.jobsCompleted == 1);
    ensure!(m.status(job_id).await? == FINALIZED);
    Ok(())
}

#[tokio::test]
async fn expired_job_refunds_requester_and_seizes_collateral() -> Result<()> {
    let m = Market::start().await?;
    let requester_start = m.requester.balance().await?;

    let (job_id, job) = m.post().await?;
    let (assignment, _) = m.executor.market.accept_job(job_id, job.clone()).await?;
    let expire = m
        .keeper
        .market
        .escrow
        .expire(job_id, job.clone(), assignment.clone());
    ensure!(expire.call().await.is_err(), "not before the deadline");

    m.advance(1_801).await?;
    let (expired, receipt) = m
        .keeper
        .market
        .expire(job_id, job.clone(), assignment.clone())
        .await?;
    // Of the seized collateral the requester gets at most 10 % of its escrow (1,024 → 102), the
    // rest funds the validator reward pool.
    let compensation = job.escrow * U256::from(NO_SHOW_COMPENSATION_BPS) / U256::from(10_000);
    ensure!(compensation == U256::from(102));
    ensure!(
        expired.refund == job.escrow
            && expired.compensation == compensation
            && expired.toRewardPool == assignment.collateral - compensation,
        "{expired:?}"
    );
    ensure!(m.status(job_id).await? == EXPIRED);
    let escrow = &m.keeper.market.escrow;
    ensure!(escrow.rewardPool().call().await? == assignment.collateral - compensation);

    // The compensation is locked until the unbonding period has passed.
    let locked = infera::market::event::<JobEscrow::CreditLocked>(&receipt)?;
    let unbonding = m.keeper.market.staking.unbondingPeriod().call().await?;
    let expired_at = m.now().await?;
    ensure!(
        locked.account == m.requester.address
            && locked.amount == compensation
            && locked.releaseAt == U256::from(expired_at) + unbonding,
        "{locked:?}"
    );
    let held = escrow.lockedCreditOf(m.requester.address).call().await?;
    ensure!(held.amount == compensation && held.releaseAt == locked.releaseAt);

    // Now: the escrow only. Once released: the compensation, to any address.
    let (withdrawn, _) = m.requester.market.withdraw().await?;
    ensure!(withdrawn.amount == job.escrow && withdrawn.to == m.requester.address);
    ensure!(m.requester.balance().await? == requester_start);
    ensure!(
        escrow
            .withdraw()
            .from(m.requester.address)
            .call()
            .await
            .is_err(),
        "nothing to withdraw before the release"
    );
    let elsewhere = Address::repeat_byte(0xe1);
    m.advance(u64::try_from(unbonding)?).await?;
    let (withdrawn, _) = m.requester.market.withdraw_to(elsewhere).await?;
    ensure!(
        withdrawn.account == m.requester.address
            && withdrawn.to == elsewhere
            && withdrawn.amount == compensation,
        "{withdrawn:?}"
    );
    ensure!(m.token_balance(elsewhere).await? == compensation);
    ensure!(m.requester.balance().await? == requester_start);
    let held = escrow.lockedCreditOf(m.requester.address).call().await?;
    ensure!(held.amount.is_zero());
    let stake = m
        .keeper
        .market
        .staking
        .stakeOf(m.executor.address, EXECUTOR_ROLE)
        .call()
        .await?;
    ensure!(stake.staked == U96::from(STAKE) - U96::from(assignment.collateral));
    ensure!(stake.locked == U96::ZERO && stake.jobsExpired == 1);
    let staking_balance = m.token_balance(m.devnet.deployment.staking).await?;
    ensure!(staking_balance == U256::from(STAKE) - assignment.collateral);
    ensure!(
        m.token_balance(m.devnet.deployment.job_escrow).await?
            == assignment.collateral - compensation,
        "only the reward pool is left"
    );
    Ok(())
}

#[tokio::test]
async fn unaccepted_job_can_be_cancelled_only_by_its_requester() -> Result<()> {
    let m = Market::start().await?;
    let requester_start = m.requester.balance().await?;
    let (job_id, job) = m.post().await?;

    ensure!(
        m.keeper
            .market
            .escrow
            .cancelJob(job_id, job.clone())
            .call()
            .await
            .is_err()
    );
    let (cancelled, _) = m.requester.market.cancel_job(job_id, job.clone()).await?;
    ensure!(cancelled.refund == job.escrow);
    let accept = m.executor.market.escrow.acceptJob(job_id, job);
    ensure!(accept.call().await.is_err(), "a cancelled job is final");

    m.requester.market.withdraw().await?;
    ensure!(m.requester.balance().await? == requester_start);
    Ok(())
}

#[tokio::test]
async fn dapp_receives_the_result_through_its_callback() -> Result<()> {
    let m = Market::start().await?;
    // The dApp's owner deploys the example consumer and funds it.
    let owner = Actor::new(&m.devnet, 4)?;
    let provider = owner.market.escrow.provider().clone();
    let d = m.devnet.deployment;
    let dapp = ExampleConsumer::deploy(provider, d.job_escrow, d.token, owner.address).await?;
    let owner_start = owner.balance().await?;
    let receipt = owner
        .market
        .token
        .transfer(*dapp.address(), U256::from(10_000))
        .send()
        .await?;
    ensure!(receipt.get_receipt().await?.status());

    let mut spec = m.spec().await?;
    spec.callback = *dapp.address();
    spec.callbackGasLimit = 100_000;
    // Each contract's bindings have their own copy of the `IJobEscrow` types; the encoding is the same.
    let spec: example_consumer::IJobEscrow::JobSpec = SolValue::abi_decode(&spec.abi_encode())?;
    let receipt = dapp
        .ask(spec, Bytes::from_static(PROMPT))
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "ask reverted");
    let posted = infera::market::event::<JobEscrow::JobPosted>(&receipt)?;
    ensure!(
        posted.requester == *dapp.address(),
        "the dApp is the requester"
    );

    let (job_id, job) = (posted.jobId, posted.job);
    let (assignment, _) = m.executor.market.accept_job(job_id, job.clone()).await?;
    let output = Bytes::from_static(b"Bonjour !");
    let result = IJobEscrow::Result {
        inputTokens: 30,
        finishReason: FinishReason::Stop.as_u8(),
        promptTokensHash: tokens_hash(&[1, 2, 3]),
        outputTokens: pack_tokens(&[4, 5]).into(),
        output: output.clone(),
    };
    let (submitted, receipt) = m
        .executor
        .market
        .submit_result(job_id, job, assignment, result)
        .await?;

    // The callback ran inside the executor's submission, with the output as submitted.
    let delivered = infera::market::event::<ExampleConsumer::ResultReceived>(&receipt)?;
    ensure!(delivered.jobId == job_id && delivered.output == output && delivered.finishReason == 1);
    ensure!(dapp.resultHash(job_id).call().await? == keccak256(&output));
    ensure!(
        infera::market::event::<JobEscrow::CallbackFailed>(&receipt).is_err(),
        "the callback must not have failed"
    );
    // The result is provisional until the job is finalized: nothing final, nothing to confirm yet.
    ensure!(dapp.finalResult(job_id).call().await? == B256::ZERO);
    ensure!(
        dapp.confirm(job_id).call().await.is_err(),
        "not settled yet"
    );

    m.advance(MarketParams::default().challenge_window).await?;
    m.keeper
        .market
        .finalize(job_id, submitted.settlement.clone())
        .await?;
    let confirmed = dapp.confirm(job_id).send().await?.get_receipt().await?;
    ensure!(confirmed.status(), "confirm reverted");
    let settled = infera::market::event::<ExampleConsumer::ResultSettled>(&confirmed)?;
    ensure!(settled.jobId == job_id && settled.accepted);
    ensure!(dapp.finalResult(job_id).call().await? == keccak256(&output));
    let receipt = dapp
        .reclaim(owner.address)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "reclaim reverted");
    let paid = submitted.settlement.payment;
    ensure!(
        owner.balance().await? == owner_start - paid,
        "the dApp paid exactly its job"
    );
    Ok(())
}
