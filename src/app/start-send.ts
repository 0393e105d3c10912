import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/index.ts';
import { loadIssue } from '../content/load-issue.ts';
import { SendRefusedError } from './send-refused.ts';
import { compileContextFor, compileIssue } from '../render/compile-issue.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import { FAN_OUT_LEASE_MS, fanOut, fanOutHolderName, takeFanOutLease } from './fan-out.ts';
import { retryJobId, type SendJobData } from '../store/send-queue.ts';
import { queueDeliveries, repairOrphans } from './send-jobs.ts';
import { announceFinishAgain } from './event-webhooks.ts';
import type { SendStore } from '../store/send-store.ts';
import type { SendControlStore } from '../store/send-control.ts';

export { SendRefusedError };

/** What the send use cases work with. */
export interface SendDeps {
  readonly config: Config;
  readonly sends: SendStore;
  readonly subscribers: SubscriberStore;
  readonly queue: Queue<SendJobData>;
}

/** What the editor asks for: `newsletter send <issue> [--list] [--resend]`. */
export interface StartSendRequest {
  readonly issueId: string;
  readonly list: string;
  /** Send again although this issue already went to this list. */
  readonly resend: boolean;
  /**
   * Who asks (an account's email, a schedule), when known: a second `send` refused while this one
   * is being queued is told by whom.
   */
  readonly requestedBy?: string;
}

/** The send that is now queued. */
export interface StartSendResult {
  readonly sendId: string;
  /** True when an interrupted fan-out of an existing send was resumed instead of starting a new send. */
  readonly resumed: boolean;
  readonly warnings: readonly string[];
}

/**
 * The editor's "send": checks the issue may go out, records the send with its compiled issue, and
 * fans out one job per active subscriber. Returns once everything is queued; workers do the rest.
 * A send whose fan-out was interrupted is resumed, but never while another run still queues it
 * (its fan-out lease is held): that `send` is refused, and only the run that queues a send
 * announces it (send.started).
 */
export async function startSend(deps: SendDeps & { readonly control: Pick<SendControlStore, 'publish'> }, request: StartSendRequest): Promise<StartSendResult> {
  const { config, sends, subscribers, queue } = deps;
  const issue = await loadIssue(config.issuesDir, request.issueId);
  if (issue.status !== 'finished') {
    throw new SendRefusedError(
      `Issue "${issue.id}" is a ${issue.status}; only a finished issue can be sent. Set "status: finished" in its file when it is ready.`,
    );
  }
  if (!(await subscribers.listExists(request.list))) {
    throw new SendRefusedError(`List "${request.list}" has no subscribers; import some with: newsletter subscribers import <file.csv> --list ${request.list}`);
  }

  const fanOutOptions = { list: request.list, chunkSize: config.send.fanOutChunkSize, sends, subscribers, queue };
  const existingId = await sends.latestId(issue.id, request.list);
  const existing = existingId ? await sends.get(existingId) : undefined;
  // Fan-out not done, paused or not (a breaker may pause a send while it is queued); a cancelled send stays cancelled.
  if (existing && !existing.fanOutDone && existing.state !== 'cancelled') {
    // A crash or Ctrl-C during fan-out: finish queueing that send with its stored compiled issue,
    // unless its fan-out is running right now. Taking the lease first (SET NX) makes that one check:
    // of two `send`s at once, one resumes and the other is refused.
    const lease = await takeFanOutLease(sends, existing.id, request.requestedBy);
    if (!lease) throw await beingQueued(sends, existing.id, issue.id, request.list);
    // Read again under the lease: the cursor where the last run stopped, and whether it finished meanwhile.
    const current = await sends.get(existing.id);
    if (!current || current.fanOutDone || current.state === 'cancelled') {
      await lease.release();
      throw new SendRefusedError(
        `Send ${existing.id} of issue "${issue.id}" to list "${request.list}" was fully queued by another run just now (${current?.state ?? 'gone'}); it is not queued twice. Follow it with: newsletter status ${issue.id} --list ${request.list}`,
      );
    }
    await sends.markIssueSent(issue.id);
    await fanOut({ ...fanOutOptions, sendId: current.id, startAfter: current.fanOutCursor, lease });
    // The interrupted run died before it could announce the send.
    await announceStarted(deps, current.id);
    return { sendId: current.id, resumed: true, warnings: [] };
  }
  if (existing && !request.resend) throw alreadySent(existing.id, existing.state, issue.id, request.list);

  const compiled = await compileIssue(issue, compileContextFor(config, request.list));
  // The new send is created with its fan-out lease held: no other `send` can take it for an interrupted one.
  const { created, sendId, lease } = await sends.create(compiled, request.resend, { ms: FAN_OUT_LEASE_MS, holder: fanOutHolderName(request.requestedBy) });
  if (!created) throw alreadySent(sendId, 'just started by someone else', issue.id, request.list);
  await sends.markIssueSent(issue.id);
  await fanOut({ ...fanOutOptions, sendId, startAfter: 0, ...(lease ? { lease } : {}) });
  await announceStarted(deps, sendId);
  return { sendId, resumed: false, warnings: compiled.warnings };
}

/** The refusal of a `send` while another run queues the same send: by whom and since when, if its lease says, and how to follow it. */
async function beingQueued(sends: SendStore, sendId: string, issueId: string, list: string): Promise<SendRefusedError> {
  const holder = await sends.fanOutHolder(sendId);
  const by = holder?.holder ? ` by ${holder.holder}` : '';
  const since = holder?.since ? ` since ${holder.since}` : '';
  return new SendRefusedError(
    `Send ${sendId} of issue "${issueId}" to list "${list}" is being queued right now${by}${since}; it is not started twice. ` +
      `Follow it with: newsletter status ${issueId} --list ${list} (or its page in the console). ` +
      `If that run died, its lease runs out within ${FAN_OUT_LEASE_MS / 1000} seconds and sending again resumes it.`,
  );
}

/**
 * send.started on the send event stream, once everything is queued (so it carries the total): the
 * console and the outgoing webhooks read it (app/event-webhooks.ts).
 */
async function announceStarted(deps: Pick<SendDeps, 'sends'> & { readonly control: Pick<SendControlStore, 'publish'> }, sendId: string): Promise<void> {
  const record = await deps.sends.get(sendId);
  if (!record) return;
  await deps.control.publish({ type: 'send.started', sendId, issue: record.issueId, list: record.list, total: String(record.total) });
}

/** How long one --retry-failed may hold a send's retry lock without renewing it (it renews every page). */
const REPAIR_LOCK_MS = 2 * 60_000;

/** What a retry of the failed recipients did. */
export interface RetryFailedResult {
  readonly sendId: string;
  /** Recipients whose attempts had run out on temporary errors (or whose workers kept dying). */
  readonly requeued: number;
  /** Recipients still queued whose job will not run (a stuck send): given a job again. */
  readonly repaired: number;
  /** Recipients whose message was accepted but never recorded so: recorded now, not sent again. */
  readonly acceptedLate: number;
}

/**
 * Ops' "try the failed ones again" after an outage or a fixed setting: requeues the recipients of the
 * latest send of an issue to a list whose attempts ran out on temporary errors. Permanent failures
 * stay failed, and accepted recipients are never mailed again. Recipients still queued whose job
 * will not run (a stuck send: see sendStatusReport) get a job again.
 */
export async function retryFailedRecipients(
  deps: SendDeps & { readonly redis: Redis },
  request: { readonly issueId: string; readonly list: string },
): Promise<RetryFailedResult> {
  const { sends, config } = deps;
  const sendId = await sends.latestId(request.issueId, request.list);
  if (!sendId) throw new SendRefusedError(`Issue "${request.issueId}" has not been sent to list "${request.list}"; there is nothing to retry.`);
  const record = await sends.get(sendId);
  // A cancelled send stays cancelled: retrying it would mail recipients ops decided not to mail.
  if (record?.state === 'cancelled') {
    throw new SendRefusedError(`Send ${sendId} was cancelled; there is nothing to retry. Send the issue again with --resend if it should go out.`);
  }
  if (record && !record.fanOutDone) {
    throw new SendRefusedError(
      `Send ${sendId} is still being queued (or its queueing was interrupted): run "newsletter send ${request.issueId} --list ${request.list}" to finish queueing it, then retry.`,
    );
  }
  // One retry of a send at a time: two would give the same recipients two jobs that may both send.
  const lease = await sends.takeRetryLease(sendId, REPAIR_LOCK_MS);
  if (!lease) {
    throw new SendRefusedError(
      `Send ${sendId} is being retried by another --retry-failed right now (or one died in the last ${REPAIR_LOCK_MS / 60_000} minutes); try again later.`,
    );
  }
  const stillHeld = async () => {
    if (!(await lease.renew())) throw new Error(`lost the retry lock of send ${sendId} to another --retry-failed`);
  };
  try {
    // A page at a time, so no script holds Redis for long whatever the send's size: at most 500
    // ids a call (a few milliseconds), fewer when FANOUT_CHUNK_SIZE is smaller.
    const pageSize = Math.min(config.send.fanOutChunkSize, 500);
    // Every recipient requeued by this run, once: a scan may return an id twice.
    const requeued = new Set<string>();
    let watchedAgain = false;
    const giveJobs = async (subscriberIds: readonly string[], round: number) => {
      // The send was over, and its send.finished may have gone out: when this round is over, another does.
      if (subscriberIds.length > 0 && !watchedAgain) {
        await announceFinishAgain(deps, sendId);
        watchedAgain = true;
      }
      await queueDeliveries(deps, sendId, subscriberIds, (subscriberId) => retryJobId(sendId, subscriberId, round));
      await sends.requeueDone(sendId, subscriberIds);
      for (const subscriberId of subscriberIds) requeued.add(subscriberId);
    };
    // First the recipients an earlier run requeued and died before giving jobs to, under their round.
    let cursor = '0';
    do {
      await stillHeld();
      const page = await sends.pendingRequeues(sendId, cursor, pageSize);
      cursor = page.cursor;
      await giveJobs(
        page.subscriberIds.filter((subscriberId) => !requeued.has(subscriberId)),
        page.round,
      );
    } while (cursor !== '0');
    // Then the temporary failures, a page of the failures hash at a time, all in one new round
    // (taken with the first recipient requeued). Each page is pending until its jobs are added.
    let round = 0;
    do {
      await stillHeld();
      const page = await sends.requeueTemporaryFailures(sendId, { cursor, round, pageSize, skip: requeued });
      cursor = page.cursor;
      round = page.round;
      await giveJobs(page.subscriberIds, round);
    } while (cursor !== '0');
    const { repaired, acceptedLate } = await repairOrphans(deps, sendId, stillHeld);
    return { sendId, requeued: requeued.size, repaired, acceptedLate };
  } finally {
    await lease.release();
  }
}

function alreadySent(sendId: string, state: string, issueId: string, list: string): SendRefusedError {
  return new SendRefusedError(
    `Issue "${issueId}" was already sent to list "${list}" (send ${sendId}, ${state}). Sending it again would mail every subscriber twice; pass --resend if that is what you want.`,
  );
}
