import { randomUUID } from 'node:crypto';
import type { JobState, Queue } from 'bullmq';
import { UserFacingError } from '../core/errors.ts';
import type { SendRecord } from '../store/send-store.ts';
import { ACCEPTED_BUT_UNRECORDED } from '../delivery/job-errors.ts';
import { deliveryJobs, repairJobId, type SendJobData } from '../store/send-queue.ts';
import type { SendStore } from '../store/send-store.ts';

/** What the job bookkeeping of a send works with. */
export interface SendJobDeps {
  readonly sends: SendStore;
  readonly queue: Queue<SendJobData>;
}

/** States in which a job will still run. */
const LIVE_STATES: ReadonlySet<JobState | 'unknown'> = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);
/** Queued recipients whose jobs are looked at to tell a stuck send: a bounded cost, whatever the send's size. */
const STUCK_SAMPLE = 100;
/** How long one repair may hold a send's repair lock. */
const REPAIR_LOCK_MS = 10 * 60_000;

/** Records which job serves each recipient, then adds the jobs (ids only in their data). */
export async function queueDeliveries(
  deps: SendJobDeps,
  sendId: string,
  subscriberIds: readonly string[],
  jobId: (subscriberId: string) => string,
): Promise<void> {
  if (subscriberIds.length === 0) return;
  await deps.sends.assignJobs(
    sendId,
    subscriberIds.map((subscriberId) => ({ subscriberId, jobId: jobId(subscriberId) })),
  );
  await deps.queue.addBulk(deliveryJobs(sendId, subscriberIds, jobId));
}

/**
 * Whether a send is stuck: fanned out, recipients pending, and none of the jobs that serve them
 * will run (they failed, or are gone). Looks at the jobs of up to 100 random pending recipients,
 * so it is exact for the last 100 and a sound sample before that.
 */
export async function isStuck(deps: SendJobDeps, record: SendRecord): Promise<boolean> {
  if (record.state === 'preparing' || record.finished || record.pending === 0) return false;
  const sample = await deps.sends.sampleQueuedJobs(record.id, STUCK_SAMPLE);
  if (sample.length === 0) return true;
  const states = await Promise.all(sample.map(({ jobId }) => deps.queue.getJobState(jobId)));
  return !states.some((state) => LIVE_STATES.has(state));
}

/**
 * Gives every queued recipient whose job will not run a job again, under the send's repair lock
 * (two repairs at once would mail them twice). A recipient whose job ended because its acceptance
 * could not be recorded is recorded as accepted instead: the server has that message already.
 */
export async function repairOrphans(deps: SendJobDeps, sendId: string): Promise<{ repaired: number; acceptedLate: number }> {
  const token = randomUUID();
  if (!(await deps.sends.lockRepair(sendId, token, REPAIR_LOCK_MS))) {
    throw new UserFacingError(`Send ${sendId} is being repaired by another --retry-failed right now; run it again when that one is done.`);
  }
  try {
    const tag = `x${await deps.sends.nextRepairRound(sendId)}`;
    let repaired = 0;
    let acceptedLate = 0;
    let cursor = '0';
    do {
      const page = await deps.sends.queuedJobsPage(sendId, cursor);
      cursor = page.cursor;
      const states = await Promise.all(page.jobs.map(({ jobId }) => deps.queue.getJobState(jobId)));
      const orphans: string[] = [];
      for (const [index, { subscriberId, jobId }] of page.jobs.entries()) {
        const state = states[index];
        if (state && LIVE_STATES.has(state)) continue;
        const failedReason = state === 'failed' ? (await deps.queue.getJob(jobId))?.failedReason : undefined;
        if (failedReason?.startsWith(ACCEPTED_BUT_UNRECORDED)) {
          if (await deps.sends.markRecipient(sendId, subscriberId, 'accepted')) acceptedLate += 1;
        } else orphans.push(subscriberId);
      }
      await queueDeliveries(deps, sendId, orphans, (subscriberId) => repairJobId(sendId, subscriberId, tag));
      repaired += orphans.length;
    } while (cursor !== '0');
    return { repaired, acceptedLate };
  } finally {
    await deps.sends.unlockRepair(sendId, token);
  }
}
