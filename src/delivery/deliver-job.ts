import { RateLimitError, type Job } from 'bullmq';
import type { Transporter } from 'nodemailer';
import type { Config } from '../../config/index.ts';
import type { SendJobData } from '../store/send-queue.ts';
import type { SendStore } from '../store/send-store.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import { AcceptedButUnrecordedError, classifySmtpFailure, PermanentDeliveryError, type SmtpFailureFields } from '../core/classify-failure.ts';
import { prepareMessageComposer, type ComposedMessage, type MessageComposer } from './compose-message.ts';

/** What a job did, kept as the job's return value for the dashboard. */
export type DeliveryOutcome =
  | { readonly outcome: 'accepted'; readonly messageId: string; readonly response: string }
  | { readonly outcome: 'skipped'; readonly reason: string }
  | { readonly outcome: 'already-done'; readonly state: string };

/** Compiled sends kept per worker process; a worker rarely serves more than one or two at once. */
const COMPOSER_CACHE_SIZE = 8;

/**
 * Builds the job handler of the send workers. For each job it takes the recipient's record as the
 * guard (a recipient already accepted is never mailed again, whatever BullMQ redelivers), reloads
 * the subscriber, renders from the send's compiled issue (prepared once per send and cached), and
 * sends through the pooled transport.
 */
export function createDeliveryHandler(deps: {
  readonly config: Config;
  readonly sends: SendStore;
  readonly subscribers: SubscriberStore;
  readonly transport: Transporter;
  /**
   * Holds back every worker of the queue for a while (BullMQ's manual rate limit), for when the
   * SMTP service itself is failing.
   */
  readonly pauseSending: (durationMs: number, reason: string) => Promise<void>;
}): (job: Job<SendJobData>) => Promise<DeliveryOutcome> {
  const { config, sends, subscribers, transport } = deps;
  const composers = new Map<string, Promise<MessageComposer>>();

  const composerFor = (sendId: string): Promise<MessageComposer> => {
    let composer = composers.get(sendId);
    if (!composer) {
      composer = (async () => {
        const compiled = await sends.loadCompiled(sendId);
        if (!compiled) throw new Error(`Send ${sendId} has no compiled issue stored`);
        return prepareMessageComposer(compiled, { sendId, appSecret: config.appSecret });
      })();
      composer.catch(() => composers.delete(sendId));
      composers.set(sendId, composer);
      if (composers.size > COMPOSER_CACHE_SIZE) composers.delete(composers.keys().next().value as string);
    }
    return composer;
  };

  return async (job) => {
    const { sendId, subscriberId } = job.data;
    const [state, subscriber] = await Promise.all([sends.recipientState(sendId, subscriberId), subscribers.get(subscriberId)]);
    if (state !== 'queued') return { outcome: 'already-done', state: state ?? 'unknown' };
    if (!subscriber || subscriber.status !== 'active') {
      const reason = subscriber ? `subscriber is ${subscriber.status}` : 'subscriber no longer exists';
      await sends.markRecipient(sendId, subscriberId, 'skipped');
      return { outcome: 'skipped', reason };
    }

    const attempts = job.attemptsMade + 1;
    const lastAttempt = attempts >= (job.opts.attempts ?? 1);
    let message: ComposedMessage;
    let response: string;
    try {
      message = (await composerFor(sendId)).compose(subscriber);
      response = ((await transport.sendMail({ envelope: message.envelope, raw: message.raw })) as { response?: string }).response ?? '';
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
      // Whatever the cause, a recipient whose job ends here is recorded as failed, with the reason,
      // so that a send always completes and ops can see who failed.
      if (failure.permanent || lastAttempt) {
        await sends.markRecipient(sendId, subscriberId, 'failed', {
          at: new Date().toISOString(),
          permanent: failure.permanent,
          code: fields.code,
          responseCode: fields.responseCode,
          response: fields.response ?? (error as Error).message,
          attempts,
        });
      }
      // A hard bounce: the address does not exist. It is suppressed until someone lifts it.
      if (failure.bounce === 'hard') await subscribers.setStatus(subscriberId, 'bounced');
      if (failure.permanent) throw new PermanentDeliveryError(`${subscriber.email}: ${failure.reason}: ${fields.response ?? (error as Error).message}`, failure);
      throw error;
    }
    // The server has the message now. Whatever happens next, this job must not send it again.
    await recordAcceptance(sends, sendId, subscriberId);
    return { outcome: 'accepted', messageId: message.messageId, response };
  };
}

async function serviceAnswers(transport: Transporter): Promise<boolean> {
  try {
    return await transport.verify();
  } catch {
    return false;
  }
}

/** Delays between tries to record an acceptance: rides out a Redis failover of a few seconds. */
const RECORD_RETRY_DELAYS_MS = [100, 300, 1_000, 3_000] as const;

async function recordAcceptance(sends: SendStore, sendId: string, subscriberId: string): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await sends.markRecipient(sendId, subscriberId, 'accepted');
      return;
    } catch (error) {
      const delay = RECORD_RETRY_DELAYS_MS[attempt];
      if (delay === undefined) throw new AcceptedButUnrecordedError(`accepted by the SMTP server, but recording it failed: ${(error as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
