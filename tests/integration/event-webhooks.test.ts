import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { describe, expect, it, onTestFinished } from 'vitest';
import { EVENT_WEBHOOK_GROUP, EVENT_WEBHOOK_QUEUE_NAME, startEventRelay, type WebhookPayload } from '../../src/app/event-webhooks.ts';
import { pino } from 'pino';
import { cancelSend, pauseSend, resumeSend } from '../../src/app/send-control.ts';
import { retryFailedRecipients } from '../../src/app/start-send.ts';
import { openServices, type Services } from '../../src/services.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';

/**
 * Outgoing webhooks end to end: a real HTTP receiver on 127.0.0.1, real Redis, a real worker and
 * SMTP server. Each event reaches the receiver once, signed; a failing receiver gets retries.
 */

const SECRET = 'event-webhook-test-secret-0123456789abcdef';

/** One request the receiver got, with what it answered. */
interface Delivery {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly payload: WebhookPayload;
  readonly status: number;
}

/**
 * An HTTP receiver on a free port; `answer` picks each status (200 unless told), or hangs up
 * without answering (recorded as status 0). Closed when the test ends.
 */
async function startReceiver(answer: (payload: WebhookPayload, attempt: number) => number | 'hang-up' = () => 200) {
  const deliveries: Delivery[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const payload = JSON.parse(body) as WebhookPayload;
      const attempt = deliveries.filter((delivery) => delivery.payload.id === payload.id).length + 1;
      const status = answer(payload, attempt);
      deliveries.push({ headers: request.headers, body, payload, status: status === 'hang-up' ? 0 : status });
      if (status === 'hang-up') request.socket.destroy();
      else response.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/newsletter`,
    deliveries,
    /** The payloads answered 2xx, in the order they arrived. */
    delivered: () => deliveries.filter((delivery) => delivery.status >= 200 && delivery.status < 300).map((delivery) => delivery.payload),
  };
}

/** What a receiver does: recompute the HMAC of "<timestamp>.<raw body>" and compare in constant time. */
function signatureVerifies(secret: string, headers: IncomingHttpHeaders, body: string): boolean {
  const expected = `sha256=${createHmac('sha256', secret)
    .update(`${String(headers['x-newsletter-timestamp'])}.${body}`)
    .digest('hex')}`;
  const given = String(headers['x-newsletter-signature']);
  return given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
}

/** The queue of the POSTs, to look at its jobs. */
function webhookQueue(services: Services): Queue<WebhookPayload> {
  const queue = new Queue<WebhookPayload>(EVENT_WEBHOOK_QUEUE_NAME, { connection: services.redis, prefix: services.control.keys.bullPrefix });
  onTestFinished(() => queue.close());
  return queue;
}

/** Flat [field, value, …] replies (XINFO) as objects. */
function fieldsOf(flat: unknown): Record<string, unknown> {
  const list = flat as unknown[];
  return Object.fromEntries(list.flatMap((field, index) => (index % 2 === 0 ? [[String(field), list[index + 1]]] : [])));
}

/** The consumers of the relays' group (one per relay that has read), with what each has pending. */
async function relayConsumers(services: Services): Promise<Record<string, unknown>[]> {
  const consumers = (await services.redis.xinfo('CONSUMERS', services.control.keys.sendEvents, EVENT_WEBHOOK_GROUP).catch(() => [])) as unknown[];
  return consumers.map(fieldsOf);
}

/** Whether the relays have read and acknowledged every event on the stream so far. */
async function streamRead(services: Services): Promise<boolean> {
  const keys = services.control.keys;
  const [group, [last]] = await Promise.all([relayGroup(services), services.redis.xrevrange(keys.sendEvents, '+', '-', 'COUNT', 1)]);
  return group !== undefined && group['last-delivered-id'] === last?.[0] && group.pending === 0;
}

/** The relays' consumer group on the send event stream, once a relay has set it up. */
async function relayGroup(services: Services): Promise<Record<string, unknown> | undefined> {
  const groups = (await services.redis.xinfo('GROUPS', services.control.keys.sendEvents).catch(() => [])) as unknown[];
  return groups.map(fieldsOf).find((group) => group.name === EVENT_WEBHOOK_GROUP);
}

/**
 * Waits until nothing more can reach the receiver: every event read and acknowledged, no send
 * waiting for its send.finished, no POST waiting or under way. What arrived by then is all there is.
 */
async function waitForRelayIdle(services: Services, queue: Queue<WebhookPayload>) {
  const keys = services.control.keys;
  await waitFor(
    async () => {
      const [group, [last], toAnnounce, jobs] = await Promise.all([
        relayGroup(services),
        services.redis.xrevrange(keys.sendEvents, '+', '-', 'COUNT', 1),
        services.redis.scard(keys.eventWebhookSends),
        queue.getJobCounts('wait', 'active', 'delayed', 'prioritized'),
      ]);
      const unfinished = Object.values(jobs).reduce((sum, count) => sum + count, 0);
      return group && group['last-delivered-id'] === last?.[0] && group.pending === 0 && toAnnounce === 0 && unfinished === 0;
    },
    20_000,
    'the relay to be idle',
  );
}

/** A harness whose config points EVENT_WEBHOOK_URL at the receiver, with a relay running (fast backoff and finish checks). */
async function relayHarness(label: string, receiverUrl: string, options: Parameters<typeof createHarness>[1] = {}) {
  const harness = await createHarness(label, { ...options, config: { EVENT_WEBHOOK_URL: receiverUrl, EVENT_WEBHOOK_SECRET: SECRET, ...options.config } });
  const relay = startEventRelay(harness.services, { backoffMs: 20, finishCheckMs: 100, finishSettleMs: 500 });
  // Registered after the harness: stops before the harness deletes the test's keys.
  onTestFinished(() => relay.stop());
  await waitFor(() => relayGroup(harness.services), 5_000, 'the relay to set up its consumer group');
  return harness;
}

async function record(harness: Harness, sendId: string) {
  const current = await harness.services.sends.get(sendId);
  if (!current) throw new Error(`send ${sendId} is missing`);
  return current;
}

describe('outgoing webhooks', () => {
  it('POST send.started then send.finished with its summary, once each, signed so a receiver can tell a forgery', async () => {
    const receiver = await startReceiver();
    const harness = await relayHarness('hooks-send', receiver.url, {
      rejectRecipient: (address) =>
        /^reader(3|7)@/.test(address) ? { responseCode: 550, message: `5.1.1 <${address}>: Recipient address rejected: User unknown` } : undefined,
    });
    await seedSubscribers(harness.services, 20);
    const startedAt = Math.floor(Date.now() / 1000);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    const finished = await harness.waitForSend(sendId);
    expect(finished).toMatchObject({ state: 'sent-with-failures', total: 20, accepted: 18, failed: 2 });
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'send.finished'), 10_000, 'send.finished at the receiver');
    await waitForRelayIdle(harness.services, webhookQueue(harness.services));

    expect(receiver.deliveries.map((delivery) => [delivery.payload.type, delivery.status])).toEqual([
      ['send.started', 200],
      ['send.finished', 200],
    ]);
    const [started, done] = receiver.deliveries.map((delivery) => delivery.payload);
    expect(started).toEqual({
      id: expect.stringMatching(/^\d+-\d+$/),
      type: 'send.started',
      at: expect.any(String),
      data: { sendId, issue: 'vol-138', list: 'weekly', total: 20 },
    });
    expect(done).toEqual({
      id: expect.stringMatching(/^\d+-\d+$/),
      type: 'send.finished',
      at: expect.any(String),
      data: {
        sendId,
        issue: 'vol-138',
        list: 'weekly',
        state: 'sent-with-failures',
        total: 20,
        accepted: 18,
        failed: 2,
        skipped: 0,
        bounced: 2,
        complained: 0,
        startedAt: finished.createdAt,
        finishedAt: finished.finishedAt,
      },
    });

    for (const { headers, body, payload } of receiver.deliveries) {
      expect(headers['content-type']).toBe('application/json');
      expect(headers['x-newsletter-event']).toBe(payload.type);
      expect(headers['x-newsletter-delivery']).toBe(payload.id);
      expect(Number(headers['x-newsletter-timestamp'])).toBeGreaterThanOrEqual(startedAt);
      expect(Number(headers['x-newsletter-timestamp'])).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
      expect(headers['x-newsletter-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
      expect(signatureVerifies(SECRET, headers, body)).toBe(true);
      expect(signatureVerifies('another-secret-of-at-least-32-characters', headers, body)).toBe(false);
      // The same signature over a changed body, or under a changed timestamp, fails.
      expect(signatureVerifies(SECRET, headers, body.replace('"total":20', '"total":21'))).toBe(false);
      expect(signatureVerifies(SECRET, { ...headers, 'x-newsletter-timestamp': String(Number(headers['x-newsletter-timestamp']) + 1) }, body)).toBe(false);
    }
  });

  it('retries a receiver that answers 500 (delivered at the third attempt), and gives up at once on a 410', async () => {
    const receiver = await startReceiver((payload, attempt) => {
      if (payload.type === 'send.started') return attempt <= 2 ? 500 : 200;
      return payload.type === 'send.finished' ? 410 : 200;
    });
    const harness = await relayHarness('hooks-retry', receiver.url);
    const queue = webhookQueue(harness.services);
    await seedSubscribers(harness.services, 3);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    await harness.waitForSend(sendId);
    await waitFor(() => receiver.deliveries.some((delivery) => delivery.payload.type === 'send.finished'), 10_000, 'send.finished at the receiver');
    await waitForRelayIdle(harness.services, queue);

    const startedAttempts = receiver.deliveries.filter((delivery) => delivery.payload.type === 'send.started');
    expect(startedAttempts.map((delivery) => delivery.status)).toEqual([500, 500, 200]);
    // One event: the same delivery id and body on every attempt, each signed afresh.
    expect(new Set(startedAttempts.map((delivery) => delivery.headers['x-newsletter-delivery'])).size).toBe(1);
    expect(new Set(startedAttempts.map((delivery) => delivery.body)).size).toBe(1);
    expect(startedAttempts.every((delivery) => signatureVerifies(SECRET, delivery.headers, delivery.body))).toBe(true);
    expect(await (await queue.getJob(startedAttempts[0]!.payload.id))?.getState()).toBe('completed');

    // A 4xx other than 408/429: one attempt, and the job failed for good, saying why.
    const refused = receiver.deliveries.filter((delivery) => delivery.payload.type === 'send.finished');
    expect(refused.map((delivery) => delivery.status)).toEqual([410]);
    const refusedJob = await queue.getJob(refused[0]!.payload.id);
    expect(await refusedJob?.getState()).toBe('failed');
    expect(refusedJob?.failedReason).toMatch(/refused the event with 410; it is not retried/);
    expect(refusedJob?.attemptsMade).toBe(1);
  });

  it('retries a receiver that hangs up without answering', async () => {
    const receiver = await startReceiver((payload, attempt) => (payload.type === 'send.started' && attempt === 1 ? 'hang-up' : 200));
    const harness = await relayHarness('hooks-hang-up', receiver.url);
    await seedSubscribers(harness.services, 3);
    await harness.send('vol-138');
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'send.started'), 10_000, 'send.started at the receiver');
    expect(receiver.deliveries.map((delivery) => [delivery.payload.type, delivery.status])).toEqual([
      ['send.started', 0],
      ['send.started', 200],
    ]);
  });

  it('POST send.paused when ops pause a send, and send.finished (cancelled) when they cancel it', async () => {
    const receiver = await startReceiver();
    const harness = await relayHarness('hooks-pause', receiver.url);
    await seedSubscribers(harness.services, 30);
    // No worker: the send waits in the queue, so the pause and the cancel find it unsent.
    const { sendId } = await harness.send('vol-138');
    await pauseSend(harness.services, { issueId: 'vol-138', who: 'test:ops', reason: 'wrong link in the intro' });
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'send.paused'), 10_000, 'send.paused at the receiver');
    // Paused is not over: no send.finished yet.
    expect(receiver.delivered().map((payload) => payload.type)).toEqual(['send.started', 'send.paused']);
    expect(receiver.delivered()[1]?.data).toEqual({ sendId, by: 'ops', who: 'test:ops', reason: 'wrong link in the intro' });

    await cancelSend(harness.services, { issueId: 'vol-138', who: 'test:ops', reason: 'sent by mistake' });
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'send.finished'), 10_000, 'send.finished at the receiver');
    await waitForRelayIdle(harness.services, webhookQueue(harness.services));
    expect(receiver.delivered().map((payload) => payload.type)).toEqual(['send.started', 'send.paused', 'send.finished']);
    expect(receiver.delivered()[2]?.data).toMatchObject({
      sendId,
      state: 'cancelled',
      total: 30,
      accepted: 0,
      failed: 0,
      skipped: 30,
      reason: 'sent by mistake',
    });
    expect((await record(harness, sendId)).state).toBe('cancelled');
  });

  it('POST breaker.tripped (and send.paused by the breaker) when a send pauses itself', async () => {
    const receiver = await startReceiver();
    const harness = await relayHarness('hooks-breaker', receiver.url, {
      acceptDelayMs: 5,
      config: { BREAKER_MIN_SAMPLE: '50', BREAKER_BOUNCE_RATE: '0.05', WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '4' },
      // One address in ten is unknown: a 10% hard-bounce rate.
      rejectRecipient: (address) =>
        /^reader\d*0@/.test(address) ? { responseCode: 550, message: `5.1.1 <${address}>: Recipient address rejected: User unknown` } : undefined,
    });
    await seedSubscribers(harness.services, 500);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'breaker.tripped'), 20_000, 'breaker.tripped at the receiver');
    // The fault happened: the send paused itself.
    const paused = await record(harness, sendId);
    expect(paused).toMatchObject({ state: 'paused', stateReason: { by: 'breaker' } });

    const tripped = receiver.delivered().find((payload) => payload.type === 'breaker.tripped');
    expect(tripped?.data).toEqual({
      sendId,
      breaker: 'hard',
      action: 'send-paused',
      rate: expect.any(Number),
      threshold: 0.05,
      count: expect.any(Number),
      sample: expect.any(Number),
      setting: 'BREAKER_BOUNCE_RATE',
      reason: paused.stateReason?.reason,
    });
    const data = tripped!.data as { rate: number; count: number; sample: number };
    expect(data.rate).toBeGreaterThan(0.05);
    expect(data.sample).toBeGreaterThanOrEqual(50);
    expect(data.count / data.sample).toBeCloseTo(data.rate);
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'send.paused'), 10_000, 'send.paused at the receiver');
    expect(receiver.delivered().find((payload) => payload.type === 'send.paused')?.data).toMatchObject({
      sendId,
      by: 'breaker',
      breaker: 'hard',
      threshold: 0.05,
    });
  });

  it('delivers each event once with two relays running (two processes), each taking some', async () => {
    const receiver = await startReceiver();
    const harness = await createHarness('hooks-two', { config: { EVENT_WEBHOOK_URL: receiver.url, EVENT_WEBHOOK_SECRET: SECRET } });
    const other = await openServices(harness.config);
    onTestFinished(() => other.close());
    // Each relay logs the events it acknowledges: what tells which relay took which event.
    const relays = ['this', 'other'].map((name, index) => {
      const taken: string[] = [];
      const logger = pino({ level: 'debug' }, { write: (line: string) => void (JSON.parse(line).msg === 'send event acknowledged' && taken.push(name)) });
      const relay = startEventRelay({ ...(index === 0 ? harness.services : other), logger }, { backoffMs: 20, finishCheckMs: 100, finishSettleMs: 500 });
      onTestFinished(() => relay.stop());
      return { taken };
    });
    await waitFor(() => relayGroup(harness.services), 5_000, 'the relays to set up their consumer group');
    await seedSubscribers(harness.services, 30);
    const { sendId } = await harness.send('vol-138');
    // Pauses and resumes until both relays have taken events (Redis hands each new entry to the
    // reader that has waited longest, so a round or two does it), each round's events read before the next.
    let pauses = 0;
    while (pauses < 20 && relays.some((relay) => relay.taken.length === 0)) {
      await pauseSend(harness.services, { issueId: 'vol-138', who: `test:ops-${pauses}` });
      await resumeSend(harness.services, { issueId: 'vol-138', who: `test:ops-${pauses}` });
      pauses += 1;
      await waitFor(() => streamRead(harness.services), 5_000, 'the relays to read the events so far');
    }
    expect(relays.map((relay) => relay.taken.length > 0)).toEqual([true, true]);
    await harness.startWorker();
    await harness.waitForSend(sendId);
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'send.finished'), 10_000, 'send.finished at the receiver');
    await waitForRelayIdle(harness.services, webhookQueue(harness.services));

    const ids = receiver.deliveries.map((delivery) => delivery.payload.id);
    expect(new Set(ids).size).toBe(ids.length);
    const types = receiver.delivered().map((payload) => payload.type);
    expect(types.filter((type) => type === 'send.started')).toHaveLength(1);
    expect(types.filter((type) => type === 'send.paused')).toHaveLength(pauses);
    expect(types.filter((type) => type === 'send.finished')).toHaveLength(1);
    expect(types).toHaveLength(pauses + 2);
    const whoPaused = receiver
      .delivered()
      .filter((payload) => payload.type === 'send.paused')
      .map((payload) => payload.data.who);
    expect(new Set(whoPaused)).toEqual(new Set(Array.from({ length: pauses }, (_, round) => `test:ops-${round}`)));
    // Every event on the stream (resumes included, which don't go out) was taken by exactly one relay.
    const events = await harness.services.redis.xlen(harness.services.control.keys.sendEvents);
    expect(relays.reduce((sum, relay) => sum + relay.taken.length, 0)).toBe(events);
    expect((await relayConsumers(harness.services)).map((consumer) => consumer.pending)).toEqual([0, 0]);
  });

  it('POST send.finished again when a --retry-failed round ends', async () => {
    let mailboxBusy = true;
    const receiver = await startReceiver();
    const harness = await relayHarness('hooks-retry-round', receiver.url, {
      config: { SEND_MAX_ATTEMPTS: '1', SEND_BACKOFF_MS: '10' },
      rejectRecipient: (address) => (mailboxBusy && /^reader(2|5)@/.test(address) ? { responseCode: 451, message: '4.2.1 Mailbox busy' } : undefined),
    });
    const queue = webhookQueue(harness.services);
    await seedSubscribers(harness.services, 6);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent-with-failures', accepted: 4, failed: 2 });
    await waitFor(() => receiver.delivered().some((payload) => payload.type === 'send.finished'), 10_000, 'the first send.finished at the receiver');
    await waitForRelayIdle(harness.services, queue);

    // The mailboxes are free again; ops retry the two that failed on a temporary error.
    mailboxBusy = false;
    expect(await retryFailedRecipients(harness.services, { issueId: 'vol-138', list: 'weekly' })).toMatchObject({ sendId, requeued: 2 });
    const retried = await harness.waitForSend(sendId);
    expect(retried).toMatchObject({ state: 'sent', accepted: 6, failed: 0 });
    await waitFor(
      () => receiver.delivered().filter((payload) => payload.type === 'send.finished').length === 2,
      10_000,
      'the second send.finished at the receiver',
    );
    await waitForRelayIdle(harness.services, queue);

    expect(receiver.delivered().map((payload) => payload.type)).toEqual(['send.started', 'send.finished', 'send.finished']);
    const [first, second] = receiver.delivered().filter((payload) => payload.type === 'send.finished');
    expect(first?.data).toMatchObject({ sendId, state: 'sent-with-failures', accepted: 4, failed: 2 });
    expect(second?.data).toMatchObject({ sendId, state: 'sent', total: 6, accepted: 6, failed: 0, finishedAt: retried.finishedAt });
    expect(second?.id).not.toBe(first?.id);
  });

  it('takes over an event that a relay read and died before acknowledging', async () => {
    const receiver = await startReceiver();
    const harness = await createHarness('hooks-claim', { config: { EVENT_WEBHOOK_URL: receiver.url, EVENT_WEBHOOK_SECRET: SECRET } });
    const { services } = harness;
    const { keys } = services.control;
    await seedSubscribers(services, 5);
    // A relay of another process set up the group, read the pause, and died before queueing its POST.
    await services.redis.xgroup('CREATE', keys.sendEvents, EVENT_WEBHOOK_GROUP, '$', 'MKSTREAM');
    const { sendId } = await harness.send('vol-138');
    await pauseSend(services, { issueId: 'vol-138', who: 'test:ops' });
    const read = await services.redis.xreadgroup('GROUP', EVENT_WEBHOOK_GROUP, 'relay-that-died', 'COUNT', 10, 'STREAMS', keys.sendEvents, '>');
    expect(JSON.stringify(read)).toContain('send.paused');
    expect((await services.redis.xpending(keys.sendEvents, EVENT_WEBHOOK_GROUP))[0]).toBe(2);

    const relay = startEventRelay(services, { backoffMs: 20, finishCheckMs: 100, finishSettleMs: 500, claimIdleMs: 200 });
    onTestFinished(() => relay.stop());
    await waitFor(() => receiver.delivered().length === 2, 10_000, 'the abandoned events at the receiver');
    // send.started put the send among those to announce: its cancel ends it.
    await cancelSend(services, { issueId: 'vol-138', who: 'test:ops' });
    await waitForRelayIdle(services, webhookQueue(services));
    expect(receiver.delivered().map((payload) => [payload.type, payload.data.sendId])).toEqual([
      ['send.started', sendId],
      ['send.paused', sendId],
      ['send.finished', sendId],
    ]);
  });

  it('does nothing when EVENT_WEBHOOK_URL is unset', async () => {
    const harness = await createHarness('hooks-off');
    await startEventRelay(harness.services).stop();
    expect(await relayGroup(harness.services)).toBeUndefined();
  });
});
