import path from 'node:path';
import { QueueEvents } from 'bullmq';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { connectRedis } from '../../src/store/connection.ts';
import { redisKeys } from '../../src/store/keys.ts';
import { SEND_QUEUE_NAME, sendJobId } from '../../src/store/send-queue.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { spawnWorker, waitFor, workerEnv } from '../support/worker-process.ts';

/**
 * Guards "if a worker's event loop stalls past its lock, two workers can both send to one
 * recipient": worker A (a real process) has reader1's message accepted, then its main thread
 * stalls far past the job's lock, so BullMQ hands the job to worker B. The recipient's `sending`
 * claim, kept alive by A's heartbeat thread, makes B wait instead of mailing reader1 again.
 */
describe('a worker whose event loop stalls past its lock', () => {
  it('keeps its recipient: the worker that takes the job over waits on the claim, and the message goes out once', async () => {
    const harness = await createHarness('stalled-worker', {
      // Each message takes the server 100 ms, so both workers get some of the 20.
      acceptDelayMs: 100,
      config: { WORKER_LOCK_DURATION_MS: '1000', WORKER_STALLED_INTERVAL_MS: '500', WORKER_CONCURRENCY: '2', SMTP_POOL_SIZE: '2' },
    });
    const { services } = harness;
    const connection = await connectRedis(harness.config.redis.url, { blocking: true });
    const events = new QueueEvents(SEND_QUEUE_NAME, { connection, prefix: redisKeys(harness.config.redis.prefix).bullPrefix });
    onTestFinished(async () => {
      await events.close();
      connection.disconnect();
    });
    await events.waitUntilReady();
    const stalled = new Set<string>();
    events.on('stalled', ({ jobId }) => stalled.add(jobId));

    await seedSubscribers(services, 20);
    const env = workerEnv(harness.config, { LOG_LEVEL: 'info' });
    // Both workers are up before the send starts. A stalls for 6 s (six lock durations) right after
    // the SMTP server accepts its first message; B takes that job over meanwhile.
    const [a, b] = await Promise.all([
      spawnWorker(env, { args: ['--import', 'tsx', path.join(PROJECT_ROOT, 'tests/support/stalling-worker.ts'), '6000'] }),
      spawnWorker(env),
    ]);
    const { sendId } = await harness.send('vol-138');
    await a.waitForOutput(/stalling for 6000 ms/, 15_000, 'stdout');
    const address = /stalling for 6000 ms after (\S+) was accepted/.exec(a.stdout())?.[1] ?? '';
    const subscriberId = /^reader(\d+)@/.exec(address)?.[1] ?? '';
    const record = await harness.waitForSend(sendId, 30_000);
    await a.waitForOutput(/stall over/, 10_000, 'stdout');

    // The fault happened: BullMQ took the job from the stalled worker and B ran it, but found the
    // recipient claimed by a live worker and waited.
    expect(stalled).toContain(sendJobId(sendId, subscriberId));
    await b.waitForOutput(new RegExp(`"subscriberId":"${subscriberId}".*another worker is sending to this recipient`), 5_000, 'stderr');
    // Nobody mailed twice, nobody lost.
    expect(record).toMatchObject({ state: 'sent', total: 20, accepted: 20, failed: 0 });
    const recipients = harness.received.map((message) => message.recipients[0]);
    expect(recipients.filter((recipient) => recipient === address)).toHaveLength(1);
    expect(recipients).toHaveLength(20);
    expect(new Set(recipients).size).toBe(20);
    await waitFor(async () => (await services.sends.get(sendId))?.sending === 0, 5_000, 'no claim left');
    console.info(`stalled-worker: ${address} accepted, then its worker stalled 6 s; 20 sent, 0 lost, 0 duplicated (the other worker waited on the claim)`);
  });
});
