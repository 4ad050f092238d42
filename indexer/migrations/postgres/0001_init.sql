-- Infera indexer schema (PostgreSQL). Addresses and hashes are 0x-prefixed lowercase hex, token
-- amounts are decimal strings of base units (uint256 does not fit an integer column), counters
-- and block numbers are integers. Every derived row carries `block`, the block of its last
-- change, from which the read API computes its finality.

-- One row per chain: how far the indexer has committed, and the node's view at that commit.
CREATE TABLE cursor (
    chain_id        BIGINT PRIMARY KEY,
    contracts       TEXT    NOT NULL,
    block_number    BIGINT NOT NULL,
    block_hash      TEXT    NOT NULL,
    head            BIGINT NOT NULL,
    safe            BIGINT NOT NULL,
    finalized       BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL
);

-- Headers of the unfinalized window (and the cursor's block): what reorgs are detected against.
CREATE TABLE blocks (
    chain_id        BIGINT NOT NULL,
    number          BIGINT NOT NULL,
    hash            TEXT    NOT NULL,
    parent_hash     TEXT    NOT NULL,
    PRIMARY KEY (chain_id, number)
);

-- Every log of the followed contracts, exactly once.
CREATE TABLE logs (
    chain_id        BIGINT NOT NULL,
    block_hash      TEXT    NOT NULL,
    log_index       BIGINT NOT NULL,
    block_number    BIGINT NOT NULL,
    tx_hash         TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    topics          BYTEA    NOT NULL,
    data            BYTEA    NOT NULL,
    PRIMARY KEY (chain_id, block_hash, log_index)
);
CREATE INDEX logs_by_block ON logs (chain_id, block_number);

-- Row images from before each unfinalized block's first change: a reorg restores the earliest
-- image above the common ancestor (NULL: the row did not exist).
CREATE TABLE undo (
    chain_id        BIGINT NOT NULL,
    block_number    BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    tbl             TEXT    NOT NULL,
    row_key         TEXT    NOT NULL,
    image           TEXT,
    PRIMARY KEY (chain_id, block_number, seq)
);

CREATE TABLE models (
    chain_id            BIGINT NOT NULL,
    model_id            TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    weights_sha256      TEXT    NOT NULL,
    tokenizer_hash      TEXT    NOT NULL,
    active              BIGINT NOT NULL,
    sampler_version     BIGINT NOT NULL,
    max_context         BIGINT NOT NULL,
    audit_rate_ppm      BIGINT NOT NULL,
    min_executor_stake  TEXT    NOT NULL,
    max_margin_ppm      BIGINT NOT NULL,
    max_flip_rate_ppm   BIGINT NOT NULL,
    block               BIGINT NOT NULL,
    PRIMARY KEY (chain_id, model_id)
);

CREATE TABLE executors (
    chain_id        BIGINT NOT NULL,
    address         TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    hardware        TEXT    NOT NULL,
    disputes_lost   BIGINT NOT NULL,
    block           BIGINT NOT NULL,
    PRIMARY KEY (chain_id, address)
);

CREATE TABLE prices (
    chain_id            BIGINT NOT NULL,
    executor            TEXT    NOT NULL,
    model_id            TEXT    NOT NULL,
    active              BIGINT NOT NULL,
    input_per_million   BIGINT NOT NULL,
    output_per_million  BIGINT NOT NULL,
    block               BIGINT NOT NULL,
    PRIMARY KEY (chain_id, executor, model_id)
);
CREATE INDEX prices_by_model ON prices (chain_id, model_id);

CREATE TABLE stakes (
    chain_id        BIGINT NOT NULL,
    account         TEXT    NOT NULL,
    role            BIGINT NOT NULL,
    staked          TEXT    NOT NULL,
    locked          TEXT    NOT NULL,
    unbonding       TEXT    NOT NULL,
    release_at      BIGINT NOT NULL,
    jobs_completed  BIGINT NOT NULL,
    jobs_expired    BIGINT NOT NULL,
    block           BIGINT NOT NULL,
    PRIMARY KEY (chain_id, account, role)
);

CREATE TABLE jobs (
    chain_id            BIGINT NOT NULL,
    job_id              BIGINT NOT NULL,
    status              TEXT    NOT NULL,
    requester           TEXT    NOT NULL,
    model_id            TEXT    NOT NULL,
    prompt_hash         TEXT    NOT NULL,
    seed                TEXT    NOT NULL,
    max_input_tokens    BIGINT NOT NULL,
    max_output_tokens   BIGINT NOT NULL,
    max_input_price     BIGINT NOT NULL,
    max_output_price    BIGINT NOT NULL,
    deadline            BIGINT NOT NULL,
    escrow              TEXT    NOT NULL,
    executor            TEXT,
    input_price         BIGINT,
    output_price        BIGINT,
    collateral          TEXT,
    input_tokens        BIGINT,
    output_tokens       BIGINT,
    finish_reason       BIGINT,
    commitment          TEXT,
    payment             TEXT,
    validator_fee       TEXT,
    challenge_end       BIGINT,
    dispute_end         BIGINT,
    refund              TEXT,
    collateral_seized   TEXT,
    posted_block        BIGINT NOT NULL,
    posted_tx           TEXT    NOT NULL,
    block               BIGINT NOT NULL,
    PRIMARY KEY (chain_id, job_id)
);
CREATE INDEX jobs_by_executor ON jobs (chain_id, executor);

CREATE TABLE disputes (
    chain_id        BIGINT NOT NULL,
    job_id          BIGINT NOT NULL,
    status          TEXT    NOT NULL,
    opened_block    BIGINT NOT NULL,
    resolved_block  BIGINT,
    block           BIGINT NOT NULL,
    PRIMARY KEY (chain_id, job_id)
);

-- Pull-payment credits in JobEscrow (what `credits(account)` returns) and the totals behind them.
CREATE TABLE balances (
    chain_id        BIGINT NOT NULL,
    account         TEXT    NOT NULL,
    credit          TEXT    NOT NULL,
    withdrawn       TEXT    NOT NULL,
    block           BIGINT NOT NULL,
    PRIMARY KEY (chain_id, account)
);
