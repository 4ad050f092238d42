-- The Disputes contract (SQLite). A dispute is now keyed by its id in Disputes and names its claim
-- (source contract and claim id: the job id for JobEscrow), its parties, its jury with each juror's
-- ballot (JSON), its deadlines and its outcome. The previous table was opened and closed from
-- JobEscrow's events before a dispute contract existed, for deployments that are replaced anyway:
-- it is dropped with its undo images (a re-index from the deployment block rebuilds the new one).
DROP TABLE disputes;
DELETE FROM undo WHERE tbl = 'disputes';
CREATE TABLE disputes (
    chain_id            INTEGER NOT NULL,
    dispute_id          INTEGER NOT NULL,
    source              TEXT    NOT NULL,
    claim_id            TEXT    NOT NULL,
    challenger          TEXT    NOT NULL,
    executor            TEXT    NOT NULL,
    bond                TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    draw_block          INTEGER NOT NULL,
    commit_end          INTEGER NOT NULL,
    reveal_end          INTEGER NOT NULL,
    jurors              TEXT    NOT NULL,
    faulty_votes        INTEGER NOT NULL,
    honest_votes        INTEGER NOT NULL,
    collateral_seized   TEXT,
    burned              TEXT,
    opened_block        INTEGER NOT NULL,
    resolved_block      INTEGER,
    block               INTEGER NOT NULL,
    PRIMARY KEY (chain_id, dispute_id)
);
CREATE INDEX disputes_by_claim ON disputes (chain_id, source, claim_id);
