import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { onTestFinished } from 'vitest';
export { waitFor } from './faults.ts';
import { PROJECT_ROOT, type Config } from '../../config/index.ts';

const CLI = path.join(PROJECT_ROOT, 'bin/newsletter.js');

/** How a `newsletter worker` process ended. */
export interface WorkerExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A real `newsletter worker` process, spawned by a test. */
export interface WorkerProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly pid: number;
  /** Everything it wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once the process has exited (never rejects). */
  readonly exited: Promise<WorkerExit>;
  /** Waits until stdout or stderr matches, failing with what it saw after `timeoutMs`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number, stream?: 'stdout' | 'stderr'): Promise<void>;
  /** Sends a signal (if still running) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<WorkerExit>;
}

/**
 * The environment of a worker process with the same settings as `config` (the in-process
 * services of the test), plus `overrides`. Nothing is inherited from the test's environment but
 * PATH, so a developer's .env or shell can't change what the test runs.
 */
export function workerEnv(config: Config, overrides: Record<string, string> = {}): Record<string, string> {
  const from = config.mail.from;
  return {
    PATH: process.env.PATH ?? '',
    REDIS_URL: config.redis.url,
    REDIS_PREFIX: config.redis.prefix,
    SMTP_URL: config.smtp.url,
    MAIL_FROM: from.name ? `${from.name} <${from.address}>` : from.address,
    NEWSLETTER_NAME: config.mail.newsletterName,
    PUBLIC_URL: config.publicUrl,
    APP_SECRET: config.appSecret,
    WORKER_CONCURRENCY: String(config.send.workerConcurrency),
    SMTP_POOL_SIZE: String(config.smtp.poolSize),
    SEND_MAX_ATTEMPTS: String(config.send.maxAttempts),
    SEND_BACKOFF_MS: String(config.send.backoffMs),
    WORKER_SHUTDOWN_TIMEOUT_MS: String(config.send.shutdownTimeoutMs),
    WORKER_LOCK_DURATION_MS: String(config.send.lockDurationMs),
    WORKER_STALLED_INTERVAL_MS: String(config.send.stalledIntervalMs),
    WORKER_MAX_STALLED_COUNT: String(config.send.maxStalledCount),
    ...(config.pacing.ratePerSec === undefined ? {} : { SEND_RATE_PER_SEC: String(config.pacing.ratePerSec) }),
    DOMAIN_RATE_LIMITS: Object.entries(config.pacing.domainRates)
      .map(([domain, rate]) => `${domain}=${rate}`)
      .join(','),
    DOMAIN_BACKOFF_MS: String(config.pacing.domainBackoffMs),
    SMTP_OUTAGE_MAX_BACKOFF_MS: String(config.pacing.outageMaxBackoffMs),
    BREAKER_BOUNCE_RATE: String(config.breakers.bounceRate),
    BREAKER_COMPLAINT_RATE: String(config.breakers.complaintRate),
    BREAKER_BLOCK_RATE: String(config.breakers.blockRate),
    BREAKER_MIN_SAMPLE: String(config.breakers.minSample),
    BREAKER_WINDOW_MINUTES: String(config.breakers.windowMinutes),
    LOG_LEVEL: config.logLevel,
    ...overrides,
  };
}

/**
 * Spawns `node bin/newsletter.js worker` with `env` and waits until it says it is running. The
 * process is SIGKILLed when the current test finishes, whatever happened to the test.
 */
export async function spawnWorker(
  env: Record<string, string>,
  options: {
    readyTimeoutMs?: number;
    /** Sees the process as soon as it is spawned, before it is ready. */
    onSpawn?: (worker: WorkerProcess) => void;
    /** What node runs instead of `bin/newsletter.js worker`: a test's own worker script (it must print "worker <pid> running"). */
    args?: readonly string[];
  } = {},
): Promise<WorkerProcess> {
  const child = spawn(process.execPath, [...(options.args ?? [CLI, 'worker'])], { cwd: PROJECT_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const watcher of watchers) watcher();
  };
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    notify();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
    notify();
  });
  const exited = new Promise<WorkerExit>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      notify();
    });
  });
  let exit: WorkerExit | undefined;
  void exited.then((value) => (exit = value));

  const handle: WorkerProcess = {
    child,
    pid: child.pid ?? -1,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitForOutput(pattern, timeoutMs = 15_000, stream) {
      const text = () => (stream === 'stdout' ? out : stream === 'stderr' ? err : `${out}\n${err}`);
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(text())) return finish();
          if (exit)
            return finish(new Error(`worker ${handle.pid} exited (${JSON.stringify(exit)}) before printing ${pattern}; stdout:\n${out}\nstderr:\n${err}`));
        };
        const timer = setTimeout(
          () => finish(new Error(`worker ${handle.pid} did not print ${pattern} within ${timeoutMs} ms; stdout:\n${out}\nstderr:\n${err.slice(-4000)}`)),
          timeoutMs,
        );
        const finish = (error?: Error) => {
          clearTimeout(timer);
          watchers.delete(check);
          if (error) reject(error);
          else resolve();
        };
        watchers.add(check);
        check();
      });
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  onTestFinished(async () => {
    await handle.kill('SIGKILL');
  });
  options.onSpawn?.(handle);
  await handle.waitForOutput(/worker \d+ running/, options.readyTimeoutMs ?? 20_000, 'stdout');
  return handle;
}

/** Resolves like `promise`, or fails with `describe()` if it hasn't settled after `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, describe: () => string | Promise<string>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void Promise.resolve(describe()).then((text) => reject(new Error(`not reached within ${timeoutMs} ms: ${text}`)), reject);
    }, timeoutMs);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
