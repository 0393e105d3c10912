import { hostname } from 'node:os';
import type { Queue } from 'bullmq';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import type { Lease } from '../store/lease.ts';
import { sendJobId, type SendJobData } from '../store/send-queue.ts';
import { queueDeliveries } from './send-jobs.ts';
import type { SendStore } from '../store/send-store.ts';
import { SendRefusedError } from './send-refused.ts';

/** How long a fan-out counts as running after its last chunk started. */
export const FAN_OUT_LEASE_MS = 60_000;

/**
 * Who queues a send, as its fan-out lease names them to a second `send` refused meanwhile: the
 * account or schedule that asked, when known, and this process.
 */
export function fanOutHolderName(requestedBy?: string): string {
  const where = `${hostname()}, pid ${process.pid}`;
  return requestedBy ? `${requestedBy} (${where})` : where;
}

/** Takes the send's fan-out lease for this process (FAN_OUT_LEASE_MS); undefined when another fan-out holds it. */
export function takeFanOutLease(sends: SendStore, sendId: string, requestedBy?: string): Promise<Lease | undefined> {
  return sends.takeFanOutLease(sendId, FAN_OUT_LEASE_MS, fanOutHolderName(requestedBy));
}

/**
 * Queues one job per active member of the send's list, in chunks, resuming after the stored
 * cursor. Crash-safe by construction: recipients are recorded before their jobs are added, job ids
 * are deterministic, and the cursor moves only after a chunk is queued, so a resumed fan-out
 * repeats at most one chunk and that repeat adds nothing.
 *
 * One fan-out of a send at a time: it runs under the send's fan-out lease, `lease` when the caller
 * took it (startSend does, before it decides to resume), else taken here (refused with
 * SendRefusedError while another holds it). The lease is renewed every chunk and released when
 * the send is fully queued; a fan-out that dies leaves it to run out, so status shows it stuck.
 */
export async function fanOut(options: {
  readonly sendId: string;
  readonly list: string;
  readonly startAfter: number;
  readonly chunkSize: number;
  readonly sends: SendStore;
  readonly subscribers: SubscriberStore;
  readonly queue: Queue<SendJobData>;
  readonly lease?: Lease;
}): Promise<void> {
  const { sendId, list, sends, subscribers, queue, chunkSize } = options;
  const lease = options.lease ?? (await takeFanOutLease(sends, sendId));
  if (!lease) throw new SendRefusedError(`Send ${sendId} is being queued by another process right now; it is not queued twice.`);
  for (let cursor = options.startAfter; ;) {
    // Lost only when this fan-out stalled past the lease and another took over: that one goes on.
    if (!(await lease.renew())) throw new Error(`lost the fan-out lease of send ${sendId} to another fan-out; that one queues the rest`);
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
  await lease.release();
}
