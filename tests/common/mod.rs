//! What the executor tests share: a devnet with funded actors, executor configurations, waiting.

#![allow(dead_code)]

pub mod disputes;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use eyre::{Result, ensure, eyre};
use infera::{
    devnet::{self, Devnet, DevnetConfig},
    market::{JobMarket, new_salt},
};
use infera_chain::bindings::IJobEscrow;
use infera_executor::ExecutorConfig;
use infera_protocol::models::DEFAULT_MODEL;

/// Dev account indexes: 0 governance, 1 requester, 2 executor, 3 keeper, 4 gateway.
pub const REQUESTER: usize = 1;
pub const EXECUTOR: usize = 2;
pub const KEEPER: usize = 3;
pub const GATEWAY: usize = 4;

/// One of anvil's dev accounts with the job market client signing as it.
pub struct Actor {
    pub signer: PrivateKeySigner,
    pub address: Address,
    pub market: JobMarket<DynProvider>,
}

impl Actor {
    pub fn new(devnet: &Devnet, index: usize) -> Result<Self> {
        let signer = devnet
            .signer(index)
            .ok_or_else(|| eyre!("no dev key {index}"))?;
        let address = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer.clone()))
            .connect_http(devnet.anvil.endpoint_url())
            .erased();
        Ok(Self {
            signer,
            address,
            market: JobMarket::new(&devnet.deployment, provider),
        })
    }
}

/// A devnet, a requester that approved the escrow, and a scratch directory.
pub struct Net {
    pub devnet: Devnet,
    pub requester: Actor,
    pub keeper: Actor,
    pub dir: PathBuf,
}

impl Net {
    pub async fn start(name: &str) -> Result<Self> {
        let devnet = devnet::start(&DevnetConfig {
            port: None,
            ..DevnetConfig::default()
        })
        .await?;
        let requester = Actor::new(&devnet, REQUESTER)?;
        requester
            .market
            .approve(devnet.deployment.job_escrow)
            .await?;
        let keeper = Actor::new(&devnet, KEEPER)?;
        let dir = std::env::temp_dir().join(format!(
            "infera-{name}-{}-{}",
            std::process::id(),
            devnet.anvil.port()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            devnet,
            requester,
            keeper,
            dir,
        })
    }

    pub fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .connect_http(self.devnet.anvil.endpoint_url())
            .erased()
    }

    /// An executor configuration for dev account `index`, its key in a file, its database and
    /// HTTP port fresh.
    pub fn executor_config(&self, index: usize, gateways: Vec<Address>) -> Result<ExecutorConfig> {
        let signer = self
            .devnet
            .signer(index)
            .ok_or_else(|| eyre!("no dev key {index}"))?;
        let key_file = self.dir.join(format!("executor-{index}.key"));
        std::fs::write(&key_file, signer.to_bytes().to_string())?;
        Ok(ExecutorConfig {
            rpc_url: self.devnet.anvil.endpoint(),
            job_escrow: Some(self.devnet.deployment.job_escrow),
            private_key_file: Some(key_file),
            database: Some(self.dir.join(format!("executor-{index}.db"))),
            listen: "127.0.0.1:0".parse()?,
            gateways,
            poll_interval_ms: 100,
            max_jobs: 2,
            max_running: 2,
            max_queued: 2,
            ..ExecutorConfig::default()
        })
    }

    pub async fn now(&self) -> Result<u64> {
        let block = self
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| eyre!("no latest block"))?;
        Ok(block.header.timestamp)
    }

    pub async fn advance(&self, seconds: u64) -> Result<()> {
        let provider = self.provider();
        provider.anvil_increase_time(seconds).await?;
        provider.anvil_mine(Some(1), None).await?;
        Ok(())
    }

    pub async fn status(&self, job_id: U256) -> Result<u8> {
        Ok(self.keeper.market.escrow.jobStatus(job_id).call().await?)
    }

    /// A job for the default model: up to 256 + `max_output` tokens, sampled at T = 0.8.
    pub async fn spec(&self, max_output: u32) -> Result<IJobEscrow::JobSpec> {
        Ok(IJobEscrow::JobSpec {
            modelId: self.devnet.model_id,
            executor: Address::ZERO,
            callback: Address::ZERO,
            callbackGasLimit: 0,
            maxInputTokens: 256,
            maxOutputTokens: max_output,
            maxInputPrice: 1_000_000,
            maxOutputPrice: 2_000_000,
            deadline: self.now().await? + 1_800,
            sampling: infera_protocol::SamplingParams {
                temperature_ppm: 800_000,
                top_k: 40,
                top_p_ppm: 950_000,
            }
            .into(),
            salt: new_salt(),
        })
    }

    /// Posts a job as the requester.
    pub async fn post(
        &self,
        spec: IJobEscrow::JobSpec,
        prompt: &'static [u8],
    ) -> Result<(U256, IJobEscrow::Job)> {
        let (posted, _) = self
            .requester
            .market
            .post_job(spec, Bytes::from_static(prompt))
            .await?;
        Ok((posted.jobId, posted.job))
    }

    /// Waits until the job reaches `status` on-chain.
    pub async fn wait_status(&self, job_id: U256, status: u8, timeout: Duration) -> Result<()> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.status(job_id).await?;
            if now == status {
                return Ok(());
            }
            ensure!(
                tokio::time::Instant::now() < until,
                "job {job_id} still in status {now}, waited for {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Starts the real `infera executor` process with `config` written to a file, `crash_after` set
/// when given (see `ExecutorConfig::crash_after`).
pub fn spawn_executor(
    net: &Net,
    config: &ExecutorConfig,
    crash_after: Option<&str>,
) -> Result<Child> {
    let path = net.dir.join("executor.toml");
    std::fs::write(&path, toml::to_string(config)?)?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_infera"));
    command
        .args(["executor", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn,infera_executor=info,infera_chain=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(stage) = crash_after {
        command.env("INFERA_EXECUTOR_CRASH_AFTER", stage);
    }
    Ok(command.spawn()?)
}

/// Waits for the process to die by itself (an injected crash).
pub async fn wait_crash(child: &mut Child, timeout: Duration) -> Result<()> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(exit) = child.try_wait()? {
            ensure!(
                !exit.success(),
                "the executor exited cleanly instead of crashing"
            );
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "the executor did not crash"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kill -9`, and reap.
pub fn kill(child: &mut Child) -> Result<()> {
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// A TCP port free right now on 127.0.0.1 (for an executor process whose address the test must
/// know before it starts).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The database file an executor configuration names.
pub fn database(config: &ExecutorConfig) -> Result<&std::path::Path> {
    config
        .database
        .as_deref()
        .ok_or_else(|| eyre!("the test configuration names no database"))
}

/// The default model must be in the cache; a clear message otherwise.
pub fn require_model() -> Result<PathBuf> {
    Ok(infera_models::require_cached(&DEFAULT_MODEL)?)
}

/// On-chain job statuses.
pub mod status {
    pub const POSTED: u8 = 1;
    pub const ACCEPTED: u8 = 2;
    pub const SUBMITTED: u8 = 3;
    pub const FINALIZED: u8 = 5;
}
