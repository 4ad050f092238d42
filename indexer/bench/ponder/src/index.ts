import { ponder } from "ponder:registry";
import { job } from "ponder:schema";

ponder.on("JobEscrow:JobPosted", async ({ event, context }) => {
  await context.db.insert(job).values({
    id: event.args.jobId,
    requester: event.args.requester,
    modelId: event.args.modelId,
    escrow: event.args.job.escrow,
    postedBlock: event.block.number,
  });
});
