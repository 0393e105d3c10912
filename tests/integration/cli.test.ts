import { execFile } from 'node:child_process';
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { freePort } from '../../src/dev/private-redis.ts';
import { cliEnv, execCli, spawnCli, STACK_FRAME, withoutNodeWarnings } from '../support/cli.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { testConfig } from '../support/test-config.ts';
import { sorted } from '../support/sorted.ts';

// The real `newsletter` process, end to end: argv, the environment, signals and exit codes. Each
// command's behaviour is tested in-process in cli-in-process.test.ts.
describe('the newsletter CLI, as a process', () => {
  it('runs as `npx newsletter` from the project, with no build step, and lists its commands', async () => {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('npx', ['--no-install', 'newsletter', '--help'], { cwd: PROJECT_ROOT, env: { ...process.env }, timeout: 30_000 }, (error, out) =>
        error ? reject(error) : resolve(out),
      );
    });
    for (const command of ['build', 'subscribers', 'send', 'worker', 'status', 'serve', 'demo']) expect(stdout).toContain(command);
  });

  it('exits 1 with a one-line message naming a bad setting from the environment, and no stack trace', async () => {
    const result = await execCli(['build', 'vol-138'], { env: cliEnv(testConfig('cli-e2e-bad-setting'), { APP_SECRET: 'too-short' }), timeoutMs: 30_000 });
    expect(result.timedOut).toBe(false);
    expect(result.code).toBe(1);
    expect(result.out).toBe('');
    const stderr = withoutNodeWarnings(result.err).trim();
    expect(stderr.split('\n')).toEqual(['error: Invalid configuration:', '  - APP_SECRET must be at least 32 characters (try: openssl rand -hex 32)']);
    expect(result.err).not.toMatch(STACK_FRAME);
  });

  it('sends with `send`, delivers with a `worker` process, reports with `status --json`, and the worker stops cleanly on SIGTERM', async () => {
    const harness = await createHarness('cli-e2e-send');
    const { services } = harness;
    await seedSubscribers(services, 3);
    const env = cliEnv(harness.config);

    const sent = await execCli(['send', 'vol-138'], { env, timeoutMs: 30_000 });
    expect(sent.code).toBe(0);
    const sendId = sent.out.trim().split('\n').at(-1);
    expect(sendId).toBe('vol-138.weekly.1');

    const worker = spawnCli(['worker'], { env });
    try {
      await worker.waitForStdout(/^worker \d+ running/m, 20_000);
      await harness.waitForSend(sendId!, 30_000);

      const status = await execCli(['status', 'vol-138', '--json'], { env, timeoutMs: 30_000 });
      expect(status.code).toBe(0);
      expect(JSON.parse(status.out)).toMatchObject({ sendId, state: 'sent', total: 3, accepted: 3, failed: 0, pending: 0, failures: [] });

      const messages = await Promise.all(harness.received.map((message) => simpleParser(message.raw)));
      expect(sorted(messages.map((message) => (Array.isArray(message.to) ? undefined : message.to?.value[0]?.address)))).toEqual([
        'reader1@example.org',
        'reader2@example.org',
        'reader3@example.org',
      ]);
      for (const message of messages) {
        expect(message.subject).toMatch(/^IR Research Weekly Vol\.138: /);
        expect(message.headers.get('x-newsletter-send')).toBe(sendId);
      }

      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(0);
      expect(worker.stdout()).toContain('SIGTERM: finishing the jobs in flight');
      expect(worker.stdout()).toContain('stopped cleanly');
    } finally {
      await worker.kill();
    }
  });

  it('serves the public pages, the console behind a login and /metrics with `serve` on HTTP_PORT, and exits 0 on SIGTERM', async () => {
    const harness = await createHarness('cli-e2e-serve');
    await seedSubscribers(harness.services, 1);
    await harness.send('vol-138');
    const port = await freePort();
    const server = spawnCli(['serve'], { env: cliEnv(harness.config, { HTTP_PORT: String(port) }) });
    try {
      await server.waitForStdout(
        /^serving https:\/\/newsletter\.example\.org on http:\/\/127\.0\.0\.1:\d+: console .*\/admin, API .*\/api, metrics .*\/metrics$/m,
        20_000,
      );
      expect(server.stdout()).toContain(`on http://127.0.0.1:${port}`);
      const base = `http://127.0.0.1:${port}`;

      // The console asks for a login; the API for a token; /metrics is open on this loopback-only server.
      const adminPage = await fetch(`${base}/admin`, { redirect: 'manual' });
      expect(adminPage.status).toBe(303);
      expect(adminPage.headers.get('location')).toBe('/admin/login?next=%2Fadmin');
      expect((await fetch(`${base}/api/sends`)).status).toBe(401);
      const metrics = await fetch(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/^newsletter_sends\{state="queued"\} 1$/m);

      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ ok: true });

      const unsubscribe = await fetch(`${base}/unsubscribe`);
      expect(unsubscribe.status).toBe(200);
      expect(unsubscribe.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await unsubscribe.text()).toContain('Every email from IR Research Weekly ends with its own unsubscribe link');

      const issues = await fetch(`${base}/issues`);
      expect(issues.status).toBe(200);
      const index = await issues.text();
      expect(index).toContain('href="https://newsletter.example.org/issues/vol-138"');
      expect(index).toContain('IR Research Weekly Vol.138');

      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
      expect(withoutNodeWarnings(server.stderr())).not.toMatch(STACK_FRAME);
    } finally {
      await server.kill();
    }
  });
});
