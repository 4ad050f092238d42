-- The validator's own state: the deployment it belongs to, where it stands in the chain's events,
-- every job it has seen and what its audit found, the disputes it takes part in (its vote and the
-- salt, written before the commitment is sent, so a restart still reveals), and its canaries. The
-- transaction manager keeps its log (`chain_txs`) in the same file.

CREATE TABLE deployment (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    chain_id INTEGER NOT NULL,
    job_escrow TEXT NOT NULL,
    disputes TEXT NOT NULL,
    staking TEXT NOT NULL,
    token TEXT NOT NULL,
    validator TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);

CREATE TABLE cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    block_number INTEGER NOT NULL,    -- the last block read from the feed
    block_hash TEXT                   -- its hash, above finality
);

CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,          -- decimal uint256
    job BLOB NOT NULL,                -- abi.encode(IJobEscrow.Job) as posted
    prompt BLOB NOT NULL,
    posted_block INTEGER NOT NULL,
    assignment BLOB,                  -- abi.encode(IJobEscrow.Assignment) once accepted
    result BLOB,                      -- abi.encode(IJobEscrow.Result), from ResultSubmitted
    settlement BLOB,                  -- abi.encode(IJobEscrow.Settlement), from ResultSubmitted
    submitted_block INTEGER,
    submitted_hash TEXT,              -- the hash of the ResultSubmitted block (the audit draw)
    audit TEXT NOT NULL DEFAULT 'none', -- see `Audit`
    verdict TEXT,                     -- the check's verdict (JSON) once run
    updated_at INTEGER NOT NULL
);

CREATE INDEX jobs_by_audit ON jobs (audit);

CREATE TABLE disputes (
    dispute_id TEXT PRIMARY KEY,      -- decimal uint256
    job_id TEXT NOT NULL,             -- the claim (JobEscrow job id)
    challenger INTEGER NOT NULL DEFAULT 0, -- 1 when this validator challenged
    juror INTEGER NOT NULL DEFAULT 0, -- 1 when drawn
    vote INTEGER,                     -- 1 honest, 2 faulty, once decided
    salt TEXT,                        -- written before the commitment is sent
    committed INTEGER NOT NULL DEFAULT 0,
    revealed INTEGER NOT NULL DEFAULT 0,
    resolved INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,                     -- faulty | honest, once resolved
    updated_at INTEGER NOT NULL
);

CREATE TABLE canaries (
    seq INTEGER PRIMARY KEY,          -- the validator's own numbering
    job_id TEXT,                      -- once posted
    stage TEXT NOT NULL,              -- planting | posted | accepted | submitted | challenged | resolved | failed
    outcome TEXT,                     -- the dispute's outcome and who voted Honest
    updated_at INTEGER NOT NULL
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
