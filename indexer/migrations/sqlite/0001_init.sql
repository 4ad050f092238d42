-- Infera indexer schema (SQLite). Addresses and hashes are 0x-prefixed lowercase hex, token
-- amounts are decimal strings of base units (uint256 does not fit an integer column), counters
-- and block numbers are integers. Every derived row carries `block`, the block of its last
-- change, from which the read API computes its finality.

-- One row per chain: how far the indexer has committed, and the node's view at that commit.
CREATE TABLE cursor (
    chain_id        INTEGER PRIMARY KEY,
    contracts       TEXT    NOT NULL,
    block_number    INTEGER NOT NULL,
    block_hash      TEXT    NOT NULL,
    head            INTEGER NOT NULL,
    safe            INTEGER NOT NULL,
    finalized       INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);

-- Headers of the unfinalized window (and the cursor's block): what reorgs are detected against.
CREATE TABLE blocks (
    chain_id        INTEGER NOT NULL,
    number          INTEGER NOT NULL,
    hash            TEXT    NOT NULL,
    parent_hash     TEXT    NOT NULL,
    PRIMARY KEY (chain_id, number)
);

-- Every log of the followed contracts, exactly once.
CREATE TABLE logs (
    chain_id        INTEGER NOT NULL,
    block_hash      TEXT    NOT NULL,
    log_index       INTEGER NOT NULL,
    block_number    INTEGER NOT NULL,
    tx_hash         TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    topics          BLOB    NOT NULL,
    data            BLOB    NOT NULL,
    PRIMARY KEY (chain_id, block_hash, log_index)
);
CREATE INDEX logs_by_block ON logs (chain_id, block_number);

-- Row images from before each unfinalized block's first change: a reorg restores the earliest
-- image above the common ancestor (NULL: the row did not exist).
CREATE TABLE undo (
    chain_id        INTEGER NOT NULL,
    block_number    INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    tbl             TEXT    NOT NULL,
    row_key         TEXT    NOT NULL,
    image           TEXT,
    PRIMARY KEY (chain_id, block_number, seq)
);

CREATE TABLE models (
    chain_id            INTEGER NOT NULL,
    model_id            TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    weights_sha256      TEXT    NOT NULL,
    tokenizer_hash      TEXT    NOT NULL,
    active              INTEGER NOT NULL,
    sampler_version     INTEGER NOT NULL,
    max_context         INTEGER NOT NULL,
    audit_rate_ppm      INTEGER NOT NULL,
    min_executor_stake  TEXT    NOT NULL,
    max_margin_ppm      INTEGER NOT NULL,
    max_flip_rate_ppm   INTEGER NOT NULL,
    block               INTEGER NOT NULL,
    PRIMARY KEY (chain_id, model_id)
);

CREATE TABLE executors (
    chain_id        INTEGER NOT NULL,
    address         TEXT    NOT NULL,
    endpoint        TEXT    NOT NULL,
    hardware        TEXT    NOT NULL,
    disputes_lost   INTEGER NOT NULL,
    block           INTEGER NOT NULL,
    PRIMARY KEY (chain_id, address)
);

CREATE TABLE prices (
    chain_id            INTEGER NOT NULL,
    executor            TEXT    NOT NULL,
    model_id            TEXT    NOT NULL,
    active              INTEGER NOT NULL,
    input_per_million   INTEGER NOT NULL,
    output_per_million  INTEGER NOT NULL,
    block               INTEGER NOT NULL,
    PRIMARY KEY (chain_id, executor, model_id)
);
CREATE INDEX prices_by_model ON prices (chain_id, model_id);

CREATE TABLE stakes (
    chain_id        INTEGER NOT NULL,
    account         TEXT    NOT NULL,
    role            INTEGER NOT NULL,
    staked          TEXT    NOT NULL,
    locked          TEXT    NOT NULL,
    unbonding       TEXT    NOT NULL,
    release_at      INTEGER NOT NULL,
    jobs_completed  INTEGER NOT NULL,
    jobs_expired    INTEGER NOT NULL,
    block           INTEGER NOT NULL,
    PRIMARY KEY (chain_id, account, role)
);

CREATE TABLE jobs (
    chain_id            INTEGER NOT NULL,
    job_id              INTEGER NOT NULL,
    status              TEXT    NOT NULL,
    requester           TEXT    NOT NULL,
    model_id            TEXT    NOT NULL,
    prompt_hash         TEXT    NOT NULL,
    seed                TEXT    NOT NULL,
    max_input_tokens    INTEGER NOT NULL,
    max_output_tokens   INTEGER NOT NULL,
    max_input_price     INTEGER NOT NULL,
    max_output_price    INTEGER NOT NULL,
    deadline            INTEGER NOT NULL,
    escrow              TEXT    NOT NULL,
    executor            TEXT,
    input_price         INTEGER,
    output_price        INTEGER,
    collateral          TEXT,
    input_tokens        INTEGER,
    output_tokens       INTEGER,
    finish_reason       INTEGER,
    commitment          TEXT,
    payment             TEXT,
    validator_fee       TEXT,
    challenge_end       INTEGER,
    dispute_end         INTEGER,
    refund              TEXT,
    collateral_seized   TEXT,
    posted_block        INTEGER NOT NULL,
    posted_tx           TEXT    NOT NULL,
    block               INTEGER NOT NULL,
    PRIMARY KEY (chain_id, job_id)
);
CREATE INDEX jobs_by_executor ON jobs (chain_id, executor);

CREATE TABLE disputes (
    chain_id        INTEGER NOT NULL,
    job_id          INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    opened_block    INTEGER NOT NULL,
    resolved_block  INTEGER,
    block           INTEGER NOT NULL,
    PRIMARY KEY (chain_id, job_id)
);

-- Pull-payment credits in JobEscrow (what `credits(account)` returns) and the totals behind them.
CREATE TABLE balances (
    chain_id        INTEGER NOT NULL,
    account         TEXT    NOT NULL,
    credit          TEXT    NOT NULL,
    withdrawn       TEXT    NOT NULL,
    block           INTEGER NOT NULL,
    PRIMARY KEY (chain_id, account)
);
