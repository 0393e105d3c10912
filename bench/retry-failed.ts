/**
 * Benchmark: how long `newsletter send <issue> --retry-failed` holds Redis. Creates, through the
 * store, a send whose N recipients all failed on a temporary error (no mail is sent, no worker
 * runs), then times retryFailedRecipients and reads the private Redis's SLOWLOG for the longest
 * single command and the longest requeue-failed.lua call. Runs its own redis-server, never the
 * machine's. Run with:
 *   node --import tsx bench/retry-failed.ts [--recipients N] [--permanent N] [--slower-than-us N]
 *
 * Redis 7 also logs the commands a script runs, each on its own line: a threshold of 0 would log
 * every one of them and make the scripts look slower than they are (about 1 µs each). The default
 * threshold, 100 µs, logs no command of a script but every call that could be the longest.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { parseConfig } from '../config/index.ts';
import { retryFailedRecipients } from '../src/app/start-send.ts';
import { loadIssue } from '../src/content/load-issue.ts';
import { startPrivateRedis } from '../src/dev/private-redis.ts';
import { compileContextFor, compileIssue } from '../src/render/compile-issue.ts';
import { openServices } from '../src/services.ts';
import { redisKeys } from '../src/store/keys.ts';

const ISSUE_ID = 'vol-138';
const LIST = 'bench';
const SEED_BATCH = 1000;

const USAGE = `usage: node --import tsx bench/retry-failed.ts [--recipients N] [--permanent N] [--slower-than-us N] [--slowlog-max-len N]
  --recipients N       temporarily failed recipients (default 200000, or env BENCH_RETRY_RECIPIENTS)
  --permanent N        permanently failed recipients besides them, which must stay failed (default 0)
  --slower-than-us N   slowlog-log-slower-than: log commands that take N µs or more (default 100)
  --slowlog-max-len N  SLOWLOG entries kept (default 1000000)`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      recipients: { type: 'string' },
      permanent: { type: 'string' },
      'slower-than-us': { type: 'string' },
      'slowlog-max-len': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const count = (name: string, raw: string | undefined, fallback: number) => {
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number ≥ 0, not "${raw}"\n${USAGE}`);
    return value;
  };
  return {
    recipients: count('--recipients', values.recipients ?? process.env.BENCH_RETRY_RECIPIENTS, 200_000),
    permanent: count('--permanent', values.permanent, 0),
    slowerThanUs: count('--slower-than-us', values['slower-than-us'], 100),
    slowlogMaxLen: count('--slowlog-max-len', values['slowlog-max-len'], 1_000_000),
  };
}

/** One SLOWLOG entry: [id, unix time, duration µs, args, client address, client name]. */
type SlowlogEntry = [number, number, number, string[], string, string];

const ms = (micros: number) => (micros / 1000).toFixed(micros < 10_000 ? 2 : 0);

async function main(): Promise<void> {
  const options = parseOptions();
  const redisServer = await startPrivateRedis();
  try {
    const config = parseConfig({
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: `bench-${randomBytes(4).toString('hex')}`,
      SMTP_URL: 'smtp://127.0.0.1:1',
      MAIL_FROM: 'IR Research Weekly <weekly@example.org>',
      PUBLIC_URL: 'https://newsletter.example.org',
      APP_SECRET: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'warn',
    });
    const services = await openServices(config);
    try {
      const { sends, redis } = services;
      const keys = redisKeys(config.redis.prefix);
      const total = options.recipients + options.permanent;
      console.log(
        `retry-failed benchmark: ${options.recipients} temporarily failed recipients, ${options.permanent} permanently failed; private redis ${redisServer.url}; FANOUT_CHUNK_SIZE ${config.send.fanOutChunkSize}`,
      );

      // A send whose recipients all ran out of attempts, written through the store (not timed).
      const seedStart = performance.now();
      const compiled = await compileIssue(await loadIssue(config.issuesDir, ISSUE_ID), compileContextFor(config, LIST));
      const { sendId } = await sends.create(compiled, false);
      const ids = Array.from({ length: total }, (_, index) => String(index + 1));
      for (let start = 0; start < total; start += SEED_BATCH) await sends.addRecipients(sendId, ids.slice(start, start + SEED_BATCH));
      await sends.markFanOutDone(sendId);
      const at = new Date().toISOString();
      for (let start = 0; start < total; start += SEED_BATCH) {
        await Promise.all(
          ids.slice(start, start + SEED_BATCH).map((id) => {
            const permanent = Number(id) > options.recipients;
            const failure = permanent
              ? { at, permanent, code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 User unknown', attempts: 1 }
              : { at, permanent, code: 'EENVELOPE', responseCode: 451, response: '451 4.2.1 Mailbox busy, try again later', attempts: 5 };
            return sends.markRecipient(sendId, id, 'failed', { failure });
          }),
        );
      }
      const before = await sends.get(sendId);
      if (before?.failed !== total || before.state !== 'sent-with-failures') throw new Error(`seeding went wrong: ${JSON.stringify(before)}`);
      console.log(`seeded send ${sendId} in ${Math.round(performance.now() - seedStart)} ms (not timed)`);

      // The run's commands that take at least --slower-than-us, with their durations inside Redis.
      await redis.config('SET', 'slowlog-max-len', String(options.slowlogMaxLen));
      await redis.config('SET', 'slowlog-log-slower-than', String(options.slowerThanUs));
      await redis.call('SLOWLOG', 'RESET');
      await redis.config('RESETSTAT');
      const start = performance.now();
      const result = await retryFailedRecipients(services, { issueId: ISSUE_ID, list: LIST });
      const totalMs = performance.now() - start;
      await redis.config('SET', 'slowlog-log-slower-than', '-1');
      const logged = Number(await redis.call('SLOWLOG', 'LEN'));
      const log = (await redis.call('SLOWLOG', 'GET', '-1')) as SlowlogEntry[];
      const commandStats = await redis.info('commandstats');
      const execStats = /cmdstat_exec:calls=(\d+),usec=(\d+)/.exec(commandStats);
      const evalshaCalls = /cmdstat_evalsha:calls=(\d+)/.exec(commandStats)?.[1] ?? '0';

      // Checks: everyone requeued once, with a job each; the permanent ones still failed.
      const after = await sends.get(sendId);
      const waiting = await services.queue.getWaitingCount();
      const pendingLeft = await redis.exists(keys.sendRequeuePending(sendId));
      const ok =
        result.requeued === options.recipients &&
        after?.failed === options.permanent &&
        after.pending === options.recipients &&
        waiting === options.recipients &&
        pendingLeft === 0;

      const label = ([command = '', , , ...rest]: string[]) => {
        if (!/^eval(sha)?$/i.test(command)) return command.toLowerCase();
        if (rest[0] === keys.send(sendId) && rest[3] === keys.sendRequeuePending(sendId)) return 'requeue-failed.lua';
        if (rest[0] === keys.sendRecipients(sendId) && rest[1] === keys.sendQueuedJobs(sendId)) return 'assign-jobs.lua';
        return `${command.toLowerCase()} (BullMQ or other script)`;
      };
      const byLabel = new Map<string, { calls: number; maxUs: number; sumUs: number }>();
      let longest: { us: number; label: string } = { us: 0, label: '' };
      for (const [, , us, args] of log) {
        const name = label(args);
        const stats = byLabel.get(name) ?? { calls: 0, maxUs: 0, sumUs: 0 };
        stats.calls += 1;
        stats.sumUs += us;
        stats.maxUs = Math.max(stats.maxUs, us);
        byLabel.set(name, stats);
        if (us > longest.us) longest = { us, label: name };
      }
      const requeue = byLabel.get('requeue-failed.lua') ?? { calls: 0, maxUs: 0, sumUs: 0 };
      const requeueUs = log
        .filter(([, , , args]) => label(args) === 'requeue-failed.lua')
        .map(([, , us]) => us)
        .sort((a, b) => a - b);
      const percentile = (p: number) => requeueUs[Math.min(requeueUs.length - 1, Math.floor((p / 100) * requeueUs.length))] ?? 0;

      console.log(`result: ${JSON.stringify(result)}; checks ${ok ? 'passed' : `FAILED: ${JSON.stringify({ after, waiting, pendingLeft })}`}`);
      console.log(`total time of retryFailedRecipients: ${Math.round(totalMs)} ms`);
      console.log(`longest single command: ${ms(longest.us)} ms (${longest.label})`);
      console.log(
        `requeue-failed.lua: ${requeue.calls} calls of ${options.slowerThanUs} µs or more, longest ${ms(requeue.maxUs)} ms, median ${ms(percentile(50))} ms, p99 ${ms(percentile(99))} ms, ${ms(requeue.sumUs)} ms in all`,
      );
      if (execStats) {
        console.log(`MULTI/EXEC transactions (SLOWLOG logs their commands one by one): ${execStats[1]} calls, ${ms(Number(execStats[2]))} ms in all`);
      }
      console.log(
        `SLOWLOG: ${logged} commands of ${options.slowerThanUs} µs or more logged; ${evalshaCalls} EVALSHA in the run${logged >= options.slowlogMaxLen ? '; the log was full, raise --slowlog-max-len' : ''}`,
      );
      console.log(`slowest kinds of command (of ${options.slowerThanUs} µs or more):`);
      for (const [name, stats] of [...byLabel].sort((a, b) => b[1].maxUs - a[1].maxUs).slice(0, 6)) {
        console.log(`  ${name}: ${stats.calls} calls, longest ${ms(stats.maxUs)} ms, ${ms(stats.sumUs)} ms in all`);
      }
      console.log('slowest commands:');
      const firstKey = (args: string[]) => ((/^eval(sha)?$/i.test(args[0] ?? '') ? args[3] : args[1]) ?? '').replace(`${config.redis.prefix}:`, '');
      for (const [, , us, args] of [...log].sort((a, b) => b[2] - a[2]).slice(0, 5)) console.log(`  ${ms(us)} ms ${label(args)} ${firstKey(args)}`);
      if (!ok) process.exitCode = 1;
    } finally {
      await services.close();
    }
  } finally {
    await redisServer.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
