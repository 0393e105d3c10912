import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { sendStatusReport } from '../../src/app/send-report.ts';
import { retryFailedRecipients } from '../../src/app/start-send.ts';
import { startSmtpSink } from '../../src/dev/smtp-sink.ts';
import type { Services } from '../../src/services.ts';
import { connectRedis } from '../../src/store/connection.ts';
import { redisKeys } from '../../src/store/keys.ts';
import { SEND_QUEUE_NAME, sendJobId } from '../../src/store/send-queue.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';
import { spawnWorker, waitFor, withTimeout, workerEnv, type WorkerProcess } from '../support/worker-process.ts';

/**
 * Guards "A recipient can be lost for good after two crashes": a job whose worker process dies
 * twice while holding it stalls twice. With BullMQ's default maxStalledCount of 1 it was failed and
 * the recipient recorded as a permanent failure, never mailed. These tests kill real
 * `newsletter worker` processes with SIGKILL.
 */

/** Every job event of the send queue that these tests look at, from BullMQ's own event stream. */
interface QueueEventLog {
  /** Job id → how many times BullMQ reported it stalled (its worker died while holding it). */
  readonly stalled: Map<string, number>;
  onActive(listener: (jobId: string) => void): void;
}

async function watchQueueEvents(harness: Harness): Promise<QueueEventLog> {
  const connection: Redis = await connectRedis(harness.config.redis.url, { blocking: true });
  const events = new QueueEvents(SEND_QUEUE_NAME, { connection, prefix: redisKeys(harness.config.redis.prefix).bullPrefix });
  onTestFinished(async () => {
    await events.close();
    connection.disconnect();
  });
  await events.waitUntilReady();
  const stalled = new Map<string, number>();
  events.on('stalled', ({ jobId }) => stalled.set(jobId, (stalled.get(jobId) ?? 0) + 1));
  return { stalled, onActive: (listener) => events.on('active', ({ jobId }) => listener(jobId)) };
}

async function accepted(services: Services, sendId: string): Promise<number> {
  return (await services.sends.get(sendId))?.accepted ?? 0;
}

/** Lines a worker process logged for a recipient the SMTP server accepted. */
function acceptedLines(worker: WorkerProcess): number {
  return worker
    .stderr()
    .split('\n')
    .filter((line) => line.includes('"msg":"accepted"')).length;
}

async function activeJobIds(services: Services): Promise<string[]> {
  return (await services.queue.getActive()).map((job) => job.id ?? '');
}

describe('worker processes killed mid-send', () => {
  it('loses no recipient when two workers are killed in turn, a job in flight at both kills included, and sends at most the jobs in flight twice', async () => {
    const harness = await createHarness('worker-crash', {
      // Holds each message ~40 ms before the 250, so a full pool of messages is in flight at each kill.
      acceptDelayMs: 40,
      config: { WORKER_CONCURRENCY: '20', SMTP_POOL_SIZE: '20', WORKER_LOCK_DURATION_MS: '1000' },
    });
    const { services } = harness;
    // WORKER_MAX_STALLED_COUNT is left at its default: that default is what this test guards.
    expect(harness.config.send.maxStalledCount).toBeGreaterThanOrEqual(2);
    const env = workerEnv(harness.config, { LOG_LEVEL: 'info' });
    const events = await watchQueueEvents(harness);
    const subscribers = 1_500;
    await seedSubscribers(services, subscribers);
    const { sendId } = await harness.send('vol-138');
    const progress = async () => JSON.stringify(await services.sends.get(sendId));

    const workers: WorkerProcess[] = [];
    try {
      // Worker A sends a few hundred, then dies holding a full set of jobs.
      const a = await spawnWorker(env);
      workers.push(a);
      await waitFor(async () => (await accepted(services, sendId)) >= 300, 20_000, progress, 10);
      const activeBeforeKillA = await services.queue.getActiveCount();
      const exitA = await a.kill('SIGKILL');
      // Nothing else runs now, so the active list holds exactly the jobs A held when it died.
      const heldByA = new Set(await activeJobIds(services));
      const acceptedAtKillA = await accepted(services, sendId);

      // Worker B: killed the moment it takes back one of A's jobs (after BullMQ reported that job
      // stalled), so that job is in flight at both kills, as in the report.
      let twiceHeld: string | undefined;
      let b: WorkerProcess | undefined;
      const killedB = new Promise<void>((resolve) => {
        events.onActive((jobId) => {
          if (twiceHeld || !b || !heldByA.has(jobId) || (events.stalled.get(jobId) ?? 0) < 1) return;
          twiceHeld = jobId;
          b.child.kill('SIGKILL');
          resolve();
        });
      });
      b = await spawnWorker(env, { onSpawn: (worker) => (b = worker) });
      workers.push(b);
      await withTimeout(
        killedB,
        20_000,
        async () => `worker B never took back a job of worker A; stalled: ${JSON.stringify([...events.stalled])}; ${await progress()}`,
      );
      const exitB = await b.exited;
      const heldByB = await activeJobIds(services);
      const acceptedAtKillB = await accepted(services, sendId);

      // Worker C finishes the send.
      const c = await spawnWorker(env);
      workers.push(c);
      const record = await harness.waitForSend(sendId, 30_000);

      // The faults happened: two processes really died by SIGKILL, each after sending something,
      // each holding jobs, and BullMQ handed those jobs back as stalled, one of them twice.
      expect(exitA).toEqual({ code: null, signal: 'SIGKILL' });
      expect(exitB).toEqual({ code: null, signal: 'SIGKILL' });
      expect(acceptedLines(a)).toBeGreaterThan(0);
      expect(acceptedAtKillA).toBeGreaterThanOrEqual(300);
      // B's own log can't show it: it is killed moments after its first acceptances, and SIGKILL
      // drops the lines its asynchronous log had not written yet. The send record does show it.
      expect(acceptedAtKillB).toBeGreaterThan(acceptedAtKillA);
      expect(activeBeforeKillA).toBeGreaterThan(0);
      expect(heldByA.size).toBeGreaterThan(0);
      expect(heldByB.length).toBeGreaterThan(0);
      expect(twiceHeld).toBeDefined();
      // B may have put that job off a moment before it died (the recipient was still claimed by A,
      // which B can't yet tell is dead): then it waits in the delayed set instead of stalling again.
      const twiceStalled = heldByB.includes(twiceHeld ?? '');
      await waitFor(
        () => [...heldByA].every((jobId) => (events.stalled.get(jobId) ?? 0) >= 1) && (!twiceStalled || (events.stalled.get(twiceHeld ?? '') ?? 0) >= 2),
        5_000,
        () => `stalled events: ${JSON.stringify([...events.stalled])}`,
      );

      // Nobody was lost: every subscriber got the issue, and the send ended with no failure.
      expect(record).toMatchObject({ state: 'sent', total: subscribers, accepted: subscribers, failed: 0, skipped: 0, pending: 0 });
      const report = await sendStatusReport(services, 'vol-138', 'weekly');
      expect(report.failures).toEqual([]);
      expect(report.stuck).toBe(false);
      const recipients = harness.received.map((message) => message.recipients[0]);
      const expected = Array.from({ length: subscribers }, (_, index) => `reader${index + 1}@example.org`);
      expect(new Set(recipients)).toEqual(new Set(expected));

      // A message goes out twice only if its job was in flight when its worker died.
      const inFlightAtKills = heldByA.size + heldByB.length;
      const duplicates = recipients.length - subscribers;
      expect(duplicates).toBeLessThanOrEqual(inFlightAtKills);
      console.info(
        `worker-crash: A killed at ${acceptedAtKillA} accepted holding ${heldByA.size} jobs (active count just before: ${activeBeforeKillA}); ` +
          `B killed at ${acceptedAtKillB} accepted holding ${heldByB.length} jobs; twice held: ${twiceHeld}; ` +
          `jobs reported stalled: ${events.stalled.size}; duplicates: ${duplicates}`,
      );
    } finally {
      await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    }
  });

  it('records a job whose workers keep dying past WORKER_MAX_STALLED_COUNT as a temporary failure, which --retry-failed then delivers', async () => {
    const harness = await createHarness('worker-crash-limit', {
      config: { WORKER_CONCURRENCY: '2', SMTP_POOL_SIZE: '2', WORKER_LOCK_DURATION_MS: '1000', WORKER_MAX_STALLED_COUNT: '1' },
    });
    const { services } = harness;
    // An SMTP server that takes the message and holds its reply far longer than the test, so the
    // job stays in flight until its worker is killed. Each RCPT it sees is one try at the message.
    const tries: string[] = [];
    const holding = await startSmtpSink({
      acceptDelayMs: 20_000,
      hangUpOn: (address) => {
        tries.push(address);
        return false;
      },
    });
    onTestFinished(() => holding.stop());
    const events = await watchQueueEvents(harness);
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    const jobId = sendJobId(sendId, (await services.sends.queuedJobsPage(sendId, '0')).jobs[0]?.subscriberId ?? '');
    const holdingEnv = workerEnv(harness.config, { SMTP_URL: holding.url, LOG_LEVEL: 'warn' });
    const state = async () =>
      `tries: ${tries.length}; stalled: ${JSON.stringify([...events.stalled])}; active: ${JSON.stringify(await activeJobIds(services))}; ${JSON.stringify(await services.sends.get(sendId))}`;

    const workers: WorkerProcess[] = [];
    try {
      // Two workers in turn take the job, reach the SMTP server with it, and die holding it.
      const exits = [];
      for (let round = 1; round <= 2; round += 1) {
        const worker = await spawnWorker(holdingEnv);
        workers.push(worker);
        await waitFor(async () => tries.length >= round && (await activeJobIds(services)).includes(jobId), 15_000, state, 10);
        exits.push(await worker.kill('SIGKILL'));
        // The job was BullMQ's only active job when its worker died.
        expect(await activeJobIds(services)).toEqual([jobId]);
      }
      expect(exits).toEqual([
        { code: null, signal: 'SIGKILL' },
        { code: null, signal: 'SIGKILL' },
      ]);

      // A third worker, with a working SMTP server, finds it stalled a second time: past the limit.
      const survivor = await spawnWorker(workerEnv(harness.config, { LOG_LEVEL: 'warn' }));
      workers.push(survivor);
      const failedRecord = await harness.waitForSend(sendId, 15_000);
      // BullMQ's event stream reports both stalls (it may reach this process just after the record).
      await waitFor(() => events.stalled.get(jobId) === 2, 5_000, state);
      expect(failedRecord).toMatchObject({ state: 'sent-with-failures', total: 1, accepted: 0, failed: 1, pending: 0 });
      const report = await sendStatusReport(services, 'vol-138', 'weekly');
      expect(report.failures).toEqual([
        expect.objectContaining({ email: 'reader1@example.org', code: 'ESTALLED', permanent: false, response: 'job stalled more than allowable limit' }),
      ]);
      expect(harness.received).toHaveLength(0);
      expect(tries).toEqual(['reader1@example.org', 'reader1@example.org']);
      expect(survivor.stderr()).toContain('recorded a failure (ESTALLED) after its job ended');

      // `newsletter send vol-138 --retry-failed` requeues it, and the survivor delivers it.
      const retry = await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' });
      expect(retry).toMatchObject({ sendId, requeued: 1 });
      const record = await waitFor(
        async () => {
          const current = await services.sends.get(sendId);
          return current?.state === 'sent' ? current : undefined;
        },
        15_000,
        state,
      );
      expect(record).toMatchObject({ state: 'sent', total: 1, accepted: 1, failed: 0, pending: 0 });
      expect(harness.received.map((message) => message.recipients)).toEqual([['reader1@example.org']]);
      expect((await sendStatusReport(services, 'vol-138', 'weekly')).failures).toEqual([]);
    } finally {
      await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    }
  });
});

describe('kill -9 of worker processes, again and again, with the default lock settings', () => {
  it('delivers to everyone, mails again at most the messages in flight at each kill, and gets the dead workers’ jobs back in seconds', async () => {
    const harness = await createHarness('worker-kill-loop', {
      acceptDelayMs: 20,
      config: { WORKER_CONCURRENCY: '20', SMTP_POOL_SIZE: '10' },
    });
    const { services } = harness;
    // The defaults are what this test measures: a dead worker's jobs come back after the lock
    // (WORKER_LOCK_DURATION_MS) lapses and a stalled check (WORKER_STALLED_INTERVAL_MS) runs.
    expect(harness.config.send).toMatchObject({ lockDurationMs: 5_000, stalledIntervalMs: 1_000 });
    const env = workerEnv(harness.config, { LOG_LEVEL: 'warn' });
    const subscribers = 3_000;
    await seedSubscribers(services, subscribers);
    const { sendId } = await harness.send('vol-138');
    const progress = async () => JSON.stringify(await services.sends.get(sendId));

    const running: WorkerProcess[] = await Promise.all([spawnWorker(env), spawnWorker(env)]);
    const kills: { pid: number; acceptedAtKill: number; inFlight: string[]; killedAt: number; recoveredMs?: number }[] = [];
    const recoveries: Promise<void>[] = [];
    for (const threshold of [600, 1_400, 2_200]) {
      await waitFor(async () => (await accepted(services, sendId)) >= threshold, 60_000, progress, 10);
      const victim = running.shift()!;
      await victim.kill('SIGKILL');
      const killedAt = Date.now();
      // The messages in flight at the kill: the recipients the dead process had claimed for SMTP.
      const claims = await services.control.claims(sendId);
      const inFlight = [...claims].filter(([, claim]) => claim.workerId.includes(`-${victim.pid}-`)).map(([subscriberId]) => subscriberId);
      const kill = { pid: victim.pid, acceptedAtKill: await accepted(services, sendId), inFlight, killedAt } as (typeof kills)[number];
      kills.push(kill);
      // Recovered: every recipient it was sending to is recorded (by the worker that took it over).
      recoveries.push(
        waitFor(
          async () => (await services.sends.recipientStates(sendId, inFlight)).every((state) => state !== 'queued'),
          60_000,
          () => `the recipients in flight at the kill of ${victim.pid} to be recorded`,
          50,
        ).then(() => {
          kill.recoveredMs = Date.now() - killedAt;
        }),
      );
      running.push(await spawnWorker(env));
    }
    const lastKillAt = kills.at(-1)!.killedAt;
    const record = await harness.waitForSend(sendId, 90_000);
    const finishedAfterMs = Date.now() - lastKillAt;
    await Promise.all(recoveries);

    // The faults happened: three processes died holding messages in flight.
    expect(kills).toHaveLength(3);
    for (const kill of kills) expect(kill.inFlight.length).toBeGreaterThan(0);
    // Nobody lost: every subscriber got the issue, and the send ended without a failure.
    expect(record).toMatchObject({ state: 'sent', total: subscribers, accepted: subscribers, failed: 0, pending: 0 });
    const recipients = harness.received.map((message) => message.recipients[0]);
    expect(new Set(recipients).size).toBe(subscribers);
    // Duplicates: only messages that were at the SMTP server when their worker died.
    const duplicates = recipients.length - subscribers;
    const inFlightAtKills = kills.reduce((sum, kill) => sum + kill.inFlight.length, 0);
    expect(duplicates).toBeLessThanOrEqual(inFlightAtKills);
    // In seconds, not the minute of BullMQ's default lock and stall intervals.
    for (const kill of kills) expect(kill.recoveredMs).toBeLessThan(25_000);
    console.info(
      `kill-loop: ${subscribers} subscribers, ${recipients.length} messages sent, 0 lost, ${duplicates} duplicated; ` +
        kills
          .map(
            (kill, index) =>
              `kill ${index + 1} at ${kill.acceptedAtKill} accepted: ${kill.inFlight.length} in flight, recovered in ${((kill.recoveredMs ?? 0) / 1000).toFixed(1)} s`,
          )
          .join('; ') +
        `; send finished ${(finishedAfterMs / 1000).toFixed(1)} s after the last kill`,
    );
  });
});
