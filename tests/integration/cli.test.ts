import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { startSmtpSink, type SmtpSink } from '../../src/dev/smtp-sink.ts';
import { testConfig } from '../support/test-config.ts';

const CLI = path.join(PROJECT_ROOT, 'bin/newsletter.js');

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let dir: string;
let sink: SmtpSink;
let env: Record<string, string>;
let received = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nl-cli-'));
  sink = await startSmtpSink({ onMessage: () => (received += 1) });
  const config = testConfig('cli');
  env = {
    PATH: process.env.PATH ?? '',
    REDIS_URL: config.redis.url,
    REDIS_PREFIX: config.redis.prefix,
    SMTP_URL: sink.url,
    MAIL_FROM: 'IR Research Weekly <weekly@example.org>',
    PUBLIC_URL: 'https://newsletter.example.org',
    APP_SECRET: config.appSecret,
    WORKER_SHUTDOWN_TIMEOUT_MS: '5000',
  };
});
afterAll(async () => {
  await sink.stop();
  await rm(dir, { recursive: true, force: true });
});

function cli(args: string[], extraEnv: Record<string, string | undefined> = {}): Promise<CliResult> {
  const childEnv = Object.fromEntries(Object.entries({ ...env, ...extraEnv }).filter((entry): entry is [string, string] => entry[1] !== undefined));
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: dir, env: childEnv }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('the newsletter CLI', () => {
  it('runs as `npx newsletter` from the project, with no build step, and lists its commands', async () => {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('npx', ['--no-install', 'newsletter', '--help'], { cwd: PROJECT_ROOT, env: { ...process.env } }, (error, out) => (error ? reject(error) : resolve(out)));
    });
    for (const command of ['build', 'subscribers', 'send', 'worker', 'status', 'serve', 'demo']) expect(stdout).toContain(command);
  });

  it('builds an issue into .html and .txt, filled for a sample subscriber, with their sizes', async () => {
    const result = await cli(['build', 'vol-138', '--out', 'preview']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/preview\/vol-138\.html\s+\d+\.\d KB/);
    expect(result.stdout).toMatch(/preview\/vol-138\.txt\s+\d+\.\d KB/);
    const html = await readFile(path.join(dir, 'preview/vol-138.html'), 'utf8');
    const text = await readFile(path.join(dir, 'preview/vol-138.txt'), 'utf8');
    expect(html).toContain('Hi Ada Lovelace,');
    expect(text).toContain('Hi Ada Lovelace,');
    expect(html).not.toContain('{{');
  });

  it('exits non-zero with a message when the preview cannot be written', async () => {
    await writeFile(path.join(dir, 'not-a-folder'), 'x');
    const result = await cli(['build', 'vol-138', '--out', 'not-a-folder']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: Cannot write the preview to not-a-folder/);
  });

  it('exits non-zero naming an unknown issue', async () => {
    const result = await cli(['build', 'vol-999']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/Unknown issue "vol-999"/);
    expect(result.stderr).not.toMatch(/at .*\.ts:\d+/); // a message, not a stack trace
  });

  it('exits non-zero naming a missing or bad setting', async () => {
    const missing = await cli(['build', 'vol-138'], { APP_SECRET: undefined });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('APP_SECRET is required');
    const bad = await cli(['build', 'vol-138'], { WORKER_CONCURRENCY: 'lots' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('WORKER_CONCURRENCY must be a whole number');
  });

  it('imports, adds, counts and shows subscribers', async () => {
    await writeFile(path.join(dir, 'subs.csv'), 'email,name,team\nada@example.org,Ada,engines\nbroken,x,y\nbob@example.org,Bob,\n');
    const imported = await cli(['subscribers', 'import', 'subs.csv']);
    expect(imported.code).toBe(0);
    expect(imported.stdout).toContain('list weekly: 2 imported, 0 updated, 1 invalid');
    expect(imported.stdout).toContain('line 3: "broken" is not a valid email address');

    expect((await cli(['subscribers', 'add', ' Carol@Example.ORG', '--name', 'Carol'])).stdout).toContain('added Carol@example.org');
    expect((await cli(['subscribers', 'add', 'not-an-email'])).code).toBe(1);
    expect((await cli(['subscribers', 'count'])).stdout).toContain('list weekly: 3 subscribers (3 active');
    const unknownList = await cli(['subscribers', 'count', '--list', 'nosuchlist']);
    expect(unknownList.code).toBe(1);
    expect(unknownList.stderr).toContain('There is no list "nosuchlist"');

    expect((await cli(['subscribers', 'suppress', 'bob@example.org', '--reason', 'complained'])).stdout).toContain('bob@example.org is suppressed (complained)');
    expect((await cli(['subscribers', 'suppress', 'bob@example.org', '--reason', 'angry'])).code).toBe(1);
    expect((await cli(['subscribers', 'suppress', 'bob@example.org'])).stdout).toContain('bob@example.org was already suppressed (complained); lift it first');
    expect((await cli(['subscribers', 'count'])).stdout).toContain('2 active, 0 unsubscribed, 0 bounced, 1 complained');
    expect((await cli(['subscribers', 'lift', 'bob@example.org'])).stdout).toContain('bob@example.org is active again (was complained)');

    const shown = await cli(['subscribers', 'show', 'ada@example.org', '--json']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ email: 'ada@example.org', name: 'Ada', status: 'active', lists: ['weekly'], attributes: { team: 'engines' } });
  });

  it('refuses a draft, sends once, refuses a repeat, reports status as JSON, and stops its worker cleanly', async () => {
    const draft = await cli(['send', 'draft-sample']);
    expect(draft.code).toBe(1);
    expect(draft.stderr).toContain('is a draft');

    const sent = await cli(['send', 'vol-138']);
    expect(sent.code).toBe(0);
    const sendId = sent.stdout.trim().split('\n').at(-1);
    expect(sendId).toBe('vol-138.weekly.1');

    const again = await cli(['send', 'vol-138']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('--resend');

    const worker = spawn(process.execPath, [CLI, 'worker'], { cwd: dir, env });
    let output = '';
    worker.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => worker.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    let status: Record<string, unknown> = {};
    while (Date.now() < deadline) {
      const result = await cli(['status', 'vol-138', '--json']);
      status = JSON.parse(result.stdout) as Record<string, unknown>;
      if (status.state === 'sent') break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(status).toMatchObject({ sendId: 'vol-138.weekly.1', state: 'sent', total: 3, accepted: 3, failed: 0, pending: 0 });
    expect(received).toBe(3);
    const retry = await cli(['send', 'vol-138', '--retry-failed']);
    expect(retry.stdout).toContain('send vol-138.weekly.1: 0 recipients requeued');

    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).toContain('stopped cleanly');
  });
});
