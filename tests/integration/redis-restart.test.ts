import { isFinalSendState } from '../../src/core/send-status.ts';
import { describe, expect, it } from 'vitest';
import type { Services } from '../../src/services.ts';
import type { SendRecord } from '../../src/store/send-store.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { startRestartableRedis } from '../support/restartable-redis.ts';
import { spawnWorker, waitFor, workerEnv, type WorkerProcess } from '../support/worker-process.ts';

/**
 * Guards "during a Redis restart the worker prints raw `Error: connect ECONNREFUSED` dumps with
 * stack frames from a connection without an error handler": a real worker process sends through a
 * Redis of this test's own, which is restarted in the middle of the send.
 */

/** The send record, or undefined while Redis doesn't answer (this test's own connection is down too). */
async function readSend(services: Services, sendId: string): Promise<SendRecord | undefined> {
  try {
    return await services.sends.get(sendId);
  } catch {
    return undefined;
  }
}

/** Waits until the send is finished, reading through the outage. */
function finished(services: Services, sendId: string, timeoutMs: number): Promise<SendRecord> {
  return waitFor(
    async () => {
      const current = await readSend(services, sendId);
      return current && isFinalSendState(current.state) ? current : undefined;
    },
    timeoutMs,
    async () => JSON.stringify(await readSend(services, sendId)),
    50,
  );
}

const LOST = 'Redis connection lost; reconnecting';

/** Counts the reconnects of this test's own Redis connection that found nothing listening. */
function countRefusedReconnects(services: Services): { readonly count: number; stop(): void } {
  const counter = { count: 0, stop: () => services.redis.off('error', listener) };
  const listener = (error: Error & { code?: string }) => {
    if (error.code === 'ECONNREFUSED') counter.count += 1;
  };
  services.redis.on('error', listener);
  return counter;
}

describe('a Redis restart during a send', () => {
  it('is ridden out: every recipient accepted exactly once, and the worker logs structured lines, never a stack', async () => {
    const redis = await startRestartableRedis();
    const harness = await createHarness('redis-restart', {
      acceptDelayMs: 30,
      // A job whose moveToFinished ran just before the shutdown but whose reply was lost (BullMQ
      // fetches the next job in that same script) is only recovered when its lock lapses: a short
      // lock keeps that bounded, and still outlasts the outage.
      config: { REDIS_URL: redis.url, WORKER_CONCURRENCY: '10', SMTP_POOL_SIZE: '10', WORKER_LOCK_DURATION_MS: '5000' },
    });
    const { services } = harness;
    const subscribers = 300;
    await seedSubscribers(services, subscribers);
    const { sendId } = await harness.send('vol-138');
    const progress = async () => JSON.stringify(await readSend(services, sendId));

    let worker: WorkerProcess | undefined;
    try {
      worker = await spawnWorker(workerEnv(harness.config, { LOG_LEVEL: 'warn' }));
      await waitFor(async () => ((await readSend(services, sendId))?.accepted ?? 0) >= 50, 20_000, progress, 10);

      // Restart Redis in the middle of the send. It stays down until the worker has noticed, and
      // long enough for reconnects to be refused (the ECONNREFUSED of the report): this test's own
      // connection, on the same reconnect schedule as the worker's, counts them.
      const beforeRestart = await services.sends.get(sendId);
      const refused = countRefusedReconnects(services);
      const stoppedAt = Date.now();
      await redis.stop();
      await worker.waitForOutput(new RegExp(LOST.replace(/[.;]/g, '\\$&')), 10_000, 'stderr');
      await waitFor(
        () => refused.count >= 2,
        10_000,
        () => `this test's connection saw ${refused.count} refused reconnects`,
      );
      refused.stop();
      const downForMs = Date.now() - stoppedAt;
      await redis.start();
      const restartedAt = Date.now();

      const record = await finished(services, sendId, 30_000);

      const finishedAfterMs = Date.now() - restartedAt;
      // The restart happened mid-send, and the worker lived through it.
      expect(beforeRestart?.accepted).toBeGreaterThanOrEqual(50);
      expect(beforeRestart?.pending).toBeGreaterThan(0);
      expect(worker.child.exitCode).toBeNull();
      expect(worker.child.signalCode).toBeNull();

      // Every recipient accepted, exactly once.
      expect(record).toMatchObject({ state: 'sent', total: subscribers, accepted: subscribers, failed: 0, pending: 0 });
      const recipients = harness.received.map((message) => message.recipients[0]);
      expect(new Set(recipients).size).toBe(subscribers);
      expect(recipients).toHaveLength(subscribers);

      // Its log is structured: one JSON object a line, the outage among them, and no raw stack.
      const stderr = worker.stderr();
      const lines = stderr.split('\n').filter((line) => line.trim() !== '');
      const unstructured = lines.filter((line) => {
        try {
          return typeof JSON.parse(line) !== 'object';
        } catch {
          return true;
        }
      });
      console.info(
        `redis-restart: ${subscribers} subscribers, ${recipients.length} messages sent, ${subscribers - new Set(recipients).size} lost, ` +
          `${recipients.length - new Set(recipients).size} duplicated; Redis down ${downForMs} ms at ${beforeRestart?.accepted} accepted, ` +
          `send finished ${finishedAfterMs} ms after it was back`,
      );
      console.info(`redis-restart: worker stderr had ${lines.length} lines, ${unstructured.length} not JSON; messages: ${JSON.stringify(summarise(lines))}`);
      expect(stderr).not.toMatch(/^\s+at /m);
      expect(stderr).not.toContain('Unhandled error event');
      expect(unstructured).toEqual([]);
      const lost = lines.map(parseOrUndefined).filter((entry) => entry?.msg === LOST);
      expect(lost.length).toBeGreaterThan(0);
      expect(lost[0]).toMatchObject({ level: 40, msg: LOST, pid: worker.pid });
      // Reconnect attempts repeat the same error every few hundred ms: it is logged once per
      // connection and source, not once per attempt, and never as an error with a stack.
      const errorLines = lines.map(parseOrUndefined).filter((entry) => typeof entry?.msg === 'string' && entry.msg.includes('Redis connection error'));
      const sources = new Set(errorLines.map((entry) => String(entry?.source)));
      expect(errorLines.length).toBeLessThanOrEqual(2 * sources.size);
      expect(lines.map(parseOrUndefined).filter((entry) => entry?.level === 50)).toEqual([]);
    } finally {
      await worker?.kill('SIGKILL');
      // Before this test's Redis goes away (onTestFinished hooks of the harness and of Redis
      // run after this, in whichever order).
      await harness.close();
    }
  });
});

describe('a long Redis outage with two workers', () => {
  it("outlasting the workers' heartbeats and job locks (AOF on): both reconnect, nobody is lost, nobody mailed twice", async () => {
    const redis = await startRestartableRedis();
    const harness = await createHarness('redis-outage-two', {
      acceptDelayMs: 20,
      config: { REDIS_URL: redis.url, WORKER_CONCURRENCY: '10', SMTP_POOL_SIZE: '5' },
    });
    const { services } = harness;
    const subscribers = 600;
    await seedSubscribers(services, subscribers);
    const { sendId } = await harness.send('vol-138');
    const progress = async () => JSON.stringify(await readSend(services, sendId));
    const workers: WorkerProcess[] = [];
    try {
      const env = workerEnv(harness.config, { LOG_LEVEL: 'warn' });
      workers.push(...(await Promise.all([spawnWorker(env), spawnWorker(env)])));
      await waitFor(async () => ((await readSend(services, sendId))?.accepted ?? 0) >= 100, 20_000, progress, 10);
      const beforeRestart = await services.sends.get(sendId);
      // Down for longer than a heartbeat key lives (3 s) and a job's lock (5 s, the default): this
      // test's connection retries on the workers' schedule (200 ms more each time, up to 2 s), so
      // seven refused reconnects take about 6 s.
      const refused = countRefusedReconnects(services);
      const stoppedAt = Date.now();
      await redis.stop();
      await waitFor(
        () => refused.count >= 7,
        20_000,
        () => `this test's connection saw ${refused.count} refused reconnects`,
        50,
      );
      refused.stop();
      const downForMs = Date.now() - stoppedAt;
      await redis.start();
      const restartedAt = Date.now();
      const record = await finished(services, sendId, 60_000);
      const finishedAfterMs = Date.now() - restartedAt;

      expect(downForMs).toBeGreaterThan(5_000);
      expect(beforeRestart?.pending).toBeGreaterThan(0);
      for (const worker of workers) expect(worker.child.exitCode).toBeNull();
      expect(record).toMatchObject({ state: 'sent', total: subscribers, accepted: subscribers, failed: 0, pending: 0 });
      const recipients = harness.received.map((message) => message.recipients[0]);
      expect(new Set(recipients).size).toBe(subscribers);
      expect(recipients).toHaveLength(subscribers);
      console.info(
        `redis-outage: two workers, ${subscribers} subscribers, ${recipients.length} messages sent, 0 lost, ${recipients.length - subscribers} duplicated; ` +
          `Redis down ${downForMs} ms at ${beforeRestart?.accepted} accepted, send finished ${finishedAfterMs} ms after it was back`,
      );
    } finally {
      await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
      await harness.close();
    }
  });
});

function parseOrUndefined(line: string): { msg?: unknown; level?: unknown; source?: unknown } | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return value && typeof value === 'object' ? (value as { msg?: unknown; level?: unknown; source?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

/** Distinct log messages (or the first 120 characters of a line that isn't JSON), with counts. */
function summarise(lines: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of lines) {
    const entry = parseOrUndefined(line);
    const key = entry ? `${String(entry.level)} ${String(entry.msg)}` : `RAW ${line.slice(0, 120)}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
