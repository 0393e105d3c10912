/**
 * Benchmark: end-to-end send throughput of ONE `newsletter worker` process against a naive
 * per-message MJML + nodemailer loop. Everything runs on loopback: a private redis-server, an
 * in-process SMTP sink, the worker as a child process. Run with `npm run bench -- [options]`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfig, PROJECT_ROOT } from '../config/index.ts';
import { loadIssue } from '../src/content/load-issue.ts';
import { isFinalSendState } from '../src/core/send-status.ts';
import { startPrivateRedis } from '../src/dev/private-redis.ts';
import { startSmtpSink } from '../src/dev/smtp-sink.ts';
import { compileIssue } from '../src/render/compile-issue.ts';
import { openServices } from '../src/services.ts';
import { startSend } from '../src/app/start-send.ts';
import { compileContextFor } from '../src/render/compile-issue.ts';
import type { Subscriber, SubscriberInput } from '../src/core/subscriber.ts';
import { runNaiveBaseline } from './baseline.ts';
import { cpuSeconds, machineLine } from './proc.ts';
import { printReport } from './report.ts';
import { spawnWorker, type WorkerProcess } from './worker-process.ts';

const ISSUE_ID = 'vol-138';
const LIST = 'bench';
const SEED_BATCH = 1000;

const USAGE = `usage: npm run bench -- [--subscribers N] [--baseline N] [--concurrency N] [--pool-size N] [--timeout-s S] [--cpu-prof DIR]
  --subscribers N  recipients of the timed send (default 20000, or env BENCH_SUBSCRIBERS)
  --baseline N     messages of the naive baseline (default 300)
  --concurrency N  WORKER_CONCURRENCY of the worker (default: the config default)
  --pool-size N    SMTP_POOL_SIZE of the worker (default: the config default)
  --timeout-s S    give up when the send is not done after S seconds (default 600)
  --cpu-prof DIR   run the worker with node --cpu-prof, profile written to DIR
  --log-level L    LOG_LEVEL of the worker (default: the config default, info: one line per message)`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      subscribers: { type: 'string' },
      baseline: { type: 'string' },
      concurrency: { type: 'string' },
      'pool-size': { type: 'string' },
      'timeout-s': { type: 'string' },
      'cpu-prof': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const count = (name: string, raw: string | undefined, fallback: number | undefined) => {
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a whole number ≥ 1, not "${raw}"\n${USAGE}`);
    return value;
  };
  return {
    subscribers: count('--subscribers', values.subscribers ?? process.env.BENCH_SUBSCRIBERS, 20_000)!,
    baseline: count('--baseline', values.baseline, 300)!,
    concurrency: count('--concurrency', values.concurrency, undefined),
    poolSize: count('--pool-size', values['pool-size'], undefined),
    timeoutMs: count('--timeout-s', values['timeout-s'], 600)! * 1000,
    cpuProfDir: values['cpu-prof'] ? path.resolve(values['cpu-prof']) : undefined,
    logLevel: values['log-level'],
  };
}

/** Cleanup steps, run last-in first-out exactly once, each bounded so a stuck one can't hang the run. */
const cleanups: { label: string; run: () => Promise<unknown> }[] = [];
let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const { label, run } of cleanups.reverse()) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timed out after 45 s')), 45_000)));
      try {
        await Promise.race([run(), timeout]);
      } catch (error) {
        console.error(`cleanup of ${label} failed: ${(error as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    }
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const options = parseOptions();
  const n = options.subscribers;
  console.log(`newsletter pipeline benchmark: issue ${ISSUE_ID}, ${n} subscribers, naive baseline ${options.baseline} messages`);
  console.log(`machine: ${machineLine()}`);
  if (existsSync(path.join(PROJECT_ROOT, '.env'))) console.log('note: a .env exists; keys the bench does not set (e.g. WORKER_CONCURRENCY) may come from it');

  const redis = await startPrivateRedis();
  cleanups.push({ label: 'private redis', run: () => redis.stop() });

  // Counts accepted messages (the sink answers 250 right after onMessage returns).
  let onAccepted: (() => void) | undefined;
  const sink = await startSmtpSink({ bufferMessages: false, onMessage: () => onAccepted?.() });
  cleanups.push({ label: 'SMTP sink', run: () => sink.stop() });
  console.log(`private redis ${redis.url}; SMTP sink ${sink.url} (bufferMessages: false)`);

  const env: Record<string, string> = {
    REDIS_URL: redis.url,
    REDIS_PREFIX: `bench-${randomBytes(4).toString('hex')}`,
    SMTP_URL: sink.url,
    MAIL_FROM: 'IR Research Weekly <weekly@example.org>',
    PUBLIC_URL: 'https://newsletter.example.org',
    APP_SECRET: randomBytes(32).toString('hex'),
  };
  if (options.concurrency) env.WORKER_CONCURRENCY = String(options.concurrency);
  if (options.poolSize) env.SMTP_POOL_SIZE = String(options.poolSize);
  if (options.logLevel) env.LOG_LEVEL = options.logLevel;
  const config = parseConfig(env);

  const services = await openServices(config);
  cleanups.push({ label: 'bench Redis connection', run: () => services.close() });
  const redisPid = Number(/process_id:(\d+)/.exec(await services.redis.info('server'))?.[1]);

  // Seed (not timed).
  const seedStart = performance.now();
  for (let from = 1; from <= n; from += SEED_BATCH) {
    const batch: SubscriberInput[] = [];
    for (let index = from; index < Math.min(from + SEED_BATCH, n + 1); index += 1) {
      batch.push({ email: `reader${index}@bench.example.org`, name: `Reader ${index}`, list: LIST });
    }
    await services.subscribers.upsertMany(batch);
  }
  console.log(`seeded ${n} subscribers on list "${LIST}" in ${Math.round(performance.now() - seedStart)} ms (not timed)`);

  // One worker process, started and ready before the send.
  const nodeArgs = options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : [];
  const worker: WorkerProcess = await spawnWorker({ env, nodeArgs });
  cleanups.push({ label: 'worker process', run: () => worker.stop() });
  const readyRssMb = await worker.rssMb();
  console.log(`worker pid ${worker.pid} ready: "${worker.readyLine}"${options.cpuProfDir ? ` (CPU profile → ${options.cpuProfDir})` : ''}`);

  // The timed send: startSend in this process → the sink has accepted the N-th message.
  let accepted = 0;
  let lastAcceptedAt = 0;
  const allAccepted = new Promise<number>((resolve) => {
    onAccepted = () => {
      accepted += 1;
      if (accepted === n) resolve((lastAcceptedAt = performance.now()));
    };
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`the send was not done after ${options.timeoutMs / 1000} s: ${accepted} of ${n} messages accepted`)),
      options.timeoutMs,
    );
  });
  const cpuBefore = { worker: cpuSeconds(worker.pid), redis: cpuSeconds(redisPid), bench: process.cpuUsage() };

  console.log(`\nsending ${ISSUE_ID} to ${n} subscribers…`);
  const t0 = performance.now();
  const started = await Promise.race([startSend(services, { issueId: ISSUE_ID, list: LIST, resend: false }), worker.died, timeout]);
  const tFanOut = performance.now();
  const acceptedAtFanOutEnd = accepted;
  const progress = setInterval(() => console.log(`  … ${accepted} / ${n} accepted after ${((performance.now() - t0) / 1000).toFixed(1)} s`), 10_000);
  try {
    await Promise.race([allAccepted, worker.died, timeout]);
  } finally {
    clearInterval(progress);
    clearTimeout(timer);
  }
  const tEnd = lastAcceptedAt;
  const cpuAfter = { worker: cpuSeconds(worker.pid), redis: cpuSeconds(redisPid), bench: process.cpuUsage(cpuBefore.bench) };
  for (const warning of started.warnings) console.log(`  warning from compile: ${warning}`);

  // The send's own record must agree: every recipient accepted, none failed.
  let record = await services.sends.get(started.sendId);
  for (const deadline = Date.now() + 30_000; record && !isFinalSendState(record.state) && Date.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    record = await services.sends.get(started.sendId);
  }
  const peakRssMb = await worker.peakRssMb();
  const stoppedWith = await worker.stop();
  await new Promise((resolve) => setTimeout(resolve, 200)); // late duplicates, if any, would show up here
  const extraMessages = accepted - n;

  // Compile time, measured separately after the run (warm; startSend's own compile is inside the fan-out time).
  const issue = await loadIssue(config.issuesDir, ISSUE_ID);
  const compileTimes: number[] = [];
  for (let run = 0; run < 3; run += 1) {
    const start = performance.now();
    await compileIssue(issue, compileContextFor(config, LIST));
    compileTimes.push(performance.now() - start);
  }
  const compileMs = compileTimes.sort((a, b) => a - b)[1]!;

  // Naive baseline, with the worker stopped so it has the machine to itself.
  const baselineRecipients: Subscriber[] = [];
  for (const id of await services.subscribers.listPage(LIST, 0, Math.min(n, options.baseline + 1))) {
    const subscriber = await services.subscribers.get(id);
    if (subscriber) baselineRecipients.push(subscriber);
  }
  const acceptedBeforeBaseline = accepted;
  console.log(
    `\nnaive baseline: ${options.baseline} messages; per message: stage-one render + mjml2html + Handlebars fill + nodemailer sendMail (quoted-printable), awaited one by one…`,
  );
  const baseline = await runNaiveBaseline({ config, issue, subscribers: baselineRecipients, messages: options.baseline, smtpUrl: sink.url, list: LIST });
  const baselineSinkCount = accepted - acceptedBeforeBaseline;

  const diff = (before: number | undefined, after: number | undefined) => (before === undefined || after === undefined ? undefined : after - before);
  const ok = printReport({
    issueId: ISSUE_ID,
    subscribers: n,
    t0,
    tFanOut,
    tEnd,
    acceptedAtFanOutEnd,
    extraMessages,
    record,
    compileMs,
    workerReadyLine: worker.readyLine,
    peakRssMb,
    readyRssMb,
    cpu: {
      worker: diff(cpuBefore.worker, cpuAfter.worker),
      redis: diff(cpuBefore.redis, cpuAfter.redis),
      bench: (cpuAfter.bench.user + cpuAfter.bench.system) / 1e6,
    },
    workerExit: stoppedWith,
    baseline,
    baselineSinkCount,
  });
  if (!ok) process.exitCode = 1;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up…`);
    void cleanUp().then(() => process.exit(130));
  });
}
// The in-process SMTP sink has no 'error' listener of its own, so a client that drops its
// connection (a worker that dies) would crash the bench before it can clean up. A peer going
// away is reported and left to the worker-died check; anything else fails the run, cleanly.
process.on('uncaughtException', (error: NodeJS.ErrnoException) => {
  if (error.code === 'ECONNRESET' || error.code === 'EPIPE') {
    console.error(`  (a connection to the bench process was dropped: ${error.code})`);
    return;
  }
  console.error(`\nbenchmark failed (uncaught): ${error.stack ?? error.message}`);
  void cleanUp().then(() => process.exit(1));
});
process.on('unhandledRejection', (reason) => {
  console.error(`\nbenchmark failed (unhandled rejection): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
  void cleanUp().then(() => process.exit(1));
});

try {
  await main();
} catch (error) {
  console.error(`\nbenchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
process.exit(process.exitCode ?? 0);
