import { Job, type Queue } from 'bullmq';
import type { Config } from '../../config/index.ts';
import { describeTrip, judgeBreakers, type BreakerKind, type BreakerTrip } from '../core/breaker-policy.ts';
import { UserFacingError } from '../core/errors.ts';
import type { StateReason } from '../core/send-status.ts';
import type { Logger } from '../logger.ts';
import type { SendControlStore, SendEvent } from '../store/send-control.ts';
import type { SendJobData } from '../store/send-queue.ts';
import type { SendStore } from '../store/send-store.ts';
import { requireLatestSend } from './send-report.ts';

/** What pause, resume and cancel work with. */
export interface SendControlDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly sends: SendStore;
  readonly control: SendControlStore;
  readonly queue: Queue<SendJobData>;
}

/** Which send, and who asks: `newsletter pause|resume|cancel <issue> [--list]`, the console, the API. */
export interface SendControlRequest {
  readonly issueId: string;
  /** The send to this list; the latest send of the issue when omitted. */
  readonly list?: string | undefined;
  /** Who asks, e.g. "cli:alice" or the console user. */
  readonly who: string;
  readonly reason?: string | undefined;
}

/** A pause, resume or cancel that can't be done, with why. */
export class SendControlError extends UserFacingError {
  override readonly name = 'SendControlError';
}

/** What a control action did. */
export interface SendControlResult {
  readonly sendId: string;
  /** False when the send was already so (paused twice, resumed while running). */
  readonly changed: boolean;
  /** Jobs brought forward (resume: the ones put off while paused; cancel: the ones left to end). */
  readonly jobsPromoted: number;
  /** Cancel only: recipients not yet sent that ended as skipped, reason cancelled. */
  readonly skipped: number;
}

/** Pages walked per round trip by resume and cancel: each script call stays short, whatever the send's size. */
const PAGE = 500;

function opsReason(request: SendControlRequest, fallback: string): StateReason {
  return { by: 'ops', who: request.who, reason: request.reason?.trim() || fallback, at: new Date().toISOString() };
}

function refused(sendId: string, outcome: string, action: string): SendControlError {
  if (outcome === 'cancelled')
    return new SendControlError(`Send ${sendId} was cancelled; a cancelled send can't be ${action}d. Send the issue again with --resend.`);
  if (outcome === 'finished') return new SendControlError(`Send ${sendId} has finished; there is nothing left to ${action}.`);
  return new SendControlError(`Send ${sendId} does not exist.`);
}

/**
 * Pauses a running send: no new message of it starts once this returns (the workers check it
 * right before SMTP, atomically with the recipient's claim); messages already at the SMTP server
 * finish. Other sends in the queue go on.
 */
export async function pauseSend(deps: SendControlDeps, request: SendControlRequest): Promise<SendControlResult> {
  const sendId = await requireLatestSend(deps, request.issueId, request.list);
  const reason = opsReason(request, 'paused by ops');
  const [outcome] = await deps.control.setControl(sendId, 'pause', reason, deps.config.breakers.windowMinutes);
  if (outcome !== 'changed' && outcome !== 'unchanged') throw refused(sendId, outcome, 'pause');
  if (outcome === 'changed') {
    deps.logger.warn({ sendId, by: reason.by, who: reason.who, reason: reason.reason }, 'send paused');
    await deps.control.publish({ type: 'send.paused', sendId, by: reason.by, who: request.who, reason: reason.reason });
  }
  return { sendId, changed: outcome === 'changed', jobsPromoted: 0, skipped: 0 };
}

/**
 * Resumes a paused send where it stopped, releases the domains its breakers hold and re-arms the
 * breakers; the jobs put off while it was paused are brought forward at once. A job that was
 * putting itself off just as this ran looks at the send again afterwards and comes forward itself.
 */
export async function resumeSend(deps: SendControlDeps, request: SendControlRequest): Promise<SendControlResult> {
  const sendId = await requireLatestSend(deps, request.issueId, request.list);
  const [outcome] = await deps.control.setControl(sendId, 'resume', undefined, deps.config.breakers.windowMinutes);
  if (outcome !== 'changed' && outcome !== 'unchanged') throw refused(sendId, outcome, 'resume');
  const jobsPromoted = await promoteParkedJobs(deps, sendId);
  if (outcome === 'changed') {
    deps.logger.info({ sendId, who: request.who, jobsPromoted }, 'send resumed');
    await deps.control.publish({ type: 'send.resumed', sendId, by: 'ops', who: request.who });
  }
  return { sendId, changed: outcome === 'changed', jobsPromoted, skipped: 0 };
}

/**
 * Cancels a send for good: its recipients not yet sent end as skipped, reason cancelled, a page at
 * a time (no long script), and their jobs end as soon as a worker takes them, without sending.
 * Messages already at the SMTP server finish and are recorded.
 */
export async function cancelSend(deps: SendControlDeps, request: SendControlRequest): Promise<SendControlResult> {
  const sendId = await requireLatestSend(deps, request.issueId, request.list);
  const reason = opsReason(request, 'cancelled by ops');
  const [outcome] = await deps.control.setControl(sendId, 'cancel', reason, deps.config.breakers.windowMinutes);
  // Cancelling again finishes a cancel that died midway.
  if (outcome !== 'changed' && outcome !== 'cancelled') throw refused(sendId, outcome, 'cancel');
  let skipped = 0;
  let jobsPromoted = 0;
  let cursor = '0';
  do {
    const page = await deps.control.recipientsPage(sendId, cursor, PAGE);
    cursor = page.cursor;
    const cancelled = await deps.control.cancelRecipients(sendId, page.subscriberIds);
    skipped += cancelled.length;
    // Jobs put off (paused, held, paced) would linger until their time: bring them forward to end now.
    jobsPromoted += await promote(deps.queue, cancelled.map(({ jobId }) => jobId).filter(Boolean));
  } while (cursor !== '0');
  jobsPromoted += await promoteParkedJobs(deps, sendId);
  if (outcome === 'changed') {
    deps.logger.warn({ sendId, who: request.who, reason: reason.reason, skipped }, 'send cancelled');
    await deps.control.publish({ type: 'send.cancelled', sendId, by: 'ops', who: request.who, reason: reason.reason, skipped: String(skipped) });
  }
  return { sendId, changed: outcome === 'changed', jobsPromoted, skipped };
}

/**
 * Brings forward the jobs put off while the send was paused or a domain held (and only those: a
 * retry waiting out its backoff, or a message waiting for its domain's slot, keeps waiting);
 * returns how many were still delayed.
 */
async function promoteParkedJobs(deps: SendControlDeps, sendId: string): Promise<number> {
  let promoted = 0;
  let cursor = '0';
  do {
    const page = await deps.control.parkedPage(sendId, cursor, PAGE);
    cursor = page.cursor;
    promoted += await promote(deps.queue, page.jobIds);
    await deps.control.unpark(sendId, page.jobIds);
  } while (cursor !== '0');
  return promoted;
}

/**
 * Promotes the jobs that are delayed; the others (waiting, active, gone) refuse, which is fine.
 * One short script per job (BullMQ's promote), never a scan of the wait list.
 */
async function promote(queue: Queue<SendJobData>, jobIds: readonly string[]): Promise<number> {
  const results = await Promise.allSettled(
    jobIds.map((jobId) => new Job<SendJobData>(queue, 'deliver', { sendId: '', subscriberId: '' }, {}, jobId).promote()),
  );
  return results.filter((result) => result.status === 'fulfilled').length;
}

/** What the breakers work with. */
export interface BreakerDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly control: SendControlStore;
}

/**
 * Counts one outcome for a send's breakers and trips them when a rate is over its threshold: the
 * whole send pauses itself (with the rate and the threshold as its stateReason), or just the
 * recipient's domain is held while the others go on. `sample`: a message the receiving server
 * answered; `kind`: a hard bounce, complaint or block that counts against the send.
 */
export async function countForBreakers(
  deps: BreakerDeps,
  sendId: string,
  outcome: { readonly domain: string; readonly sample: boolean; readonly kind?: BreakerKind | undefined },
): Promise<void> {
  const settings = deps.config.breakers;
  const reading = await deps.control.countForBreakers(sendId, outcome, settings.windowMinutes);
  // Paused, cancelled, or no judgement due (see breaker-count.lua).
  if (reading.control !== 'active') return;
  const sendTrip = judgeBreakers(reading.send, settings);
  if (sendTrip) {
    const reason: StateReason = { by: 'breaker', reason: describeTrip(sendTrip), at: new Date().toISOString() };
    const [changed] = await deps.control.setControl(sendId, 'pause', reason, settings.windowMinutes, reading.armed);
    if (changed !== 'changed') return;
    deps.logger.warn(
      { sendId, breaker: sendTrip.kind, rate: sendTrip.rate, threshold: sendTrip.threshold, count: sendTrip.count, sample: sendTrip.sample },
      `send paused by its breaker: ${reason.reason}`,
    );
    await deps.control.publish({
      type: 'send.paused',
      sendId,
      by: 'breaker',
      reason: reason.reason,
      breaker: sendTrip.kind,
      rate: String(sendTrip.rate),
      threshold: String(sendTrip.threshold),
    });
    await deps.control.publish(breakerTripped(sendId, sendTrip, 'send-paused', reason.reason));
    return;
  }
  if (reading.domainHeld || outcome.domain === '') return;
  const domainTrip = judgeBreakers(reading.domain, settings, outcome.domain);
  if (!domainTrip) return;
  const reason: StateReason = { by: 'breaker', reason: describeTrip(domainTrip), at: new Date().toISOString() };
  if (!(await deps.control.holdDomain(sendId, outcome.domain, reason, reading.armed))) return;
  deps.logger.warn(
    { sendId, domain: outcome.domain, breaker: domainTrip.kind, rate: domainTrip.rate, threshold: domainTrip.threshold },
    `recipient domain held by the send's breaker: ${reason.reason}`,
  );
  await deps.control.publish({ type: 'send.domain-held', sendId, domain: outcome.domain, by: 'breaker', reason: reason.reason, breaker: domainTrip.kind });
  await deps.control.publish(breakerTripped(sendId, domainTrip, 'domain-held', reason.reason));
}

/** breaker.tripped, for the outgoing webhooks: which breaker, the numbers that tripped it, and what it did. */
function breakerTripped(sendId: string, trip: BreakerTrip, action: 'send-paused' | 'domain-held', reason: string): SendEvent {
  return {
    type: 'breaker.tripped',
    sendId,
    breaker: trip.kind,
    action,
    ...(trip.domain ? { domain: trip.domain } : {}),
    rate: String(trip.rate),
    threshold: String(trip.threshold),
    count: String(trip.count),
    sample: String(trip.sample),
    setting: trip.setting,
    reason,
  };
}
