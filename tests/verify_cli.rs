//! `infera verify` on real results (anvil, the real model on CPU): an on-chain job served by the
//! in-process executor (its transcript as `infera job --json` builds it from the chain's events)
//! and a gateway request (the transcript in the executor's receipt event) are honest on both
//! numeric paths; the same transcripts tampered as a user would try it are fraud with the rule
//! that catches them; malformed input is refused with exit status 2.
//!
//! Each `infera verify` process loads the model once, so the tampered transcripts go through one
//! run as JSON lines.

mod common;

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use alloy::{
    primitives::{Address, B256, Bytes},
    signers::{SignerSync, local::PrivateKeySigner},
};
use common::{EXECUTOR, GATEWAY, Net, require_model};
use eyre::{Result, ensure, eyre};
use infera::job::{JobRequest, post_and_wait};
use infera_executor::{
    Executor,
    http::{GenerateBody, PromptInput, ReceiptEvent},
};
use infera_protocol::{
    FinishReason, SamplingParams,
    prompt::{Message, Prompt, Role},
    receipt::{GatewayRequest, domain, prompt_hash_of_messages},
    verify::{Rule, Transcript, Verdict},
};

const SYSTEM: &str = "You are a poet. Answer in one short stanza.";
const USER: &str = "Describe a lighthouse at night.";

fn messages() -> Vec<Message> {
    vec![
        Message {
            role: Role::System,
            content: SYSTEM.into(),
        },
        Message {
            role: Role::User,
            content: USER.into(),
        },
    ]
}

/// Runs `infera verify` with `args`, `stdin` written to it.
fn verify(args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infera"))
        .arg("verify")
        .args(args)
        .env("RUST_LOG", "warn,infera=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| eyre!("no stdin"))?
        .write_all(stdin.as_bytes())?;
    let output = child.wait_with_output()?;
    eprintln!(
        "infera verify {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

fn verdicts(output: &Output) -> Result<Vec<Verdict>> {
    String::from_utf8(output.stdout.clone())?
        .lines()
        .map(|line| Ok(serde_json::from_str::<Verdict>(line)?))
        .collect()
}

fn jsonl(transcripts: &[Transcript]) -> Result<String> {
    let mut text = String::new();
    for t in transcripts {
        text.push_str(&serde_json::to_string(t)?);
        text.push('\n');
    }
    Ok(text)
}

fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_owned());
                } else if let Some(payload) = line.strip_prefix("data:") {
                    data.push_str(payload.trim_start());
                }
            }
            event.map(|e| (e, data))
        })
        .collect()
}

/// One gateway request with chat messages; the receipt event's transcript.
async fn gateway_transcript(
    net: &Net,
    url: &str,
    gateway: &PrivateKeySigner,
) -> Result<Transcript> {
    let prompt = Prompt {
        messages: messages(),
    };
    let request = GatewayRequest {
        requestId: B256::repeat_byte(0x77),
        payer: Address::repeat_byte(0x99),
        modelId: net.devnet.model_id,
        promptHash: prompt_hash_of_messages(&prompt.to_json()),
        maxTokens: 20,
        temperature: 700_000,
        topK: 0,
        topP: 900_000,
        seed: B256::repeat_byte(0x3c),
        expiry: net.now().await? + 3_600,
    };
    let domain = domain(
        net.devnet.deployment.chain_id,
        net.devnet.deployment.job_escrow,
    );
    let signature = gateway.sign_hash_sync(&request.signing_hash(&domain))?;
    let body = GenerateBody {
        request,
        prompt: PromptInput::Messages(messages()),
        signature: Bytes::from(signature.as_bytes().to_vec()),
    };
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/generate"))
        .json(&body)
        .send()
        .await?;
    ensure!(response.status() == 200, "status {}", response.status());
    let text = response.text().await?;
    let (_, data) = sse_events(&text)
        .into_iter()
        .find(|(event, _)| event == "receipt")
        .ok_or_else(|| eyre!("no receipt event in {text}"))?;
    let receipt: ReceiptEvent = serde_json::from_str(&data)?;
    let t = receipt.transcript;
    // The transcript is the receipt's: same commitment, ids, text and counts.
    ensure!(t.commitment == receipt.receipt.commitment);
    ensure!(t.output_ids == receipt.output_ids && t.prompt_ids == receipt.prompt_ids);
    ensure!(t.text == receipt.text && t.input_tokens == receipt.receipt.inputTokens);
    ensure!(t.prompt.as_deref().map(str::as_bytes) == Some(&prompt.to_json()[..]));
    Ok(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_honest_results_and_rejects_tampered_ones() -> Result<()> {
    require_model()?;

    // Bad input is refused before any model loads.
    for bad in [
        "{\"model_id\": ",
        "[1, 2, 3]",
        "",
        "{\"not\": \"a transcript\"}",
    ] {
        let out = verify(&[], bad)?;
        ensure!(out.status.code() == Some(2), "{bad:?}: {}", out.status);
        ensure!(out.stdout.is_empty() && !out.stderr.is_empty());
    }
    let missing = verify(&["--file", "/nonexistent/transcript.json"], "")?;
    ensure!(missing.status.code() == Some(2));

    // Results: one on-chain job, one gateway request.
    let net = Net::start("verify").await?;
    let gateway = net
        .devnet
        .signer(GATEWAY)
        .ok_or_else(|| eyre!("no gateway key"))?;
    let config = net.executor_config(EXECUTOR, vec![gateway.address()])?;
    let executor = Executor::start(config).await?;
    let url = format!("http://{}", executor.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(executor.serve(async {
        let _ = stopped.await;
    }));
    let mut request = JobRequest::new(
        net.devnet.anvil.endpoint_url(),
        net.devnet.deployment.job_escrow,
        net.requester.signer.clone(),
        String::from_utf8(
            Prompt {
                messages: messages(),
            }
            .to_json(),
        )?,
    );
    request.max_tokens = 24;
    request.sampling = SamplingParams {
        temperature_ppm: 800_000,
        top_k: 40,
        top_p_ppm: 950_000,
    };
    let job = post_and_wait(request).await?.transcript;
    let receipt = gateway_transcript(&net, &url, &gateway).await?;
    let _ = stop.send(());
    serving.await??;
    ensure!(job.prompt_ids.is_empty(), "the chain carries no prompt ids");
    ensure!(!job.output_ids.is_empty() && !receipt.prompt_ids.is_empty());
    // Both prompts are the same messages: the job's commitment binds the ids the receipt shows.
    let prompt_ids = receipt.prompt_ids.clone();
    ensure!(job.recompute_commitment(&prompt_ids) == job.commitment);
    // What a cheating executor would commit to: the tampered transcript with the real prompt ids.
    let seal = |t: &mut Transcript| t.commitment = t.recompute_commitment(&prompt_ids);
    eprintln!("job transcript: {}", serde_json::to_string(&job)?);

    // Honest on both numeric paths: the job's transcript as `infera job --json` prints it
    // (pretty) then the receipt's (one line), from stdin on the dense path and from a file on
    // the engine's.
    let input = format!(
        "{}\n{}",
        serde_json::to_string_pretty(&job)?,
        serde_json::to_string(&receipt)?
    );
    let file = net.dir.join("honest.json");
    std::fs::write(&file, &input)?;
    for (path, args, stdin) in [
        ("dense", vec![], input.as_str()),
        (
            "engine",
            vec!["--path", "engine", "--file", &*file.to_string_lossy()],
            "",
        ),
    ] {
        let out = verify(&args, stdin)?;
        ensure!(out.status.code() == Some(0), "{path}: {}", out.status);
        let v = verdicts(&out)?;
        ensure!(
            v.len() == 2 && v.iter().all(Verdict::is_honest),
            "{path}: {v:?}"
        );
        ensure!(v[0].positions_checked == job.output_ids.len());
        ensure!(v[1].positions_checked == receipt.output_ids.len());
        println!(
            "honest_max_margin_{path}={} {} mean={} {} flip_rate_ppm={} {}",
            v[0].max_margin,
            v[1].max_margin,
            v[0].mean_margin,
            v[1].mean_margin,
            v[0].flip_rate_ppm,
            v[1].flip_rate_ppm
        );
    }

    // Tampered, as a user would try it; `seal` recomputes the commitment (an executor that
    // commits to what it tampered with).
    type Tamper = (&'static str, Transcript, &'static [Rule]);
    let mut cases: Vec<Tamper> = Vec::new();
    let mut t = job.clone();
    t.output_ids[1] = 12_345;
    cases.push(("one output id changed", t.clone(), &[Rule::Commitment]));
    seal(&mut t);
    cases.push(("one output id swapped and committed", t, &[Rule::Text]));
    let mut t = job.clone();
    t.text.push_str(" (and a fabricated line)");
    seal(&mut t);
    cases.push(("text", t, &[Rule::Text]));
    let mut t = job.clone();
    t.input_tokens += 7;
    cases.push(("input count", t.clone(), &[Rule::InputTokenCount]));
    seal(&mut t);
    cases.push(("input count committed", t, &[Rule::InputTokenCount]));
    let mut t = job.clone();
    t.output_tokens += 1;
    cases.push(("output count", t, &[Rule::OutputTokenCount]));
    let mut t = job.clone();
    t.seed = B256::repeat_byte(0x11);
    cases.push(("seed", t.clone(), &[Rule::Commitment]));
    seal(&mut t);
    cases.push(("seed committed", t, &[]));
    let mut t = job.clone();
    t.prompt = Some(String::from_utf8(Prompt::user(USER).to_json())?);
    cases.push(("system prompt dropped", t, &[Rule::Commitment]));
    let mut t = receipt.clone();
    t.prompt = Some(String::from_utf8(Prompt::user(USER).to_json())?);
    cases.push(("system prompt dropped, receipt", t, &[Rule::Prompt]));
    let mut t = job.clone();
    t.finish_reason = match t.finish_reason {
        FinishReason::Stop => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    cases.push(("finish reason", t.clone(), &[Rule::FinishReason]));
    seal(&mut t);
    cases.push(("finish reason committed", t, &[Rule::FinishReason]));
    let mut t = job.clone();
    t.sampler_version = 1;
    seal(&mut t);
    cases.push(("sampler version", t, &[Rule::SamplerVersion]));

    let transcripts: Vec<Transcript> = cases.iter().map(|(_, t, _)| t.clone()).collect();
    let out = verify(&[], &jsonl(&transcripts)?)?;
    ensure!(out.status.code() == Some(3), "{}", out.status);
    let v = verdicts(&out)?;
    ensure!(v.len() == cases.len(), "{} verdicts", v.len());
    for ((name, t, rules), verdict) in cases.iter().zip(&v) {
        println!("tamper {name}: {:?}", verdict.failed_rules);
        ensure!(!verdict.is_honest(), "{name}: judged honest");
        // A committed tamper is caught by what it changed, not by the commitment.
        let committed = t.recompute_commitment(&prompt_ids) == t.commitment;
        ensure!(
            committed != verdict.failed(Rule::Commitment) || name.contains("system prompt"),
            "{name}: commitment rule {:?}",
            verdict.failed_rules
        );
        for rule in *rules {
            ensure!(
                verdict.failed(*rule),
                "{name}: {rule} did not fail: {verdict:?}"
            );
        }
    }
    // The swapped token is far from the model's choice; a wrong seed moves the picks.
    let verdict_of = |name: &str| {
        cases
            .iter()
            .position(|(n, _, _)| *n == name)
            .map(|i| &v[i])
            .ok_or_else(|| eyre!("no case {name}"))
    };
    let swapped = verdict_of("one output id swapped and committed")?;
    ensure!(
        swapped.failed(Rule::Margin)
            && !swapped.failed(Rule::Commitment)
            && swapped.worst_positions.iter().any(|w| w.position == 1),
        "{swapped:?}"
    );
    let seed = verdict_of("seed committed")?;
    ensure!(
        seed.failed(Rule::Margin) || seed.failed(Rule::FlipRate),
        "{seed:?}"
    );

    // A transcript of another model: bad input, not a verdict.
    let mut other = job.clone();
    other.model_id = B256::repeat_byte(0x42);
    let out = verify(&[], &serde_json::to_string(&other)?)?;
    ensure!(out.status.code() == Some(2) && out.stdout.is_empty());
    // An id outside the vocabulary cannot be scored: bad input.
    let mut outside = job.clone();
    outside.output_ids[0] = 10_000_000;
    let out = verify(&[], &serde_json::to_string(&outside)?)?;
    ensure!(out.status.code() == Some(2), "{}", out.status);
    Ok(())
}
