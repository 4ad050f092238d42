-- The deployment this database belongs to, recorded on first open: the chain, the contracts and
-- the executor's address. An executor configured for another deployment refuses to run on it
-- (job ids, stages and transactions mean nothing on another chain or escrow).
CREATE TABLE deployment (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    chain_id INTEGER NOT NULL,
    job_escrow TEXT NOT NULL,         -- 0x-prefixed, lowercase
    staking TEXT NOT NULL,
    model_registry TEXT NOT NULL,
    token TEXT NOT NULL,
    executor TEXT NOT NULL,
    recorded_at INTEGER NOT NULL      -- unix seconds
);

-- Transactions now go through the shared transaction manager (`infera_chain::tx`), whose log
-- (`chain_txs`, several hashes per nonce) it creates itself in this database. The old one-row-per-
-- nonce log is gone.
DROP TABLE txs;
