import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { onTestFinished } from 'vitest';
import { PROJECT_ROOT, type Config } from '../../config/index.ts';
import { withServicesOf, type CliContext, type ProgressDisplay } from '../../src/cli/context.ts';
import { runCli } from '../../src/cli/main.ts';
import { waitFor } from './faults.ts';

/** The `newsletter` executable, as `npx newsletter` runs it. */
export const CLI_BIN = path.join(PROJECT_ROOT, 'bin/newsletter.js');

/** What one command line did. */
export interface CliResult {
  readonly code: number;
  /** Standard out, the lines joined with "\n". */
  readonly out: string;
  /** Standard error, the lines joined with "\n". */
  readonly err: string;
}

/** Where the in-process command gets its config: a Config, or a function (which may throw a ConfigError). */
export type ConfigSource = Config | (() => Promise<Config>);

/** A CliContext for a test: a config, line buffers for out and err, and a stop the test triggers. */
export interface TestCliContext {
  readonly context: CliContext;
  readonly out: string[];
  readonly err: string[];
  /** Resolves the promise untilStop() returned, as SIGTERM does for the real process. */
  stop(reason?: string): void;
}

/** Builds the context a test runs `runCli` with. */
export function testCliContext(source: ConfigSource, options: { readonly stdin?: string; readonly progress?: ProgressDisplay } = {}): TestCliContext {
  const out: string[] = [];
  const err: string[] = [];
  const config = typeof source === 'function' ? source : async () => source;
  let resolveStop: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (resolveStop = resolve));
  return {
    out,
    err,
    stop: (reason = 'SIGTERM') => resolveStop(reason),
    context: {
      // No progress unless the test asks for it: most tests compare a command's output exactly.
      io: { out: (line) => out.push(line), err: (line) => err.push(line), ...(options.progress ? { progress: options.progress } : {}) },
      config,
      withServices: async (run) => withServicesOf(await config(), run),
      untilStop: () => stopped,
      // A test's standard input: what it gives, else empty, as from </dev/null.
      readStdin: async () => options.stdin ?? '',
    },
  };
}

/** Runs one command line in this process, as `newsletter <argv…>` would, and returns its exit code and output. */
export async function runCliInProcess(
  argv: readonly string[],
  source: ConfigSource,
  options: { readonly stdin?: string; readonly progress?: ProgressDisplay } = {},
): Promise<CliResult> {
  const cli = testCliContext(source, options);
  const code = await runCli(argv, cli.context);
  return { code, out: cli.out.join('\n'), err: cli.err.join('\n') };
}

/**
 * Starts a long-running command (worker, serve) in this process. `stop()` plays the part of SIGTERM
 * and resolves with what the command printed; it also runs by itself when the test finishes.
 */
export function startCliInProcess(
  argv: readonly string[],
  source: ConfigSource,
  options: { readonly progress?: ProgressDisplay } = {},
): { readonly out: string[]; readonly err: string[]; stop(): Promise<CliResult> } {
  const cli = testCliContext(source, options);
  const finished = runCli(argv, cli.context);
  // A command that fails before the test stops it is seen in stop()'s result, not as an unhandled rejection.
  finished.catch(() => undefined);
  let stopping: Promise<CliResult> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      cli.stop('SIGTERM');
      const code = await finished;
      return { code, out: cli.out.join('\n'), err: cli.err.join('\n') };
    })());
  onTestFinished(async () => {
    await stop().catch(() => undefined);
  });
  return { out: cli.out, err: cli.err, stop };
}

/**
 * The environment a spawned `newsletter` process needs to run against a test's config. PATH and
 * HOME come from this process; nothing else does, so a developer's own settings can't leak in.
 */
export function cliEnv(config: Config, extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string | undefined> = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    REDIS_URL: config.redis.url,
    REDIS_PREFIX: config.redis.prefix,
    SMTP_URL: config.smtp.url,
    SMTP_POOL_SIZE: String(config.smtp.poolSize),
    MAIL_FROM: `${config.mail.from.name} <${config.mail.from.address}>`,
    NEWSLETTER_NAME: config.mail.newsletterName,
    PUBLIC_URL: config.publicUrl,
    APP_SECRET: config.appSecret,
    WORKER_CONCURRENCY: String(config.send.workerConcurrency),
    SEND_MAX_ATTEMPTS: String(config.send.maxAttempts),
    SEND_BACKOFF_MS: String(config.send.backoffMs),
    WORKER_SHUTDOWN_TIMEOUT_MS: String(config.send.shutdownTimeoutMs),
    WORKER_LOCK_DURATION_MS: String(config.send.lockDurationMs),
    WORKER_STALLED_INTERVAL_MS: String(config.send.stalledIntervalMs),
    HTTP_HOST: config.http.host,
    HTTP_PORT: String(config.http.port),
    LOG_LEVEL: config.logLevel,
    ...extra,
  };
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/**
 * Lines that Node itself prints on standard error whatever the command does: "(node:123) Warning: …",
 * "ExperimentalWarning", and the "(Use `node --trace-warnings …`)" hint after them. Tests look at the rest.
 */
export function withoutNodeWarnings(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => !/^\(node:\d+\) (\[\w+\] )?\w*Warning\b/.test(line) && !/ExperimentalWarning/.test(line) && !line.startsWith('(Use `node --trace-'))
    .join('\n');
}

/** A stack frame as Node prints one: a command's error must be a message, never this. */
export const STACK_FRAME = /^\s+at .+(:\d+:\d+\)?|\(node:|native)/m;

/** A spawned `newsletter` process, killed when the test finishes whatever happened. */
export interface SpawnedCli {
  readonly child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null if a signal ended it). */
  readonly exited: Promise<number | null>;
  /** Waits, at most `timeoutMs`, for standard out to match. */
  waitForStdout(pattern: RegExp, timeoutMs: number): Promise<void>;
  /** Waits, at most `timeoutMs`, for standard error to match. */
  waitForStderr(pattern: RegExp, timeoutMs: number): Promise<void>;
  /** SIGKILLs the process if it is still running, and waits for it to go. */
  kill(): Promise<void>;
}

/** Spawns `node bin/newsletter.js <args…>` and registers its killing with the current test. */
export function spawnCli(args: readonly string[], options: { env: Record<string, string>; cwd?: string }): SpawnedCli {
  const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd: options.cwd ?? PROJECT_ROOT, env: options.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  const handle: SpawnedCli = {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForStdout: async (pattern, timeoutMs) => {
      await waitFor(
        () => {
          if (!running() && !pattern.test(stdout))
            throw new Error(
              `newsletter ${args.join(' ')} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}; stdout: ${stdout}; stderr: ${stderr}`,
            );
          return pattern.test(stdout);
        },
        timeoutMs,
        `newsletter ${args.join(' ')} to print ${pattern} on stdout`,
      );
    },
    waitForStderr: async (pattern, timeoutMs) => {
      await waitFor(
        () => {
          if (!running() && !pattern.test(stderr))
            throw new Error(`newsletter ${args.join(' ')} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}; stderr: ${stderr}`);
          return pattern.test(stderr);
        },
        timeoutMs,
        `newsletter ${args.join(' ')} to print ${pattern} on stderr`,
      );
    },
    async kill() {
      if (running()) child.kill('SIGKILL');
      await exited;
    },
  };
  onTestFinished(() => handle.kill());
  return handle;
}

/** Runs `newsletter <args…>` to the end, SIGKILLing it past `timeoutMs`; the result says whether it timed out. */
export async function execCli(
  args: readonly string[],
  options: { env: Record<string, string>; cwd?: string; timeoutMs?: number },
): Promise<CliResult & { readonly timedOut: boolean; readonly elapsedMs: number }> {
  const started = Date.now();
  const spawned = spawnCli(args, options);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    spawned.child.kill('SIGKILL');
  }, options.timeoutMs ?? 30_000);
  try {
    const code = await spawned.exited;
    return { code: code ?? -1, out: spawned.stdout(), err: spawned.stderr(), timedOut, elapsedMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
    await spawned.kill();
  }
}
