// The heartbeat of one worker process, on a thread of its own: it renews the worker's "alive" key
// every second whatever the main thread is doing, so a main event loop that stalls (the case the
// `sending` claims exist for) still counts as alive, and only a process that is gone lets go of
// its claims. Plain JavaScript because worker threads don't inherit the tsx loader on Node 20.
import { parentPort, workerData } from 'node:worker_threads';
import { Redis } from 'ioredis';

const { url, key, ttlMs, intervalMs } = workerData;
const redis = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: (attempt) => Math.min(attempt * 200, 1_000) });
// Errors reach the main thread's log through the reconnects it sees itself; nothing to add here.
redis.on('error', () => undefined);

let first = true;
const beat = () =>
  redis.set(key, String(process.pid), 'PX', ttlMs).then(
    () => {
      // The main thread waits for the first beat before it claims anything.
      if (first) parentPort?.postMessage('beating');
      first = false;
    },
    () => undefined,
  );
// At once on every (re)connect: after a Redis restart the key may have expired while it was down.
redis.on('ready', beat);
const timer = setInterval(beat, intervalMs);

parentPort?.on('message', async (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  await redis.del(key).catch(() => undefined);
  redis.disconnect();
  parentPort?.close();
});
