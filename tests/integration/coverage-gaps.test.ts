import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { Config } from '../../config/index.ts';
import { importSubscribersCsv } from '../../src/app/import-csv.ts';
import { SendRefusedError } from '../../src/app/start-send.ts';
import { liftSuppressionByEmail } from '../../src/app/subscribers.ts';
import { freePort } from '../../src/dev/private-redis.ts';
import { startSmtpSink } from '../../src/dev/smtp-sink.ts';
import type { Services } from '../../src/services.ts';
import { startSendWorker, type SendWorkerHandle } from '../../src/workers/send.ts';
import { cliEnv, execCli, runCliInProcess, spawnCli, STACK_FRAME, withoutNodeWarnings } from '../support/cli.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers, type ReceivedMessage } from '../support/harness.ts';
import { startTcpGate } from '../support/tcp-gate.ts';
import { testConfig } from '../support/test-config.ts';
import { sorted } from '../support/sorted.ts';

/** A send worker on a config of the test's choosing, closed when the test finishes (before the harness). */
async function startWorkerWith(config: Config): Promise<SendWorkerHandle> {
  const worker = await startSendWorker(config, { recordRetryDelaysMs: [5, 10, 20], lateRecordRetryDelaysMs: [5, 10, 20, 50] });
  onTestFinished(async () => {
    await worker.close();
  });
  return worker;
}

/** The same pipeline (Redis, prefix, everything) with another SMTP_URL, as a worker started with a corrected setting. */
function withSmtpUrl(config: Config, url: string): Config {
  return { ...config, smtp: { ...config.smtp, url } };
}

/** No job of the queue has spent an attempt, and none has failed. */
async function expectNoAttemptSpent(services: Services): Promise<void> {
  const jobs = await services.queue.getJobs(['waiting', 'wait', 'delayed', 'prioritized', 'active']);
  expect(jobs.length).toBeGreaterThan(0);
  for (const job of jobs) expect(job.attemptsMade).toBe(0);
  expect(await services.queue.getFailedCount()).toBe(0);
}

async function parseAll(received: readonly ReceivedMessage[]): Promise<{ to: string | undefined; parsed: ParsedMail }[]> {
  return Promise.all(received.map(async (message) => ({ to: message.recipients[0], parsed: await simpleParser(message.raw) })));
}

function toAddress(parsed: ParsedMail): string | undefined {
  return Array.isArray(parsed.to) ? undefined : parsed.to?.value[0]?.address;
}

const READERS = (count: number) => sorted(Array.from({ length: count }, (_, index) => `reader${index + 1}@example.org`));

describe('two sends of the same issue at once', () => {
  it('starts exactly one send: the other is refused, and each subscriber is mailed once', async () => {
    const harness = await createHarness('concurrent-send');
    const { services } = harness;
    await seedSubscribers(services, 5);

    const outcomes = await Promise.allSettled([harness.send('vol-138'), harness.send('vol-138')]);
    const fulfilled = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const rejected = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(fulfilled).toHaveLength(1);
    expect(rejected).toHaveLength(1);
    const refusal = (rejected[0] as PromiseRejectedResult).reason as Error;
    expect(refusal).toBeInstanceOf(SendRefusedError);
    expect(refusal.message).toContain('already sent to list "weekly"');
    const { sendId, resumed } = (fulfilled[0] as PromiseFulfilledResult<{ sendId: string; resumed: boolean }>).value;
    expect(sendId).toBe('vol-138.weekly.1');
    expect(resumed).toBe(false);

    // One send id exists, with one job per subscriber.
    expect(await services.redis.lrange(services.sends.keys.listSends('vol-138', 'weekly'), 0, -1)).toEqual([sendId]);
    expect(await services.sends.get('vol-138.weekly.2')).toBeUndefined();
    expect(await services.queue.getJobCounts('waiting')).toEqual({ waiting: 5 });

    await harness.startWorker();
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', total: 5, accepted: 5, failed: 0 });
    const messages = await parseAll(harness.received);
    expect(sorted(messages.map((message) => message.to))).toEqual(READERS(5));
    for (const { parsed } of messages) expect(parsed.headers.get('x-newsletter-send')).toBe(sendId);
  });
});

describe('bad SMTP credentials', () => {
  it('hold the send without spending attempts, and a worker with the right credentials completes it', async () => {
    const authAttempts: { user: string; accepted: boolean }[] = [];
    const received: ReceivedMessage[] = [];
    const sink = await startSmtpSink({
      auth: { user: 'mailer', pass: 'right-password' },
      onAuth: (user, accepted) => authAttempts.push({ user, accepted }),
      onMessage: (raw, recipients, envelope) => received.push({ raw, recipients, envelope }),
    });
    onTestFinished(() => sink.stop());
    // One attempt per message: any attempt spent on the bad credentials would fail the recipient.
    const harness = await createHarness('bad-credentials', { config: { SEND_MAX_ATTEMPTS: '1', SEND_BACKOFF_MS: '100' } });
    const { services } = harness;
    await seedSubscribers(services, 3);
    const wrong = await startWorkerWith(withSmtpUrl(harness.config, `smtp://mailer:wrong-password@127.0.0.1:${sink.port}`));
    const { sendId } = await harness.send('vol-138');

    // The fault happens, again and again (the queue is held and retried every SEND_BACKOFF_MS)...
    await waitFor(() => authAttempts.filter((attempt) => !attempt.accepted).length >= 6, 15_000, 'repeated AUTH failures');
    expect(authAttempts.every((attempt) => attempt.user === 'mailer' && !attempt.accepted)).toBe(true);
    // ...and costs no recipient anything: nothing accepted, nothing failed, no attempt spent.
    expect(await services.sends.get(sendId)).toMatchObject({ state: 'queued', accepted: 0, failed: 0, pending: 3 });
    await expectNoAttemptSpent(services);
    expect(received).toHaveLength(0);

    // Ops fix the setting: the worker is restarted with the right credentials.
    await wrong.close();
    await startWorkerWith(withSmtpUrl(harness.config, `smtp://mailer:right-password@127.0.0.1:${sink.port}`));
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', total: 3, accepted: 3, failed: 0, pending: 0 });
    expect(authAttempts.some((attempt) => attempt.accepted)).toBe(true);
    const messages = await parseAll(received);
    expect(sorted(messages.map((message) => message.to))).toEqual(READERS(3));
    for (const { to, parsed } of messages) expect(toAddress(parsed)).toBe(to);
  });
});

describe('an SMTP outage seen by two worker processes', () => {
  it('holds both without spending attempts while SMTP refuses connections, and completes the send when it is back', async () => {
    const gate = await startTcpGate();
    onTestFinished(() => gate.stop());
    const harness = await createHarness('outage-two-workers', {
      config: {
        SMTP_URL: gate.url,
        SEND_MAX_ATTEMPTS: '1',
        SEND_BACKOFF_MS: '200',
        SMTP_OUTAGE_MAX_BACKOFF_MS: '1000',
        WORKER_CONCURRENCY: '2',
        SMTP_POOL_SIZE: '2',
      },
    });
    const { services } = harness;
    await seedSubscribers(services, 6);

    // A real `newsletter worker` process, logging its hold (warn) on standard error...
    const processWorker = spawnCli(['worker'], { env: cliEnv(harness.config, { LOG_LEVEL: 'warn' }) });
    try {
      await processWorker.waitForStdout(/^worker \d+ running/m, 20_000);
      const { sendId } = await harness.send('vol-138');
      await processWorker.waitForStderr(/"msg":"SMTP service unavailable; holding the queue"/, 20_000);

      // ...and one in this process: the other process's hold keeps it off SMTP too.
      await harness.startWorker();

      // The outage goes on for several more probes; the send only waits.
      const refusedSoFar = gate.refused();
      await waitFor(() => gate.refused() >= refusedSoFar + 3, 20_000, 'more refused connections (probes) while the outage lasts');
      expect(gate.passed()).toBe(0);
      expect(await services.sends.get(sendId)).toMatchObject({ accepted: 0, failed: 0, pending: 6 });
      await expectNoAttemptSpent(services);
      expect(harness.received).toHaveLength(0);

      gate.open(harness.sink.port);
      expect(await harness.waitForSend(sendId, 30_000)).toMatchObject({ state: 'sent', total: 6, accepted: 6, failed: 0, pending: 0 });
      const messages = await parseAll(harness.received);
      expect(sorted(messages.map((message) => message.to))).toEqual(READERS(6));
      for (const { to, parsed } of messages) expect(toAddress(parsed)).toBe(to);

      processWorker.child.kill('SIGTERM');
      expect(await processWorker.exited).toBe(0);
      expect(processWorker.stdout()).toContain('stopped cleanly');
    } finally {
      await processWorker.kill();
    }
  });
});

describe('Redis unreachable', () => {
  it('stops a command at once with a message naming REDIS_URL, in-process', async () => {
    const port = await freePort();
    const started = Date.now();
    const result = await runCliInProcess(['subscribers', 'count'], testConfig('no-redis', { REDIS_URL: `redis://127.0.0.1:${port}` }));
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    expect(result.err.split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^error: Cannot reach Redis at redis://127\\.0\\.0\\.1:${port} \\(REDIS_URL\\): `)),
    ]);
  });

  it('makes `newsletter subscribers count` exit 1 promptly, with one line and no stack trace', async () => {
    const port = await freePort();
    // LOG_LEVEL unset: the default, as a user runs it.
    const env = cliEnv(testConfig('no-redis-process'), { REDIS_URL: `redis://127.0.0.1:${port}/`, LOG_LEVEL: undefined });
    const result = await execCli(['subscribers', 'count'], { env, timeoutMs: 20_000 });
    expect(result.timedOut).toBe(false);
    expect(result.elapsedMs).toBeLessThan(15_000);
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    // Structured log lines (JSON) may accompany it; what a person reads is one line.
    const humanLines = withoutNodeWarnings(result.err)
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.startsWith('{'));
    expect(humanLines).toHaveLength(1);
    expect(humanLines[0]).toContain(`error: Cannot reach Redis at redis://127.0.0.1:${port}/ (REDIS_URL)`);
    expect(result.err).not.toMatch(STACK_FRAME);
  });
});

describe('lifting a bounced address', () => {
  it('given in another case, lets a --resend mail it again, exactly once', async () => {
    let rejecting = true;
    let rejections = 0;
    const harness = await createHarness('lift-bounced', {
      rejectRecipient: (address) => {
        if (address !== 'reader2@example.org' || !rejecting) return undefined;
        rejections += 1;
        return { responseCode: 550, message: '5.1.1 User unknown' };
      },
    });
    const { services } = harness;
    await seedSubscribers(services, 3);
    await harness.startWorker();

    const first = await harness.send('vol-138');
    expect(await harness.waitForSend(first.sendId)).toMatchObject({ state: 'sent-with-failures', accepted: 2, failed: 1 });
    expect(rejections).toBe(1);
    expect((await services.subscribers.getByEmail('reader2@example.org'))?.status).toBe('bounced');

    const lifted = await liftSuppressionByEmail(services.subscribers, 'READER2@EXAMPLE.ORG');
    expect(lifted).toMatchObject({ previous: 'bounced', subscriber: { email: 'reader2@example.org', status: 'active' } });
    expect((await services.subscribers.getByEmail('reader2@example.org'))?.status).toBe('active');

    rejecting = false;
    const second = await harness.send('vol-138', { resend: true });
    expect(second.sendId).toBe('vol-138.weekly.2');
    expect(await harness.waitForSend(second.sendId)).toMatchObject({ state: 'sent', total: 3, accepted: 3, failed: 0 });
    expect(rejections).toBe(1);

    const toReader2 = (await parseAll(harness.received)).filter((message) => message.to === 'reader2@example.org');
    expect(toReader2).toHaveLength(1);
    expect(toAddress(toReader2[0]!.parsed)).toBe('reader2@example.org');
    expect(toReader2[0]!.parsed.headers.get('x-newsletter-send')).toBe(second.sendId);
  });
});

describe('case-insensitive identity', () => {
  it('makes one subscriber of an address in two cases, mails it once at the address as first given, and finds it in any case', async () => {
    const harness = await createHarness('address-case');
    const { services, config } = harness;
    const dir = await mkdtemp(path.join(tmpdir(), 'nl-address-case-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const csv = path.join(dir, 'subs.csv');
    await writeFile(csv, 'email,name\nreader5@example.com,Reader Five\nREADER5@EXAMPLE.COM,\nREADER6@EXAMPLE.COM,Reader Six\nreader6@example.com,\n');

    const report = await importSubscribersCsv(services.subscribers, csv, 'weekly');
    expect(report).toMatchObject({ imported: 2, updated: 2, invalidCount: 0 });
    expect(await services.subscribers.countList('weekly')).toMatchObject({ total: 2, byStatus: { active: 2 } });
    // A later batch in yet another case merges too.
    expect(await services.subscribers.upsertMany([{ email: 'Reader5@example.com', list: 'weekly' }])).toEqual([
      { id: (await services.subscribers.findIdByEmail('reader5@example.com'))!, created: false },
    ]);
    // Kept as first given (the domain lower-cased, the local part as typed).
    expect((await services.subscribers.getByEmail('READER5@example.COM'))?.email).toBe('reader5@example.com');
    expect((await services.subscribers.getByEmail('reader6@example.com'))?.email).toBe('READER6@example.com');

    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', total: 2, accepted: 2 });
    const messages = await parseAll(harness.received);
    expect(sorted(messages.map((message) => message.to))).toEqual(['READER6@example.com', 'reader5@example.com']);
    expect(sorted(messages.map((message) => toAddress(message.parsed)))).toEqual(['READER6@example.com', 'reader5@example.com']);

    const run = (...argv: string[]) => runCliInProcess(argv, config);
    const shown = await run('subscribers', 'show', 'READER5@EXAMPLE.COM', '--json');
    expect(JSON.parse(shown.out)).toMatchObject({ email: 'reader5@example.com', name: 'Reader Five', status: 'active' });
    expect((await run('subscribers', 'suppress', 'Reader5@Example.Com')).out).toBe('reader5@example.com is suppressed (unsubscribed)');
    expect((await services.subscribers.getByEmail('reader5@example.com'))?.status).toBe('unsubscribed');
    expect((await run('subscribers', 'lift', 'READER5@example.com')).out).toBe('reader5@example.com is active again (was unsubscribed)');
    expect((await run('subscribers', 'show', 'reader6@EXAMPLE.com')).out).toMatch(/^READER6@example\.com \(id \d+\)/);
  });
});
