import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { probesWithin } from '../../src/core/outage-backoff.ts';
import { startSmtpSink } from '../../src/dev/smtp-sink.ts';
import { createSmtpOutage, type SmtpOutageOptions } from '../../src/delivery/smtp-outage.ts';
import type { Logger } from '../../src/logger.ts';
import type { Services } from '../../src/services.ts';
import { createHarness, seedSubscribers, type ReceivedMessage } from '../support/harness.ts';
import { sorted } from '../support/sorted.ts';
import { startTcpGate } from '../support/tcp-gate.ts';
import { spawnWorker, waitFor, workerEnv, type WorkerProcess } from '../support/worker-process.ts';

/**
 * "The SMTP server is down for a while: nothing should fail and no attempt should be spent; the
 * send should finish soon after the server is back", whether it refuses connections or answers
 * 421 on connect, and without hammering it: the queue is held, one probe at a time per worker
 * process, 500 ms after the outage began, then every doubling wait up to
 * SMTP_OUTAGE_MAX_BACKOFF_MS (1 s here, so the tests run in seconds).
 */

const MAX_BACKOFF_MS = 1_000;
const CONCURRENCY = 2;
const READERS = (count: number) => sorted(Array.from({ length: count }, (_, index) => `reader${index + 1}@example.org`));
const OUTAGE_CONFIG = {
  // One attempt per message: an attempt spent on the outage would fail the recipient for good.
  SEND_MAX_ATTEMPTS: '1',
  SMTP_OUTAGE_MAX_BACKOFF_MS: String(MAX_BACKOFF_MS),
  WORKER_CONCURRENCY: String(CONCURRENCY),
  SMTP_POOL_SIZE: String(CONCURRENCY),
};

/**
 * Connections one worker process may open to a service that has been down for `outageMs`: the
 * messages it had under way when the outage began (at most its concurrency: each fails with an
 * error, a reset or the 421, which nodemailer's pool does not requeue), the probe that confirmed
 * it (a reset needs one, a 421 greeting does not), and the backoff schedule's probes (0.5, 1.5,
 * 2.5… s after the outage began, which is after the send started). For the ~5 s outages here,
 * at most 2 + 1 + 5 = 8 per process.
 */
function connectionBound(processes: number, outageMs: number): number {
  return processes * (CONCURRENCY + 1 + probesWithin(outageMs, MAX_BACKOFF_MS));
}

/**
 * After the service is back: its next probe comes within one backoff step (plus the probe), the
 * workers wake from the hold within maximumRateLimitDelay (500 ms), and six messages go out in
 * well under two seconds (six are allowed: a loaded CI machine is slow to start them).
 */
const RECOVERY_BOUND_MS = MAX_BACKOFF_MS + 500 + 6_000;

/** Waiting jobs have spent no attempt while the outage lasts, and none has failed. */
async function expectNoAttemptSpentYet(services: Services, count: number): Promise<void> {
  const jobs = await services.queue.getJobs(['waiting', 'wait', 'delayed', 'prioritized', 'active']);
  expect(jobs).toHaveLength(count);
  for (const job of jobs) expect(job.attemptsMade).toBe(0);
  expect(await services.queue.getFailedCount()).toBe(0);
}

/** Every job completed on its first and only attempt. */
async function expectEveryJobDoneFirstTime(services: Services, count: number): Promise<void> {
  // A job records its recipient before BullMQ moves it to completed: the send can be over a moment before its last job is.
  const completed = await waitFor(
    async () => {
      const jobs = await services.queue.getJobs(['completed']);
      return jobs.length >= count ? jobs : undefined;
    },
    5_000,
    async () => `${count} completed jobs (have ${await services.queue.getCompletedCount()})`,
  );
  expect(completed).toHaveLength(count);
  for (const job of completed) expect(job.attemptsMade).toBe(1);
  expect(await services.queue.getFailedCount()).toBe(0);
}

/** The structured log lines of a worker process (pino, on standard error). */
function logLines(worker: WorkerProcess): { msg: string; level: number; [field: string]: unknown }[] {
  return worker
    .stderr()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg: string; level: number });
}

/** One warn line when the outage began and one info line when it ended, in each process that saw it; nothing per job. */
function expectOneLinePerOutageEdge(workers: readonly WorkerProcess[]): void {
  let began = 0;
  for (const worker of workers) {
    const lines = logLines(worker);
    const start = lines.filter((line) => line.msg === 'SMTP service unavailable; holding the queue');
    const end = lines.filter((line) => line.msg === 'SMTP service back; sending resumes');
    expect(start.length).toBeLessThanOrEqual(1);
    expect(end).toHaveLength(start.length);
    for (const line of start) expect(line).toMatchObject({ level: 40, reason: expect.any(String), code: expect.any(String) });
    for (const line of end) expect(line).toMatchObject({ level: 30, durationMs: expect.any(Number), probes: expect.any(Number) });
    // No job logged a retry or a failure of its own.
    expect(lines.filter((line) => line.outcome === 'retry' || line.outcome === 'failed')).toEqual([]);
    began += start.length;
  }
  expect(began).toBeGreaterThanOrEqual(1);
}

describe('an SMTP outage seen by real worker processes', () => {
  it('refused connections: the send waits, no attempt is spent, connections stay bounded, and it finishes soon after the server is back', async () => {
    // A port that resets every connection while shut, bound for the whole test.
    const gate = await startTcpGate();
    onTestFinished(() => gate.stop());
    const harness = await createHarness('outage-refused', { config: { SMTP_URL: gate.url, ...OUTAGE_CONFIG } });
    const { services } = harness;
    await seedSubscribers(services, 6);
    const env = workerEnv(harness.config, { LOG_LEVEL: 'info' });
    // Two processes: the hold one of them sets holds the other as well.
    const workers = [await spawnWorker(env), await spawnWorker(env)];

    const startedAt = Date.now();
    const { sendId } = await harness.send('vol-138');
    const outageSeen = () => workers.some((worker) => worker.stderr().includes('"msg":"SMTP service unavailable; holding the queue"'));
    await waitFor(outageSeen, 10_000, 'a worker to see the outage');
    // The outage goes on for several probes (of both processes); the send only waits.
    const seenAt = gate.refused();
    await waitFor(
      () => gate.refused() >= seenAt + 8,
      15_000,
      () => `eight more connections during the outage (refused ${gate.refused()})`,
    );
    expect(await services.sends.get(sendId)).toMatchObject({ accepted: 0, failed: 0, pending: 6 });
    await expectNoAttemptSpentYet(services, 6);

    const refused = gate.refused();
    const outageMs = Date.now() - startedAt;
    gate.open(harness.sink.port);
    const reopenedAt = Date.now();
    expect(await harness.waitForSend(sendId, 15_000)).toMatchObject({ state: 'sent', total: 6, accepted: 6, failed: 0, pending: 0 });
    const recoveryMs = Date.now() - reopenedAt;

    // The fault happened, with a bounded number of connections, not one per job and retry.
    expect(gate.passed()).toBeGreaterThan(0);
    expect(refused).toBeGreaterThanOrEqual(8);
    expect(refused).toBeLessThanOrEqual(connectionBound(workers.length, outageMs));
    expect(recoveryMs).toBeLessThan(RECOVERY_BOUND_MS);
    // Every recipient accepted exactly once, on the first and only attempt.
    expect(sorted(harness.received.map((message) => message.recipients[0]))).toEqual(READERS(6));
    await expectEveryJobDoneFirstTime(services, 6);

    for (const worker of workers) expect(await worker.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expectOneLinePerOutageEdge(workers);
  });

  it('421 on connect: the send waits, no attempt is spent, connections stay bounded, and it finishes soon after the server is back', async () => {
    let turnAway = true;
    let turnedAway = 0;
    const received: ReceivedMessage[] = [];
    const sink = await startSmtpSink({
      rejectConnection: () => {
        if (!turnAway) return undefined;
        turnedAway += 1;
        return { responseCode: 421, message: '4.3.2 Service not available, closing transmission channel' };
      },
      onMessage: (raw, recipients, envelope) => received.push({ raw, recipients, envelope }),
    });
    onTestFinished(() => sink.stop());
    const harness = await createHarness('outage-421', { config: { SMTP_URL: sink.url, ...OUTAGE_CONFIG } });
    const { services } = harness;
    await seedSubscribers(services, 6);
    const worker = await spawnWorker(workerEnv(harness.config, { LOG_LEVEL: 'info' }));

    const startedAt = Date.now();
    const { sendId } = await harness.send('vol-138');
    await worker.waitForOutput(/"msg":"SMTP service unavailable; holding the queue"/, 10_000, 'stderr');
    const seenAt = turnedAway;
    await waitFor(
      () => turnedAway >= seenAt + 5,
      15_000,
      () => `five more probes during the outage (turned away ${turnedAway})`,
    );
    expect(await services.sends.get(sendId)).toMatchObject({ accepted: 0, failed: 0, pending: 6 });
    await expectNoAttemptSpentYet(services, 6);

    const during = turnedAway;
    const outageMs = Date.now() - startedAt;
    turnAway = false;
    const recoveredAt = Date.now();
    expect(await harness.waitForSend(sendId, 15_000)).toMatchObject({ state: 'sent', total: 6, accepted: 6, failed: 0, pending: 0 });
    const recoveryMs = Date.now() - recoveredAt;

    expect(during).toBeGreaterThanOrEqual(5);
    expect(during).toBeLessThanOrEqual(connectionBound(1, outageMs));
    expect(recoveryMs).toBeLessThan(RECOVERY_BOUND_MS);
    expect(sorted(received.map((message) => message.recipients[0]))).toEqual(READERS(6));
    await expectEveryJobDoneFirstTime(services, 6);

    expect(await worker.kill('SIGTERM')).toEqual({ code: 0, signal: null });
    expectOneLinePerOutageEdge([worker]);
    const start = logLines(worker).find((line) => line.msg === 'SMTP service unavailable; holding the queue');
    expect(start).toMatchObject({ code: 'EPROTOCOL', responseCode: 421, reason: 'SMTP 421 4.3.2 on connect: service unavailable' });
  });
});

/** A logger that keeps what it is told. */
function recordingLogger() {
  const lines: { level: 'warn' | 'info' | 'debug'; fields: Record<string, unknown>; msg: string }[] = [];
  const at = (level: 'warn' | 'info' | 'debug') => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, fields, msg });
  return { lines, logger: { warn: at('warn'), info: at('info'), debug: at('debug') } as unknown as Logger };
}

/** The circuit over a fake service and a fake queue hold, with short waits (20 ms doubling to 80 ms). */
function fakeCircuit(overrides: Partial<SmtpOutageOptions> = {}) {
  let up = false;
  let holdUntil = 0;
  const probes: number[] = [];
  const holds: number[] = [];
  let releases = 0;
  const { lines, logger } = recordingLogger();
  const circuit = createSmtpOutage({
    logger,
    maxBackoffMs: 80,
    firstBackoffMs: 20,
    probeTimeoutMs: 1_000,
    probe: async () => {
      probes.push(Date.now());
      // Slow enough for many callers to ask while it is under way.
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (!up) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ESOCKET' });
    },
    hold: async (ms) => {
      holds.push(ms);
      holdUntil = Date.now() + ms;
    },
    release: async () => {
      releases += 1;
      holdUntil = 0;
    },
    heldForMs: async () => Math.max(0, holdUntil - Date.now()),
    ...overrides,
  });
  onTestFinished(() => circuit.close());
  return {
    circuit,
    probes,
    holds,
    lines,
    releases: () => releases,
    setUp: (value: boolean) => (up = value),
    dropHold: () => (holdUntil = 0),
  };
}

const REFUSED = { reason: 'ESOCKET (ECONNREFUSED): connection problem', code: 'ESOCKET', confirm: false } as const;
const RESET = { reason: 'ESOCKET (ECONNRESET): connection problem', code: 'ESOCKET', confirm: true } as const;

describe('the SMTP outage circuit of one process', () => {
  it('confirms with one probe however many jobs fail at once, then holds the queue and logs one line', async () => {
    const fake = fakeCircuit({ firstBackoffMs: 60_000, maxBackoffMs: 60_000 });
    const verdicts = await Promise.all(Array.from({ length: 20 }, () => fake.circuit.report(RESET)));
    expect(verdicts).toEqual(Array.from({ length: 20 }, () => true));
    expect(fake.probes).toHaveLength(1);
    expect(fake.circuit.isDown()).toBe(true);
    // Held until the first scheduled probe has had its time (its wait, then the probe timeout).
    expect(fake.holds).toEqual([60_000 + 1_000]);
    expect(fake.lines.filter((line) => line.level !== 'debug').map((line) => line.msg)).toEqual(['SMTP service unavailable; holding the queue']);
    // Jobs that come while it is down and held go back without a probe of their own.
    expect(await Promise.all([fake.circuit.admit(), fake.circuit.admit()])).toEqual([false, false]);
    expect(await fake.circuit.report(REFUSED)).toBe(true);
    expect(fake.probes).toHaveLength(1);
  });

  it('counts a failure as the message’s when the confirming probe gets through', async () => {
    const fake = fakeCircuit();
    fake.setUp(true);
    expect(await fake.circuit.report(RESET)).toBe(false);
    expect(fake.circuit.isDown()).toBe(false);
    expect(fake.holds).toEqual([]);
    expect(await fake.circuit.admit()).toBe(true);
  });

  it('probes one at a time with a doubling wait, re-arms the hold each step, and resumes at once when the service answers', async () => {
    const fake = fakeCircuit();
    const began = Date.now();
    expect(await fake.circuit.report(REFUSED)).toBe(true); // proof enough: no confirming probe
    expect(fake.probes).toHaveLength(0);
    await waitFor(() => fake.probes.length >= 5, 5_000, 'five probes');
    // Waits of 20, 40, 80, 80, 80 ms after the outage began (each probe takes ~5 ms more).
    const gaps = fake.probes.map((at, index) => at - (index === 0 ? began : fake.probes[index - 1]!));
    for (const [index, expected] of [20, 40, 80, 80, 80].entries()) expect(gaps[index]).toBeGreaterThanOrEqual(expected - 2);
    expect(fake.holds.slice(0, 4)).toEqual([1_020, 1_040, 1_080, 1_080]);
    expect(await fake.circuit.admit()).toBe(false);

    fake.setUp(true);
    await waitFor(() => !fake.circuit.isDown(), 1_000, 'the next probe to find the service back');
    expect(fake.releases()).toBe(1);
    expect(await fake.circuit.admit()).toBe(true);
    const end = fake.lines.find((line) => line.msg === 'SMTP service back; sending resumes');
    expect(end?.level).toBe('info');
    expect(end?.fields).toMatchObject({ probes: fake.probes.length, reason: REFUSED.reason, code: 'ESOCKET' });
    expect(fake.lines.filter((line) => line.level === 'warn')).toHaveLength(1);
  });

  it('probes at once, for the jobs that ask, when the hold is gone before its next probe (another process found the service back)', async () => {
    const fake = fakeCircuit({ maxBackoffMs: 60_000, firstBackoffMs: 60_000 });
    expect(await fake.circuit.report(REFUSED)).toBe(true);
    fake.setUp(true);
    fake.dropHold();
    expect(await Promise.all([fake.circuit.admit(), fake.circuit.admit(), fake.circuit.admit()])).toEqual([true, true, true]);
    expect(fake.probes).toHaveLength(1);
    expect(fake.circuit.isDown()).toBe(false);
  });

  it('ends its hold when its worker stops during an outage, and probes no more', async () => {
    vi.useFakeTimers();
    onTestFinished(() => void vi.useRealTimers());
    const fake = fakeCircuit();
    expect(await fake.circuit.report(REFUSED)).toBe(true);
    await fake.circuit.close();
    expect(fake.releases()).toBe(1);
    expect(fake.circuit.isDown()).toBe(false);
    // Well past the first probe's time (20 ms) and the longest wait (80 ms): no probe comes.
    await vi.advanceTimersByTimeAsync(1_000);
    expect(fake.probes).toHaveLength(0);
  });
});
