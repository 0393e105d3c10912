import { describe, expect, it } from 'vitest';
import { createHarness, seedSubscribers } from '../support/harness.ts';


describe('stopping a worker mid-send', () => {
  it('finishes the jobs in flight, leaves the rest queued, and a new worker completes the send with no duplicates', async () => {
    const harness = await createHarness('shutdown', { acceptDelayMs: 300, config: { WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '4' } });
    const { services } = harness;
    await seedSubscribers(services, 30);
    const first = await harness.startWorker();
    const { sendId } = await harness.send('vol-138');

    while ((await services.queue.getActiveCount()) < 4) await new Promise((resolve) => setTimeout(resolve, 10));
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
