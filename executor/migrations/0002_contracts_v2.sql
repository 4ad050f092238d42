-- Contracts v2: the sampling seed is no longer part of a job's terms (`Job.seed` is gone, `JobSpec`
-- gained `salt`, `Job` gained `rulesVersion`); it is fixed at acceptance and kept in the assignment
-- (`Assignment.seed`, stored in `assignment`). Jobs recorded for the v1 ABI (a `Job` of 22 words,
-- a v2 one has 23) can neither be decoded nor sent back to an escrow any more: those still open
-- are given up, with the reason, instead of stopping the job loop on an unreadable row.
UPDATE jobs
SET stage = 'failed',
    reason = 'recorded for the v1 contracts (seed fixed at posting): not resumable',
    updated_at = CAST(strftime('%s', 'now') AS INTEGER)
WHERE length(job) = 22 * 32
  AND stage IN ('posted', 'accepted', 'generated', 'submitted');
