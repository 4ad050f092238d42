-- The executor's own state: how far it has read the chain, every job it has seen and where it is,
-- and a write-ahead log of its transactions (signed before they are sent), so that a crash at any
-- point resumes without losing a job or sending a step twice.

CREATE TABLE cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    next_block INTEGER NOT NULL
);

CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY,          -- decimal uint256
    stage TEXT NOT NULL,              -- see `Stage`
    job BLOB NOT NULL,                -- abi.encode(IJobEscrow.Job) as posted
    prompt BLOB NOT NULL,
    assignment BLOB,                  -- abi.encode(IJobEscrow.Assignment) once accepted
    result BLOB,                      -- abi.encode(IJobEscrow.Result) once generated
    settlement BLOB,                  -- abi.encode(IJobEscrow.Settlement) once submitted
    reason TEXT,                      -- why a job was ignored, lost or failed
    posted_block INTEGER NOT NULL,
    updated_at INTEGER NOT NULL       -- unix seconds
);

CREATE INDEX jobs_by_stage ON jobs (stage);

CREATE TABLE txs (
    nonce INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,               -- accept, submit, finalize, withdraw, stake, ...
    job_id TEXT,
    tx_hash TEXT NOT NULL,
    raw BLOB NOT NULL,                -- the signed transaction, re-broadcast after a crash
    status TEXT NOT NULL              -- pending, mined, reverted, dropped
);

CREATE TABLE gateway_requests (
    request_id TEXT PRIMARY KEY,      -- a request id is served once
    received_at INTEGER NOT NULL
);
