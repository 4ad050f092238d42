//! The executor's operations on a real anvil chain with the real default model on CPU:
//! - submitted jobs that end otherwise than paid (rejected in a dispute) reach a final stage, and a
//!   finalization refused for good (terms that do not match the chain's) ends the job instead of
//!   being sent again every tick;
//! - an accepted on-chain job keeps its engine place while gateway requests saturate the engine;
//! - `/health` reports the chain and the engine (503 once the node is gone, with no credential of
//!   the RPC URL in the answer), `/metrics` has the operational gauges and histograms.

mod common;

use std::time::Duration;

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, B256, Bytes, U256},
    providers::{Provider, ext::AnvilApi},
    rpc::types::TransactionRequest,
    signers::{SignerSync, local::PrivateKeySigner},
};
use common::{EXECUTOR, GATEWAY, Net, require_model, status};
use eyre::{Result, ensure, eyre};
use infera::deploy;
use infera_chain::bindings::JobEscrow;
use infera_executor::{
    Executor,
    http::{GenerateBody, PromptInput},
    store::{Stage, Store},
    telemetry,
};
use infera_protocol::{
    prompt::{Message, Prompt, Role},
    receipt::{GatewayRequest, domain, prompt_hash_of_messages},
};

const PROMPT: &[u8] = br#"[{"role":"user","content":"Name a colour."}]"#;

/// A started executor serving in the background until `stop` fires.
struct Running {
    url: String,
    address: Address,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<Result<(), infera_executor::ExecutorError>>,
}

async fn run(config: infera_executor::ExecutorConfig) -> Result<Running> {
    let executor = Executor::start(config).await?;
    let url = format!("http://{}", executor.local_addr());
    let address = executor.address();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(executor.serve(async {
        let _ = stopped.await;
    }));
    Ok(Running {
        url,
        address,
        stop,
        serving,
    })
}

impl Running {
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.serving.await??;
        Ok(())
    }
}

/// Polls the executor's store until `job_id` leaves `stage`; returns the row then.
async fn wait_stage_change(
    store: &Store,
    job_id: U256,
    stage: Stage,
    timeout: Duration,
) -> Result<infera_executor::store::JobRow> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let row = store
            .job(job_id)
            .await?
            .ok_or_else(|| eyre!("job {job_id} not recorded"))?;
        if row.stage != stage {
            return Ok(row);
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "job {job_id} still {stage:?} (reason {:?})",
            row.reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The settlement of `job_id`, from its `ResultSubmitted` event.
async fn settlement(net: &Net, job_id: U256) -> Result<JobEscrow::ResultSubmitted> {
    let filter = alloy::rpc::types::Filter::new()
        .address(net.devnet.deployment.job_escrow)
        .event_signature(<JobEscrow::ResultSubmitted as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
        .topic1(B256::from(job_id))
        .from_block(0);
    let logs = net.provider().get_logs(&filter).await?;
    let log = logs.first().ok_or_else(|| eyre!("no ResultSubmitted"))?;
    Ok(log.log_decode::<JobEscrow::ResultSubmitted>()?.inner.data)
}

/// Sends `call` from `from`, an account anvil impersonates.
async fn send_as(net: &Net, from: Address, to: Address, input: Bytes) -> Result<()> {
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_to(to)
        .with_input(input);
    let receipt = net
        .provider()
        .send_transaction(tx)
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "transaction from {from} reverted");
    Ok(())
}

/// A submitted job rejected in a dispute ends `Lost`, and one whose finalization is refused for
/// good (its stored settlement no longer matches the chain's) ends `Failed`: neither stays
/// `Submitted` to be retried every tick, as both did before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_unfinalizable_jobs_reach_a_final_stage() -> Result<()> {
    require_model()?;
    let net = Net::start("ops-final").await?;
    let provider = net.provider();
    // The deployed disputes contract, impersonated: it freezes and resolves against the executor
    // as a lost dispute would, without a jury.
    let disputes = net.devnet.deployment.disputes;
    provider
        .anvil_set_balance(disputes, U256::from(10u128.pow(20)))
        .await?;
    provider.anvil_impersonate_account(disputes).await?;

    let config = net.executor_config(EXECUTOR, vec![])?;
    let executor = run(config.clone()).await?;
    let store = Store::open(common::database(&config)?).await?;

    let (rejected, _) = net.post(net.spec(4).await?, PROMPT).await?;
    let (tampered, _) = net.post(net.spec(4).await?, PROMPT).await?;
    for job_id in [rejected, tampered] {
        net.wait_status(job_id, status::SUBMITTED, Duration::from_secs(240))
            .await?;
        // The executor records the submission right after its receipt.
        wait_stage_change(&store, job_id, Stage::Generated, Duration::from_secs(60)).await?;
        ensure!(store.job(job_id).await?.map(|r| r.stage) == Some(Stage::Submitted));
    }

    // A lost dispute: frozen inside the challenge window, resolved against the executor.
    let submitted = settlement(&net, rejected).await?;
    let escrow = net.devnet.deployment.job_escrow;
    let terms: Bytes = alloy::sol_types::SolValue::abi_encode(&submitted.settlement).into();
    let freeze = JobEscrow::freezeClaimCall {
        claimId: rejected,
        terms: terms.clone(),
    };
    send_as(
        &net,
        disputes,
        escrow,
        alloy::sol_types::SolCall::abi_encode(&freeze).into(),
    )
    .await?;
    let resolve = JobEscrow::resolveClaimCall {
        claimId: rejected,
        terms,
        executorFaulty: true,
    };
    send_as(
        &net,
        disputes,
        escrow,
        alloy::sol_types::SolCall::abi_encode(&resolve).into(),
    )
    .await?;
    ensure!(net.status(rejected).await? == 8, "not rejected");

    // A settlement the chain does not know: `finalize` can never pass with it (TermsMismatch).
    let mut wrong = settlement(&net, tampered).await?.settlement;
    wrong.payment += U256::from(1);
    store.set_submitted(tampered, &wrong).await?;

    // Past every window: a submitted job would be finalized now.
    net.advance(deploy::MarketParams::default().challenge_window + 1)
        .await?;
    let row =
        wait_stage_change(&store, rejected, Stage::Submitted, Duration::from_secs(60)).await?;
    ensure!(row.stage == Stage::Lost, "{:?} {:?}", row.stage, row.reason);
    ensure!(
        row.reason.as_deref() == Some("rejected in a dispute"),
        "{:?}",
        row.reason
    );
    let row =
        wait_stage_change(&store, tampered, Stage::Submitted, Duration::from_secs(60)).await?;
    ensure!(
        row.stage == Stage::Failed,
        "{:?} {:?}",
        row.stage,
        row.reason
    );
    ensure!(
        row.reason
            .as_deref()
            .is_some_and(|r| r.contains("finalize refused") && r.contains("TermsMismatch")),
        "{:?}",
        row.reason
    );
    // Neither was finalized on-chain by the executor.
    ensure!(net.status(rejected).await? == 8);
    ensure!(net.status(tampered).await? == status::SUBMITTED);
    executor.stop().await
}

/// A gateway request for a long greedy generation (it counts to a thousand).
fn long_request(
    net: &Net,
    gateway: &PrivateKeySigner,
    id: u8,
    expiry: u64,
) -> Result<GenerateBody> {
    let prompt = Prompt {
        messages: vec![Message {
            role: Role::User,
            content: "Count from 1 to 1000, one number per line, with nothing else.".into(),
        }],
    };
    let request = GatewayRequest {
        requestId: B256::repeat_byte(id),
        payer: Address::repeat_byte(0x99),
        modelId: net.devnet.model_id,
        promptHash: prompt_hash_of_messages(&prompt.to_json()),
        maxTokens: 1_000,
        temperature: 0,
        topK: 0,
        topP: 0,
        seed: B256::repeat_byte(0x5e),
        expiry,
    };
    let domain = domain(
        net.devnet.deployment.chain_id,
        net.devnet.deployment.job_escrow,
    );
    let signature = gateway.sign_hash_sync(&request.signing_hash(&domain))?;
    Ok(GenerateBody {
        request,
        prompt: PromptInput::Messages(prompt.messages),
        signature: Bytes::from(signature.as_bytes().to_vec()),
    })
}

/// With the gateway path taking every engine place it can, a job the executor accepted still
/// generates at once in the place it reserved (before, the gateway took that place and the job
/// waited behind it); `/health` and `/metrics` report the executor; with the node gone `/health`
/// answers 503 naming the chain, and no credential of the RPC URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_jobs_keep_their_engine_place_and_health_tells_the_truth() -> Result<()> {
    require_model()?;
    let mut net = Net::start("ops-capacity").await?;
    let gateway = net
        .devnet
        .signer(GATEWAY)
        .ok_or_else(|| eyre!("no gateway key"))?;
    let mut config = net.executor_config(EXECUTOR, vec![gateway.address()])?;
    // Two places, none queued: one for the job, one the gateway may use.
    config.max_running = 2;
    config.max_queued = 0;
    // Credentials in the URL (anvil ignores them): they must never come back in an answer.
    config.rpc_url = format!(
        "http://infera:hunter2-secret@127.0.0.1:{}/",
        net.devnet.anvil.port()
    );
    let executor = run(config.clone()).await?;
    let me = executor.address;
    let client = reqwest::Client::new();
    let provider = net.provider();

    // Hold blocks back, so the executor's acceptance stays pending while the gateway loads the
    // engine: post the job and mine it by hand.
    provider.anvil_set_auto_mine(false).await?;
    let spec = net.spec(8).await?;
    let posting = {
        let market = net.requester.market.clone();
        tokio::spawn(async move { market.post_job(spec, Bytes::from_static(PROMPT)).await })
    };
    // Mine exactly the block with the posting once it is in the pool, and no more.
    let requester = net.requester.address;
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while provider.get_transaction_count(requester).pending().await?
        == provider.get_transaction_count(requester).latest().await?
    {
        ensure!(
            tokio::time::Instant::now() < until,
            "the job was never sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    provider.anvil_mine(Some(1), None).await?;
    let job_id = posting.await??.0.jobId;
    // The executor finds it and sends its acceptance, which waits in the pool.
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pending = provider.get_transaction_count(me).pending().await?;
        let mined = provider.get_transaction_count(me).latest().await?;
        if pending > mined {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "the executor sent no acceptance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(net.status(job_id).await? == status::POSTED);

    // The gateway takes what it may: one long generation runs, the next request is refused
    // because the other place is the accepted job's.
    let expiry = net.now().await? + 3_600;
    let endpoint = format!("{}/v1/generate", executor.url);
    let first = client
        .post(&endpoint)
        .json(&long_request(&net, &gateway, 0x61, expiry)?)
        .send()
        .await?;
    ensure!(
        first.status() == 200,
        "first gateway request: {}",
        first.status()
    );
    let streaming = tokio::spawn(async move { first.text().await });
    let second = client
        .post(&endpoint)
        .json(&long_request(&net, &gateway, 0x62, expiry)?)
        .send()
        .await?;
    ensure!(
        second.status() == 503,
        "a gateway request took the accepted job's place: status {}",
        second.status()
    );
    let body: serde_json::Value = second.json().await?;
    ensure!(body["error"]["type"] == "overloaded_error", "{body}");

    // Blocks again: the acceptance is mined and the job generates and is submitted while the
    // gateway's generation still runs.
    provider.anvil_set_auto_mine(true).await?;
    provider.anvil_mine(Some(1), None).await?;
    net.wait_status(job_id, status::SUBMITTED, Duration::from_secs(240))
        .await?;
    ensure!(
        !streaming.is_finished(),
        "the job was submitted only after the gateway's generation ended"
    );
    streaming.abort();

    // /health: the chain and the engine answer.
    let response = client
        .get(format!("{}/health", executor.url))
        .send()
        .await?;
    ensure!(response.status() == 200, "health {}", response.status());
    let health: serde_json::Value = response.json().await?;
    ensure!(health["status"] == "ok", "{health}");
    ensure!(
        health["chain"]["ok"] == true && health["chain"]["block"].as_u64().is_some_and(|b| b > 0),
        "{health}"
    );
    ensure!(health["chain"]["latency_ms"].is_u64(), "{health}");
    ensure!(health["engine"]["ok"] == true, "{health}");
    let model = &health["engine"]["models"][0];
    ensure!(
        model["ok"] == true && model["capacity"] == 2 && model["latency_ms"].is_u64(),
        "{health}"
    );

    // /metrics: the gauges and the timings of the job's generation.
    let metrics = client
        .get(format!("{}/metrics", executor.url))
        .send()
        .await?
        .text()
        .await?;
    for name in [
        telemetry::PENDING_TRANSACTIONS,
        telemetry::SCAN_LAG,
        telemetry::ENGINE_QUEUE,
        telemetry::ENGINE_RESERVED,
    ] {
        let value = gauge(&metrics, name).ok_or_else(|| eyre!("no {name} in\n{metrics}"))?;
        ensure!((0.0..=100.0).contains(&value), "{name} = {value}");
    }
    let ttft_count = sample(
        &metrics,
        &format!("{}_count{{source=\"job\"}}", telemetry::TIME_TO_FIRST_TOKEN),
    )
    .ok_or_else(|| eyre!("no job time to first token in\n{metrics}"))?;
    ensure!(ttft_count >= 1.0, "{ttft_count}");
    let ttft_sum = sample(
        &metrics,
        &format!("{}_sum{{source=\"job\"}}", telemetry::TIME_TO_FIRST_TOKEN),
    )
    .unwrap_or_default();
    ensure!(ttft_sum > 0.0, "time to first token sum {ttft_sum}");
    let decode_sum = sample(
        &metrics,
        &format!("{}_sum{{source=\"job\"}}", telemetry::DECODE_SECONDS),
    )
    .ok_or_else(|| eyre!("no job decode time in\n{metrics}"))?;
    ensure!(decode_sum > 0.0, "decode sum {decode_sum}");
    ensure!(
        metrics.contains(&format!("{}_bucket", telemetry::DECODE_RATE)),
        "{metrics}"
    );

    // The node goes away: /health says so, and quotes no credential of the URL.
    let anvil = net.devnet.anvil.child_mut();
    anvil.kill()?;
    anvil.wait()?;
    let response = client
        .get(format!("{}/health", executor.url))
        .send()
        .await?;
    ensure!(response.status() == 503, "health {}", response.status());
    let text = response.text().await?;
    ensure!(!text.contains("hunter2"), "credentials in /health: {text}");
    let health: serde_json::Value = serde_json::from_str(&text)?;
    ensure!(
        health["status"] == "unavailable"
            && health["chain"]["ok"] == false
            && health["chain"]["error"].is_string(),
        "{health}"
    );
    ensure!(health["engine"]["ok"] == true, "{health}");
    executor.stop().await
}

/// The value of an unlabelled sample `name`.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    sample(metrics, name)
}

/// The value of the sample written exactly `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == series).then(|| value.parse().ok()).flatten()
    })
}
