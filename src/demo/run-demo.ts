import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { environmentSets, loadConfig, PROJECT_ROOT, type Config } from '../../config/index.ts';
import { startSendWorker } from '../workers/send.ts';
import { startPrivateRedis, type PrivateRedis } from '../dev/private-redis.ts';
import { startSmtpSink, type SmtpSink } from '../dev/smtp-sink.ts';
import { connectRedis, RedisUnavailableError } from '../store/connection.ts';
import { buildIssuePreview } from '../app/preview.ts';
import { openServices } from '../services.ts';
import { startSend } from '../app/start-send.ts';
import { importSubscribersCsv } from '../app/import-csv.ts';
import { isFinalSendState } from '../core/send-status.ts';
import { DEFAULT_LIST } from '../core/subscriber.ts';
import { sendStatusReport } from '../app/send-report.ts';
import { describeSendStatus } from '../cli/format.ts';

const DEMO_ISSUE = 'vol-138';
/** The demo's own key prefix; it only ever deletes keys under it. */
const DEMO_PREFIX = 'nldemo';
const SAMPLE_CSV = path.join(path.dirname(fileURLToPath(import.meta.url)), 'sample-subscribers.csv');
/** How long the demo waits without progress before it gives up (retries back off from 1 s). */
const DEMO_STALL_MS = 60_000;
/** Where the capture server writes unless told otherwise: the project's own outbox/, wherever the demo is started from. */
const DEFAULT_OUTBOX_DIR = path.join(PROJECT_ROOT, 'outbox');

/** Settings the demo embeds, so it runs on a fresh machine with no .env; the environment wins. */
const DEMO_DEFAULTS: Readonly<Record<string, string>> = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  MAIL_FROM: 'IR Research Weekly <weekly@example.org>',
  PUBLIC_URL: 'https://newsletter.example.org',
  APP_SECRET: 'demo-only-secret-do-not-use-in-production-0000',
  SEND_BACKOFF_MS: '1000',
  // The demo prints its own summary; the worker's per-message log lines would bury it.
  LOG_LEVEL: 'warn',
  // Replaced by the capture server's address before use, unless SMTP_URL is set.
  SMTP_URL: 'smtp://127.0.0.1:25',
};

/**
 * The main job, end to end on one machine: Redis (the configured one, else a private one), a
 * capture SMTP server writing ./outbox/*.eml (unless SMTP_URL is set), ~50 sample subscribers,
 * vol-138 compiled and sent, and a worker run until the send is done.
 */
export async function runDemo(options: { readonly io: { out(line: string): void; err(line: string): void }; readonly outboxDir?: string }): Promise<void> {
  const { io } = options;
  const OUTBOX_DIR = path.resolve(options.outboxDir ?? DEFAULT_OUTBOX_DIR);
  const useRealSmtp = await environmentSets('SMTP_URL');
  const loaded = await loadConfig(DEMO_DEFAULTS);
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const redisUrl = await reachableRedis(loaded.redis.url, cleanups, io);
    let sink: SmtpSink | undefined;
    if (!useRealSmtp) {
      await rm(OUTBOX_DIR, { recursive: true, force: true });
      sink = await startSmtpSink({ outboxDir: OUTBOX_DIR });
      cleanups.push(() => sink!.stop());
      io.out(`SMTP: capture server at ${sink.url}, writing each accepted message to ${path.relative(process.cwd(), OUTBOX_DIR) || '.'}/`);
    } else {
      io.out(`SMTP: ${loaded.smtp.url} (from SMTP_URL)`);
    }
    const config: Config = {
      ...loaded,
      redis: { url: redisUrl, prefix: DEMO_PREFIX },
      smtp: { ...loaded.smtp, url: sink?.url ?? loaded.smtp.url },
    };

    const removed = await deleteKeysWithPrefix(config, `${DEMO_PREFIX}:`);
    if (removed > 0) io.out(`Redis: cleared ${removed} keys of the previous demo run (prefix ${DEMO_PREFIX}:)`);
    // The demo's data is throwaway: what start-up finds wrong with the Redis it was pointed at is
    // a note here, not a warning (the worker below, in this process, stays quiet about it too).
    const services = await openServices(config, { redisWarnings: 'caller' });
    cleanups.push(() => services.close());
    for (const warning of services.redisWarnings) io.out(`Redis: note (fine for this demo, not for real subscribers): ${warning.message}`);

    const report = await importSubscribersCsv(services.subscribers, SAMPLE_CSV, DEFAULT_LIST);
    io.out(
      `subscribers: ${report.imported} imported, ${report.updated} updated, ${report.invalidCount} invalid from ${path.relative(PROJECT_ROOT, SAMPLE_CSV)}`,
    );

    const started = Date.now();
    const send = await startSend(services, { issueId: DEMO_ISSUE, list: DEFAULT_LIST, resend: false });
    for (const warning of send.warnings) io.err(`warning: ${warning}`);
    io.out(`send ${send.sendId} queued; starting a worker…`);

    const worker = await startSendWorker(config);
    cleanups.push(async () => void (await worker.close()));
    let lastPending = -1;
    let lastProgressAt = Date.now();
    for (;;) {
      const record = await services.sends.get(send.sendId);
      if (!record || isFinalSendState(record.state)) break;
      if (record.pending !== lastPending) [lastPending, lastProgressAt] = [record.pending, Date.now()];
      if (Date.now() - lastProgressAt > DEMO_STALL_MS) {
        throw new Error(`The send made no progress for ${DEMO_STALL_MS / 1000} s (${record.pending} pending); see: newsletter status ${DEMO_ISSUE}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const status = await sendStatusReport(services, DEMO_ISSUE, DEFAULT_LIST);
    io.out(`\n${describeSendStatus(status)}\n  took      ${Date.now() - started} ms`);
    if (sink) {
      const files = (await readdir(OUTBOX_DIR)).filter((file) => file.endsWith('.eml'));
      io.out(
        `\n${files.length} messages in ${OUTBOX_DIR}/ (open one in a mail client, or: less ${path.join(path.relative(process.cwd(), OUTBOX_DIR) || '.', files[0] ?? '')})`,
      );
    }
    const preview = await buildIssuePreview(config, DEMO_ISSUE, DEFAULT_LIST);
    const previewDir = path.join(OUTBOX_DIR, 'preview');
    await mkdir(previewDir, { recursive: true });
    await writeFile(path.join(previewDir, `${DEMO_ISSUE}.html`), preview.html);
    await writeFile(path.join(previewDir, `${DEMO_ISSUE}.txt`), preview.text);
    io.out(`The issue as a subscriber sees it: open ${path.join(previewDir, `${DEMO_ISSUE}.html`)} in a browser (and ${DEMO_ISSUE}.txt beside it)`);
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
  }
}

async function reachableRedis(url: string, cleanups: (() => Promise<void>)[], io: { out(line: string): void }): Promise<string> {
  try {
    const probe = await connectRedis(url);
    probe.disconnect();
    io.out(`Redis: ${url} (keys under ${DEMO_PREFIX}:)`);
    return url;
  } catch (error) {
    if (!(error instanceof RedisUnavailableError)) throw error;
    // With an AOF in its temp folder: a Redis fit for keeping data, as start-up checks.
    const redis: PrivateRedis = await startPrivateRedis({ appendOnly: true });
    cleanups.push(() => redis.stop());
    io.out(`Redis: nothing answers at ${url}; started a private redis-server at ${redis.url}`);
    return redis.url;
  }
}

async function deleteKeysWithPrefix(config: Config, prefix: string): Promise<number> {
  const redis = await connectRedis(config.redis.url);
  let removed = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) removed += await redis.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return removed;
}
