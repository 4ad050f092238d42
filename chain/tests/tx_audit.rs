//! Defects the audit of the transaction manager found (issue 9), each a test that failed before
//! its fix: a lagging receipt, a reorganised step, compounding fee bumps, credentials in errors.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use common::{db_path, manager, mine, open_log, rpc, start_anvil, transfer};
use eyre::{Result, bail};
use infera_chain::tx::{GAP_FILL_KIND, TxConfig, TxError, TxManager, TxOutcome};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn config() -> TxConfig {
    TxConfig {
        resubmit_after: Duration::from_secs(3600),
        poll_interval: Duration::from_millis(100),
        ..TxConfig::default()
    }
}

/// A minimal JSON-RPC-over-HTTP proxy in front of anvil: while `lag_receipts` is set, it answers
/// `eth_getTransactionReceipt` with `null`, as a load-balanced node one block behind does.
struct LaggingProxy {
    url: String,
    lag_receipts: Arc<AtomicBool>,
}

impl LaggingProxy {
    async fn start(upstream: DynProvider) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let lag_receipts = Arc::new(AtomicBool::new(false));
        let lag = Arc::clone(&lag_receipts);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let lag = Arc::clone(&lag);
                tokio::spawn(async move {
                    let _ = serve(socket, upstream, lag).await;
                });
            }
        });
        Ok(Self { url, lag_receipts })
    }
}

async fn serve(mut socket: TcpStream, upstream: DynProvider, lag: Arc<AtomicBool>) -> Result<()> {
    let mut buffer = Vec::new();
    loop {
        // Headers.
        let header_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let headers = String::from_utf8_lossy(&buffer[..header_end]).to_lowercase();
        let length: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap_or(0))
            .unwrap_or(0);
        while buffer.len() < header_end + length {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let body: Value = serde_json::from_slice(&buffer[header_end..header_end + length])?;
        buffer.drain(..header_end + length);
        let id = body["id"].clone();
        let method = body["method"].as_str().unwrap_or_default().to_owned();
        let params = body["params"].clone();
        let answer = if method == "eth_getTransactionReceipt" && lag.load(Ordering::SeqCst) {
            json!({"jsonrpc": "2.0", "id": id, "result": null})
        } else {
            match upstream
                .raw_request::<_, Value>(method.into(), params)
                .await
            {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                Err(error) => {
                    let payload = error
                        .as_error_resp()
                        .map(|p| json!({"code": p.code, "message": p.message, "data": p.data}))
                        .unwrap_or_else(|| json!({"code": -32603, "message": error.to_string()}));
                    json!({"jsonrpc": "2.0", "id": id, "error": payload})
                }
            }
        };
        let text = answer.to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            text.len(),
            text
        );
        socket.write_all(response.as_bytes()).await?;
    }
}

/// A node behind a load balancer reports the nonce as used (the transaction count) before the
/// node that answers the receipt query has the block. `settle` then marks our own mined
/// transaction `replaced`, for good: `confirmed()` says `Replaced`, `outcome()` says `Replaced`
/// although the step was mined, and `Chain::step` sends the step a second time.
#[tokio::test]
async fn a_lagging_receipt_never_marks_a_mined_transaction_replaced() -> Result<()> {
    let (anvil, direct) = start_anvil(&["--no-mining"])?;
    let proxy = LaggingProxy::start(direct.clone()).await?;
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(proxy.url.parse()?)
        .erased();
    let db = db_path("lagging-receipt");
    let manager = manager(&anvil, &provider, 0, &db, config()).await?;
    let job = U256::from(7);
    let pending = manager
        .send("accept", Some(job), transfer(anvil.addresses()[1]))
        .await?;
    mine(&direct).await?;
    // Mined: the direct node has its receipt.
    let receipt = direct.get_transaction_receipt(pending.first_hash).await?;
    assert!(receipt.is_some_and(|r| r.status()), "mined and succeeded");

    // One poll lands on a node that has not got the block yet.
    proxy.lag_receipts.store(true, Ordering::SeqCst);
    let outcome = tokio::time::timeout(Duration::from_secs(2), pending.clone().confirmed()).await;
    proxy.lag_receipts.store(false, Ordering::SeqCst);
    assert!(
        !matches!(outcome, Ok(Err(TxError::Replaced { .. }))),
        "confirmed() said Replaced for a transaction that was mined"
    );
    // Once the lagging node catches up, the step is confirmed and the log says it was mined.
    let receipt = tokio::time::timeout(Duration::from_secs(60), pending.clone().confirmed())
        .await
        .map_err(|_| eyre::eyre!("not confirmed after the lag"))??;
    assert_eq!(receipt.transaction_hash, pending.first_hash);
    let logged = manager.outcome("accept", job).await?;
    assert_eq!(
        logged,
        Some(TxOutcome::Mined(pending.first_hash)),
        "the log lost the mined step (confirmed() during the lag said {outcome:?})"
    );
    Ok(())
}

/// A step confirmed (1 confirmation, the executor's default) and then reorganised away: the
/// transaction is no longer in the node's pool. The log says `mined` for good, the keeper never
/// looks at it again, and its nonce is taken by a 0-value gap filler: the step is lost while
/// the executor's store has moved past it (e.g. a submission that will now expire, collateral
/// slashed).
#[tokio::test]
async fn a_reorganised_step_is_rebroadcast_not_gap_filled() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("reorged-step");
    let manager = manager(&anvil, &provider, 0, &db, config()).await?;
    let snapshot = rpc(&provider, "evm_snapshot", json!([])).await?;
    let job = U256::from(9);
    let pending = manager
        .send("submit", Some(job), transfer(anvil.addresses()[1]))
        .await?;
    mine(&provider).await?;
    let receipt = pending.clone().confirmed().await?;
    assert!(receipt.status());
    // A reorg (here: the block reverted); the transaction is gone from the node.
    rpc(&provider, "evm_revert", json!([snapshot])).await?;
    let in_pool = provider
        .get_transaction_by_hash(pending.first_hash)
        .await?
        .is_some();
    eprintln!("after the reorg the node's pool has the step: {in_pool}");

    let keeper = tokio::spawn(manager.clone().run(std::future::pending()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    mine(&provider).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    keeper.abort();

    let entries = manager.log().entries(manager.address()).await?;
    for e in &entries {
        eprintln!(
            "nonce {} kind {} status {:?} {}",
            e.nonce, e.kind, e.status, e.tx_hash
        );
    }
    let step_mined = provider
        .get_transaction_receipt(pending.first_hash)
        .await?
        .is_some();
    let filled = entries
        .iter()
        .any(|e| e.kind == GAP_FILL_KIND && e.nonce == pending.nonce);
    if filled || !step_mined {
        bail!(
            "the reorganised step was not re-broadcast (mined again: {step_mined}); its nonce \
             {} was filled with a self-transfer: {filled}",
            pending.nonce
        );
    }
    Ok(())
}

/// Transport errors quote the RPC URL (reqwest: "error sending request for url (…)"), and the
/// transaction manager shows them unredacted: `TxError`'s `Display`, and the lines it logs with
/// `%error` (`send`: "broadcast failed transiently", `run`: "transaction keeper pass failed",
/// `confirmed`: "receipt poll failed").
#[tokio::test]
async fn tx_errors_never_show_the_rpc_api_key() -> Result<()> {
    let key = "0123456789abcdef0123456789abcdef";
    // Nothing listens on port 9: the request fails at the transport.
    let url = format!("http://127.0.0.1:9/v3/{key}");
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url.parse()?)
        .erased();
    let db = db_path("redact");
    let signer = PrivateKeySigner::random();
    let manager = TxManager::new(provider, signer, 1, open_log(&db).await?, config()).await?;
    let error = match manager
        .send("accept", Some(U256::from(1)), transfer(Address::ZERO))
        .await
    {
        Ok(_) => bail!("sent through a closed port"),
        Err(error) => error,
    };
    let shown = error.to_string();
    eprintln!("shown: {shown}");
    assert!(!shown.contains(key), "the API key is in the error: {shown}");
    Ok(())
}

/// A transaction that is not mined for a reason fees cannot fix (blocks not produced: a halted
/// sequencer, a stalled devnet, a node that does not propagate) is re-signed every
/// `resubmit_after` with +12.5% on *both* fees, compounding, with no cap by default
/// (`max_fee_per_gas: None`): the priority fee — paid in full to the block builder once it is
/// mined — grows without bound, and the log gains a row per bump. After 40 bumps the tip is
/// 1.125^40 ≈ 111× the node's estimate, although the estimate never changed.
#[tokio::test]
async fn fee_bumps_do_not_compound_while_the_bid_meets_the_market() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("compound");
    let manager = manager(
        &anvil,
        &provider,
        0,
        &db,
        TxConfig {
            resubmit_after: Duration::from_millis(50),
            poll_interval: Duration::from_millis(20),
            ..TxConfig::default()
        },
    )
    .await?;
    let pending = manager
        .send(
            "finalize",
            Some(U256::from(3)),
            transfer(anvil.addresses()[1]),
        )
        .await?;
    let keeper = tokio::spawn(manager.clone().run(std::future::pending()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    keeper.abort();
    let entries = manager.log().entries(manager.address()).await?;
    let first = &entries[0];
    let newest = entries.last().expect("rows");
    let estimate = provider.estimate_eip1559_fees().await?;
    eprintln!(
        "{} rows for nonce {}; priority fee {} -> {} (node's estimate now {}), max fee {} -> {}",
        entries.len(),
        pending.nonce,
        first.max_priority_fee_per_gas,
        newest.max_priority_fee_per_gas,
        estimate.max_priority_fee_per_gas,
        first.max_fee_per_gas,
        newest.max_fee_per_gas
    );
    assert!(
        newest.max_priority_fee_per_gas
            <= 4 * estimate
                .max_priority_fee_per_gas
                .max(first.max_priority_fee_per_gas),
        "the tip grew to {}x the node's estimate while nothing about the price changed",
        newest.max_priority_fee_per_gas / estimate.max_priority_fee_per_gas.max(1)
    );
    Ok(())
}

/// `looks_like_key` requires two digits: a 32-character base-62 API key (Alchemy's format) with
/// fewer than two digits — about 2.6% of random keys — is logged in clear by `redact_url` /
/// `redact_text`, and so is any letters-only token.
#[test]
fn redaction_masks_keys_with_few_digits() {
    let key = "AbCdEfGhIjKlMnOpQrStUvWxYz1AbCdE"; // 32 base-62 characters, one digit
    let url = format!("https://eth-mainnet.g.alchemy.com/v2/{key}");
    let shown = infera_chain::redact::redact_url(&url);
    let text = infera_chain::redact::redact_text(&format!("error sending request for url ({url})"));
    eprintln!("{shown}\n{text}");
    assert!(
        !shown.contains(key) && !text.contains(key),
        "the key is shown: {shown}"
    );
}
