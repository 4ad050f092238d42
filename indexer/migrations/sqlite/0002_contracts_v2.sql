-- Contracts v2 (SQLite). The sampling seed is fixed at acceptance (`Assignment.seed`), no longer at
-- posting: jobs.seed is filled by JobAccepted and NULL before (rows of v1 jobs keep theirs). Jobs
-- keep the requester's salt and the rules version they are judged by; an expired job's seized
-- collateral is split between the requester's compensation (a locked credit) and the reward pool.
-- Models keep their rules version, and every version of their rules is kept.

ALTER TABLE jobs RENAME COLUMN seed TO seed_at_posting;
ALTER TABLE jobs ADD COLUMN seed TEXT;
UPDATE jobs SET seed = seed_at_posting;
ALTER TABLE jobs DROP COLUMN seed_at_posting;
ALTER TABLE jobs ADD COLUMN salt TEXT NOT NULL DEFAULT '0x0000000000000000000000000000000000000000000000000000000000000000';
ALTER TABLE jobs ADD COLUMN rules_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN compensation TEXT;
ALTER TABLE jobs ADD COLUMN to_reward_pool TEXT;

ALTER TABLE models ADD COLUMN rules_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE model_rules (
    chain_id            INTEGER NOT NULL,
    model_id            TEXT    NOT NULL,
    version             INTEGER NOT NULL,
    audit_rate_ppm      INTEGER NOT NULL,
    max_margin_ppm      INTEGER NOT NULL,
    max_flip_rate_ppm   INTEGER NOT NULL,
    block               INTEGER NOT NULL,
    PRIMARY KEY (chain_id, model_id, version)
);

-- No-show compensation credited to an account but withdrawable only from locked_release_at on
-- (what `lockedCreditOf(account)` returns).
ALTER TABLE balances ADD COLUMN locked_credit TEXT NOT NULL DEFAULT '0';
ALTER TABLE balances ADD COLUMN locked_release_at INTEGER NOT NULL DEFAULT 0;
