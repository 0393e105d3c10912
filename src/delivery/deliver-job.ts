import { DelayedError, RateLimitError, type Job } from 'bullmq';
import type { Transporter } from 'nodemailer';
import type { Config } from '../../config/index.ts';
import { classifySmtpFailure, type SmtpFailureFields } from '../core/classify-failure.ts';
import type { RecipientFailure } from '../core/send-status.ts';
import type { DeliveryEvent } from '../core/delivery-event.ts';
import type { Logger } from '../logger.ts';
import { CorruptRecordError } from '../store/records.ts';
import type { SendJobData } from '../store/send-queue.ts';
import type { SendStore } from '../store/send-store.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import { prepareMessageComposer, type ComposedMessage, type MessageComposer } from './compose-message.ts';
import { AcceptedButUnrecordedError, PermanentDeliveryError } from './job-errors.ts';
import { withRetries } from './retry.ts';

/** What a job did, kept as the job's return value for the dashboard. */
export type DeliveryOutcome =
  | { readonly outcome: 'accepted'; readonly messageId: string; readonly response: string }
  | { readonly outcome: 'skipped'; readonly reason: string }
  | { readonly outcome: 'already-done'; readonly state: string }
  /** Another job serves this recipient now (a repair replaced this one): only that one may send. */
  | { readonly outcome: 'superseded'; readonly by: string };

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
  /** True once the worker is stopping: a job not yet handed to SMTP goes back to the queue instead. */
  readonly stopping: () => boolean;
  /** Waits between tries to record an outcome: rides out a Redis failover of a few seconds. */
  readonly recordRetryDelaysMs: readonly number[];
  /**
   * Holds back every worker of the queue for a while (BullMQ's manual rate limit), for when the
   * SMTP service itself is failing.
   */
  readonly pauseSending: (durationMs: number, reason: string) => Promise<void>;
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
      await recordFinal(() => sends.markRecipient(sendId, subscriberId, 'failed', { ...failure, at: new Date().toISOString(), attempts }), 'the failure');
      log.warn(
        { outcome: 'failed', messageId, permanent: failure.permanent, code: failure.code, responseCode: failure.responseCode, response: failure.response },
        cause,
      );
    };
    const fail = async (failure: Omit<RecipientFailure, 'at' | 'attempts'>, cause: string): Promise<never> => {
      await recordFailure(failure, cause);
      throw failure.permanent ? new PermanentDeliveryError(cause) : new Error(cause);
    };

    // One round trip for the three reads; an unreadable subscriber record only matters if the
    // recipient is still to be served, so its error waits until the state says so.
    const [state, assignedJob, subscriberRead] = await Promise.all([
      sends.recipientState(sendId, subscriberId),
      sends.assignedJob(sendId, subscriberId),
      subscribers.get(subscriberId).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
    ]);
    if (state !== 'queued') return { outcome: 'already-done', state: state ?? 'unknown' };
    // One job per recipient may send: the one the send's job index names (none named: a send from
    // before the index, whose fan-out job is the only one).
    if (assignedJob !== undefined && assignedJob !== job.id) return { outcome: 'superseded', by: assignedJob };
    // This process already had this message accepted but could not record it (the job came back
    // after a lost lock, say): record it now, and never send it again.
    if (deps.acceptedUnrecorded.has(acceptanceKey(sendId, subscriberId))) {
      await recordFinal(() => sends.markRecipient(sendId, subscriberId, 'accepted'), 'an earlier acceptance');
      deps.acceptedUnrecorded.delete(acceptanceKey(sendId, subscriberId));
      log.info({ outcome: 'accepted', late: true }, 'accepted (recorded late)');
      return { outcome: 'already-done', state: 'accepted' };
    }
    if ('error' in subscriberRead) {
      const { error } = subscriberRead;
      // A record this code can't read (an unknown status, say) is never guessed at: fail this recipient, visibly.
      if (error instanceof CorruptRecordError) return fail({ permanent: true, code: 'ERECORD', response: error.message }, error.message);
      throw error;
    }
    const subscriber = subscriberRead.value;
    if (!subscriber || subscriber.status !== 'active') {
      const reason = subscriber ? `subscriber is ${subscriber.status}` : 'subscriber no longer exists';
      await recordFinal(() => sends.markRecipient(sendId, subscriberId, 'skipped'), 'the skip');
      log.info({ outcome: 'skipped', reason }, 'skipped');
      return { outcome: 'skipped', reason };
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
      // The error code alone can't tell "the server is down" from "the server hung up on this
      // message", so a fresh connection decides. Down: every job would fail alike, so hold the
      // queue and put this job back without spending an attempt; an outage of any length delays
      // the send instead of failing its recipients. Up: it was this message, and it counts.
      if (failure.scope === 'service' && !(await serviceAnswers(transport))) {
        await deps.pauseSending(config.send.backoffMs, failure.reason);
        throw new RateLimitError();
      }
      const smtp = { code: fields.code, responseCode: fields.responseCode, response: fields.response ?? (error as Error).message };
      if (!failure.permanent && attempts < (job.opts.attempts ?? 1)) {
        log.info({ outcome: 'retry', messageId: message.messageId, ...smtp }, failure.reason);
        throw error;
      }
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
      if (event) await recordFinal(async () => (heldAs = await deps.events.hold(event, subscriber.email)), `the ${event.kind} bounce event`);
      // Whatever the cause, a recipient whose job ends here is recorded as failed, with the reason,
      // so that a send always completes and ops can see who failed.
      const cause = `${subscriber.email}: ${failure.reason}`;
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
      await record(() => sends.markRecipient(sendId, subscriberId, 'accepted'));
    } catch (recordError) {
      // Keep trying at once, in the background, and end the job so BullMQ never runs it again.
      // If its lock lapses before Redis is back, the job may come back: this process knows not to
      // send it (acceptedUnrecorded), and the record lands as soon as Redis answers.
      deps.acceptedUnrecorded.add(acceptanceKey(sendId, subscriberId));
      deps.recordLater(
        () => sends.markRecipient(sendId, subscriberId, 'accepted').finally(() => deps.acceptedUnrecorded.delete(acceptanceKey(sendId, subscriberId))),
        {
          sendId,
          subscriberId,
          what: 'an acceptance',
          urgent: true,
        },
      );
      throw new AcceptedButUnrecordedError((recordError as Error).message);
    }
    log.info({ outcome: 'accepted', messageId: message.messageId, response }, 'accepted');
    return { outcome: 'accepted', messageId: message.messageId, response };
  };
}

/** Names one recipient of one send in DeliveryDeps.acceptedUnrecorded. */
export function acceptanceKey(sendId: string, subscriberId: string): string {
  return `${sendId}/${subscriberId}`;
}

async function serviceAnswers(transport: Transporter): Promise<boolean> {
  try {
    return await transport.verify();
  } catch {
    return false;
  }
}
