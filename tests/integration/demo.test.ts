import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { withoutNodeWarnings } from '../support/cli.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nl-demo-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('npm run demo', () => {
  it('sends vol-138 to every sample subscriber and leaves each message in the outbox it is given, never in the folder it was started from', async () => {
    const outbox = path.join(dir, 'mail');
    const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [path.join(PROJECT_ROOT, 'bin/newsletter.js'), 'demo', '--outbox', outbox],
        // Only PATH and the test run's private Redis: the demo's embedded defaults do the rest.
        { cwd: dir, env: { PATH: process.env.PATH ?? '', REDIS_URL: inject('redisUrl') } },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
      );
    });
    // Nothing of ours on stderr (Node's own warnings, if any, are not the demo's to answer for).
    expect(withoutNodeWarnings(result.stderr).trim()).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/state\s+sent\n\s+total\s+50\n\s+accepted\s+50/);

    // Started from `dir`: nothing named outbox appears there (it would be deleted on the next run).
    expect(await readdir(dir)).toEqual(['mail']);
    const files = (await readdir(outbox)).filter((file) => file.endsWith('.eml'));
    expect(files).toHaveLength(50);
    const recipients = new Set<string>();
    for (const file of files) {
      const mail = await simpleParser(await readFile(path.join(outbox, file)));
      const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
      recipients.add(to!.value[0]!.address!);
      expect(mail.subject).toContain('Vol.138');
    }
    expect(recipients.size).toBe(50);
    expect(await readFile(path.join(outbox, 'preview/vol-138.html'), 'utf8')).toContain('Hi Ada Lovelace,');
  });
});
