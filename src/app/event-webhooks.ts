import { createHmac, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Config } from '../../config/index.ts';
import { isFinalSendState } from '../core/send-status.ts';
import type { Logger } from '../logger.ts';
import { connectionErrorLogger, watchConnection } from '../store/connection.ts';
import { CorruptRecordError, parseRecord } from '../store/records.ts';
import { takeLease } from '../store/lease.ts';
import type { SendControlStore, SendEvent } from '../store/send-control.ts';
import type { SendRecord, SendStore } from '../store/send-store.ts';

/**
 * Outgoing webhooks: the send events ops want pushed to them (send.started, send.paused,
 * send.finished, breaker.tripped) POSTed to EVENT_WEBHOOK_URL, signed, and retried with backoff.
 *
 * The send event stream is the source. A relay in each `serve` and `worker` process reads it
 * through one Redis consumer group, so each event is taken by one relay however many run, and
 * turns each event into a BullMQ job whose id is the stream entry id (a second read adds nothing).
 * The jobs do the POSTs and their retries. send.finished has no single writer (the last recipient
 * is recorded inside a Lua script), so a watcher publishes it when a send it announced is final.
 */

/** The BullMQ queue of the POSTs. */
export const EVENT_WEBHOOK_QUEUE_NAME = 'event-webhooks';
/** The consumer group of the relays on the send event stream. */
export const EVENT_WEBHOOK_GROUP = 'event-webhooks';
/** The send events that go to EVENT_WEBHOOK_URL; the others (resumed, cancelled, domain-held) stay in the console. */
/** What receivers get: the four the work item names, and a weekly schedule that found no new issue (ops are told). */
export const WEBHOOK_EVENT_TYPES = ['send.started', 'send.paused', 'send.finished', 'breaker.tripped', 'schedule.nothing-new'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** The JSON body of one POST. `id` is also the x-newsletter-delivery header: the same on every retry. */
export interface WebhookPayload {
  readonly id: string;
  readonly type: WebhookEventType;
  /** When the event happened (ISO 8601). */
  readonly at: string;
  readonly data: Readonly<Record<string, unknown>>;
}

/** What the relay works with (Services has all of it). */
export interface EventRelayDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly redis: Redis;
  readonly sends: SendStore;
  readonly control: SendControlStore;
}

/** Options of startEventRelay; production uses the defaults. */
export interface EventRelayOptions {
  /** What POSTs. @defaultValue globalThis.fetch */
  readonly fetchImpl?: typeof fetch;
  /** Wait before the first retry of a POST, in ms; each later retry doubles it. @defaultValue 5000 */
  readonly backoffMs?: number;
  /** How often the finish watcher looks at the sends it announced, in ms. @defaultValue 2000 */
  readonly finishCheckMs?: number;
  /**
   * How long a send must have stayed over before its send.finished goes out, in ms: the bounces a
   * job records just after the recipient's outcome are in the summary. @defaultValue 5000
   */
  readonly finishSettleMs?: number;
  /** An event read by a relay that died is taken over by another after this long unacknowledged, in ms. @defaultValue 30000 */
  readonly claimIdleMs?: number;
}

/** One POST may take this long, in ms; then it counts as failed and is retried. */
const REQUEST_TIMEOUT_MS = 10_000;
/** How long one blocking read of the stream waits, in ms: also how long stop() may wait for it. */
const READ_BLOCK_MS = 1_000;
/** Held by the process publishing one send's send.finished; long against the few ms that takes. */
const FINISH_LOCK_MS = 60_000;
/** Consumers (relays of processes that stopped) idle this long with nothing pending are removed from the group. */
const DEAD_CONSUMER_IDLE_MS = 3_600_000;
/** How long BullMQ keeps finished POST jobs: recent history for ops. */
const RETENTION = { removeOnComplete: { age: 24 * 3600, count: 1_000 }, removeOnFail: { age: 14 * 24 * 3600 } } as const;

/**
 * The x-newsletter-signature header: `sha256=` and the hex HMAC-SHA256, under the secret, of
 * `<timestamp>.<raw body>`. The timestamp is signed too, so a receiver that refuses old timestamps
 * can't be fed a recorded request again.
 */
export function signEventWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** What an answer of the receiver means for the event. */
export type WebhookVerdict = 'delivered' | 'retry' | 'refused';

/**
 * 2xx delivers. 408 and 429 (and 5xx) say "not now": retried. Any other 4xx, and a redirect (not
 * followed: the signed event would go where the URL doesn't say), will be answered the same way
 * on every retry (wrong URL, auth, a receiver that rejects the payload), so it fails at once.
 */
export function classifyWebhookStatus(status: number): WebhookVerdict {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 408 || status === 429) return 'retry';
  if (status >= 300 && status < 500) return 'refused';
  return 'retry';
}

/** A POST that may pass later: the receiver was unreachable, timed out, or answered 5xx, 408 or 429. BullMQ retries it. */
export class WebhookDeliveryError extends Error {
  override readonly name = 'WebhookDeliveryError';
  constructor(
    message: string,
    /** The receiver's status, when it answered. */
    readonly status: number | undefined,
    /** ETIMEDOUT, ECONNREFUSED… when it did not. */
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** The receiver refused the event in a way a retry won't change (see classifyWebhookStatus): not retried. */
export class WebhookRefusedError extends UnrecoverableError {
  override readonly name = 'WebhookRefusedError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

const text = z.string();
const number = z.coerce.number().refine(Number.isFinite, 'not a number');
/** What each event type carries, as the stream holds it (strings) and the receiver gets it (numbers as numbers). */
const DATA_SCHEMAS = {
  'send.started': z.looseObject({ sendId: text, issue: text, list: text, total: number }),
  'send.paused': z.looseObject({
    sendId: text,
    by: z.enum(['ops', 'breaker']),
    who: text.optional(),
    reason: text,
    breaker: text.optional(),
    rate: number.optional(),
    threshold: number.optional(),
  }),
  'send.finished': z.looseObject({
    sendId: text,
    issue: text,
    list: text,
    state: text,
    total: number,
    accepted: number,
    failed: number,
    skipped: number,
    bounced: number,
    complained: number,
    startedAt: text,
    finishedAt: text,
  }),
  'schedule.nothing-new': z.looseObject({ scheduleId: text, list: text, occurrence: text, newestIssue: z.string(), message: text }),
  'breaker.tripped': z.looseObject({
    sendId: text,
    breaker: text,
    action: z.enum(['send-paused', 'domain-held']),
    domain: text.optional(),
    rate: number,
    threshold: number,
    count: number,
    sample: number,
    setting: text,
    reason: text,
  }),
} satisfies Record<WebhookEventType, z.ZodType>;

const streamEntry = z.tuple([z.string(), z.array(z.string()).nullable()]);
const readReply = z.array(z.tuple([z.string(), z.array(streamEntry)])).nullable();
const autoclaimReply = z.tuple([z.string(), z.array(streamEntry)]).rest(z.unknown());
const consumersReply = z.array(z.array(z.union([z.string(), z.number()])));

/** The payload of a stream entry, or undefined for an event type that doesn't go out. */
export function webhookPayloadOf(entryId: string, fields: readonly string[]): WebhookPayload | undefined {
  const { type, at, ...rest } = Object.fromEntries(fields.flatMap((field, index) => (index % 2 === 0 ? [[field, fields[index + 1] ?? '']] : [])));
  const webhookType = WEBHOOK_EVENT_TYPES.find((candidate) => candidate === type);
  if (!webhookType) return undefined;
  const data = parseRecord<Record<string, unknown>>(DATA_SCHEMAS[webhookType], rest, `Send event ${entryId} (${webhookType})`);
  return { id: entryId, type: webhookType, at: at ?? new Date().toISOString(), data };
}

/** Whether a send is over and its counts settled: final, nothing queued or at an SMTP server (a cancel lets those finish). */
function settled(record: SendRecord): boolean {
  return isFinalSendState(record.state) && record.pending === 0 && record.sending === 0;
}

/**
 * Starts this process's relay: the stream reader, the finish watcher and the BullMQ worker that
 * POSTs. A no-op (its stop resolves at once) when EVENT_WEBHOOK_URL is unset.
 */
export function startEventRelay(deps: EventRelayDeps, options: EventRelayOptions = {}): { stop(): Promise<void> } {
  const settings = deps.config.eventWebhook;
  if (!settings) return { stop: () => Promise.resolve() };
  const { redis, control, sends } = deps;
  const keys = control.keys;
  const logger = deps.logger.child({ component: 'event-webhooks' });
  const fetchImpl = options.fetchImpl ?? globalThis.fetch;
  const receiver = new URL(settings.url).origin;
  const consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const stopping = new AbortController();
  const claimIdleMs = options.claimIdleMs ?? 30_000;

  const queue = new Queue<WebhookPayload>(EVENT_WEBHOOK_QUEUE_NAME, {
    connection: redis,
    prefix: keys.bullPrefix,
    defaultJobOptions: { attempts: settings.maxAttempts, backoff: { type: 'exponential', delay: options.backoffMs ?? 5_000 }, ...RETENTION },
  });
  queue.on('error', connectionErrorLogger(logger, 'event webhook queue'));

  // BullMQ's worker blocks on its connection, and so does the stream read: each gets its own, so
  // neither stalls the shared one (maxRetriesPerRequest null: a blocking command is never cut short).
  const workerConnection = redis.duplicate({ maxRetriesPerRequest: null });
  const streamConnection = redis.duplicate({ maxRetriesPerRequest: null });
  watchConnection(workerConnection, logger);
  watchConnection(streamConnection, logger);

  const post = async (job: Job<WebhookPayload>): Promise<number> => {
    const payload = job.data;
    const body = JSON.stringify(payload);
    const timestamp = String(Math.floor(Date.now() / 1000));
    let response: Response;
    try {
      response = await fetchImpl(settings.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'newsletter-event-webhooks',
          'x-newsletter-event': payload.type,
          'x-newsletter-delivery': payload.id,
          'x-newsletter-timestamp': timestamp,
          'x-newsletter-signature': signEventWebhook(settings.secret, timestamp, body),
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause;
      const code = (error as Error).name === 'TimeoutError' ? 'ETIMEDOUT' : (cause?.code ?? 'EFETCH');
      throw new WebhookDeliveryError(`POST to ${receiver} failed: ${code}`, undefined, code);
    }
    // Only the status counts; dropping the body frees the connection.
    await response.body?.cancel();
    const verdict = classifyWebhookStatus(response.status);
    if (verdict === 'refused') throw new WebhookRefusedError(`${receiver} refused the event with ${response.status}; it is not retried`, response.status);
    if (verdict === 'retry') throw new WebhookDeliveryError(`${receiver} answered ${response.status}`, response.status, undefined);
    return response.status;
  };

  // One at a time: a process's events reach the receiver in the order they happened (retries aside).
  const worker = new Worker<WebhookPayload, number>(EVENT_WEBHOOK_QUEUE_NAME, post, { connection: workerConnection, prefix: keys.bullPrefix, concurrency: 1 });
  worker.on('error', connectionErrorLogger(logger, 'event webhook worker'));
  worker.on('completed', (job, status) =>
    logger.info({ eventId: job.id, type: job.data.type, sendId: job.data.data.sendId, status }, 'event webhook delivered'),
  );
  worker.on('failed', (job, error) => {
    if (!job) return;
    const final = error instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    const fields = { eventId: job.id, type: job.data.type, sendId: job.data.data.sendId, attempts: job.attemptsMade, reason: error.message };
    if (final) logger.error(fields, 'event webhook not delivered; giving up');
    else logger.warn(fields, 'event webhook not delivered yet; will retry');
  });

  /** Queues one event's POST (a no-op if a relay queued it already), then acknowledges it. */
  const relay = async (entryId: string, fields: readonly string[] | null): Promise<void> => {
    try {
      // A deleted entry (fields null) has nothing to send.
      const payload = fields ? webhookPayloadOf(entryId, fields) : undefined;
      if (payload?.type === 'send.started') await redis.sadd(keys.eventWebhookSends, String(payload.data.sendId));
      if (payload) await queue.add(payload.type, payload, { jobId: entryId });
    } catch (error) {
      if (!(error instanceof CorruptRecordError)) {
        // Left pending: after claimIdleMs a relay (this one included) takes it again.
        logger.warn({ err: error, eventId: entryId }, 'send event not relayed yet; retried later');
        return;
      }
      // An entry that doesn't parse never will: acknowledged, so it doesn't come back for ever.
      logger.error({ err: error, eventId: entryId }, 'send event unreadable; not sent to the webhook');
    }
    await streamConnection.xack(keys.sendEvents, EVENT_WEBHOOK_GROUP, entryId);
    logger.debug({ eventId: entryId, consumer }, 'send event acknowledged');
  };

  /** Takes over the events a relay read but never acknowledged (it died, or queueing failed). */
  const claimAbandoned = async () => {
    let start = '0-0';
    do {
      const reply = await streamConnection.xautoclaim(keys.sendEvents, EVENT_WEBHOOK_GROUP, consumer, claimIdleMs, start, 'COUNT', 100);
      const [next, entries] = parseRecord(autoclaimReply, reply, 'XAUTOCLAIM reply');
      for (const [entryId, fields] of entries) await relay(entryId, fields);
      start = next;
    } while (start !== '0-0' && !stopping.signal.aborted);
    const consumers = parseRecord(consumersReply, await streamConnection.xinfo('CONSUMERS', keys.sendEvents, EVENT_WEBHOOK_GROUP), 'XINFO CONSUMERS reply');
    for (const flat of consumers) {
      const info = Object.fromEntries(flat.flatMap((field, index) => (index % 2 === 0 ? [[String(field), flat[index + 1]]] : [])));
      if (info.name !== consumer && info.pending === 0 && Number(info.idle) > DEAD_CONSUMER_IDLE_MS) {
        await streamConnection.xgroup('DELCONSUMER', keys.sendEvents, EVENT_WEBHOOK_GROUP, String(info.name));
      }
    }
  };

  const readStream = async () => {
    let groupReady = false;
    let nextClaimAt = 0;
    while (!stopping.signal.aborted) {
      try {
        if (!groupReady) {
          // '$': a relay set up now sends what happens from now on, not the stream's history.
          await streamConnection.xgroup('CREATE', keys.sendEvents, EVENT_WEBHOOK_GROUP, '$', 'MKSTREAM').catch((error: Error) => {
            if (!error.message.includes('BUSYGROUP')) throw error;
          });
          groupReady = true;
        }
        if (Date.now() >= nextClaimAt) {
          await claimAbandoned();
          nextClaimAt = Date.now() + claimIdleMs / 3;
        }
        const reply = await streamConnection.xreadgroup(
          'GROUP',
          EVENT_WEBHOOK_GROUP,
          consumer,
          'COUNT',
          100,
          'BLOCK',
          READ_BLOCK_MS,
          'STREAMS',
          keys.sendEvents,
          '>',
        );
        for (const [, entries] of parseRecord(readReply, reply, 'XREADGROUP reply') ?? []) {
          for (const [entryId, fields] of entries) await relay(entryId, fields);
        }
      } catch (error) {
        if (stopping.signal.aborted) return;
        // The stream or its group is gone (deleted by hand): set them up again.
        if ((error as Error).message.includes('NOGROUP')) groupReady = false;
        logger.warn({ err: error }, 'reading the send events failed; retrying');
        await sleep(1_000, stopping.signal);
      }
    }
  };

  /**
   * When this process first saw each announced send over (its own clock): what finishSettleMs
   * counts from; with the finishedAt it saw, so a send over again after a retry round settles anew.
   */
  const overSince = new Map<string, { readonly at: number; readonly finishedAt: string | undefined }>();

  /** Publishes send.finished for each announced send that is over, once: the set's membership is what is still due. */
  const announceFinished = async () => {
    const due = await redis.smembers(keys.eventWebhookSends);
    // Sends another process announced are no longer due.
    for (const sendId of overSince.keys()) if (!due.includes(sendId)) overSince.delete(sendId);
    for (const sendId of due) {
      try {
        const record = await sends.get(sendId);
        if (!record) {
          overSince.delete(sendId);
          await redis.srem(keys.eventWebhookSends, sendId);
          continue;
        }
        if (!settled(record)) {
          overSince.delete(sendId);
          continue;
        }
        // A job records the recipient's outcome, then the bounce its SMTP answer was: the last
        // bounces land a moment after the send is over, and the summary should count them.
        const seen = overSince.get(sendId);
        if (!seen || seen.finishedAt !== record.finishedAt) overSince.set(sendId, { at: Date.now(), finishedAt: record.finishedAt });
        if (Date.now() - (overSince.get(sendId)?.at ?? 0) < (options.finishSettleMs ?? 5_000)) continue;
        // Every process's watcher sees the same sends: the lock makes one publish, and the
        // membership, checked under it, stops a watcher that read the set before the last SREM.
        // A crash between publish and SREM republishes once the lock lapses (at least once).
        const lock = await takeLease(redis, keys.eventWebhookFinishing(sendId), FINISH_LOCK_MS);
        if (!lock) continue;
        if (!(await redis.sismember(keys.eventWebhookSends, sendId))) {
          await lock.release();
          continue;
        }
        // Read again under the lock: a --retry-failed round may have begun since the read above.
        const summary = await sends.get(sendId);
        if (!summary || !settled(summary) || summary.finishedAt !== record.finishedAt) {
          await lock.release();
          continue;
        }
        await control.publish(finishedEvent(summary));
        await redis.srem(keys.eventWebhookSends, sendId);
        overSince.delete(sendId);
        // A retry round that began after the read above put the send back (announceFinishAgain)
        // before the SREM took it out: it is due again, for when that round is over.
        const after = await sends.get(sendId);
        if (after && (!settled(after) || after.finishedAt !== summary.finishedAt)) await redis.sadd(keys.eventWebhookSends, sendId);
        // Released only once it is done: a crash before the SREM leaves the lock to lapse, then republishes.
        await lock.release();
      } catch (error) {
        logger.warn({ err: error, sendId }, 'checking whether a send finished failed; retrying');
      }
    }
  };

  const watchFinishes = async () => {
    while (!stopping.signal.aborted) {
      try {
        await announceFinished();
      } catch (error) {
        logger.warn({ err: error }, 'reading the sends to announce failed; retrying');
      }
      await sleep(options.finishCheckMs ?? 2_000, stopping.signal);
    }
  };

  const loops = Promise.all([readStream(), watchFinishes()]);
  let stopped: Promise<void> | undefined;
  return {
    stop() {
      stopped ??= (async () => {
        stopping.abort();
        // The blocking read returns within READ_BLOCK_MS; a Redis that is down could hold it longer.
        const patience = new AbortController();
        await Promise.race([loops, sleep(READ_BLOCK_MS + 2_000, patience.signal)]);
        patience.abort();
        streamConnection.disconnect();
        // close() waits for a POST under way, which its timeout bounds.
        await worker.close();
        await queue.close();
        workerConnection.disconnect();
      })();
      return stopped;
    },
  };
}

/** The send.finished event of a send that is over: its summary. */
function finishedEvent(record: SendRecord): SendEvent {
  return {
    type: 'send.finished',
    sendId: record.id,
    issue: record.issueId,
    list: record.list,
    state: record.state,
    total: String(record.total),
    accepted: String(record.accepted),
    failed: String(record.failed),
    skipped: String(record.skipped),
    bounced: String(record.bounced),
    complained: String(record.complained),
    startedAt: record.createdAt,
    finishedAt: record.finishedAt ?? new Date().toISOString(),
    ...(record.stateReason ? { reason: record.stateReason.reason } : {}),
  };
}

/**
 * A send that was over goes on again (`--retry-failed` requeued recipients): the relays watch it
 * again, so that when this round is over a new send.finished goes out with the new summary. Call
 * it before the round's jobs are added. A no-op when EVENT_WEBHOOK_URL is unset (no relay runs).
 */
export async function announceFinishAgain(
  deps: { readonly config: Pick<Config, 'eventWebhook'>; readonly redis: Redis; readonly sends: Pick<SendStore, 'keys'> },
  sendId: string,
): Promise<void> {
  if (!deps.config.eventWebhook) return;
  await deps.redis.sadd(deps.sends.keys.eventWebhookSends, sendId);
}

/** Waits `ms`, or less if the signal aborts first. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
