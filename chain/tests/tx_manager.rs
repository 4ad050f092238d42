//! The transaction manager on a real anvil with automine off (`--no-mining`: blocks only when a
//! test mines one) or interval mining, driving anvil's RPC extensions to drop transactions and
//! raise the base fee. Every wait polls with a generous deadline; nothing asserts on time.

mod common;

use std::{future::Future, time::Duration};

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, Bytes, U256, keccak256},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use common::{db_path, manager, mine, open_log, rpc, start_anvil, transfer};
use eyre::{Result, WrapErr, bail, ensure};
use infera_chain::{
    deploy::ChainError,
    tx::{GAP_FILL_KIND, PendingTx, TxConfig, TxError, TxLogEntry, TxManager, TxOutcome, TxStatus},
};
use serde_json::json;
use tokio::task::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(60);

fn config(resubmit_after: Duration) -> TxConfig {
    TxConfig {
        resubmit_after,
        poll_interval: Duration::from_millis(100),
        ..TxConfig::default()
    }
}

fn keeper(manager: &TxManager) -> JoinHandle<()> {
    tokio::spawn(manager.clone().run(std::future::pending()))
}

/// Polls `check` until it holds, failing after [`DEADLINE`].
async fn wait_until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Awaits a transaction's outcome, failing (instead of hanging) after [`DEADLINE`].
async fn confirmed(
    pending: PendingTx,
) -> Result<Result<alloy::rpc::types::TransactionReceipt, TxError>> {
    tokio::time::timeout(DEADLINE, pending.confirmed())
        .await
        .map_err(|_| eyre::eyre!("timed out waiting for a transaction's outcome"))
}

/// Mines blocks until `address` has `count` transactions mined.
async fn mine_until_count(provider: &DynProvider, address: Address, count: u64) -> Result<()> {
    wait_until(&format!("{count} transactions are mined"), || async {
        if provider.get_transaction_count(address).await? >= count {
            return Ok(true);
        }
        mine(provider).await?;
        Ok(false)
    })
    .await
}

async fn nonce_entries(manager: &TxManager, nonce: u64) -> Result<Vec<TxLogEntry>> {
    Ok(manager
        .log()
        .entries(manager.address())
        .await?
        .into_iter()
        .filter(|e| e.nonce == nonce)
        .collect())
}

/// Makes the next block's base fee far above `max_fee` and mines it (empty of our transactions).
async fn spike_base_fee(provider: &DynProvider, max_fee: u128) -> Result<()> {
    rpc(
        provider,
        "anvil_setNextBlockBaseFeePerGas",
        json!([U256::from(max_fee * 4)]),
    )
    .await?;
    mine(provider).await
}

#[tokio::test]
async fn dropped_transaction_is_rebroadcast_and_the_ones_behind_it_mined() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("dropped");
    let manager = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(3600))).await?;
    let keeper = keeper(&manager);
    let to = anvil.addresses()[1];

    let first = manager
        .send("first", Some(U256::from(1)), transfer(to))
        .await?;
    let second = manager
        .send("second", Some(U256::from(2)), transfer(to))
        .await?;
    assert_eq!((first.nonce, second.nonce), (0, 1));
    rpc(
        &provider,
        "anvil_dropTransaction",
        json!([first.first_hash]),
    )
    .await?;
    ensure!(
        provider
            .get_transaction_by_hash(first.first_hash)
            .await?
            .is_none(),
        "anvil still has the dropped transaction"
    );

    wait_until("the dropped transaction is back in the mempool", || async {
        Ok(provider
            .get_transaction_by_hash(first.first_hash)
            .await?
            .is_some())
    })
    .await?;
    mine_until_count(&provider, manager.address(), 2).await?;
    let first_hash = first.first_hash;
    let second_hash = second.first_hash;
    let r1 = confirmed(first).await??;
    let r2 = confirmed(second).await??;
    // The same signed bytes were re-broadcast: no fee bump was due.
    assert_eq!(r1.transaction_hash, first_hash);
    assert_eq!(r2.transaction_hash, second_hash);
    assert_eq!(
        manager.outcome("first", U256::from(1)).await?,
        Some(TxOutcome::Mined(first_hash))
    );
    assert_eq!(manager.pending_count().await?, 0);
    keeper.abort();
    Ok(())
}

#[tokio::test]
async fn stuck_transaction_under_a_base_fee_spike_is_replaced_with_bumped_fees() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("spike");
    let manager = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(1))).await?;
    let to = anvil.addresses()[1];

    let pending = manager
        .send("accept", Some(U256::from(7)), transfer(to))
        .await?;
    let original = nonce_entries(&manager, 0).await?;
    assert_eq!(original.len(), 1);
    let original = &original[0];
    spike_base_fee(&provider, original.max_fee_per_gas).await?;
    assert_eq!(
        provider.get_transaction_count(manager.address()).await?,
        0,
        "the underpriced transaction must not be mined"
    );

    let keeper = keeper(&manager);
    wait_until("the stuck transaction is re-signed", || async {
        Ok(nonce_entries(&manager, 0).await?.len() >= 2)
    })
    .await?;
    mine_until_count(&provider, manager.address(), 1).await?;
    let first_hash = pending.first_hash;
    let receipt = confirmed(pending).await??;
    assert_ne!(
        receipt.transaction_hash, first_hash,
        "the replacement is the one mined"
    );

    // Wait for the keeper to settle the nonce too (confirmed() already did; either may be first).
    let entries = nonce_entries(&manager, 0).await?;
    assert!(entries.len() >= 2);
    let mined: Vec<_> = entries
        .iter()
        .filter(|e| e.status == TxStatus::Mined)
        .collect();
    assert_eq!(mined.len(), 1);
    assert_eq!(mined[0].tx_hash, receipt.transaction_hash);
    assert!(
        entries
            .iter()
            .filter(|e| e.tx_hash != receipt.transaction_hash)
            .all(|e| e.status == TxStatus::Superseded),
        "every other hash of the nonce is superseded: {entries:?}"
    );
    assert_eq!(entries[0].tx_hash, first_hash);
    // Each signature bids at least 12.5% more than the one before it.
    for pair in entries.windows(2) {
        assert!(pair[1].max_fee_per_gas >= infera_chain::tx::bumped(pair[0].max_fee_per_gas));
        assert!(
            pair[1].max_priority_fee_per_gas
                >= infera_chain::tx::bumped(pair[0].max_priority_fee_per_gas)
        );
    }
    assert_eq!(
        manager.outcome("accept", U256::from(7)).await?,
        Some(TxOutcome::Mined(receipt.transaction_hash))
    );
    keeper.abort();
    Ok(())
}

#[tokio::test]
async fn transaction_outbid_by_the_market_while_waiting_is_bumped_on_schedule() -> Result<()> {
    // Blocks hold one transfer: a better-paying transaction keeps ours out of the next block.
    let (anvil, provider) = start_anvil(&["--no-mining", "--gas-limit", "30000"])?;
    let db = db_path("schedule");
    let manager = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(1))).await?;

    let pending = manager
        .send(
            "submit",
            Some(U256::from(9)),
            transfer(anvil.addresses()[1]),
        )
        .await?;
    let first_hash = pending.first_hash;
    let ours = nonce_entries(&manager, 0).await?[0].clone();
    // Someone outbids it; the block that includes them is full, so the base fee rises and the
    // market's tips with it, while ours waits in the mempool.
    let other = ProviderBuilder::new()
        .wallet(PrivateKeySigner::from(anvil.keys()[3].clone()))
        .connect_http(anvil.endpoint_url());
    let _outbid = *other
        .send_transaction(
            transfer(anvil.addresses()[2])
                .with_gas_limit(21_000)
                .with_max_fee_per_gas(ours.max_fee_per_gas * 4)
                .with_max_priority_fee_per_gas(ours.max_priority_fee_per_gas.max(1) * 100),
        )
        .await?
        .tx_hash();
    mine(&provider).await?;
    ensure!(
        provider.get_transaction_count(manager.address()).await? == 0
            && provider
                .get_transaction_by_hash(first_hash)
                .await?
                .is_some(),
        "ours must still wait in the mempool"
    );

    let keeper = keeper(&manager);
    wait_until(
        "the replacement displaces the original in the mempool",
        || async {
            let entries = nonce_entries(&manager, 0).await?;
            let Some(newest) = entries.last().filter(|e| e.tx_hash != first_hash) else {
                return Ok(false);
            };
            Ok(provider
                .get_transaction_by_hash(newest.tx_hash)
                .await?
                .is_some()
                && provider
                    .get_transaction_by_hash(first_hash)
                    .await?
                    .is_none())
        },
    )
    .await?;
    keeper.abort();
    mine_until_count(&provider, manager.address(), 1).await?;
    let receipt = confirmed(pending).await??;
    let entries = nonce_entries(&manager, 0).await?;
    let mined = entries
        .iter()
        .find(|e| e.tx_hash == receipt.transaction_hash)
        .ok_or_else(|| eyre::eyre!("the mined hash is not in the log"))?;
    assert_ne!(mined.tx_hash, first_hash, "a replacement is the one mined");
    assert_eq!(mined.status, TxStatus::Mined);
    assert!(mined.max_fee_per_gas >= infera_chain::tx::bumped(entries[0].max_fee_per_gas));
    assert!(
        entries
            .iter()
            .filter(|e| e.tx_hash != mined.tx_hash)
            .all(|e| e.status == TxStatus::Superseded),
        "{entries:?}"
    );
    Ok(())
}

#[tokio::test]
async fn nonce_gap_nobody_logged_is_filled() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("gap");
    let manager = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(3600))).await?;

    // Someone else uses the key for nonce 0 (e.g. a manual withdrawal) ...
    let outside = ProviderBuilder::new()
        .wallet(PrivateKeySigner::from(anvil.keys()[0].clone()))
        .connect_http(anvil.endpoint_url());
    let outside_hash = *outside
        .send_transaction(transfer(anvil.addresses()[2]).with_nonce(0))
        .await?
        .tx_hash();
    // ... the manager queues behind it ...
    let ours = manager
        .send(
            "submit",
            Some(U256::from(3)),
            transfer(anvil.addresses()[1]),
        )
        .await?;
    assert_eq!(ours.nonce, 1);
    // ... and the outside transaction is dropped: nonce 0 is a gap nothing in the log covers.
    rpc(&provider, "anvil_dropTransaction", json!([outside_hash])).await?;

    let keeper = keeper(&manager);
    wait_until("the gap is filled", || async {
        Ok(nonce_entries(&manager, 0)
            .await?
            .iter()
            .any(|e| e.kind == GAP_FILL_KIND))
    })
    .await?;
    mine_until_count(&provider, manager.address(), 2).await?;
    let ours_hash = ours.first_hash;
    assert_eq!(confirmed(ours).await??.transaction_hash, ours_hash);
    wait_until("the filler is settled", || async {
        Ok(nonce_entries(&manager, 0)
            .await?
            .iter()
            .any(|e| e.kind == GAP_FILL_KIND && e.status == TxStatus::Mined))
    })
    .await?;
    assert_eq!(manager.pending_count().await?, 0);
    keeper.abort();
    Ok(())
}

#[tokio::test]
async fn restart_during_a_fee_spike_recovers_in_the_background() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("restart");
    let to = anvil.addresses()[1];
    let (accept_hash, submit_hash, max_fee) = {
        let before = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(1))).await?;
        let accept = before
            .send("accept", Some(U256::from(1)), transfer(to))
            .await?;
        let submit = before
            .send("submit", Some(U256::from(2)), transfer(to))
            .await?;
        let max_fee = nonce_entries(&before, 1).await?[0].max_fee_per_gas;
        (accept.first_hash, submit.first_hash, max_fee)
        // The manager and its pending transactions are dropped: the process "crashed".
    };
    spike_base_fee(&provider, max_fee).await?;

    // `new` does not wait for the old transactions: nothing is mined until the test mines.
    let after = tokio::time::timeout(
        DEADLINE,
        manager(&anvil, &provider, 0, &db, config(Duration::from_secs(1))),
    )
    .await
    .wrap_err("TxManager::new blocked on old transactions")??;
    assert_eq!(after.pending_count().await?, 2);
    let accept = after
        .in_flight("accept", U256::from(1))
        .await?
        .ok_or_else(|| eyre::eyre!("accept not in flight"))?;
    let submit = after
        .in_flight("submit", U256::from(2))
        .await?
        .ok_or_else(|| eyre::eyre!("submit not in flight"))?;
    assert_eq!((accept.nonce, accept.first_hash), (0, accept_hash));
    assert_eq!((submit.nonce, submit.first_hash), (1, submit_hash));
    assert!(after.in_flight("accept", U256::from(2)).await?.is_none());

    let keeper = keeper(&after);
    wait_until("both are re-signed with bumped fees", || async {
        Ok(
            nonce_entries(&after, 0).await?.len() >= 2
                && nonce_entries(&after, 1).await?.len() >= 2,
        )
    })
    .await?;
    mine_until_count(&provider, after.address(), 2).await?;
    let accepted = confirmed(accept).await??;
    let submitted = confirmed(submit).await??;
    assert_ne!(accepted.transaction_hash, accept_hash);
    assert_ne!(submitted.transaction_hash, submit_hash);
    assert_eq!(
        after.outcome("submit", U256::from(2)).await?,
        Some(TxOutcome::Mined(submitted.transaction_hash))
    );
    assert!(after.in_flight("accept", U256::from(1)).await?.is_none());
    // A send after the restart takes the next nonce.
    let next = after
        .send("finalize", Some(U256::from(1)), transfer(to))
        .await?;
    assert_eq!(next.nonce, 2);
    keeper.abort();
    Ok(())
}

#[tokio::test]
async fn concurrent_sends_get_distinct_nonces_and_are_all_confirmed() -> Result<()> {
    const SENDS: u64 = 8;
    let (anvil, provider) = start_anvil(&["--block-time", "1"])?;
    let db = db_path("concurrent");
    let manager = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(3600))).await?;
    let keeper = keeper(&manager);
    let to = anvil.addresses()[1];
    let balance_before = provider.get_balance(to).await?;
    let tasks: Vec<_> = (0..SENDS)
        .map(|job| {
            let manager = manager.clone();
            tokio::spawn(async move {
                // Identical transfers: two signed at the same nonce would be one transaction
                // (same bytes, same hash, "already known") and payments would be lost silently.
                let pending = manager
                    .send("accept", Some(U256::from(job)), transfer(to))
                    .await?;
                let nonce = pending.nonce;
                let receipt = confirmed(pending).await??;
                Ok::<_, eyre::Report>((nonce, receipt))
            })
        })
        .collect();
    let mut nonces = Vec::new();
    for task in tasks {
        let (nonce, receipt) = tokio::time::timeout(DEADLINE, task).await???;
        assert!(receipt.status());
        nonces.push(nonce);
    }
    nonces.sort_unstable();
    assert_eq!(nonces, (0..SENDS).collect::<Vec<_>>());
    assert_eq!(
        provider.get_transaction_count(manager.address()).await?,
        SENDS
    );
    // Every transfer happened exactly once.
    assert_eq!(
        provider.get_balance(to).await? - balance_before,
        U256::from(SENDS)
    );
    keeper.abort();
    Ok(())
}

#[tokio::test]
async fn refusals_are_typed_and_consume_nothing() -> Result<()> {
    let (anvil, provider) = start_anvil(&[])?;
    let db = db_path("refusals");
    let manager = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(3600))).await?;

    // A contract that always reverts with JobEscrow's `EmptyEscrow()`:
    // PUSH4 selector, PUSH1 0xe0, SHL, PUSH1 0, MSTORE, PUSH1 4, PUSH1 0, REVERT.
    let selector = &keccak256("EmptyEscrow()")[..4];
    let mut code = vec![0x63];
    code.extend_from_slice(selector);
    code.extend_from_slice(&[
        0x60, 0xe0, 0x1b, 0x60, 0x00, 0x52, 0x60, 0x04, 0x60, 0x00, 0xfd,
    ]);
    let reverter = Address::repeat_byte(0x42);
    rpc(
        &provider,
        "anvil_setCode",
        json!([reverter, Bytes::from(code)]),
    )
    .await?;
    let bare = Address::repeat_byte(0x43);
    rpc(
        &provider,
        "anvil_setCode",
        json!([bare, Bytes::from(vec![0x60, 0x00, 0x60, 0x00, 0xfd])]),
    )
    .await?;

    let call = TransactionRequest::default()
        .with_to(reverter)
        .with_input(Bytes::from(vec![0x01, 0x02, 0x03, 0x04]));
    match manager.send("post", Some(U256::from(1)), call).await {
        Err(error @ TxError::Refused(ChainError::Refused(_))) => {
            assert!(error.to_string().contains("EmptyEscrow"), "{error}");
            assert!(!error.is_transient());
        }
        other => bail!("expected a decoded refusal, got {other:?}"),
    }
    match manager
        .send(
            "post",
            Some(U256::from(2)),
            TransactionRequest::default().with_to(bare),
        )
        .await
    {
        Err(error @ TxError::Refused(_)) => assert!(!error.is_transient()),
        other => bail!("expected a refusal, got {other:?}"),
    }

    // A key with no ETH at all.
    let broke = TxManager::new(
        provider.clone(),
        PrivateKeySigner::random(),
        anvil.chain_id(),
        open_log(&db).await?,
        config(Duration::from_secs(3600)),
    )
    .await?;
    for value in [U256::ZERO, U256::from(1)] {
        let request = TransactionRequest::default()
            .with_to(anvil.addresses()[1])
            .with_value(value);
        match broke.send("stake", None, request).await {
            Err(error @ TxError::InsufficientFunds(_)) => assert!(!error.is_transient()),
            other => bail!("expected insufficient funds, got {other:?}"),
        }
    }
    assert_eq!(broke.pending_count().await?, 0);
    assert_eq!(
        provider
            .get_transaction_count(broke.address())
            .pending()
            .await?,
        0
    );

    // Nothing was logged as pending and no nonce was consumed: the next send takes nonce 0.
    assert_eq!(manager.pending_count().await?, 0);
    assert!(manager.log().entries(manager.address()).await?.is_empty());
    let sent = manager
        .send("post", Some(U256::from(3)), transfer(anvil.addresses()[1]))
        .await?;
    assert_eq!(sent.nonce, 0);
    let receipt = confirmed(sent).await??;
    assert!(receipt.status());
    Ok(())
}

#[tokio::test]
async fn confirmed_waits_for_the_configured_confirmations() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("confirmations");
    let config = TxConfig {
        confirmations: 2,
        ..config(Duration::from_secs(3600))
    };
    let manager = manager(&anvil, &provider, 0, &db, config).await?;
    let keeper = keeper(&manager);
    let pending = manager
        .send(
            "finalize",
            Some(U256::from(4)),
            transfer(anvil.addresses()[1]),
        )
        .await?;
    mine(&provider).await?;
    ensure!(
        provider
            .get_transaction_receipt(pending.first_hash)
            .await?
            .is_some(),
        "the transaction is in the block just mined"
    );
    // One block (the inclusion block) is not two confirmations: it must not return yet.
    let early = tokio::time::timeout(Duration::from_secs(1), pending.clone().confirmed()).await;
    assert!(early.is_err(), "confirmed() returned after one block");
    assert_eq!(
        manager.pending_count().await?,
        1,
        "not final in the log yet"
    );
    mine(&provider).await?;
    let receipt = confirmed(pending.clone()).await??;
    assert_eq!(receipt.transaction_hash, pending.first_hash);
    keeper.abort();
    Ok(())
}

#[tokio::test]
async fn nonce_used_outside_the_log_is_replaced_and_a_mined_revert_is_reported() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("replaced");
    let manager = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(3600))).await?;
    let pending = manager
        .send("claim", Some(U256::from(5)), transfer(anvil.addresses()[1]))
        .await?;
    let ours = nonce_entries(&manager, 0).await?;
    // The same key replaces it at nonce 0 from outside the manager, paying more.
    let outside = ProviderBuilder::new()
        .wallet(PrivateKeySigner::from(anvil.keys()[0].clone()))
        .connect_http(anvil.endpoint_url());
    let _outside_hash = *outside
        .send_transaction(
            transfer(anvil.addresses()[2])
                .with_nonce(0)
                .with_max_fee_per_gas(ours[0].max_fee_per_gas * 2)
                .with_max_priority_fee_per_gas(ours[0].max_priority_fee_per_gas * 2),
        )
        .await?
        .tx_hash();
    mine_until_count(&provider, manager.address(), 1).await?;
    match confirmed(pending).await? {
        Err(TxError::Replaced { kind, nonce }) => assert_eq!((kind.as_str(), nonce), ("claim", 0)),
        other => bail!("expected Replaced, got {other:?}"),
    }
    assert_eq!(
        manager.outcome("claim", U256::from(5)).await?,
        Some(TxOutcome::Replaced)
    );
    assert_eq!(
        nonce_entries(&manager, 0).await?[0].status,
        TxStatus::Replaced
    );

    // A transaction that passes (here: skips) estimation but reverts when mined.
    let reverter = Address::repeat_byte(0x43);
    rpc(
        &provider,
        "anvil_setCode",
        json!([reverter, Bytes::from(vec![0x60, 0x00, 0x60, 0x00, 0xfd])]),
    )
    .await?;
    let request = TransactionRequest::default()
        .with_to(reverter)
        .with_gas_limit(50_000);
    let pending = manager
        .send("challenge", Some(U256::from(6)), request)
        .await?;
    assert_eq!(pending.nonce, 1, "the next nonce after the replaced one");
    let hash = pending.first_hash;
    mine_until_count(&provider, manager.address(), 2).await?;
    match confirmed(pending).await? {
        Err(TxError::Reverted {
            kind,
            tx_hash,
            receipt,
        }) => {
            assert_eq!((kind.as_str(), tx_hash), ("challenge", hash));
            assert!(!receipt.status());
        }
        other => bail!("expected Reverted, got {other:?}"),
    }
    assert_eq!(
        manager.outcome("challenge", U256::from(6)).await?,
        Some(TxOutcome::Reverted(hash))
    );
    assert!(
        manager
            .in_flight("challenge", U256::from(6))
            .await?
            .is_none()
    );
    Ok(())
}

/// Registration steps are sent for no job: after a restart, those still pending are found by kind
/// (so the executor awaits them instead of staking twice), and only those.
#[tokio::test]
async fn pending_registration_steps_are_found_by_kind_after_a_restart() -> Result<()> {
    let (anvil, provider) = start_anvil(&["--no-mining"])?;
    let db = db_path("in-flight-kind");
    let to = anvil.addresses()[1];
    let (first_stake, second_stake) = {
        let before = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(30))).await?;
        before.send("approve", None, transfer(to)).await?;
        let first = before.send("stake", None, transfer(to)).await?;
        // A job step of the same kind name is not a registration step.
        before
            .send("stake", Some(U256::from(7)), transfer(to))
            .await?;
        let second = before.send("stake", None, transfer(to)).await?;
        (
            (first.nonce, first.first_hash),
            (second.nonce, second.first_hash),
        )
        // Dropped with its transactions in the mempool: the process "crashed".
    };
    let after = manager(&anvil, &provider, 0, &db, config(Duration::from_secs(30))).await?;
    let stakes = after.in_flight_kind("stake").await?;
    let found: Vec<_> = stakes.iter().map(|p| (p.nonce, p.first_hash)).collect();
    assert_eq!(found, vec![first_stake, second_stake]);
    assert!(
        stakes
            .iter()
            .all(|p| p.kind == "stake" && p.job_id.is_none())
    );
    assert_eq!(after.in_flight_kind("approve").await?.len(), 1);
    assert!(after.in_flight_kind("register").await?.is_empty());

    mine_until_count(&provider, after.address(), 4).await?;
    for pending in stakes {
        confirmed(pending).await??;
    }
    assert!(after.in_flight_kind("stake").await?.is_empty());
    Ok(())
}
