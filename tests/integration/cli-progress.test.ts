import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { CliIO } from '../../src/cli/context.ts';
import { createProgressReporter, PLAIN_LINE_EVERY_MS } from '../../src/cli/progress.ts';
import { waitFor } from '../support/faults.ts';
import { runCliInProcess, startCliInProcess } from '../support/cli.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';

/** Plain progress lines, as a command prints them when standard out is not a terminal. */
const LINES = { progress: { kind: 'lines' } } as const;

/** A plain progress line of `send --watch`. */
const WATCH_LINE =
  /^sending vol-138 to weekly: (\d+)\/(\d+) \((\d+)%\)( [\d.]+ msg\/s, eta \S+)?; (\S+)( \(.*\))?: accepted (\d+), failed (\d+), skipped (\d+)$/;

/** A folder of this test's own, removed when it finishes. */
async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-cli-progress-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A CliIO printing plain progress lines into `out`. */
function linesIO(out: string[]): CliIO {
  return { out: (line) => out.push(line), err: (line) => out.push(`err: ${line}`), progress: { kind: 'lines' } };
}

describe('the progress reporter', () => {
  it('prints a plain line at once, then at most every 2 s, with the rate and ETA over the last seconds, and always the final line', () => {
    const out: string[] = [];
    let now = 0;
    const progress = createProgressReporter(linesIO(out), { label: 'sending vol-138 to weekly', measure: 'messages', now: () => now });
    const at = (ms: number, done: number) => {
      now = ms;
      progress.update({ done, total: 5000, detail: `sending: accepted ${done}, failed 0, skipped 0` });
    };
    at(0, 0);
    at(500, 150);
    at(PLAIN_LINE_EVERY_MS - 1, 599);
    at(PLAIN_LINE_EVERY_MS, 600);
    at(3000, 900);
    at(4000, 1200);
    now = 4200;
    progress.finish();
    expect(out).toEqual([
      'sending vol-138 to weekly: 0/5000 (0%); sending: accepted 0, failed 0, skipped 0',
      // 600 in 2 s: 300 msg/s, and 4400 left take 15 s.
      'sending vol-138 to weekly: 600/5000 (12%) 300 msg/s, eta 15s; sending: accepted 600, failed 0, skipped 0',
      'sending vol-138 to weekly: 1200/5000 (24%) 300 msg/s, eta 13s; sending: accepted 1200, failed 0, skipped 0',
      'sending vol-138 to weekly: 1200/5000 (24%) 286 msg/s, eta 14s; sending: accepted 1200, failed 0, skipped 0',
    ]);
  });

  it('measures bytes in the unit of the total', () => {
    const out: string[] = [];
    let now = 0;
    const progress = createProgressReporter(linesIO(out), { label: 'importing big.csv into weekly', measure: 'bytes', now: () => now });
    progress.update({ done: 0, total: 4 * 1024 * 1024, detail: '0 rows' });
    now = 2000;
    progress.update({ done: 1024 * 1024, total: 4 * 1024 * 1024, detail: '20000 rows' });
    expect(out).toEqual([
      'importing big.csv into weekly: 0.0/4.0 MB (0%); 0 rows',
      'importing big.csv into weekly: 1.0/4.0 MB (25%) 512.0 KB/s, eta 6s; 20000 rows',
    ]);
  });

  it('draws a bar on a terminal, and leaves it at its final state on finish', () => {
    let drawn = '';
    const terminal = Object.assign(
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          drawn += chunk.toString();
          callback();
        },
      }),
      { isTTY: true, columns: 160 },
    );
    const out: string[] = [];
    const progress = createProgressReporter(
      { out: (line) => out.push(line), err: (line) => out.push(line), progress: { kind: 'bar', terminal } },
      { label: 'sending {bar} to weekly', measure: 'messages' },
    );
    progress.update({ done: 0, total: 10, detail: 'queued: accepted 0, failed 0, skipped 0' });
    progress.update({ done: 10, total: 10, detail: 'sent: accepted 10, failed 0, skipped 0' });
    progress.finish();
    progress.stop();
    // Nothing on the line output: the bar is drawn on the terminal only.
    expect(out).toEqual([]);
    // oxlint-disable-next-line no-control-regex -- the escape sequences are what is removed
    const text = drawn.replace(/\u001b(\[[\d;?]*[A-Za-z]|[78])/g, '');
    expect(text).toContain('sending {bar} to weekly [------------------------------] 0/10 (0%)  queued: accepted 0, failed 0, skipped 0');
    expect(text).toContain('sending {bar} to weekly [==============================] 10/10 (100%)  sent: accepted 10, failed 0, skipped 0');
    expect(text.endsWith('\n')).toBe(true);
  });
});

describe('send --watch', () => {
  it('prints progress lines while a worker sends, then the final counts, and exits 0', async () => {
    const harness = await createHarness('cli-progress-watch');
    await seedSubscribers(harness.services, 200);
    await harness.startWorker();

    const watched = await runCliInProcess(['send', 'vol-138', '--watch'], harness.config, LINES);

    expect(watched.code).toBe(0);
    expect(watched.err).toBe('');
    const lines = watched.out.split('\n');
    expect(lines[0]).toBe('send vol-138.weekly.1: 200 recipients queued');
    const progressLines = lines.filter((line) => line.startsWith('sending vol-138 to weekly: '));
    expect(progressLines.length).toBeGreaterThanOrEqual(1);
    for (const line of progressLines) expect(line).toMatch(WATCH_LINE);
    expect(progressLines.at(-1)).toMatch(/^sending vol-138 to weekly: 200\/200 \(100%\).*; sent: accepted 200, failed 0, skipped 0$/);
    // Then the status, as `newsletter status` prints it.
    const statusStart = lines.indexOf('send vol-138.weekly.1: issue vol-138 to list weekly');
    expect(statusStart).toBeGreaterThan(lines.indexOf(progressLines.at(-1)!));
    expect(lines.slice(statusStart)).toEqual(
      expect.arrayContaining(['  state     sent', '  total     200', expect.stringMatching(/^ {2}accepted {2}200 /), '  failed    0', '  pending   0']),
    );
    expect(harness.sink.accepted()).toBe(200);
  });

  it('stops watching on Ctrl-C, leaving the send to go on, and `send --watch` again watches the same send', async () => {
    const harness = await createHarness('cli-progress-stop');
    await seedSubscribers(harness.services, 5);

    // No worker: the send stays queued, so only the stop ends the watch.
    const first = startCliInProcess(['send', 'vol-138', '--watch'], harness.config, LINES);
    await waitFor(() => first.out.some((line) => WATCH_LINE.test(line)), 10_000, 'the first progress line');
    const stopped = await first.stop();
    expect(stopped.code).toBe(0);
    expect(stopped.out.split('\n')).toEqual([
      'send vol-138.weekly.1: 5 recipients queued',
      'sending vol-138 to weekly: 0/5 (0%); queued: accepted 0, failed 0, skipped 0',
      'stopped watching; send vol-138.weekly.1 goes on. Watch it again with: newsletter send vol-138 --list weekly --watch',
    ]);
    expect(await harness.services.queue.getJobCounts('waiting')).toEqual({ waiting: 5 });

    const again = startCliInProcess(['send', 'vol-138', '--list', 'weekly', '--watch'], harness.config, LINES);
    await waitFor(() => again.out.some((line) => WATCH_LINE.test(line)), 10_000, 'the progress line of the second watch');
    expect(again.out[0]).toBe('send vol-138.weekly.1 is under way (queued); watching it');
    await harness.startWorker();
    // The worker finishes the send; the second watch sees it and ends by itself.
    await harness.waitForSend('vol-138.weekly.1');
    await waitFor(() => again.out.join('\n').includes('\n  state     sent\n'), 10_000, 'the second watch to print the final status');
    const ended = await again.stop();
    expect(ended.code).toBe(0);
    expect(ended.out).not.toContain('stopped watching');
    // Still one send: watching again started nothing.
    expect(await harness.services.sends.latestId('vol-138', 'weekly')).toBe('vol-138.weekly.1');
  });
});

describe('subscribers import', () => {
  it('prints plain progress lines by bytes read, then the summary', async () => {
    const harness = await createHarness('cli-progress-import');
    const dir = await scratchDir();
    const csv = path.join(dir, 'readers.csv');
    const rows = Array.from({ length: 1200 }, (_, index) => `reader${index + 1}@example.org,Reader ${index + 1}`);
    await writeFile(csv, `email,name\n${rows.join('\n')}\n`);

    const imported = await runCliInProcess(['subscribers', 'import', csv], harness.config, LINES);

    expect(imported).toMatchObject({ code: 0, err: '' });
    const lines = imported.out.split('\n');
    expect(lines.at(-1)).toBe('list weekly: 1200 imported, 0 updated, 0 invalid');
    const progressLines = lines.slice(0, -1);
    expect(progressLines.length).toBeGreaterThanOrEqual(1);
    for (const line of progressLines)
      expect(line).toMatch(new RegExp(`^importing ${csv} into weekly: [\\d.]+/[\\d.]+ KB \\(\\d+%\\)( .+/s, eta \\S+)?; \\d+ rows$`));
    expect(progressLines.at(-1)).toMatch(/ KB \(100%\).*; 1200 rows$/);
  });

  it('prints no progress where the output is compared exactly (no progress display)', async () => {
    const harness = await createHarness('cli-progress-import-off');
    const dir = await scratchDir();
    const csv = path.join(dir, 'one.csv');
    await writeFile(csv, 'email\nada@example.org\n');
    const imported = await runCliInProcess(['subscribers', 'import', csv], harness.config);
    expect(imported).toMatchObject({ code: 0, err: '', out: 'list weekly: 1 imported, 0 updated, 0 invalid' });
  });
});
