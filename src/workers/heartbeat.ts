import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Worker as Thread } from 'node:worker_threads';
import type { Logger } from '../logger.ts';

/** How often the heartbeat renews the key, and how long the key outlives a missed beat. */
export const HEARTBEAT_INTERVAL_MS = 1_000;
export const HEARTBEAT_TTL_MS = 3_000;

/** A worker process's heartbeat: its id (what its claims name) and how to stop it. */
export interface Heartbeat {
  readonly workerId: string;
  stop(): Promise<void>;
}

/** An id no other worker process has: host, pid and random, with no '|' (claims use it as a separator). */
export function newWorkerId(): string {
  return `${hostname().replace(/[^A-Za-z0-9.-]/g, '_')}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** How long start-up waits for the first beat to land in Redis. */
const FIRST_BEAT_TIMEOUT_MS = 10_000;

/**
 * Starts the heartbeat thread (heartbeat-thread.mjs), which keeps `key` alive while this process
 * lives, and waits for its first beat to land. A thread that dies is started again at once (a
 * worker without a heartbeat would have its claims taken over while it sends).
 */
export async function startHeartbeat(options: {
  readonly redisUrl: string;
  readonly key: (workerId: string) => string;
  readonly logger: Logger;
}): Promise<Heartbeat> {
  const workerId = newWorkerId();
  const workerData = { url: options.redisUrl, key: options.key(workerId), ttlMs: HEARTBEAT_TTL_MS, intervalMs: HEARTBEAT_INTERVAL_MS };
  let stopping = false;
  let thread: Thread;
  let exited: Promise<void>;
  const start = (): Promise<void> => {
    thread = new Thread(new URL('./heartbeat-thread.mjs', import.meta.url), { workerData });
    // The thread holds nothing the process needs to wait for at exit.
    thread.unref();
    thread.on('error', (error) => options.logger.error({ err: error, workerId }, 'worker heartbeat thread failed'));
    exited = new Promise<void>((resolve) =>
      thread.once('exit', (code) => {
        resolve();
        if (stopping) return;
        options.logger.error({ workerId, code }, 'worker heartbeat thread exited; starting it again');
        void start();
      }),
    );
    return new Promise<void>((resolve) => thread.once('message', (message) => message === 'beating' && resolve()));
  };
  let timer: NodeJS.Timeout | undefined;
  const firstBeat = await Promise.race([
    start().then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), FIRST_BEAT_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (!firstBeat) {
    stopping = true;
    await thread!.terminate();
    throw new Error(`the worker heartbeat could not write to Redis within ${FIRST_BEAT_TIMEOUT_MS / 1000} s`);
  }
  return {
    workerId,
    async stop() {
      stopping = true;
      thread.postMessage('stop');
      let stopTimer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (stopTimer = setTimeout(resolve, 2_000)))]);
      clearTimeout(stopTimer);
      await thread.terminate();
    },
  };
}
