import { onchainTable } from "ponder";

// One row per JobEscrow.JobPosted event.
export const job = onchainTable("job", (t) => ({
  id: t.bigint().primaryKey(), // jobId
  requester: t.hex().notNull(),
  modelId: t.hex().notNull(),
  escrow: t.bigint().notNull(),
  postedBlock: t.bigint().notNull(),
}));
