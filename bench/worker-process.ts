import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { envSchema } from '../config/schema.ts';
import { PROJECT_ROOT } from '../config/index.ts';

/** A `newsletter worker` child process, as ops would run it. */
export interface WorkerProcess {
  readonly pid: number;
  /** The worker's "worker <pid> running: …" line. */
  readonly readyLine: string;
  /** Rejects when the child exits before stop() was called. */
  readonly died: Promise<never>;
  /** Peak resident set size (VmHWM) in MB, read from /proc. */
  peakRssMb(): Promise<number>;
  /** Current resident set size (VmRSS) in MB, read from /proc. */
  rssMb(): Promise<number>;
  /** SIGTERM, then wait for exit (SIGKILL after `graceMs`). Safe to call twice. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const READY_LINE = /^worker \d+ running/;

/**
 * Spawns `node bin/newsletter.js worker` with exactly the given config keys: every other key the
 * config schema knows is removed from the inherited environment, so the parent's settings (say, a
 * REDIS_URL of the shared Redis) never leak into the benchmark's worker.
 */
export async function spawnWorker(options: {
  readonly env: Readonly<Record<string, string>>;
  readonly nodeArgs?: readonly string[];
  readonly readyTimeoutMs?: number;
}): Promise<WorkerProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(envSchema.shape)) delete env[key];
  Object.assign(env, options.env);

  const child: ChildProcess = spawn(process.execPath, [...(options.nodeArgs ?? []), path.join('bin', 'newsletter.js'), 'worker'], {
    cwd: PROJECT_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('could not spawn the worker process');
  const pid = child.pid;

  let stopping = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const died = exited.then(({ code, signal }) => {
    if (!stopping) throw new Error(`worker process ${pid} died (exit code ${code}, signal ${signal})`);
    return new Promise<never>(() => {});
  });
  died.catch(() => {}); // observed by whoever races it; never an unhandled rejection

  const stderrTail: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderrTail.push(line);
    if (stderrTail.length > 20) stderrTail.shift();
    process.stderr.write(`  [worker stderr] ${line}\n`);
  });

  const readyLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker not ready within ${options.readyTimeoutMs ?? 30_000} ms`)), options.readyTimeoutMs ?? 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (READY_LINE.test(line)) {
        clearTimeout(timer);
        resolve(line);
      } else if (!/^SIGTERM|^stopped/.test(line)) {
        process.stdout.write(`  [worker] ${line}\n`);
      }
    });
    died.catch((error: Error) => {
      clearTimeout(timer);
      reject(new Error(`${error.message} before it was ready${stderrTail.length ? `:\n${stderrTail.join('\n')}` : ''}`));
    });
  }).catch(async (error: unknown) => {
    stopping = true;
    child.kill('SIGKILL');
    await exited;
    throw error;
  });

  let stopped: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  return {
    pid,
    readyLine,
    died,
    peakRssMb: () => procStatusMb(pid, 'VmHWM'),
    rssMb: () => procStatusMb(pid, 'VmRSS'),
    stop(graceMs = 40_000) {
      stopped ??= (async () => {
        stopping = true;
        if (child.exitCode !== null || child.signalCode !== null) return exited;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const result = await exited;
        clearTimeout(timer);
        return result;
      })();
      return stopped;
    },
  };
}

async function procStatusMb(pid: number, field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1];
  if (!kb) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(kb) / 1024;
}
