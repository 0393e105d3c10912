import type { Queue } from 'bullmq';
import { ACCEPTED_BUT_UNRECORDED } from '../delivery/job-errors.ts';
import { deliveryJobs, repairJobId, type SendJobData } from '../store/send-queue.ts';
import type { SendRecord, SendStore } from '../store/send-store.ts';

/** What the job bookkeeping of a send works with. */
export interface SendJobDeps {
  readonly sends: SendStore;
  readonly queue: Queue<SendJobData>;
}

/** Queued recipients whose jobs are looked at to tell a stuck send: a bounded cost, whatever the send's size. */
const STUCK_SAMPLE = 100;

/**
 * Records which job serves each recipient still queued, then adds those jobs (ids only in their
 * data). With `expectedJobId`, a recipient's job is replaced only if it is still the one given.
 * Returns how many jobs were added.
 */
export async function queueDeliveries(
  deps: SendJobDeps,
  sendId: string,
  subscriberIds: readonly string[],
  jobId: (subscriberId: string) => string,
  expectedJobId?: (subscriberId: string) => string,
): Promise<number> {
  if (subscriberIds.length === 0) return 0;
  const assigned = await deps.sends.assignJobs(
    sendId,
    subscriberIds.map((subscriberId) => ({
      subscriberId,
      jobId: jobId(subscriberId),
      ...(expectedJobId ? { expectedJobId: expectedJobId(subscriberId) } : {}),
    })),
  );
  const added = subscriberIds.filter((subscriberId) => assigned.has(subscriberId));
  await deps.queue.addBulk(deliveryJobs(sendId, added, jobId));
  return added.length;
}

/** What became of a job: it will still run, it is gone, or it finished (and how, if it failed). */
type JobFate = { readonly live: true } | { readonly live: false; readonly failedReason?: string | undefined };

/**
 * The fates of some jobs from their hashes: one read each, whatever the queue's length (BullMQ's
 * getJobState searches the wait list, which blocks Redis on a long queue). A job that exists and
 * has not finished will run.
 */
async function jobFates(queue: Queue<SendJobData>, jobIds: readonly string[]): Promise<JobFate[]> {
  return Promise.all(
    jobIds.map(async (jobId): Promise<JobFate> => {
      const job = await queue.getJob(jobId);
      if (!job) return { live: false };
      return job.finishedOn === undefined ? { live: true } : { live: false, failedReason: job.failedReason };
    }),
  );
}

/**
 * Whether a send is stuck: its fan-out died (no lease), or recipients are pending and none of the
 * jobs that serve them will run. Looks at the jobs of up to 100 random pending recipients: exact
 * for the last 100, a sound sample before that, and a bounded cost whatever the send's size.
 */
export async function isStuck(deps: SendJobDeps, record: SendRecord): Promise<boolean> {
  // Fan-out not done (whether or not the send is paused meanwhile): stuck if no fan-out holds its lease.
  if (!record.fanOutDone) return !(await deps.sends.fanOutRunning(record.id));
  if (record.finished || record.pending === 0) return false;
  const sample = await deps.sends.sampleQueuedJobs(record.id, STUCK_SAMPLE);
  // No job index: a send from before it (migrated); nothing to tell by.
  if (sample.length === 0) return false;
  const fates = await jobFates(
    deps.queue,
    sample.map(({ jobId }) => jobId),
  );
  return !fates.some((fate) => fate.live);
}

/**
 * Gives every queued recipient whose job will not run a job again; the caller holds the send's
 * repair lock, renewed by `stillHeld` between pages. A recipient whose job ended because its
 * acceptance could not be recorded is recorded as accepted instead: the server has that message.
 * A job is replaced only if it is still the recipient's job when the new one is assigned.
 */
export async function repairOrphans(deps: SendJobDeps, sendId: string, stillHeld: () => Promise<void>): Promise<{ repaired: number; acceptedLate: number }> {
  const tag = `x${await deps.sends.nextRepairRound(sendId)}`;
  let repaired = 0;
  let acceptedLate = 0;
  let cursor = '0';
  do {
    await stillHeld();
    const page = await deps.sends.queuedJobsPage(sendId, cursor);
    cursor = page.cursor;
    const fates = await jobFates(
      deps.queue,
      page.jobs.map(({ jobId }) => jobId),
    );
    const orphans = new Map<string, string>();
    for (const [index, { subscriberId, jobId }] of page.jobs.entries()) {
      const fate = fates[index];
      if (!fate || fate.live) continue;
      if (fate.failedReason?.startsWith(ACCEPTED_BUT_UNRECORDED)) {
        if (await deps.sends.markRecipient(sendId, subscriberId, 'accepted')) acceptedLate += 1;
      } else orphans.set(subscriberId, jobId);
    }
    repaired += await queueDeliveries(
      deps,
      sendId,
      [...orphans.keys()],
      (subscriberId) => repairJobId(sendId, subscriberId, tag),
      (subscriberId) => orphans.get(subscriberId) ?? '',
    );
  } while (cursor !== '0');
  return { repaired, acceptedLate };
}
