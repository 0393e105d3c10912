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

/**
 * Starts the heartbeat thread (heartbeat-thread.mjs), which keeps `key` alive while this process
 * lives, and waits for its first beat to land.
 */
export async function startHeartbeat(options: {
  readonly redisUrl: string;
  readonly key: (workerId: string) => string;
  readonly logger: Logger;
}): Promise<Heartbeat> {
  const workerId = newWorkerId();
  const thread = new Thread(new URL('./heartbeat-thread.mjs', import.meta.url), {
    workerData: { url: options.redisUrl, key: options.key(workerId), ttlMs: HEARTBEAT_TTL_MS, intervalMs: HEARTBEAT_INTERVAL_MS },
  });
  // The thread holds nothing the process needs to wait for at exit.
  thread.unref();
  thread.on('error', (error) => options.logger.error({ err: error, workerId }, 'worker heartbeat thread failed; claims of this worker may be taken over'));
  const exited = new Promise<void>((resolve) => thread.once('exit', () => resolve()));
  return {
    workerId,
    async stop() {
      thread.postMessage('stop');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 2_000)))]);
      clearTimeout(timer);
      await thread.terminate();
    },
  };
}
