import { describe, expect, it } from 'vitest';
import { simpleParser } from 'mailparser';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { sorted } from '../support/sorted.ts';

describe('stopping a worker mid-send', () => {
  it('finishes the jobs in flight, leaves the rest queued, and a new worker completes the send with no duplicates', async () => {
    const harness = await createHarness('shutdown', { acceptDelayMs: 300, config: { WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '4' } });
    const { services } = harness;
    await seedSubscribers(services, 30);
    const first = await harness.startWorker();
    const { sendId } = await harness.send('vol-138');

    await waitFor(async () => (await services.queue.getActiveCount()) >= 4, 10_000, 'four jobs in flight');
    const stopped = await first.close();
    expect(stopped.handedBack).toBe(false);

    // Nothing is left half-done: every job is either finished or still waiting for a worker.
    expect(await services.queue.getActiveCount()).toBe(0);
    const midway = await services.sends.get(sendId);
    expect(midway?.accepted).toBe(harness.received.length);
    expect(midway?.accepted).toBeGreaterThanOrEqual(4);
    expect(midway?.pending).toBeGreaterThan(0);

    await harness.startWorker();
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent', total: 30, accepted: 30 });
    const recipients = harness.received.map((message) => message.recipients[0]);
    expect(new Set(recipients).size).toBe(30);
    expect(recipients).toHaveLength(30);
  });
});

describe('stopping a worker whose jobs outlast the shutdown timeout', () => {
  it('hands the jobs in flight back at once, and a new worker completes the send, mailing again at most those', async () => {
    // The SMTP server takes 3 s to answer each message; the worker waits only 200 ms for them.
    // The short lock makes the handed-back jobs return to the queue about a second later.
    const harness = await createHarness('shutdown-timeout', {
      acceptDelayMs: 3_000,
      config: { WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '4', WORKER_SHUTDOWN_TIMEOUT_MS: '200', WORKER_LOCK_DURATION_MS: '1000' },
    });
    const { services } = harness;
    await seedSubscribers(services, 6);
    const first = await harness.startWorker();
    const { sendId } = await harness.send('vol-138');

    await waitFor(async () => (await services.queue.getActiveCount()) >= 4, 10_000, 'four jobs in flight');
    const inFlight = await services.queue.getActiveCount();
    const closing = Date.now();
    const stopped = await first.close();
    const closeMs = Date.now() - closing;
    expect(stopped.handedBack).toBe(true);
    expect(closeMs).toBeLessThan(2_000); // the 200 ms timeout, not the 3 s the server takes
    // The fault happened: nothing had been answered when the worker gave up on its jobs.
    expect(harness.received).toHaveLength(0);
    expect(await services.sends.get(sendId)).toMatchObject({ accepted: 0, failed: 0, pending: 6 });

    await harness.startWorker();
    const record = await harness.waitForSend(sendId, 30_000);
    expect(record).toMatchObject({ state: 'sent', total: 6, accepted: 6, failed: 0, pending: 0 });

    // Every recipient got the issue. A message handed back after the server had it may arrive twice
    // (the one window the README names); only those, and with the same Message-ID, so receivers can de-duplicate.
    await waitFor(() => harness.received.length >= 6, 10_000, 'six messages at the SMTP server');
    const messages = await Promise.all(harness.received.map(async (message) => ({ to: message.recipients[0], parsed: await simpleParser(message.raw) })));
    const recipients = new Set(messages.map((message) => message.to));
    expect(sorted([...recipients])).toEqual(sorted(Array.from({ length: 6 }, (_, index) => `reader${index + 1}@example.org`)));
    const duplicates = messages.length - recipients.size;
    expect(duplicates).toBeLessThanOrEqual(inFlight);
    for (const recipient of recipients) {
      const ids = new Set(messages.filter((message) => message.to === recipient).map((message) => message.parsed.messageId));
      expect(ids.size).toBe(1);
    }
    for (const { parsed } of messages) expect(parsed.headers.get('x-newsletter-send')).toBe(sendId);
  });
});
