//! What the indexer tests share: a devnet with an executor, a requester and a stand-in dispute
//! contract; job lifecycle actions; databases on SQLite and PostgreSQL; comparisons.

#![allow(dead_code)]

pub mod proxy;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, B256, Bytes, U256},
    providers::{DynProvider, Provider, ProviderBuilder, ext::AnvilApi},
    signers::local::PrivateKeySigner,
};
use eyre::{Result, ensure, eyre};
use infera_chain::bindings::{Disputes, IJobEscrow, JobEscrow, Staking};
use infera_chain::{
    devnet::{self, Devnet, DevnetConfig},
    market::{JobMarket, new_salt},
};
use infera_indexer::{
    IndexerConfig, Store,
    rows::{
        BalanceRow, DisputeRow, ExecutorRow, JobRow, ModelRow, PriceRow, RulesRow, StakeRow, Table,
    },
};
use sqlx::{Connection, Executor, Row};

/// Dev accounts: 0 governance, 1 requester, 2 executor, 3 and 4 validators (3 challenges, 4 is
/// then the only juror the draw can seat: the challenger and the executor are excluded).
pub const GOVERNANCE: usize = 0;
pub const REQUESTER: usize = 1;
pub const EXECUTOR: usize = 2;
pub const CHALLENGER: usize = 3;
pub const JUROR: usize = 4;
/// Validator stake of the challenger and the juror.
pub const VALIDATOR_STAKE: u64 = 100_000_000;

pub struct Actor {
    pub address: Address,
    pub provider: DynProvider,
    pub market: JobMarket<DynProvider>,
}

impl Actor {
    fn new(devnet: &Devnet, index: usize) -> Result<Self> {
        let signer: PrivateKeySigner = devnet
            .signer(index)
            .ok_or_else(|| eyre!("no dev key {index}"))?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer.clone()))
            .connect_http(devnet.anvil.endpoint_url())
            .erased();
        Ok(Self {
            address: signer.address(),
            market: JobMarket::new(&devnet.deployment, provider.clone()),
            provider,
        })
    }
}

/// A devnet with anvil's finality window set, an executor serving the default model, a requester
/// that approved the escrow, two staked validators that run disputes through the real Disputes
/// contract, and the Disputes address impersonated (`slasher`) for direct slashes of stake.
pub struct Chain {
    pub devnet: Devnet,
    pub requester: Actor,
    pub executor: Actor,
    pub challenger: Actor,
    pub juror: Actor,
    pub slasher: Actor,
    pub dir: PathBuf,
}

impl Chain {
    pub async fn start(name: &str, slots_in_an_epoch: u64) -> Result<Self> {
        // The indexer's log, shown for failing tests (RUST_LOG narrows or widens it).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_test_writer()
            .try_init();
        let devnet = devnet::start(&DevnetConfig {
            port: None,
            slots_in_an_epoch: Some(slots_in_an_epoch),
            // Room for hundreds of job posts per block (benchmark fills).
            gas_limit: Some(1_000_000_000),
            ..DevnetConfig::default()
        })
        .await?;
        let requester = Actor::new(&devnet, REQUESTER)?;
        let executor = Actor::new(&devnet, EXECUTOR)?;
        let challenger = Actor::new(&devnet, CHALLENGER)?;
        let juror = Actor::new(&devnet, JUROR)?;
        for validator in [&challenger, &juror] {
            validator.market.approve(devnet.deployment.staking).await?;
            validator.market.approve(devnet.deployment.disputes).await?;
            let receipt = Staking::new(devnet.deployment.staking, validator.provider.clone())
                .stake(1, U256::from(VALIDATOR_STAKE))
                .send()
                .await?
                .get_receipt()
                .await?;
            ensure!(receipt.status(), "validator stake reverted");
        }
        // The deployed dispute contract, impersonated: a test slashes stake directly with it.
        let stand_in = devnet.deployment.disputes;
        let unsigned = ProviderBuilder::new()
            .connect_http(devnet.anvil.endpoint_url())
            .erased();
        unsigned.anvil_impersonate_account(stand_in).await?;
        unsigned
            .anvil_set_balance(stand_in, U256::from(10u64).pow(U256::from(20)))
            .await?;
        let slasher = Actor {
            address: stand_in,
            market: JobMarket::new(&devnet.deployment, unsigned.clone()),
            provider: unsigned,
        };
        requester
            .market
            .approve(devnet.deployment.job_escrow)
            .await?;
        executor
            .market
            .become_executor(
                U256::from(10_000_000_000u64),
                "http://127.0.0.1:8600",
                "test",
                devnet.model_id,
                100_000,
                400_000,
            )
            .await?;
        let dir = std::env::temp_dir().join(format!(
            "infera-indexer-{name}-{}-{}",
            std::process::id(),
            devnet.anvil.port()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            devnet,
            requester,
            executor,
            challenger,
            juror,
            slasher,
            dir,
        })
    }

    /// New clients for the actors. After `anvil_revert` the old ones would wait forever for
    /// receipts: alloy's block heartbeat does not expect block numbers to go back.
    pub fn reconnect(&mut self) -> Result<()> {
        self.requester = Actor::new(&self.devnet, REQUESTER)?;
        self.executor = Actor::new(&self.devnet, EXECUTOR)?;
        Ok(())
    }

    pub fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .connect_http(self.devnet.anvil.endpoint_url())
            .erased()
    }

    pub fn chain_id(&self) -> u64 {
        self.devnet.deployment.chain_id
    }

    pub fn config(&self, database_url: &str) -> IndexerConfig {
        IndexerConfig {
            rpc_url: self.devnet.anvil.endpoint(),
            job_escrow: Some(self.devnet.deployment.job_escrow),
            database_url: database_url.to_owned(),
            start_block: Some(0),
            listen: "127.0.0.1:0".parse().expect("address"),
            poll_interval_ms: 20,
            ..IndexerConfig::default()
        }
    }

    pub async fn head(&self) -> Result<u64> {
        Ok(self.provider().get_block_number().await?)
    }

    pub async fn mine(&self, blocks: u64) -> Result<()> {
        self.provider().anvil_mine(Some(blocks), None).await?;
        Ok(())
    }

    pub async fn advance(&self, seconds: u64) -> Result<()> {
        let provider = self.provider();
        provider.anvil_increase_time(seconds).await?;
        provider.anvil_mine(Some(1), None).await?;
        Ok(())
    }

    async fn now(&self) -> Result<u64> {
        let block = self
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| eyre!("no latest block"))?;
        Ok(block.header.timestamp)
    }

    pub async fn spec(&self, deadline_in: u64) -> Result<IJobEscrow::JobSpec> {
        Ok(IJobEscrow::JobSpec {
            modelId: self.devnet.model_id,
            executor: Address::ZERO,
            callback: Address::ZERO,
            callbackGasLimit: 0,
            maxInputTokens: 256,
            maxOutputTokens: 16,
            maxInputPrice: 1_000_000,
            maxOutputPrice: 2_000_000,
            deadline: self.now().await? + deadline_in,
            sampling: infera_protocol::SamplingParams::GREEDY.into(),
            salt: new_salt(),
        })
    }

    /// Posts a job as the requester (one block).
    pub async fn post(&self, prompt: &str) -> Result<(U256, IJobEscrow::Job)> {
        let (posted, _) = self
            .requester
            .market
            .post_job(
                self.spec(1_800).await?,
                Bytes::from(prompt.as_bytes().to_vec()),
            )
            .await?;
        Ok((posted.jobId, posted.job))
    }

    /// Accepts as the executor (one block).
    pub async fn accept(&self, id: U256, job: &IJobEscrow::Job) -> Result<IJobEscrow::Assignment> {
        Ok(self.executor.market.accept_job(id, job.clone()).await?.0)
    }

    /// Submits a made-up result of `outputs` tokens as the executor (one block).
    pub async fn submit(
        &self,
        id: U256,
        job: &IJobEscrow::Job,
        assignment: &IJobEscrow::Assignment,
        outputs: usize,
    ) -> Result<IJobEscrow::Settlement> {
        let result = IJobEscrow::Result {
            inputTokens: 12,
            finishReason: 1,
            promptTokensHash: B256::repeat_byte(7),
            outputTokens: Bytes::from(vec![0u8; 4 * outputs]),
            output: Bytes::from_static(b"made up"),
        };
        Ok(self
            .executor
            .market
            .submit_result(id, job.clone(), assignment.clone(), result)
            .await?
            .0
            .settlement)
    }

    pub async fn cancel(&self, id: U256, job: &IJobEscrow::Job) -> Result<()> {
        self.requester.market.cancel_job(id, job.clone()).await?;
        Ok(())
    }

    pub async fn finalize(&self, id: U256, settlement: &IJobEscrow::Settlement) -> Result<()> {
        self.requester
            .market
            .finalize(id, settlement.clone())
            .await?;
        Ok(())
    }

    /// Runs a whole dispute of a submitted job through the Disputes contract: the challenger posts
    /// the bond, the jury (the one other validator) is drawn, commits and reveals `faulty`, and the
    /// challenger resolves. Returns the dispute id.
    pub async fn dispute(
        &self,
        id: U256,
        settlement: &IJobEscrow::Settlement,
        faulty: bool,
    ) -> Result<U256> {
        let deployment = &self.devnet.deployment;
        let terms: Bytes = alloy::sol_types::SolValue::abi_encode(settlement).into();
        let as_challenger = Disputes::new(deployment.disputes, self.challenger.provider.clone());
        let as_juror = Disputes::new(deployment.disputes, self.juror.provider.clone());
        let receipt = as_challenger
            .challenge(deployment.job_escrow, id, terms.clone())
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "challenge reverted");
        let dispute_id = receipt
            .decoded_log::<Disputes::Challenged>()
            .ok_or_else(|| eyre!("no Challenged event"))?
            .disputeId;
        self.mine(1).await?; // the draw block must be in the past
        let receipt = as_challenger
            .drawJury(dispute_id)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "drawJury reverted");
        let jurors = as_juror.jurorsOf(dispute_id).call().await?;
        ensure!(
            jurors == vec![self.juror.address],
            "the only eligible juror is drawn: {jurors:?}"
        );
        // Vote: 1 Honest, 2 Faulty (a uint8 encodes as one word, like a uint256).
        let vote: u8 = if faulty { 2 } else { 1 };
        let salt = B256::repeat_byte(0x5a);
        let commitment = alloy::primitives::keccak256(alloy::sol_types::SolValue::abi_encode(&(
            dispute_id,
            self.juror.address,
            U256::from(vote),
            salt,
        )));
        for call in [
            as_juror.commitVote(dispute_id, commitment).send().await?,
            as_juror.revealVote(dispute_id, vote, salt).send().await?,
            as_challenger.resolve(dispute_id, terms).send().await?,
        ] {
            ensure!(call.get_receipt().await?.status(), "dispute step reverted");
        }
        Ok(dispute_id)
    }

    /// Stakes more as the executor (one block).
    pub async fn stake_more(&self, amount: u64) -> Result<()> {
        let staking = Staking::new(
            self.devnet.deployment.staking,
            self.executor.provider.clone(),
        );
        let receipt = staking
            .stake(0, U256::from(amount))
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "stake reverted");
        Ok(())
    }

    /// `blocks` blocks of `per_block` job posts each, sent without waiting for receipts (nonces and
    /// gas set by hand) and mined together: a quick way to fill the chain with events.
    pub async fn burst(&mut self, blocks: u64, per_block: u64) -> Result<()> {
        let provider = self.provider();
        provider.anvil_set_auto_mine(false).await?;
        let escrow = JobEscrow::new(
            self.devnet.deployment.job_escrow,
            self.requester.provider.clone(),
        );
        let mut nonce = provider
            .get_transaction_count(self.requester.address)
            .await?;
        let fee = (provider.get_gas_price().await? * 4).max(10_000_000_000);
        let spec = self.spec(3_000).await?;
        let mut last = None;
        for block in 0..blocks {
            for i in 0..per_block {
                let pending = escrow
                    .postJob(
                        spec.clone(),
                        Bytes::from(format!("burst {block}/{i}").into_bytes()),
                    )
                    .nonce(nonce)
                    .gas(400_000)
                    .max_fee_per_gas(fee)
                    .max_priority_fee_per_gas(0)
                    .send()
                    .await?;
                nonce += 1;
                last = Some(*pending.tx_hash());
            }
            provider.anvil_mine(Some(1), None).await?;
        }
        provider.anvil_set_auto_mine(true).await?;
        if let Some(hash) = last {
            let receipt = provider
                .get_transaction_receipt(hash)
                .await?
                .ok_or_else(|| eyre!("burst: last post not mined"))?;
            ensure!(receipt.status(), "burst: last post reverted");
        }
        // The requester's client cached its nonce before the burst.
        self.reconnect()
    }

    /// A varied block of activity: which kind depends on `i` (posts, accepts, cancels, stakes).
    pub async fn activity(&self, i: u64, open: &mut Vec<(U256, IJobEscrow::Job)>) -> Result<()> {
        match i % 4 {
            0 | 2 => open.push(self.post(&format!("prompt {i}")).await?),
            1 => match open.pop() {
                Some((id, job)) => {
                    self.accept(id, &job).await?;
                }
                None => self.stake_more(1_000 + i).await?,
            },
            _ => match open.pop() {
                Some((id, job)) => self.cancel(id, &job).await?,
                None => self.stake_more(2_000 + i).await?,
            },
        }
        Ok(())
    }
}

/// A database for one test: a SQLite file, or a fresh PostgreSQL database.
pub struct Db {
    pub url: String,
    postgres: Option<(String, String)>,
}

static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The PostgreSQL server the suite uses.
pub fn postgres_admin_url() -> String {
    std::env::var("INFERA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

impl Db {
    pub fn sqlite(chain: &Chain, name: &str) -> Self {
        Self {
            url: format!(
                "sqlite://{}",
                chain.dir.join(format!("{name}.db")).display()
            ),
            postgres: None,
        }
    }

    /// A fresh database on the test server; `None` (the suite is skipped, and says so) when no
    /// server answers, unless `INFERA_REQUIRE_POSTGRES=1` makes that a failure.
    pub async fn postgres(name: &str) -> Result<Option<Self>> {
        sqlx::any::install_default_drivers();
        let admin = postgres_admin_url();
        let mut conn = match sqlx::AnyConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(error) => {
                ensure!(
                    std::env::var("INFERA_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "PostgreSQL is required (INFERA_REQUIRE_POSTGRES=1) but {admin} is unreachable: {error}"
                );
                eprintln!("skipped: PostgreSQL suite ({admin} unreachable: {error})");
                return Ok(None);
            }
        };
        let db = format!(
            "infera_{name}_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        conn.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
            .await?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .await?;
        let base = admin
            .rsplit_once('/')
            .map(|(base, _)| base)
            .ok_or_else(|| eyre!("bad postgres url {admin}"))?;
        Ok(Some(Self {
            url: format!("{base}/{db}"),
            postgres: Some((admin, db)),
        }))
    }

    pub async fn drop_database(self) -> Result<()> {
        if let Some((admin, db)) = self.postgres {
            let mut conn = sqlx::AnyConnection::connect(&admin).await?;
            conn.execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .await?;
        }
        Ok(())
    }
}

/// Waits until the indexer's cursor is the node's head block (same hash).
pub async fn wait_caught_up(store: &Store, chain: &Chain, timeout: Duration) -> Result<u64> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let head = chain
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .ok_or_else(|| eyre!("no head"))?;
        if let Some(cursor) = store.cursor(chain.chain_id()).await?
            && cursor.block_number == head.header.number
            && cursor.block_hash == head.header.hash
        {
            return Ok(cursor.block_number);
        }
        ensure!(
            tokio::time::Instant::now() < until,
            "indexer did not reach head {} in {timeout:?}",
            head.header.number
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn same_table<R: Table>(a: &Store, b: &Store, chain_id: u64) -> Result<usize> {
    let left = a.all::<R>(chain_id).await?;
    let right = b.all::<R>(chain_id).await?;
    if left != right {
        let first = left
            .iter()
            .zip(&right)
            .find(|(l, r)| l != r)
            .map(|(l, r)| format!("{l:?}\n   vs {r:?}"));
        return Err(eyre!(
            "table {} differs: {} vs {} rows; first difference: {}",
            R::NAME,
            left.len(),
            right.len(),
            first.unwrap_or_else(|| "(one is a prefix of the other)".into())
        ));
    }
    Ok(left.len())
}

async fn log_keys(store: &Store, chain_id: u64) -> Result<Vec<(String, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT block_hash, log_index, block_number FROM logs WHERE chain_id = $1 \
         ORDER BY block_number, log_index",
    )
    .bind(chain_id as i64)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Asserts two databases hold the same chain: raw logs and every typed table, row for row.
/// Returns the number of typed rows compared.
pub async fn assert_same(a: &Store, b: &Store, chain_id: u64) -> Result<usize> {
    let logs_a = log_keys(a, chain_id).await?;
    let logs_b = log_keys(b, chain_id).await?;
    ensure!(
        logs_a == logs_b,
        "raw logs differ: {} vs {}",
        logs_a.len(),
        logs_b.len()
    );
    let mut rows = 0;
    rows += same_table::<ModelRow>(a, b, chain_id).await?;
    rows += same_table::<RulesRow>(a, b, chain_id).await?;
    rows += same_table::<ExecutorRow>(a, b, chain_id).await?;
    rows += same_table::<PriceRow>(a, b, chain_id).await?;
    rows += same_table::<StakeRow>(a, b, chain_id).await?;
    rows += same_table::<JobRow>(a, b, chain_id).await?;
    rows += same_table::<DisputeRow>(a, b, chain_id).await?;
    rows += same_table::<BalanceRow>(a, b, chain_id).await?;
    Ok(rows)
}

/// An indexer following the chain in the background until [`Follower::stop`].
pub struct Follower {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), infera_indexer::IndexerError>>,
}

impl Follower {
    pub fn start(indexer: &infera_indexer::Indexer) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let indexer = indexer.clone();
        let task = tokio::spawn(async move {
            indexer
                .follow_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self { stop, task }
    }

    /// Stops it; fails with the error that stopped it earlier, if any.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        Ok(self.task.await??)
    }
}

/// Indexes the chain as it is now into a fresh database: the reference the tests compare with.
pub async fn reference(chain: &Chain, db: &Db) -> Result<Store> {
    let indexer = infera_indexer::Indexer::connect(chain.config(&db.url)).await?;
    loop {
        match indexer.step().await? {
            infera_indexer::Step::Idle => break,
            _ => continue,
        }
    }
    wait_caught_up(indexer.store(), chain, Duration::from_secs(5)).await?;
    Ok(indexer.store().clone())
}

/// Reads the feed of JobPosted logs from `position` until it reaches the indexer's cursor,
/// appending (block, job id, prompt) to `seen`; on a reorg, drops what it read above the ancestor
/// and reads again from there. Returns the new position and how many reorgs it saw.
pub async fn read_posts(
    store: &infera_indexer::Store,
    chain: &Chain,
    mut position: infera_indexer::Position,
    seen: &mut Vec<(u64, alloy::primitives::U256, alloy::primitives::Bytes)>,
) -> eyre::Result<(infera_indexer::Position, usize)> {
    let topic = <JobEscrow::JobPosted as alloy::sol_types::SolEvent>::SIGNATURE_HASH;
    let escrow = chain.devnet.deployment.job_escrow;
    let mut reorgs = 0;
    loop {
        let cursor = store
            .cursor(chain.chain_id())
            .await?
            .ok_or_else(|| eyre::eyre!("no cursor"))?;
        match store
            .feed(chain.chain_id(), position, &[escrow], &[topic], 3)
            .await?
        {
            infera_indexer::Feed::Reorged { ancestor } => {
                reorgs += 1;
                seen.retain(|(block, _, _)| *block <= ancestor.block_number);
                position = ancestor;
            }
            infera_indexer::Feed::Logs { logs, next } => {
                for log in logs {
                    let block = log.block_number.unwrap_or_default();
                    let posted = log.log_decode::<JobEscrow::JobPosted>()?.inner.data;
                    seen.push((block, posted.jobId, posted.prompt));
                }
                position = next;
                if position.block_number == cursor.block_number {
                    return Ok((position, reorgs));
                }
            }
        }
    }
}

/// Every JobPosted on the node's chain now, as (block, job id, prompt): what a feed consumer that
/// followed every reorg must end with.
pub async fn chain_posts(
    chain: &Chain,
) -> eyre::Result<Vec<(u64, alloy::primitives::U256, alloy::primitives::Bytes)>> {
    let filter = alloy::rpc::types::Filter::new()
        .address(chain.devnet.deployment.job_escrow)
        .event_signature(<JobEscrow::JobPosted as alloy::sol_types::SolEvent>::SIGNATURE_HASH)
        .from_block(0);
    let mut posts = Vec::new();
    for log in chain.provider().get_logs(&filter).await? {
        let posted = log.log_decode::<JobEscrow::JobPosted>()?.inner.data;
        posts.push((
            log.block_number.unwrap_or_default(),
            posted.jobId,
            posted.prompt,
        ));
    }
    Ok(posts)
}
