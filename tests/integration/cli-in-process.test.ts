import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { ConfigError, parseConfig } from '../../config/index.ts';
import { runCliInProcess, startCliInProcess } from '../support/cli.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { testConfig } from '../support/test-config.ts';
import { sorted } from '../support/sorted.ts';

/** A folder of this test's own, removed when it finishes. */
async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-cli-in-process-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The settings testConfig() parses, as the environment would hold them. */
function validEnvironment(): Record<string, string> {
  return {
    REDIS_URL: inject('redisUrl'),
    REDIS_PREFIX: 't-cli-config-never-written',
    SMTP_URL: 'smtp://127.0.0.1:1',
    MAIL_FROM: 'IR Research Weekly <weekly@example.org>',
    PUBLIC_URL: 'https://newsletter.example.org',
    APP_SECRET: 'test-secret-0123456789abcdef0123456789abcdef',
    LOG_LEVEL: 'silent',
  };
}

/** The error line a command prints: one line starting "error:", never a stack. */
function expectOneLineError(err: string, pattern: RegExp): void {
  const lines = err.split('\n');
  expect(lines[0]).toMatch(/^error: /);
  expect(err).toMatch(pattern);
  expect(err).not.toMatch(/^\s+at /m);
}

describe('the newsletter CLI, in-process', () => {
  it('prints its help with exit code 0, and exits 1 on an unknown command', async () => {
    const config = testConfig('cli-help');
    const help = await runCliInProcess(['--help'], config);
    expect(help.code).toBe(0);
    for (const command of ['build', 'subscribers', 'send', 'worker', 'status', 'serve', 'demo']) expect(help.out).toContain(command);

    const unknown = await runCliInProcess(['sned', 'vol-138'], config);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain("unknown command 'sned'");
  });

  it('builds an issue into .html and .txt, filled for a sample subscriber, with their sizes', async () => {
    const dir = await scratchDir();
    const out = path.join(dir, 'preview');
    const result = await runCliInProcess(['build', 'vol-138', '--out', out], testConfig('cli-build'));
    expect(result).toMatchObject({ code: 0, err: '' });
    expect(result.out).toContain(`${out}/vol-138.html  `);
    expect(result.out).toMatch(/vol-138\.html {2}\d+\.\d KB\b.*\(Gmail clips past 102\.0 KB\b/);
    expect(result.out).toMatch(/vol-138\.txt {2}\d+\.\d KB/);
    expect(result.out).toMatch(/^subject: .+/m);
    const html = await readFile(path.join(out, 'vol-138.html'), 'utf8');
    const text = await readFile(path.join(out, 'vol-138.txt'), 'utf8');
    expect(html).toContain('Hi Ada Lovelace,');
    expect(text).toContain('Hi Ada Lovelace,');
    expect(html).not.toContain('{{');
    expect(text).not.toContain('{{');
  });

  it('notes that a draft is a draft when building it', async () => {
    const dir = await scratchDir();
    const result = await runCliInProcess(['build', 'draft-sample', '--out', dir], testConfig('cli-build-draft'));
    expect(result.code).toBe(0);
    expect(result.err).toContain('note: issue draft-sample is a draft');
  });

  it('exits 1 with a one-line message when the preview cannot be written', async () => {
    const dir = await scratchDir();
    const notAFolder = path.join(dir, 'not-a-folder');
    await writeFile(notAFolder, 'x');
    const result = await runCliInProcess(['build', 'vol-138', '--out', notAFolder], testConfig('cli-build-unwritable'));
    expect(result.code).toBe(1);
    expectOneLineError(result.err, new RegExp(`^error: Cannot write the preview to ${notAFolder}`));
  });

  it('exits 1 naming an unknown issue and the known ones, with no stack trace', async () => {
    const result = await runCliInProcess(['build', 'vol-999'], testConfig('cli-unknown-issue'));
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    expectOneLineError(result.err, /^error: Unknown issue "vol-999": there is no vol-999\.yaml in .+\. Known issues: .*vol-138/);
    expect(result.err.split('\n')).toHaveLength(1);
  });

  it('exits 1 naming a missing or malformed setting, whatever the command', async () => {
    const thrown: unknown[] = [];
    const configFrom = (overrides: Record<string, string | undefined>) => async () => {
      try {
        return parseConfig({ ...validEnvironment(), ...overrides });
      } catch (error) {
        thrown.push(error);
        throw error;
      }
    };

    const missing = await runCliInProcess(['build', 'vol-138'], configFrom({ APP_SECRET: undefined }));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^error: Invalid configuration:/);
    expect(missing.err).toContain('APP_SECRET is required');

    const bad = await runCliInProcess(['subscribers', 'count'], configFrom({ WORKER_CONCURRENCY: 'lots' }));
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('WORKER_CONCURRENCY must be a whole number');

    const port = await runCliInProcess(['serve'], configFrom({ HTTP_PORT: '0' }));
    expect(port.code).toBe(1);
    expect(port.err).toContain('HTTP_PORT must be between 1 and 65535');

    // The failures were the config's, and each reached the user as a message.
    expect(thrown).toHaveLength(3);
    for (const error of thrown) expect(error).toBeInstanceOf(ConfigError);
    for (const result of [missing, bad, port]) expect(result.err).not.toMatch(/^\s+at /m);
  });

  it('imports a CSV, reporting imported, updated and invalid rows with their line numbers', async () => {
    const harness = await createHarness('cli-import');
    const dir = await scratchDir();
    const csv = path.join(dir, 'subs.csv');
    await writeFile(csv, 'email,name,team\nada@example.org,Ada,engines\nbroken,x,y\nbob@example.org,Bob,\n');

    const imported = await runCliInProcess(['subscribers', 'import', csv], harness.config);
    expect(imported).toMatchObject({ code: 0, err: '' });
    expect(imported.out.split('\n')).toEqual(['list weekly: 2 imported, 0 updated, 1 invalid', '  line 3: "broken" is not a valid email address']);

    const again = await runCliInProcess(['subscribers', 'import', csv, '--list', 'monthly'], harness.config);
    expect(again.out).toContain('list monthly: 0 imported, 2 updated, 1 invalid');
    const shown = await runCliInProcess(['subscribers', 'show', 'ada@example.org', '--json'], harness.config);
    expect(JSON.parse(shown.out)).toMatchObject({
      email: 'ada@example.org',
      name: 'Ada',
      status: 'active',
      lists: ['monthly', 'weekly'],
      attributes: { team: 'engines' },
    });

    const missing = await runCliInProcess(['subscribers', 'import', path.join(dir, 'nope.csv')], harness.config);
    expect(missing.code).toBe(1);
    expectOneLineError(missing.err, /nope\.csv: no such file/);
  });

  it('adds a subscriber trimmed with its domain lower-cased, merges a repeat in any case, and refuses a non-address', async () => {
    const harness = await createHarness('cli-add');
    const added = await runCliInProcess(['subscribers', 'add', ' Carol@Example.ORG', '--name', 'Carol'], harness.config);
    expect(added).toMatchObject({ code: 0, err: '' });
    expect(added.out).toMatch(/^added Carol@example\.org \(id \d+\) on list weekly$/);

    const merged = await runCliInProcess(['subscribers', 'add', 'CAROL@example.org', '--name', 'Carol B.'], harness.config);
    expect(merged.out).toMatch(/^updated CAROL@example\.org \(id \d+\) on list weekly$/);
    const shown = await runCliInProcess(['subscribers', 'show', 'carol@EXAMPLE.org', '--json'], harness.config);
    // One subscriber, the address kept as first given, the newer name.
    expect(JSON.parse(shown.out)).toMatchObject({ email: 'Carol@example.org', name: 'Carol B.' });

    const invalid = await runCliInProcess(['subscribers', 'add', 'not-an-email'], harness.config);
    expect(invalid.code).toBe(1);
    expectOneLineError(invalid.err, /^error: "not-an-email" is not a valid email address$/);

    const badList = await runCliInProcess(['subscribers', 'add', 'dan@example.org', '--list', 'Not A List'], harness.config);
    expect(badList.code).toBe(1);
    expect(badList.err).toContain('a list name is lower-case letters');
  });

  it('counts a list by status, and names a list that does not exist', async () => {
    const harness = await createHarness('cli-count');
    await seedSubscribers(harness.services, 3);
    expect((await runCliInProcess(['subscribers', 'suppress', 'reader3@example.org', '--reason', 'bounced'], harness.config)).code).toBe(0);

    const counted = await runCliInProcess(['subscribers', 'count'], harness.config);
    expect(counted).toMatchObject({ code: 0, out: 'list weekly: 3 subscribers (2 active, 0 unsubscribed, 1 bounced, 0 complained)' });

    const unknown = await runCliInProcess(['subscribers', 'count', '--list', 'nosuchlist'], harness.config);
    expect(unknown.code).toBe(1);
    expectOneLineError(unknown.err, /^error: There is no list "nosuchlist"$/);
  });

  it('shows a subscriber as text and as JSON, and exits 1 for an unknown address', async () => {
    const harness = await createHarness('cli-show');
    await harness.services.subscribers.upsert({ email: 'ada@example.org', name: 'Ada', attributes: { team: 'engines' }, list: 'weekly' });

    const text = await runCliInProcess(['subscribers', 'show', 'ada@example.org'], harness.config);
    expect(text.code).toBe(0);
    expect(text.out.split('\n')).toEqual([
      expect.stringMatching(/^ada@example\.org \(id \d+\)$/),
      '  name: Ada',
      '  status: active',
      '  lists: weekly',
      '  team: engines',
    ]);

    const json = await runCliInProcess(['subscribers', 'show', 'ada@example.org', '--json'], harness.config);
    expect(JSON.parse(json.out)).toMatchObject({ email: 'ada@example.org', name: 'Ada', status: 'active', lists: ['weekly'], attributes: { team: 'engines' } });

    const unknown = await runCliInProcess(['subscribers', 'show', 'nobody@example.org'], harness.config);
    expect(unknown.code).toBe(1);
    expectOneLineError(unknown.err, /^error: No subscriber with the address nobody@example\.org$/);
  });

  it('suppresses by hand, keeps an existing suppression, refuses an unknown reason, and lifts it', async () => {
    const harness = await createHarness('cli-suppress');
    await seedSubscribers(harness.services, 2);
    const run = (...argv: string[]) => runCliInProcess(argv, harness.config);

    expect((await run('subscribers', 'suppress', 'reader2@example.org', '--reason', 'complained')).out).toBe('reader2@example.org is suppressed (complained)');
    const angry = await run('subscribers', 'suppress', 'reader2@example.org', '--reason', 'angry');
    expect(angry.code).toBe(1);
    expect(angry.err).toContain('Allowed choices are unsubscribed, bounced, complained');
    expect((await run('subscribers', 'suppress', 'reader2@example.org')).out).toBe(
      'reader2@example.org was already suppressed (complained); lift it first to change the reason',
    );
    expect((await run('subscribers', 'count')).out).toContain('1 active, 0 unsubscribed, 0 bounced, 1 complained');
    expect((await harness.services.subscribers.getByEmail('reader2@example.org'))?.status).toBe('complained');

    expect((await run('subscribers', 'lift', 'reader2@example.org')).out).toBe('reader2@example.org is active again (was complained)');
    expect((await run('subscribers', 'lift', 'reader2@example.org')).out).toBe('reader2@example.org was not suppressed');
    expect((await run('subscribers', 'count')).out).toContain('2 active, 0 unsubscribed, 0 bounced, 0 complained');
  });

  it('refuses to send a draft or to an empty list, queues a finished issue once, and refuses a repeat without --resend', async () => {
    const harness = await createHarness('cli-send');
    await seedSubscribers(harness.services, 3);
    const run = (...argv: string[]) => runCliInProcess(argv, harness.config);

    const draft = await run('send', 'draft-sample');
    expect(draft.code).toBe(1);
    expectOneLineError(draft.err, /^error: Issue "draft-sample" is a draft; only a finished issue can be sent/);

    const emptyList = await run('send', 'vol-138', '--list', 'nobody');
    expect(emptyList.code).toBe(1);
    expectOneLineError(emptyList.err, /List "nobody" has no subscribers/);

    const sent = await run('send', 'vol-138');
    expect(sent).toMatchObject({ code: 0, err: '' });
    expect(sent.out.split('\n')).toEqual([
      'send vol-138.weekly.1: 3 recipients queued',
      'follow it with: newsletter status vol-138 --list weekly',
      'vol-138.weekly.1',
    ]);

    const again = await run('send', 'vol-138');
    expect(again.code).toBe(1);
    expectOneLineError(again.err, /already sent to list "weekly" \(send vol-138\.weekly\.1, queued\).*pass --resend/);

    const resent = await run('send', 'vol-138', '--resend');
    expect(resent.code).toBe(0);
    expect(resent.out.split('\n').at(-1)).toBe('vol-138.weekly.2');
    expect(await harness.services.queue.getJobCounts('waiting')).toEqual({ waiting: 6 });
  });

  it('reports a send by status, as text and as --json, and --retry-failed requeues nothing when nothing failed', async () => {
    const harness = await createHarness('cli-status');
    await seedSubscribers(harness.services, 3);
    const run = (...argv: string[]) => runCliInProcess(argv, harness.config);

    const notSent = await run('status', 'vol-138');
    expect(notSent.code).toBe(1);
    expectOneLineError(notSent.err, /^error: Issue "vol-138" has not been sent yet\.$/);
    const unknown = await run('status', 'vol-999');
    expect(unknown.code).toBe(1);
    expectOneLineError(unknown.err, /Unknown issue "vol-999"/);

    const sendId = (await run('send', 'vol-138')).out.split('\n').at(-1)!;
    const queued = JSON.parse((await run('status', 'vol-138', '--json')).out) as Record<string, unknown>;
    expect(queued).toMatchObject({ sendId, state: 'queued', total: 3, accepted: 0, pending: 3, stuck: false });

    await harness.startWorker();
    await harness.waitForSend(sendId);
    const json = await run('status', 'vol-138', '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out)).toMatchObject({
      sendId,
      issueId: 'vol-138',
      list: 'weekly',
      state: 'sent',
      total: 3,
      accepted: 3,
      failed: 0,
      skipped: 0,
      pending: 0,
      failures: [],
    });
    const text = await run('status', 'vol-138', '--list', 'weekly');
    expect(text.out).toContain(`send ${sendId}: issue vol-138 to list weekly`);
    expect(text.out).toMatch(/^ {2}state {5}sent$/m);
    expect(text.out).toMatch(/^ {2}accepted {2}3 /m);

    const retry = await run('send', 'vol-138', '--retry-failed');
    expect(retry).toMatchObject({ code: 0, out: `send ${sendId}: 0 recipients requeued (permanent failures stay failed)` });
    const never = await run('send', 'draft-sample', '--retry-failed');
    expect(never.code).toBe(1);
    expectOneLineError(never.err, /has not been sent to list "weekly"; there is nothing to retry/);

    expect(harness.received).toHaveLength(3);
    const parsed = await simpleParser(harness.received[0]!.raw);
    expect(parsed.headers.get('x-newsletter-send')).toBe(sendId);
  });

  it('send --retry-failed requeues the recipients whose attempts ran out on temporary errors, and they are delivered', async () => {
    let mailboxBusy = true;
    let busyReplies = 0;
    const harness = await createHarness('cli-retry-failed', {
      config: { SEND_BACKOFF_MS: '10', SEND_MAX_ATTEMPTS: '2' },
      rejectRecipient: (address) => {
        if (address !== 'reader2@example.org' || !mailboxBusy) return undefined;
        busyReplies += 1;
        return { responseCode: 451, message: '4.2.1 Mailbox busy' };
      },
    });
    await seedSubscribers(harness.services, 3);
    await harness.startWorker();
    const run = (...argv: string[]) => runCliInProcess(argv, harness.config);

    const sendId = (await run('send', 'vol-138')).out.split('\n').at(-1)!;
    await harness.waitForSend(sendId);
    expect(busyReplies).toBe(2); // the fault happened, once per attempt
    const failed = JSON.parse((await run('status', 'vol-138', '--json')).out) as { failures: unknown[] };
    expect(failed).toMatchObject({ state: 'sent-with-failures', accepted: 2, failed: 1 });
    expect(failed.failures).toEqual([expect.objectContaining({ email: 'reader2@example.org', permanent: false, attempts: 2, responseCode: 451 })]);
    expect((await run('status', 'vol-138')).out).toMatch(/reader2@example\.org: 451 4\.2\.1 Mailbox busy \(gave up after 2 attempts\)/);

    mailboxBusy = false;
    const retried = await run('send', 'vol-138', '--retry-failed');
    expect(retried).toMatchObject({ code: 0, out: `send ${sendId}: 1 recipients requeued (permanent failures stay failed)` });
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', accepted: 3, failed: 0 });
    const recipients = sorted(harness.received.map((message) => message.recipients[0]));
    expect(recipients).toEqual(['reader1@example.org', 'reader2@example.org', 'reader3@example.org']);
  });

  it('runs the worker command until it is told to stop, and it stops cleanly', async () => {
    const harness = await createHarness('cli-worker');
    await seedSubscribers(harness.services, 3);
    const worker = startCliInProcess(['worker'], harness.config);
    const sendId = (await runCliInProcess(['send', 'vol-138'], harness.config)).out.split('\n').at(-1)!;
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', accepted: 3 });

    const stopped = await worker.stop();
    expect(stopped.code).toBe(0);
    expect(stopped.out.split('\n')).toEqual([
      expect.stringMatching(/^worker \d+ running: concurrency 40, SMTP pool 10$/),
      'SIGTERM: finishing the jobs in flight (up to 5000 ms)…',
      'stopped cleanly',
    ]);
    const parsed = await Promise.all(harness.received.map((message) => simpleParser(message.raw)));
    expect(sorted(parsed.map((message) => (Array.isArray(message.to) ? '' : message.to?.value[0]?.address)))).toEqual([
      'reader1@example.org',
      'reader2@example.org',
      'reader3@example.org',
    ]);
  });
});
