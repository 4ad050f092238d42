//! `infera deploy` as an operator runs it: the real binary against a real anvil.

use std::process::Command;

use alloy::{
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, B256},
    providers::{Provider, ProviderBuilder},
};
use eyre::{Result, ensure, eyre};
use infera::{
    chain::bindings::{JobEscrow, ModelRegistry, Staking},
    devnet::anvil_path,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Report {
    deployment: infera::deploy::Deployment,
    default_model_id: Option<B256>,
    pending_governance: Option<Address>,
}

fn anvil() -> Result<AnvilInstance> {
    Ok(Anvil::at(anvil_path()).try_spawn()?)
}

/// Writes anvil's first dev key (public test material) to a file the way an operator would.
fn key_file(anvil: &AnvilInstance, name: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("infera-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("deployer.key");
    std::fs::write(
        &path,
        format!("0x{}\n", alloy::hex::encode(anvil.first_key().to_bytes())),
    )?;
    Ok(path)
}

fn infera(args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_infera"))
        .args(args)
        .env_remove("INFERA_PRIVATE_KEY")
        .output()?)
}

#[tokio::test]
async fn deploy_wires_contracts_and_hands_over_governance() -> Result<()> {
    let anvil = anvil()?;
    let key = key_file(&anvil, "ok")?;
    let governance = anvil.addresses()[1];
    let output = infera(&[
        "deploy",
        "--rpc-url",
        &anvil.endpoint(),
        "--private-key-file",
        key.to_str().ok_or_else(|| eyre!("path"))?,
        "--governance",
        &governance.to_string(),
    ])?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Report = serde_json::from_slice(&output.stdout)?;
    let d = report.deployment;
    ensure!(report.pending_governance == Some(governance));

    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    for address in [d.token, d.model_registry, d.staking, d.job_escrow] {
        ensure!(
            !provider.get_code_at(address).await?.is_empty(),
            "no code at {address}"
        );
    }
    let staking = Staking::new(d.staking, &provider);
    let escrow = JobEscrow::new(d.job_escrow, &provider);
    let registry = ModelRegistry::new(d.model_registry, &provider);
    ensure!(
        staking.jobEscrow().call().await? == d.job_escrow,
        "staking wired to the escrow"
    );
    ensure!(escrow.staking().call().await? == d.staking);
    ensure!(registry.modelCount().call().await? == alloy::primitives::U256::from(1));
    let model_id = report
        .default_model_id
        .ok_or_else(|| eyre!("default model not registered"))?;
    ensure!(
        registry.model(model_id).call().await?.weightsSha256
            == infera::deploy::DEFAULT_MODEL_SHA256
    );
    ensure!(registry.pendingOwner().call().await? == governance);
    ensure!(staking.pendingOwner().call().await? == governance);
    ensure!(escrow.pendingOwner().call().await? == governance);
    Ok(())
}

#[tokio::test]
async fn bad_key_and_out_of_bounds_parameters_fail_clearly() -> Result<()> {
    let anvil = anvil()?;
    let dir = std::env::temp_dir().join(format!("infera-cli-{}-bad", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bad = dir.join("bad.key");
    std::fs::write(&bad, "0xthis-is-not-hex-but-could-be-secret")?;
    let output = infera(&[
        "deploy",
        "--rpc-url",
        &anvil.endpoint(),
        "--private-key-file",
        bad.to_str().unwrap_or(""),
    ])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success());
    ensure!(stderr.contains("is not a 32-byte hex string"), "{stderr}");
    ensure!(
        !stderr.contains("could-be-secret"),
        "the key must never be printed: {stderr}"
    );

    let output = infera(&["deploy", "--rpc-url", &anvil.endpoint()])?;
    ensure!(!output.status.success());
    ensure!(String::from_utf8_lossy(&output.stderr).contains("no private key"));

    // A challenge window below the contract's minimum is refused by the contract itself.
    let key = key_file(&anvil, "bounds")?;
    let output = infera(&[
        "deploy",
        "--rpc-url",
        &anvil.endpoint(),
        "--private-key-file",
        key.to_str().ok_or_else(|| eyre!("path"))?,
        "--challenge-window",
        "1",
    ])?;
    ensure!(
        !output.status.success(),
        "a 1-second challenge window must be refused"
    );
    ensure!(output.stdout.is_empty(), "nothing is reported as deployed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("ParameterOutOfBounds"),
        "the contract's error is decoded: {stderr}"
    );
    Ok(())
}
