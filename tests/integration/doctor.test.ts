import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ConfigError, PROJECT_ROOT, type Config } from '../../config/index.ts';
import { runDoctor, doctorSettingsOf, type DoctorCheck, type DoctorReport } from '../../src/app/doctor.ts';
import { startupRedisProblems } from '../../src/core/redis-requirements.ts';
import { freePort } from '../../src/dev/private-redis.ts';
import { startSmtpSink } from '../../src/dev/smtp-sink.ts';
import { openServices } from '../../src/services.ts';
import { readRedisSettings } from '../../src/store/redis-settings.ts';
import { cliEnv, execCli, runCliInProcess, spawnCli, STACK_FRAME, withoutNodeWarnings } from '../support/cli.ts';
import { startOwnRedis } from '../support/own-redis.ts';
import { testConfig } from '../support/test-config.ts';

const USER = 'newsletter';
const PASS = 'correct-horse-battery';

/** A folder of this test's own, removed when it finishes. */
async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-doctor-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A real SMTP server requiring AUTH with USER and PASS, stopped when the test finishes. */
async function authSink() {
  const attempts: { user: string; accepted: boolean }[] = [];
  const sink = await startSmtpSink({ auth: { user: USER, pass: PASS }, onAuth: (user, accepted) => attempts.push({ user, accepted }) });
  onTestFinished(() => sink.stop());
  return { sink, attempts, url: (pass = PASS) => `smtp://${USER}:${pass}@127.0.0.1:${sink.port}` };
}

/** A config whose ISSUES_DIR is an empty folder: for tests that look at Redis and SMTP, not at the templates. */
async function configFor(label: string, overrides: Record<string, string>): Promise<Config> {
  return testConfig(label, { ISSUES_DIR: await scratchDir(), ...overrides });
}

async function doctor(config: Config, ...flags: string[]) {
  const result = await runCliInProcess(['doctor', '--json', ...flags], config);
  return { ...result, report: JSON.parse(result.out) as DoctorReport };
}

function check(report: DoctorReport, name: string): DoctorCheck {
  const found = report.checks.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no check "${name}" in ${report.checks.map((c) => c.name).join(', ')}`);
  return found;
}

describe('newsletter doctor against the run’s private Redis and a real SMTP server', () => {
  it('warns that Redis has no persistence, and reports each SMTP step (connect, EHLO, STARTTLS, AUTH) with its timing', async () => {
    const { attempts, url } = await authSink();
    const { code, err, report } = await doctor(await configFor('doctor-private', { SMTP_URL: url() }));
    expect(code).toBe(0);
    expect(err).toBe('');
    expect(report.ok).toBe(true);

    // The tests' Redis runs with --save '' --appendonly no, and noeviction.
    expect(check(report, 'redis persistence')).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(/^no persistence \(appendonly no, no RDB save points\)/),
    });
    expect(check(report, 'redis persistence').fix).toContain('appendonly yes');
    expect(check(report, 'redis eviction policy')).toMatchObject({ status: 'ok', detail: 'maxmemory-policy noeviction' });
    expect(check(report, 'redis version')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^Redis \d+\.\d+/) });
    expect(check(report, 'redis memory').detail).toContain('maxmemory 0 means no limit');

    expect(check(report, 'smtp connect')).toMatchObject({
      status: 'ok',
      detail: expect.stringMatching(/^127\.0\.0\.1:\d+: connected in \d+ ms, greeting in \d+ ms: 220 /),
    });
    expect(check(report, 'smtp connect').durationMs).toBeGreaterThanOrEqual(0);
    const ehlo = check(report, 'smtp ehlo');
    expect(ehlo).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^answered in \d+ ms; extensions: .*\bPIPELINING\b.*\bAUTH PLAIN LOGIN\b/) });
    expect(check(report, 'smtp starttls')).toMatchObject({ status: 'ok', detail: expect.stringContaining('not offered; fine on loopback') });
    expect(check(report, 'smtp auth')).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^user "newsletter" accepted \(PLAIN\) in \d+ ms$/) });
    // The server saw the login: the check did log in, it didn't only read the EHLO.
    expect(attempts).toEqual([{ user: USER, accepted: true }]);
  });

  it('prints one line per check, ok / warn / FAIL, with how to fix what is wrong, and compiles the real issues', async () => {
    const { url } = await authSink();
    const result = await runCliInProcess(['doctor'], testConfig('doctor-human', { SMTP_URL: url() }));
    expect(result.code).toBe(0);
    const lines = result.out.split('\n');
    expect(lines.every((line) => /^(ok  |warn|FAIL|skip) {2}\S/.test(line))).toBe(true);
    expect(lines).toContainEqual(expect.stringMatching(/^warn {2}redis persistence +no persistence .* — fix: set appendonly yes/));
    expect(lines).toContainEqual(expect.stringMatching(/^ok {4}smtp auth +user "newsletter" accepted/));
    expect(lines).toContainEqual(expect.stringMatching(/^ok {4}template vol-138 +compiles: HTML \d+\.\d KB/));
    expect(lines).toContainEqual(expect.stringMatching(/^ok {4}template draft-sample +compiles \(draft\)/));
  });

  it('warns about an eviction policy other than noeviction, naming the setting', async () => {
    const redis = await startOwnRedis({ appendOnly: true, maxmemoryPolicy: 'allkeys-lru' });
    const { report } = await doctor(await configFor('doctor-evicting', { REDIS_URL: redis.url, SMTP_URL: (await authSink()).url() }));
    expect(check(report, 'redis eviction policy')).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('maxmemory-policy is allkeys-lru'),
      fix: expect.stringContaining('CONFIG SET maxmemory-policy noeviction'),
    });
  });
});

describe('newsletter doctor against a Redis fit to keep data', () => {
  it('passes the Redis checks with AOF and noeviction', async () => {
    const redis = await startOwnRedis({ appendOnly: true });
    const { code, report } = await doctor(await configFor('doctor-aof', { REDIS_URL: redis.url, SMTP_URL: (await authSink()).url(), NODE_ENV: 'production' }));
    expect(code).toBe(0);
    for (const name of ['config', 'redis connection', 'redis version', 'redis eviction policy', 'redis persistence', 'redis memory']) {
      expect([name, check(report, name).status]).toEqual([name, 'ok']);
    }
    expect(check(report, 'redis persistence').detail).toBe('AOF on (appendfsync everysec)');
    expect(check(report, 'config').detail).toBe('parses (NODE_ENV=production)');
  });

  it('warns when used memory is above 80% of maxmemory', async () => {
    const redis = await startOwnRedis({ appendOnly: true });
    // This Redis is the test's own: its maxmemory is set just above what it already uses.
    const admin = new Redis(redis.url);
    onTestFinished(() => admin.disconnect());
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))![1]);
    await admin.config('SET', 'maxmemory', String(Math.ceil(used / 0.9)));
    const { report } = await doctor(await configFor('doctor-memory', { REDIS_URL: redis.url, SMTP_URL: (await authSink()).url() }));
    expect(check(report, 'redis memory')).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(/used of maxmemory .* \((8\d|9\d)%\): at maxmemory Redis refuses writes/),
    });
  });

  it('reads the settings from INFO where CONFIG is disabled, as on managed Redis', async () => {
    const redis = await startOwnRedis({ appendOnly: true, disabledCommands: ['CONFIG'] });
    const { report } = await doctor(await configFor('doctor-no-config', { REDIS_URL: redis.url, SMTP_URL: (await authSink()).url() }));
    expect(check(report, 'redis eviction policy')).toMatchObject({ status: 'ok', detail: 'maxmemory-policy noeviction' });
    expect(check(report, 'redis persistence')).toMatchObject({ status: 'ok', detail: 'AOF on' });
  });
});

describe('newsletter doctor failures', () => {
  it('fails the SMTP connection on a closed port, skips the later steps, and exits 1', async () => {
    const port = await freePort();
    const started = Date.now();
    const { code, err, report } = await doctor(await configFor('doctor-closed', { SMTP_URL: `smtp://127.0.0.1:${port}` }));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(code).toBe(1);
    expect(err).toBe('error: doctor: 1 check failed: smtp connect');
    expect(report.ok).toBe(false);
    expect(check(report, 'smtp connect')).toMatchObject({
      status: 'fail',
      detail: `127.0.0.1:${port}: connection refused (ECONNREFUSED): nothing listens there`,
      fix: expect.stringContaining('host and port of SMTP_URL'),
    });
    for (const name of ['smtp ehlo', 'smtp starttls', 'smtp auth'])
      expect(check(report, name)).toMatchObject({ status: 'skip', detail: 'not checked: no SMTP connection' });
    // The Redis checks ran all the same.
    expect(check(report, 'redis connection').status).toBe('ok');
  });

  it('times out on an SMTP server that accepts the connection and never greets, instead of hanging', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    onTestFinished(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const config = await configFor('doctor-silent', { SMTP_URL: `smtp://127.0.0.1:${port}` });
    const started = Date.now();
    const report = await runDoctor(doctorSettingsOf(config), { configProblems: [], smtpTimeoutMs: 300 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(sockets.size).toBe(1);
    expect(check(report, 'smtp connect')).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/^127\.0\.0\.1:\d+: connected after \d+ ms, but no greeting within 300 ms \(ETIMEDOUT\)$/),
    });
    for (const name of ['smtp ehlo', 'smtp starttls', 'smtp auth']) expect(check(report, name).status).toBe('skip');
    expect(report.ok).toBe(false);
  });

  it('fails AUTH with wrong credentials, with the server’s reply', async () => {
    const { attempts, url } = await authSink();
    const { code, err, report } = await doctor(await configFor('doctor-bad-auth', { SMTP_URL: url('wrong-password') }));
    expect(code).toBe(1);
    expect(err).toBe('error: doctor: 1 check failed: smtp auth');
    expect(check(report, 'smtp connect').status).toBe('ok');
    expect(check(report, 'smtp ehlo').status).toBe('ok');
    expect(check(report, 'smtp auth')).toMatchObject({
      status: 'fail',
      detail: 'user "newsletter" refused: 535 5.7.8 Authentication credentials invalid (EAUTH)',
      fix: expect.stringContaining('user and password in SMTP_URL'),
    });
    expect(attempts).toEqual([{ user: USER, accepted: false }]);
  });

  it('fails the template check of a broken issue file, naming the issue and the field, and compiles the others', async () => {
    const issuesDir = await scratchDir();
    await copyFile(path.join(PROJECT_ROOT, 'emails/issues/vol-138.yaml'), path.join(issuesDir, 'vol-138.yaml'));
    await writeFile(path.join(issuesDir, 'vol-139.yaml'), 'id: vol-139\nvolume: 139\ntitle: Half-written\n');
    const { code, err, report } = await doctor(testConfig('doctor-templates', { ISSUES_DIR: issuesDir, SMTP_URL: (await authSink()).url() }));
    expect(code).toBe(1);
    expect(err).toBe('error: doctor: 1 check failed: template vol-139');
    expect(check(report, 'template vol-138').status).toBe('ok');
    const broken = check(report, 'template vol-139');
    expect(broken).toMatchObject({ status: 'fail', fix: `fix the fields named in ${path.join(issuesDir, 'vol-139.yaml')}` });
    expect(broken.detail).toMatch(/^Invalid issue file .*vol-139\.yaml: .*status/);
    expect(broken.detail).not.toContain('\n');
  });

  it('reports every problem of a config that does not parse, and still runs the checks it can (a real process)', async () => {
    const { url } = await authSink();
    const env = cliEnv(testConfig('doctor-bad-config', { SMTP_URL: url(), ISSUES_DIR: await scratchDir() }), {
      APP_SECRET: 'too-short',
      WORKER_CONCURRENCY: 'many',
    });
    const result = await execCli(['doctor'], { env, timeoutMs: 30_000 });
    expect(result.timedOut).toBe(false);
    expect(result.code).toBe(1);
    const lines = result.out.split('\n');
    expect(lines[0]).toMatch(
      /^FAIL {2}config +Invalid configuration: .*APP_SECRET must be at least 32 characters.*; WORKER_CONCURRENCY must be a whole number/,
    );
    expect(lines).toContainEqual(expect.stringMatching(/^ok {4}redis connection /));
    expect(lines).toContainEqual(expect.stringMatching(/^ok {4}smtp auth +user "newsletter" accepted/));
    expect(withoutNodeWarnings(result.err).trim()).toBe('error: doctor: 1 check failed: config');
    expect(result.err).not.toMatch(STACK_FRAME);
  });

  it('in a context without raw settings (a test’s), skips what needs them and still compiles the templates (ISSUES_DIR has a default)', async () => {
    const result = await runCliInProcess(['doctor'], async () => {
      throw new ConfigError(['REDIS_URL is required']);
    });
    expect(result.code).toBe(1);
    expect(result.out.split('\n')).toEqual([
      'FAIL  config                 Invalid configuration: REDIS_URL is required — fix: set the keys named, in the environment or .env (see .env.example)',
      'skip  redis                  not checked: REDIS_URL is not set or not valid (see config)',
      'skip  smtp                   not checked: SMTP_URL is not set or not valid (see config)',
      expect.stringMatching(/^ok {4}template draft-sample {2}compiles \(draft\)/),
      expect.stringMatching(/^ok {4}template vol-138 {7}compiles: /),
    ]);
  });
});

describe('the start-up check of Redis', () => {
  /** Keys under a prefix: a refused start must not have written any. */
  async function keysUnder(url: string, prefix: string): Promise<string[]> {
    const redis = new Redis(url);
    try {
      return await redis.keys(`${prefix}:*`);
    } finally {
      redis.disconnect();
    }
  }

  it('refuses to start with NODE_ENV=production on a Redis without persistence, unless ALLOW_NO_PERSISTENCE=1 (in-process)', async () => {
    const refused = testConfig('startup-production', { NODE_ENV: 'production' });
    const result = await runCliInProcess(['subscribers', 'count'], refused);
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    expect(result.err.split('\n')).toEqual([
      expect.stringMatching(/^error: Refusing to start with NODE_ENV=production: Redis has no persistence .*set ALLOW_NO_PERSISTENCE=1 to start anyway\.$/),
    ]);
    expect(await keysUnder(refused.redis.url, refused.redis.prefix)).toEqual([]);

    // Allowed, it starts and writes (a test context prints no warning lines: only the shell's does).
    const allowed = await runCliInProcess(
      ['subscribers', 'add', 'reader@example.org'],
      testConfig('startup-allowed', { NODE_ENV: 'production', ALLOW_NO_PERSISTENCE: '1' }),
    );
    expect(allowed).toMatchObject({ code: 0, err: '' });
    expect(allowed.out).toContain('reader@example.org');
  });

  it('stops a real `newsletter` process with one line, and with ALLOW_NO_PERSISTENCE=1 warns on standard error and runs', async () => {
    const config = testConfig('startup-process');
    const refused = await execCli(['subscribers', 'count'], { env: cliEnv(config, { NODE_ENV: 'production' }), timeoutMs: 30_000 });
    expect(refused.code).toBe(1);
    expect(withoutNodeWarnings(refused.err).trim()).toMatch(/^error: Refusing to start with NODE_ENV=production: Redis has no persistence [^\n]+$/);
    expect(refused.err).not.toMatch(STACK_FRAME);

    const allowed = await execCli(['subscribers', 'add', 'reader@example.org'], {
      env: cliEnv(config, { NODE_ENV: 'production', ALLOW_NO_PERSISTENCE: '1' }),
      timeoutMs: 30_000,
    });
    expect(allowed.code).toBe(0);
    expect(allowed.out).toContain('reader@example.org');
    expect(withoutNodeWarnings(allowed.err).trim()).toMatch(
      /^warning: Redis has no persistence \(appendonly no, no RDB save points\): .*\(started anyway: ALLOW_NO_PERSISTENCE=1\)\. Fix: set appendonly yes [^\n]+$/,
    );
  });

  it('logs the warning once, structured with the setting name, from a worker process', async () => {
    const worker = spawnCli(['worker'], { env: cliEnv(testConfig('startup-worker-log'), { LOG_LEVEL: 'warn' }) });
    await worker.waitForStdout(/^worker \d+ running/m, 20_000);
    const entries = worker
      .stderr()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { level: number; setting?: string; problem?: string; msg: string });
    const redisLines = entries.filter((entry) => entry.setting !== undefined);
    expect(redisLines).toEqual([
      expect.objectContaining({ level: 40, setting: 'appendonly', problem: 'no-persistence', msg: expect.stringMatching(/^Redis has no persistence/) }),
    ]);
  });

  it('falls back to INFO where CONFIG is disabled, and warns that what it cannot read could not be checked, never crashing', async () => {
    // CONFIG disabled, no AOF, no snapshot yet: INFO can't tell whether RDB is on.
    const managed = await startOwnRedis({ appendOnly: false, disabledCommands: ['CONFIG'] });
    const services = await openServices(testConfig('startup-managed', { REDIS_URL: managed.url, NODE_ENV: 'production' }));
    onTestFinished(() => services.close());
    expect(services.redisWarnings).toEqual([
      expect.objectContaining({
        code: 'persistence-unchecked',
        setting: 'appendonly',
        fatal: false,
        message: expect.stringMatching(/^Redis: could not check persistence: AOF is off/),
      }),
    ]);

    // Neither CONFIG nor INFO: nothing can be read, and start-up only warns. (Without INFO, ioredis
    // needs its ready check off, and BullMQ can't run at all: the reading and the verdict are tested.)
    const locked = await startOwnRedis({ appendOnly: true, disabledCommands: ['CONFIG', 'INFO'] });
    const redis = new Redis(locked.url, { enableReadyCheck: false });
    onTestFinished(() => redis.disconnect());
    const settings = await readRedisSettings(redis);
    expect(settings).toMatchObject({
      maxmemoryPolicy: undefined,
      aofEnabled: undefined,
      configUnavailable: expect.stringMatching(/unknown command/),
      infoUnavailable: expect.stringMatching(/unknown command/),
    });
    const problems = startupRedisProblems(settings, { production: true, allowNoPersistence: false });
    expect(problems.map(({ code, fatal }) => ({ code, fatal }))).toEqual([
      { code: 'eviction-policy-unchecked', fatal: false },
      { code: 'persistence-unchecked', fatal: false },
    ]);
  });

  it('lets the demo start its own Redis with AOF on a fresh machine, so it says nothing about persistence', async () => {
    const dir = await scratchDir();
    const port = await freePort();
    const result = await execCli(['demo', '--outbox', path.join(dir, 'mail')], {
      // Nothing answers at REDIS_URL: the demo starts a private redis-server, as on a fresh machine.
      env: { PATH: process.env.PATH ?? '', REDIS_URL: `redis://127.0.0.1:${port}` },
      cwd: dir,
      timeoutMs: 90_000,
    });
    expect(result.code).toBe(0);
    expect(result.out).toContain('started a private redis-server');
    expect(result.out).not.toMatch(/persistence|Redis: note/);
    expect(withoutNodeWarnings(result.err).trim()).toBe('');
  });

  it('makes the demo’s warnings a note on standard out when it is pointed at a Redis without persistence', async () => {
    const dir = await scratchDir();
    // A Redis of this test's own: the demo clears its nldemo: keys, which the demo test uses on the run's Redis.
    const redis = await startOwnRedis({ appendOnly: false });
    const result = await execCli(['demo', '--outbox', path.join(dir, 'mail')], {
      env: { PATH: process.env.PATH ?? '', REDIS_URL: redis.url },
      cwd: dir,
      timeoutMs: 90_000,
    });
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^Redis: note \(fine for this demo, not for real subscribers\): Redis has no persistence/m);
    expect(withoutNodeWarnings(result.err).trim()).toBe('');
  });
});
