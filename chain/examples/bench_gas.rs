//! Gas of the on-chain job lifecycle, measured from real transaction receipts on anvil (so the
//! 21,000 base cost and the calldata of every step are included). Run through `scripts/bench-gas`.
//!
//! Each figure is the median over `ROUNDS` jobs in steady state (the requester and the executor
//! have used the market before). Two payloads are measured side by side in the same run:
//! - `lean`: a 1-byte prompt and an empty output — the protocol's own cost;
//! - `full`: a 512-byte prompt and a 256-token output with 1,024 bytes of text;
//!
//! and their difference is reported as the payload's cost: its calldata alone (`*_calldata_gas`) and
//! everything it adds to the step, event data and hashing included (`*_payload_gas`). Prints
//! `key=value` lines.

use alloy::{
    consensus::Transaction as _,
    network::EthereumWallet,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    rpc::types::TransactionReceipt,
};
use eyre::{Result, eyre};
use infera_chain::{
    bindings::IJobEscrow,
    deploy::MarketParams,
    devnet::{self, DevnetConfig},
    market::JobMarket,
};
use infera_protocol::{FinishReason, SamplingParams, pack_tokens};

/// One salt for every job: any 32 bytes do, and a fixed one keeps the calldata gas of the post the
/// same from run to run (a zero byte costs 4 gas, another 16).
fn salt() -> alloy::primitives::B256 {
    alloy::primitives::keccak256(b"infera bench-gas salt")
}

const ROUNDS: usize = 5;
/// Ritual Infernet's create + deliver, the figure the issue compares against.
const RITUAL_INFERNET_GAS: u64 = 353_000;

/// Gas of one lifecycle step: what the receipt says, and the part of it that is calldata.
#[derive(Debug, Default, Clone, Copy)]
struct Gas {
    total: u64,
    calldata: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct StepGas {
    post: Gas,
    accept: Gas,
    submit: Gas,
    finalize: Gas,
}

impl StepGas {
    fn steps(&self) -> [Gas; 4] {
        [self.post, self.accept, self.submit, self.finalize]
    }

    fn lifecycle(&self) -> u64 {
        self.steps().iter().map(|g| g.total).sum()
    }

    fn lifecycle_calldata(&self) -> u64 {
        self.steps().iter().map(|g| g.calldata).sum()
    }
}

struct Payload {
    prompt: Bytes,
    output_ids: Vec<u32>,
    output_text: Bytes,
}

/// Calldata cost as EIP-2028 prices it: 4 gas per zero byte, 16 per non-zero byte.
fn calldata_gas(input: &[u8]) -> u64 {
    input.iter().map(|&b| if b == 0 { 4 } else { 16 }).sum()
}

async fn gas(provider: &DynProvider, receipt: &TransactionReceipt) -> Result<Gas> {
    let tx = provider
        .get_transaction_by_hash(receipt.transaction_hash)
        .await?
        .ok_or_else(|| eyre!("transaction {} not found", receipt.transaction_hash))?;
    Ok(Gas {
        total: receipt.gas_used,
        calldata: calldata_gas(tx.inner.input()),
    })
}

async fn run_job(
    requester: &JobMarket<DynProvider>,
    executor: &JobMarket<DynProvider>,
    provider: &DynProvider,
    model_id: alloy::primitives::B256,
    payload: &Payload,
) -> Result<StepGas> {
    let now = provider.get_block_number().await?;
    let block = provider
        .get_block_by_number(now.into())
        .await?
        .ok_or_else(|| eyre!("no block {now}"))?;
    let spec = IJobEscrow::JobSpec {
        modelId: model_id,
        executor: Address::ZERO,
        callback: Address::ZERO,
        callbackGasLimit: 0,
        maxInputTokens: 1_024,
        maxOutputTokens: 256,
        maxInputPrice: 1_000_000,
        maxOutputPrice: 2_000_000,
        deadline: block.header.timestamp + 1_800,
        sampling: SamplingParams {
            temperature_ppm: 700_000,
            top_k: 40,
            top_p_ppm: 950_000,
        }
        .into(),
        salt: salt(),
    };
    let (posted, post) = requester.post_job(spec, payload.prompt.clone()).await?;
    let (assignment, accept) = executor
        .accept_job(posted.jobId, posted.job.clone())
        .await?;
    let result = IJobEscrow::Result {
        inputTokens: 200,
        finishReason: FinishReason::Stop.as_u8(),
        promptTokensHash: alloy::primitives::keccak256(b"prompt token ids"),
        outputTokens: pack_tokens(&payload.output_ids).into(),
        output: payload.output_text.clone(),
    };
    let (submitted, submit) = executor
        .submit_result(posted.jobId, posted.job, assignment, result)
        .await?;
    provider
        .anvil_increase_time(MarketParams::default().challenge_window)
        .await?;
    let (_, finalize) = requester
        .finalize(posted.jobId, submitted.settlement)
        .await?;
    Ok(StepGas {
        post: gas(provider, &post).await?,
        accept: gas(provider, &accept).await?,
        submit: gas(provider, &submit).await?,
        finalize: gas(provider, &finalize).await?,
    })
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn medians(runs: &[StepGas]) -> StepGas {
    let step = |pick: fn(&StepGas) -> Gas| Gas {
        total: median(runs.iter().map(|r| pick(r).total).collect()),
        calldata: median(runs.iter().map(|r| pick(r).calldata).collect()),
    };
    StepGas {
        post: step(|r| r.post),
        accept: step(|r| r.accept),
        submit: step(|r| r.submit),
        finalize: step(|r| r.finalize),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let devnet = devnet::start(&DevnetConfig {
        port: None,
        ..DevnetConfig::default()
    })
    .await?;
    let actor = |index: usize| -> Result<(JobMarket<DynProvider>, DynProvider)> {
        let signer = devnet
            .signer(index)
            .ok_or_else(|| eyre!("no dev key {index}"))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(devnet.anvil.endpoint_url())
            .erased();
        Ok((
            JobMarket::new(&devnet.deployment, provider.clone()),
            provider,
        ))
    };
    let (requester, provider) = actor(1)?;
    let (executor, _) = actor(2)?;
    requester.approve(devnet.deployment.job_escrow).await?;
    executor
        .become_executor(
            U256::from(1_000_000_000u64),
            "http://127.0.0.1:9000",
            "cpu:2c;ram:24G",
            devnet.model_id,
            100_000,
            400_000,
        )
        .await?;

    let lean = Payload {
        prompt: Bytes::from_static(b"x"),
        output_ids: vec![],
        output_text: Bytes::new(),
    };
    // Token ids and text shaped like real output: ids spread over the Qwen2.5 vocabulary, ASCII text.
    let full = Payload {
        prompt: Bytes::from(
            std::iter::repeat(*b"Summarise the attached contract clause in plain English. ")
                .flatten()
                .take(512)
                .collect::<Vec<u8>>(),
        ),
        output_ids: (0..256u32).map(|i| (i * 7_919 + 13) % 151_936).collect(),
        output_text: Bytes::from(
            std::iter::repeat(*b"The clause lets either party end the agreement. ")
                .flatten()
                .take(1_024)
                .collect::<Vec<u8>>(),
        ),
    };

    // Warm up: first-time storage writes (balances, credits, counters) are not steady state.
    run_job(&requester, &executor, &provider, devnet.model_id, &full).await?;
    requester.withdraw().await?;
    executor.withdraw().await?;
    let (mut lean_runs, mut full_runs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        lean_runs.push(run_job(&requester, &executor, &provider, devnet.model_id, &lean).await?);
        full_runs.push(run_job(&requester, &executor, &provider, devnet.model_id, &full).await?);
    }
    let (lean, full) = (medians(&lean_runs), medians(&full_runs));
    let (_, withdraw) = executor.withdraw().await?;

    let lifecycle = lean.lifecycle();
    let without_calldata = lifecycle - lean.lifecycle_calldata();
    println!("rounds={ROUNDS}");
    for (name, step) in ["post", "accept", "submit", "finalize"]
        .iter()
        .zip(lean.steps())
    {
        println!("{name}_gas={}", step.total);
        println!("{name}_calldata_gas={}", step.calldata);
    }
    println!("withdraw_gas={}", withdraw.gas_used);
    println!("job_lifecycle_gas={lifecycle}");
    println!("job_lifecycle_calldata_gas={}", lean.lifecycle_calldata());
    println!("job_lifecycle_gas_without_calldata={without_calldata}");
    // A payload costs its calldata plus emitting it in the step's event (and hashing it).
    let (prompt, output) = (full.post, full.submit);
    println!(
        "prompt_512b_calldata_gas={}",
        prompt.calldata - lean.post.calldata
    );
    println!("prompt_512b_payload_gas={}", prompt.total - lean.post.total);
    println!(
        "output_256_tokens_calldata_gas={}",
        output.calldata - lean.submit.calldata
    );
    println!(
        "output_256_tokens_payload_gas={}",
        output.total - lean.submit.total
    );
    println!("job_lifecycle_with_payload_gas={}", full.lifecycle());
    println!("ritual_infernet_gas={RITUAL_INFERNET_GAS}");
    println!(
        "ritual_ratio={:.3}",
        lifecycle as f64 / RITUAL_INFERNET_GAS as f64
    );
    println!("target_gas_without_calldata=250000");
    println!("target_met={}", without_calldata <= 250_000);
    Ok(())
}
