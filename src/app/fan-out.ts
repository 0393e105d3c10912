import type { Queue } from 'bullmq';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import { sendJobId, type SendJobData } from '../store/send-queue.ts';
import { queueDeliveries } from './send-jobs.ts';
import type { SendStore } from '../store/send-store.ts';

/**
 * Queues one job per active member of the send's list, in chunks, resuming after the stored
 * cursor. Crash-safe by construction: recipients are recorded before their jobs are added, job ids
 * are deterministic, and the cursor moves only after a chunk is queued, so a resumed fan-out
 * repeats at most one chunk and that repeat adds nothing.
 */
export async function fanOut(options: {
  readonly sendId: string;
  readonly list: string;
  readonly startAfter: number;
  readonly chunkSize: number;
  readonly sends: SendStore;
  readonly subscribers: SubscriberStore;
  readonly queue: Queue<SendJobData>;
}): Promise<void> {
  const { sendId, list, sends, subscribers, queue, chunkSize } = options;
  for (let cursor = options.startAfter; ;) {
    // A lease renewed every chunk: a fan-out that died shows as a stuck send in `status`.
    await sends.holdFanOutLease(sendId, FAN_OUT_LEASE_MS);
    const ids = await subscribers.listPage(list, cursor, chunkSize);
    if (ids.length === 0) break;
    const statuses = await subscribers.statusesOf(ids);
    const added = await sends.addRecipients(
      sendId,
      ids.filter((_, index) => statuses[index] === 'active'),
    );
    // Cancelled while queueing: nothing more is queued (the cancel marked the fan-out done).
    if (added === 'cancelled') break;
    // Jobs go to every recipient recorded as queued, not just to those active now: a resumed chunk
    // may hold recipients recorded before a crash who have unsubscribed since. Their job marks
    // them skipped; leaving them out would leave the send pending forever.
    const states = await sends.recipientStates(sendId, ids);
    const queued = ids.filter((_, index) => states[index] === 'queued');
    await queueDeliveries({ sends, queue }, sendId, queued, (subscriberId) => sendJobId(sendId, subscriberId));
    cursor = Number(ids.at(-1));
    await sends.advanceFanOutCursor(sendId, cursor);
  }
  await sends.markFanOutDone(sendId);
  await sends.releaseFanOutLease(sendId);
}

/** How long a fan-out counts as running after its last chunk started. */
const FAN_OUT_LEASE_MS = 60_000;
