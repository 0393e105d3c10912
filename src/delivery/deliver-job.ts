import { DelayedError, RateLimitError, type Job } from 'bullmq';
import type { Transporter } from 'nodemailer';
import type { Config } from '../../config/index.ts';
import type { BreakerKind } from '../core/breaker-policy.ts';
import { classifySmtpFailure, type SmtpFailureFields } from '../core/classify-failure.ts';
import { domainOf, isSlowDown } from '../core/pacing-policy.ts';
import type { RecipientFailure } from '../core/send-status.ts';
import type { DeliveryEvent } from '../core/delivery-event.ts';
import type { Logger } from '../logger.ts';
import { CorruptRecordError } from '../store/records.ts';
import { parseClaim, type Claim, type SendControlStore } from '../store/send-control.ts';
import type { SendJobData } from '../store/send-queue.ts';
import type { SendStore } from '../store/send-store.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import { prepareMessageComposer, type ComposedMessage, type MessageComposer } from './compose-message.ts';
import { AcceptedButUnrecordedError, PermanentDeliveryError } from './job-errors.ts';
import { withRetries } from './retry.ts';
import type { Pacer } from './pacing.ts';
import type { SmtpOutage } from './smtp-outage.ts';

/** What a job did, kept as the job's return value for the dashboard. */
export type DeliveryOutcome =
  | { readonly outcome: 'accepted'; readonly messageId: string; readonly response: string }
  | { readonly outcome: 'skipped'; readonly reason: string }
  | { readonly outcome: 'already-done'; readonly state: string }
  /** Another job serves this recipient now (a repair replaced this one): only that one may send. */
  | { readonly outcome: 'superseded'; readonly by: string };

/**
 * How long a job of a paused send (or of a domain a breaker holds) is put off before it looks
 * again. Resume brings these jobs forward at once, so this only bounds the cost of a long pause:
 * each put-off job is looked at once per interval.
 */
export const PAUSED_RECHECK_MS = 5 * 60_000;
/** A domain slot further away than this puts the job off (freeing the worker for other domains) instead of waiting in-process. */
export const MAX_IN_PROCESS_WAIT_MS = 1_000;
/** How long a job waits before looking again at a recipient another worker is sending to. */
export const CLAIM_RECHECK_MS = 3_000;
/**
 * A claim this old is taken over even if its worker still beats: no SMTP transaction lasts this
 * long (the transport's timeouts end it sooner), so its job ended without recording anything.
 */
export const CLAIM_MAX_AGE_MS = 15 * 60_000;

/** A send whose compiled issue is gone: none of its messages can be composed. */
class MissingCompiledIssueError extends Error {
  override readonly name = 'MissingCompiledIssueError';
}

/** Compiled sends kept per worker process; a worker rarely serves more than one or two at once. */
const COMPOSER_CACHE_SIZE = 8;

/** Everything the job handler works with; the worker passes the real ones, tests may wrap them. */
export interface DeliveryDeps {
  readonly config: Config;
  readonly sends: SendStore;
  readonly subscribers: SubscriberStore;
  readonly transport: Transporter;
  readonly logger: Logger;
  /**
   * Messages of this process that the SMTP server accepted but whose acceptance is not recorded
   * yet (see acceptanceKey); a job that comes back for one records it instead of sending again.
   */
  readonly acceptedUnrecorded: Set<string>;
  /** Keeps trying a write the job could not make in time, after the job has ended (logged if it never succeeds). */
  readonly recordLater: (
    write: () => Promise<unknown>,
    context: { readonly sendId: string; readonly subscriberId: string; readonly what: string; readonly urgent?: boolean },
  ) => void;
  /**
   * Applies a delivery event by the bounce policy (app/delivery-events.ts): the SMTP server's own
   * bounces go through the same model as the reports that come back later.
   */
  readonly events: {
    /** Records the event durably (the report inbox), so it is applied even if this process dies; returns its record's id. */
    hold(event: DeliveryEvent, email: string): Promise<string>;
    /** Applies a held event and forgets its record. */
    apply(event: DeliveryEvent, heldAs: string): Promise<unknown>;
  };
  /** This worker process's id, as its `sending` claims name it; its heartbeat thread keeps it alive in Redis. */
  readonly workerId: string;
  /** Pause, cancel, held domains and the `sending` claims (store/send-control.ts). */
  readonly control: Pick<SendControlStore, 'gate' | 'claim' | 'releaseClaim' | 'workerAlive' | 'park'>;
  /** The pacing budgets shared by every worker process (delivery/pacing.ts). */
  readonly pacing: Pacer;
  /** Counts an outcome for the send's reputation breakers, which may pause the send or hold a domain. */
  readonly breakers: { count(sendId: string, outcome: { readonly domain: string; readonly sample: boolean; readonly kind?: BreakerKind }): Promise<void> };
  /** Recipients this process is sending to right now (acceptanceKey): a claim of ours not among them is stale. */
  readonly sendingNow: Set<string>;
  /** True once the worker is stopping: a job not yet handed to SMTP goes back to the queue instead. */
  readonly stopping: () => boolean;
  /** Waits between tries to record an outcome: rides out a Redis failover of a few seconds. */
  readonly recordRetryDelaysMs: readonly number[];
  /** This process's SMTP outage circuit (delivery/smtp-outage.ts): is the service down, and one probe at a time while it is. */
  readonly outage: SmtpOutage;
}

/**
 * Builds the job handler of the send workers. For each job it takes the recipient's record as the
 * guard (a recipient already accepted is never mailed again, whatever BullMQ redelivers), reloads
 * the subscriber, composes from the send's compiled issue (prepared once per send and cached), and
 * sends through the pooled transport. Every final outcome is recorded here, before the job ends:
 * if the record can't be written, the job is put back (not failed), so no recipient is ever left
 * `queued` without a job.
 */
export function createDeliveryHandler(deps: DeliveryDeps): (job: Job<SendJobData>, token?: string) => Promise<DeliveryOutcome> {
  const { config, sends, subscribers, transport, logger } = deps;
  const composers = new Map<string, Promise<MessageComposer>>();

  const composerFor = (sendId: string): Promise<MessageComposer> => {
    let composer = composers.get(sendId);
    if (!composer) {
      composer = (async () => {
        const compiled = await sends.loadCompiled(sendId);
        if (!compiled) throw new MissingCompiledIssueError(`Send ${sendId} has no compiled issue stored`);
        return prepareMessageComposer(compiled, { sendId, appSecret: config.appSecret, bounceAddress: config.bounces.address });
      })();
      composer.catch(() => composers.delete(sendId));
      composers.set(sendId, composer);
      if (composers.size > COMPOSER_CACHE_SIZE) composers.delete(composers.keys().next().value as string);
    }
    return composer;
  };

  const record = (what: () => Promise<unknown>) => withRetries(what, deps.recordRetryDelaysMs);

  return async (job, token) => {
    const { sendId, subscriberId } = job.data;
    const attempts = job.attemptsMade + 1;
    // Every line about this job carries its ids. Fields, not a child logger: a child per message
    // costs more than the line it writes.
    const ids = { sendId, subscriberId, jobId: job.id, attempt: attempts };
    const log = {
      info: (fields: object, message: string) => logger.info({ ...ids, ...fields }, message),
      warn: (fields: object, message: string) => logger.warn({ ...ids, ...fields }, message),
      error: (fields: object, message: string) => logger.error({ ...ids, ...fields }, message),
    };

    /** The recipient's domain once the subscriber is read ('' when they no longer exist): the send's per-domain counters use it. */
    let recipientDomain: string | undefined;
    /**
     * Records a final outcome. If Redis won't take it even after retries, the job comes back later
     * (without spending an attempt) instead of ending: no recipient is left queued without a job.
     */
    const recordFinal = async (write: () => Promise<unknown>, what: string): Promise<void> => {
      try {
        await record(write);
      } catch (recordError) {
        log.error({ err: recordError }, `could not record ${what}; the job will run again`);
        await job.moveToDelayed(Date.now() + config.send.backoffMs, token);
        throw new DelayedError();
      }
    };
    const recordFailure = async (failure: Omit<RecipientFailure, 'at' | 'attempts'>, cause: string, messageId?: string): Promise<void> => {
      await recordFinal(
        () => sends.markRecipient(sendId, subscriberId, 'failed', { failure: { ...failure, at: new Date().toISOString(), attempts }, domain: recipientDomain }),
        'the failure',
      );
      log.warn(
        { outcome: 'failed', messageId, permanent: failure.permanent, code: failure.code, responseCode: failure.responseCode, response: failure.response },
        cause,
      );
    };
    const fail = async (failure: Omit<RecipientFailure, 'at' | 'attempts'>, cause: string): Promise<never> => {
      await recordFailure(failure, cause);
      throw failure.permanent ? new PermanentDeliveryError(cause) : new Error(cause);
    };

    /**
     * Puts the job off until later: no attempt is spent (BullMQ's DelayedError). The time it is
     * due back goes into its data first: the queue metric measures its wait from then, not from
     * when it was last taken.
     */
    const putOff = async (ms: number, data?: Partial<SendJobData>): Promise<never> => {
      const until = Date.now() + ms;
      await job.updateData({ ...job.data, ...data, putOffUntil: until });
      await job.moveToDelayed(until, token);
      throw new DelayedError();
    };
    /**
     * Puts off a job of a paused send (or of a held domain) until its recheck, then looks once
     * more: a resume that came in between, after its walk over the send's jobs had passed this
     * one, finds it active again here, and the job brings itself forward.
     */
    const putOffWhilePaused = async (domain: string): Promise<never> => {
      // Recorded as parked first, so resume (and cancel) bring exactly these jobs forward.
      await deps.control.park(sendId, job.id ?? '');
      const until = Date.now() + PAUSED_RECHECK_MS;
      await job.updateData({ ...job.data, putOffUntil: until });
      await job.moveToDelayed(until, token);
      const now = await deps.control.gate(sendId, { fresh: true });
      if (now.control !== 'paused' && !now.heldDomains.has(domain)) await job.promote().catch(() => undefined);
      throw new DelayedError();
    };
    const skipCancelled = async (): Promise<DeliveryOutcome> => {
      await recordFinal(() => sends.markRecipient(sendId, subscriberId, 'skipped', { reason: 'cancelled', domain: recipientDomain }), 'the skip');
      log.info({ outcome: 'skipped', reason: 'cancelled' }, 'skipped: the send was cancelled');
      return { outcome: 'skipped', reason: 'send cancelled' };
    };

    // One round trip for the reads; an unreadable subscriber record only matters if the recipient
    // is still to be served, so its error waits until the state says so.
    const [state, assignedJob, subscriberRead, gate] = await Promise.all([
      sends.recipientState(sendId, subscriberId),
      sends.assignedJob(sendId, subscriberId),
      subscribers.get(subscriberId).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      deps.control.gate(sendId),
    ]);
    if (state !== 'queued') return { outcome: 'already-done', state: state ?? 'unknown' };
    if ('value' in subscriberRead) recipientDomain = subscriberRead.value ? domainOf(subscriberRead.value.email) : '';
    // One job per recipient may send: the one the send's job index names (none named: a send from
    // before the index, whose fan-out job is the only one).
    if (assignedJob !== undefined && assignedJob !== job.id) return { outcome: 'superseded', by: assignedJob };
    // This process already had this message accepted but could not record it (the job came back
    // after a lost lock, say): record it now, and never send it again.
    if (deps.acceptedUnrecorded.has(acceptanceKey(sendId, subscriberId))) {
      await recordFinal(() => sends.markRecipient(sendId, subscriberId, 'accepted', { domain: recipientDomain }), 'an earlier acceptance');
      deps.acceptedUnrecorded.delete(acceptanceKey(sendId, subscriberId));
      log.info({ outcome: 'accepted', late: true }, 'accepted (recorded late)');
      return { outcome: 'already-done', state: 'accepted' };
    }
    if (gate.control === 'cancelled') return skipCancelled();
    if ('error' in subscriberRead) {
      const { error } = subscriberRead;
      // A record this code can't read (an unknown status, say) is never guessed at: fail this recipient, visibly.
      if (error instanceof CorruptRecordError) return fail({ permanent: true, code: 'ERECORD', response: error.message }, error.message);
      throw error;
    }
    const subscriber = subscriberRead.value;
    if (!subscriber || subscriber.status !== 'active') {
      const reason = subscriber ? `subscriber is ${subscriber.status}` : 'subscriber no longer exists';
      await recordFinal(() => sends.markRecipient(sendId, subscriberId, 'skipped', { domain: recipientDomain }), 'the skip');
      log.info({ outcome: 'skipped', reason }, 'skipped');
      return { outcome: 'skipped', reason };
    }
    const { email } = subscriber;
    const domain = domainOf(email);
    // Paused, or its domain held by a breaker: wait, without spending an attempt or a send slot.
    if (gate.control === 'paused' || gate.heldDomains.has(domain)) {
      // The gate may be a moment old (see SendControlStore.gate): look again before waiting.
      const now = await deps.control.gate(sendId, { fresh: true });
      if (now.control === 'cancelled') return skipCancelled();
      if (now.control === 'paused' || now.heldDomains.has(domain)) return putOffWhilePaused(domain);
    }

    // Loading the send's compiled issue is a Redis read: a transient error there is retried like
    // any other. A stored issue that is missing or unreadable fails the recipient, permanently.
    let composer: MessageComposer;
    try {
      composer = await composerFor(sendId);
    } catch (error) {
      if (error instanceof CorruptRecordError || error instanceof MissingCompiledIssueError)
        return fail({ permanent: true, code: 'ERECORD', response: error.message }, error.message);
      throw error;
    }
    // Composing is ours, not the SMTP server's: a template error fails this recipient with its own reason.
    let message: ComposedMessage;
    try {
      message = composer.compose(subscriber);
    } catch (error) {
      return fail({ permanent: true, code: 'ECOMPOSE', response: (error as Error).message }, `the message could not be composed: ${(error as Error).message}`);
    }

    // SMTP outage: while this process knows the service is down, the job goes back to the queue
    // (held) without touching SMTP or spending an attempt; smtp-outage.ts probes it meanwhile. Before
    // the slot and the claim, so that the wait for a probe never sits between a claim and SMTP (a
    // pause in that wait would go unseen).
    if (!(await deps.outage.admit())) throw new RateLimitError();

    // Pacing: a slot under the global ceiling and the domain's, shared by every worker process.
    // Near: wait here. Far (a busy domain): put the job off until its domain slot, keeping the
    // reservation, and free this worker for other domains.
    const slot = await deps.pacing.reserve(domain, job.data.paceSlot ?? 0);
    if (slot.outcome === 'delay') return putOff(slot.ms, { paceSlot: slot.slot });
    if (slot.ms > 0) await new Promise((resolve) => setTimeout(resolve, slot.ms));

    // The claim: the last check (still queued, still this job's, not paused, cancelled or held) and
    // the `sending` mark that keeps any other job from mailing this recipient while this one does.
    const claim: Claim = { workerId: deps.workerId, at: Date.now(), jobId: job.id ?? '' };
    let claimed = await deps.control.claim(sendId, subscriberId, { jobId: job.id ?? '', claim, domain });
    if (claimed[0] === 'claimed-by') {
      const holder = parseClaim(claimed[1]);
      const ours = holder?.workerId === deps.workerId;
      // Our own claim, with nothing of ours sending to this recipient now: left by a job that
      // ended without recording. Anyone else's: wait while its worker lives (a stalled event loop
      // included), unless the claim is older than any SMTP transaction can be.
      const key = acceptanceKey(sendId, subscriberId);
      const stale = !holder || (ours ? !deps.sendingNow.has(key) && !deps.acceptedUnrecorded.has(key) : Date.now() - holder.at > CLAIM_MAX_AGE_MS);
      const alive = !stale && (ours || (await deps.control.workerAlive(holder.workerId)));
      if (alive) {
        log.info({ claimedBy: holder?.workerId, claimedAt: holder?.at }, 'another worker is sending to this recipient; looking again later');
        return putOff(CLAIM_RECHECK_MS);
      }
      // A worker that seems gone is only taken over at the second look, a heartbeat's lifetime
      // later: a Redis restart can expire a live worker's key for a moment.
      if (!stale && job.data.suspectClaim !== claimed[1]) return putOff(CLAIM_RECHECK_MS, { suspectClaim: claimed[1] });
      log.warn(
        { claimedBy: holder?.workerId, claimedAt: holder?.at },
        'taking over the claim of a worker that is gone; if it had the message accepted, this is a duplicate',
      );
      claimed = await deps.control.claim(sendId, subscriberId, { jobId: job.id ?? '', claim, domain, takeOver: claimed[1] });
    }
    switch (claimed[0]) {
      case 'claimed':
        break;
      case 'done':
        return { outcome: 'already-done', state: claimed[1] };
      case 'superseded':
        return { outcome: 'superseded', by: claimed[1] };
      case 'cancelled':
        return skipCancelled();
      case 'paused':
      case 'held':
        return putOffWhilePaused(domain);
      case 'claimed-by':
        return putOff(CLAIM_RECHECK_MS);
    }
    const sendingKey = acceptanceKey(sendId, subscriberId);
    deps.sendingNow.add(sendingKey);
    // The claim ends with the recipient's final record (the script deletes it). Every other way
    // out (a retry, the service down, a shutdown, a record put off) gives it up, so the job that
    // comes back, in any worker, doesn't wait on it; only an acceptance not yet recorded keeps it,
    // so nobody else sends that message while this process lives.
    let keepClaim = false;
    try {
      return await sendAndRecord();
    } finally {
      deps.sendingNow.delete(sendingKey);
      if (!keepClaim) {
        const release = () => deps.control.releaseClaim(sendId, subscriberId, claim);
        // A claim left behind would hold the recipient for CLAIM_MAX_AGE_MS: keep trying.
        await release().catch(() => deps.recordLater(release, { sendId, subscriberId, what: 'the release of a sending claim' }));
      }
    }

    async function sendAndRecord(): Promise<DeliveryOutcome> {
      if (deps.stopping()) {
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      }
      let response: string;
      try {
        // With a bounce mailbox, ask for failure reports under the signed envelope id (RFC 3461),
        // with headers only: nodemailer sends it where the server advertises DSN.
        const dsn = message.envelopeId ? { id: message.envelopeId, return: 'headers' as const, notify: ['failure' as const] } : undefined;
        response =
          ((await transport.sendMail({ envelope: message.envelope, raw: message.raw, ...(dsn ? { dsn } : {}) })) as { response?: string }).response ?? '';
      } catch (error) {
        const fields = error as SmtpFailureFields;
        const failure = classifySmtpFailure(fields);
        // A failure of the service itself (refused, reset, timed out, turned away on connect): the
        // outage circuit decides, with a fresh connection where the fields can't tell "the server is
        // down" from "the server hung up on this message". Down: every job would fail alike, so the
        // queue is held and this job goes back without spending an attempt; an outage of any length
        // delays the send instead of failing its recipients. Up: it was this message, and it counts.
        if (failure.scope === 'service' && (await deps.outage.report({ ...failure, code: fields.code, responseCode: fields.responseCode })))
          throw new RateLimitError();
        const smtp = { code: fields.code, responseCode: fields.responseCode, response: fields.response ?? (error as Error).message };
        // "Slow down" from the receiver (421, 4.7.x): its domain waits; this message retries as usual.
        if (isSlowDown(fields)) {
          const backoffMs = await deps.pacing.slowDown(domain).catch(() => undefined);
          log.warn({ domain, backoffMs, ...smtp }, `the receiver asked to slow down: ${domain} waits`);
        }
        if (!failure.permanent && attempts < (job.opts.attempts ?? 1)) {
          log.info({ outcome: 'retry', messageId: message.messageId, ...smtp }, failure.reason);
          throw error;
        }
        // A message the receiving server refused for good counts once for the breakers (a retried
        // one counts when it ends); its bounce kind counts when its event is applied below.
        if (fields.responseCode !== undefined) await countAnswered(false);
        // The server's rejection is a delivery event like a bounce reported later: the bounce
        // policy decides (a hard bounce suppresses the address; a block never does). The event is
        // held durably before anything else is recorded, so a crash can't lose it; its id carries
        // the job's, so a later --retry-failed round is an event of its own.
        const event: DeliveryEvent | undefined = failure.bounce
          ? {
              id: `smtp.${job.id ?? `${sendId}.${subscriberId}`}`,
              source: 'smtp',
              kind: failure.bounce,
              subscriberId,
              sendId,
              diagnostic: { status: failure.status, replyCode: fields.responseCode, text: smtp.response },
              at: new Date().toISOString(),
            }
          : undefined;
        let heldAs = '';
        if (event) await recordFinal(async () => (heldAs = await deps.events.hold(event, email)), `the ${event.kind} bounce event`);
        // Whatever the cause, a recipient whose job ends here is recorded as failed, with the reason,
        // so that a send always completes and ops can see who failed.
        const cause = `${email}: ${failure.reason}`;
        await recordFailure({ permanent: failure.permanent, ...smtp }, cause, message.messageId);
        // Applied after the failure is recorded, so that a job put back because that record failed
        // still sees an active subscriber and records its failure; handed to the late records if
        // Redis won't take it now (and applied by the report worker from its held record if this
        // process dies). So a send can show as finished a moment before its last bounces count.
        if (event) {
          const apply = () => deps.events.apply(event, heldAs);
          await record(apply).catch(() => deps.recordLater(apply, { sendId, subscriberId, what: `the ${event.kind} bounce event` }));
        }
        throw failure.permanent ? new PermanentDeliveryError(cause) : error;
      }
      // The server has the message now. Whatever happens next, this job must not send it again.
      try {
        await record(() => sends.markRecipient(sendId, subscriberId, 'accepted', { domain }));
      } catch (recordError) {
        // Keep trying at once, in the background, and end the job so BullMQ never runs it again.
        // If its lock lapses before Redis is back, the job may come back: this process knows not to
        // send it (acceptedUnrecorded), and its claim keeps every other worker from sending it.
        keepClaim = true;
        deps.acceptedUnrecorded.add(acceptanceKey(sendId, subscriberId));
        deps.recordLater(
          // Forgotten only once recorded: a failed try in between must not let this process send it again.
          async () => {
            const changed = await sends.markRecipient(sendId, subscriberId, 'accepted', { domain });
            deps.acceptedUnrecorded.delete(acceptanceKey(sendId, subscriberId));
            return changed;
          },
          {
            sendId,
            subscriberId,
            what: 'an acceptance',
            urgent: true,
          },
        );
        throw new AcceptedButUnrecordedError((recordError as Error).message);
      }
      // Recorded final: the record deleted the claim with the recipient's state.
      keepClaim = true;
      await countAnswered(true);
      log.info({ outcome: 'accepted', messageId: message.messageId, response }, 'accepted');
      return { outcome: 'accepted', messageId: message.messageId, response };
    }

    /** Counts a message the receiving server answered for the send's breakers; never fails the job. */
    async function countAnswered(accepted: boolean): Promise<void> {
      await deps.breakers
        .count(sendId, { domain, sample: true })
        .catch((error: unknown) => log.warn({ err: error, accepted }, 'could not count the message for the breakers'));
    }
  };
}

/** Names one recipient of one send in DeliveryDeps.acceptedUnrecorded. */
export function acceptanceKey(sendId: string, subscriberId: string): string {
  return `${sendId}/${subscriberId}`;
}
