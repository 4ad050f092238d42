-- The job loop follows the chain through the embedded indexer's feed (`infera_indexer::feed`): its
-- position is the last block read (`next_block - 1`) and, above finality, that block's hash, so a
-- reorganisation below it is noticed and the void blocks read again. NULL: trusted by number (a
-- start block, a finalized block, or a position recorded before this migration).
ALTER TABLE cursor ADD COLUMN block_hash TEXT;
