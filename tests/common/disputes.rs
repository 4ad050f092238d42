//! What the validator and dispute tests share: validators in this process on one shared model,
//! funded extra accounts, a block producer, a cheating executor played by the test, and reads of
//! the dispute contract.

use std::{sync::Arc, time::Duration};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use eyre::{Result, ensure, eyre};
use infera_chain::bindings::{Disputes, IJobEscrow, IStaking, JobEscrow, MockSettlementToken};
use infera_engine::ScorePath;
use infera_protocol::{
    FinishReason, models::DEFAULT_MODEL, pack_tokens, prompt::Prompt, tokens_hash,
};
use infera_validator::{Checker, Validator, ValidatorConfig, ValidatorError, audit};

use super::{Actor, Net};

/// The validators' staking role.
pub const VALIDATOR_ROLE: u8 = 1;
/// How long a test waits for one step of a dispute.
pub const STEP: Duration = Duration::from_secs(240);

/// Logs to the test's output as `RUST_LOG` says (default: the validator at info).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,infera_validator=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Loads the default model once for every validator of the test (mistral.rs and the dense scorer).
pub async fn checker() -> Result<Arc<Checker>> {
    let path = super::require_model()?;
    Ok(Arc::new(
        Checker::load(
            path,
            DEFAULT_MODEL.sha256,
            Some(DEFAULT_MODEL.size),
            ScorePath::Dense,
        )
        .await?,
    ))
}

/// Mints settlement tokens to dev accounts `indexes` (the devnet funds only the first five).
pub async fn fund(net: &Net, indexes: &[usize]) -> Result<()> {
    let token = MockSettlementToken::new(net.devnet.deployment.token, governance(net)?);
    for &index in indexes {
        let address = net
            .devnet
            .signer(index)
            .ok_or_else(|| eyre!("no dev key {index}"))?
            .address();
        token
            .mint(address, U256::from(1_000_000_000_000u64))
            .send()
            .await?
            .get_receipt()
            .await?;
    }
    Ok(())
}

/// A provider signing as governance (dev account 0).
pub fn governance(net: &Net) -> Result<DynProvider> {
    let signer = net.devnet.signer(0).ok_or_else(|| eyre!("no dev key 0"))?;
    Ok(ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(net.devnet.anvil.endpoint_url())
        .erased())
}

/// Governance sets the jury size (the other parameters kept): with as many seats as there are
/// validators, every eligible validator is seated, so a test knows its jury.
pub async fn set_jury_size(net: &Net, seats: u8) -> Result<()> {
    let disputes = Disputes::new(net.devnet.deployment.disputes, governance(net)?);
    let (bond, penalty, challenger, jurors) = (
        disputes.bond().call().await?,
        disputes.jurorPenalty().call().await?,
        disputes.challengerRewardBps().call().await?,
        disputes.jurorRewardBps().call().await?,
    );
    let receipt = disputes
        .setParameters(bond, penalty, seats, challenger, jurors)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "setParameters reverted");
    Ok(())
}

/// Mines a block every `interval` until dropped (the jury's draw waits for a later block).
pub struct Miner(tokio::task::JoinHandle<()>);

impl Miner {
    pub fn start(net: &Net, interval: Duration) -> Self {
        let provider = net.provider();
        Self(tokio::spawn(async move {
            loop {
                let _ = provider.anvil_mine(Some(1), None).await;
                tokio::time::sleep(interval).await;
            }
        }))
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A validator configuration for dev account `index`: its key in a file, its databases fresh,
/// nothing audited unless asked, credits left in place (tests read them), fast polling.
pub fn validator_config(net: &Net, index: usize) -> Result<ValidatorConfig> {
    let signer = net
        .devnet
        .signer(index)
        .ok_or_else(|| eyre!("no dev key {index}"))?;
    let key_file = net.dir.join(format!("validator-{index}.key"));
    std::fs::write(&key_file, signer.to_bytes().to_string())?;
    Ok(ValidatorConfig {
        rpc_url: net.devnet.anvil.endpoint(),
        job_escrow: Some(net.devnet.deployment.job_escrow),
        private_key_file: Some(key_file),
        database: Some(net.dir.join(format!("validator-{index}.db"))),
        audit_rate_ppm: Some(0),
        poll_interval_ms: 200,
        withdraw_interval_secs: 0,
        resubmit_after_secs: 5,
        ..ValidatorConfig::default()
    })
}

/// A validator serving in this process.
pub struct Running {
    pub address: Address,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), ValidatorError>>,
}

impl Running {
    /// Starts (stakes) and serves.
    pub async fn start(
        net: &Net,
        index: usize,
        config: ValidatorConfig,
        checker: &Arc<Checker>,
    ) -> Result<Self> {
        let signer = net
            .devnet
            .signer(index)
            .ok_or_else(|| eyre!("no dev key {index}"))?;
        let validator = Validator::start_with(config, signer, Arc::clone(checker)).await?;
        let address = validator.address();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(validator.serve(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            address,
            stop: Some(stop),
            task,
        })
    }

    /// Stops it and waits.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await??;
        Ok(())
    }
}

/// Starts the real `infera validator` process with `config` written to a file.
pub fn spawn_validator(net: &Net, config: &ValidatorConfig) -> Result<std::process::Child> {
    let path = net.dir.join("validator.toml");
    std::fs::write(&path, toml::to_string(config)?)?;
    Ok(std::process::Command::new(env!("CARGO_BIN_EXE_infera"))
        .args(["validator", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn,infera_validator=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()?)
}

/// The contract handles a test reads.
pub struct Contracts {
    pub escrow: JobEscrow::JobEscrowInstance<DynProvider>,
    pub disputes: Disputes::DisputesInstance<DynProvider>,
    pub staking: infera_chain::bindings::Staking::StakingInstance<DynProvider>,
}

impl Contracts {
    pub fn new(net: &Net) -> Self {
        let deployment = &net.devnet.deployment;
        Self {
            escrow: JobEscrow::new(deployment.job_escrow, net.provider()),
            disputes: Disputes::new(deployment.disputes, net.provider()),
            staking: infera_chain::bindings::Staking::new(deployment.staking, net.provider()),
        }
    }

    pub async fn validator_stake(&self, account: Address) -> Result<U256> {
        Ok(U256::from(
            self.staking
                .stakeOf(account, VALIDATOR_ROLE)
                .call()
                .await?
                .staked,
        ))
    }

    pub async fn executor_stake(&self, account: Address) -> Result<IStaking::StakeInfo> {
        Ok(self
            .staking
            .stakeOf(account, infera::market::EXECUTOR_ROLE)
            .call()
            .await?)
    }

    /// The dispute of a job, once someone challenged it.
    pub async fn wait_dispute(&self, job_id: U256, timeout: Duration) -> Result<U256> {
        let escrow = *self.escrow.address();
        wait("a challenge", timeout, || async {
            let id = self.disputes.disputeOfClaim(escrow, job_id).call().await?;
            Ok((!id.is_zero()).then_some(id))
        })
        .await
    }

    /// Waits for the dispute's jury.
    pub async fn wait_jury(&self, dispute_id: U256, timeout: Duration) -> Result<Vec<Address>> {
        wait("the jury draw", timeout, || async {
            let jurors = self.disputes.jurorsOf(dispute_id).call().await?;
            Ok((!jurors.is_empty()).then_some(jurors))
        })
        .await
    }

    /// Waits until each of `jurors` has committed.
    pub async fn wait_committed(
        &self,
        dispute_id: U256,
        jurors: &[Address],
        timeout: Duration,
    ) -> Result<()> {
        wait("the commitments", timeout, || async {
            for juror in jurors {
                let ballot = self.disputes.ballotOf(dispute_id, *juror).call().await?;
                if ballot.commitment.is_zero() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
        .await
    }

    /// Waits until each of `jurors` has revealed; returns their votes (1 honest, 2 faulty).
    pub async fn wait_revealed(
        &self,
        dispute_id: U256,
        jurors: &[Address],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        wait("the reveals", timeout, || async {
            let mut votes = Vec::new();
            for juror in jurors {
                let ballot = self.disputes.ballotOf(dispute_id, *juror).call().await?;
                if ballot.vote == 0 {
                    return Ok(None);
                }
                votes.push(ballot.vote);
            }
            Ok(Some(votes))
        })
        .await
    }

    /// Waits for the dispute's `DisputeResolved`.
    pub async fn wait_resolved(
        &self,
        dispute_id: U256,
        timeout: Duration,
    ) -> Result<Disputes::DisputeResolved> {
        let filter = Filter::new()
            .address(*self.disputes.address())
            .event_signature(Disputes::DisputeResolved::SIGNATURE_HASH)
            .topic1(alloy::primitives::B256::from(dispute_id))
            .from_block(0);
        let provider = self.disputes.provider().clone();
        wait("the resolution", timeout, || async {
            let logs = provider.get_logs(&filter).await?;
            Ok(logs
                .first()
                .and_then(|log| log.log_decode::<Disputes::DisputeResolved>().ok())
                .map(|log| log.inner.data))
        })
        .await
    }
}

/// Polls `probe` until it returns `Some`.
pub async fn wait<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A cheating executor the test plays: staked and registered like any executor, it accepts a job
/// designated to it and submits fabricated output ids with their real detokenisation, the real
/// prompt ids' hash and count — a commitment consistent with what it submits.
pub struct Cheater {
    pub actor: Actor,
}

impl Cheater {
    pub async fn register(net: &Net, index: usize) -> Result<Self> {
        let actor = Actor::new(&net.devnet, index)?;
        actor
            .market
            .become_executor(
                U256::from(1_000_000_000u64),
                "http://127.0.0.1:1",
                "cpu",
                net.devnet.model_id,
                100_000,
                400_000,
            )
            .await?;
        Ok(Self { actor })
    }

    /// The requester posts `prompt` designated to the cheater, which accepts it and submits a
    /// fabricated result. Returns the job id and its settlement.
    pub async fn cheat(
        &self,
        net: &Net,
        checker: &Checker,
        max_output: u32,
        prompt: &'static [u8],
    ) -> Result<(U256, IJobEscrow::Settlement)> {
        let mut spec = net.spec(max_output).await?;
        spec.executor = self.actor.address;
        let (job_id, job) = net.post(spec, prompt).await?;
        let (assignment, _) = self.actor.market.accept_job(job_id, job.clone()).await?;
        let engine = checker.engine();
        let prompt_ids = engine.render(&Prompt::parse(prompt)?).await?;
        let output_ids = audit::fabricated_ids(assignment.seed, max_output);
        let text = engine.detokenize(&output_ids).await?;
        let result = IJobEscrow::Result {
            inputTokens: u32::try_from(prompt_ids.len())?,
            finishReason: FinishReason::Length.as_u8(),
            promptTokensHash: tokens_hash(&prompt_ids),
            outputTokens: Bytes::from(pack_tokens(&output_ids)),
            output: Bytes::from(text.into_bytes()),
        };
        let (submitted, _) = self
            .actor
            .market
            .submit_result(job_id, job, assignment, result)
            .await?;
        Ok((job_id, submitted.settlement))
    }
}
