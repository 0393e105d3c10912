import { UnrecoverableError, Worker } from 'bullmq';
import type { Config } from '../../config/index.ts';
import { AcceptedButUnrecordedError } from '../core/classify-failure.ts';
import { createDeliveryHandler, type DeliveryOutcome } from '../delivery/deliver-job.ts';
import { createSmtpTransport } from '../delivery/smtp-transport.ts';
import { connectRedis } from '../store/connection.ts';
import { redisKeys } from '../store/keys.ts';
import { createSendQueue, SEND_QUEUE_NAME, type SendJobData } from '../store/send-queue.ts';
import { SendStore } from '../store/send-store.ts';
import { SubscriberStore } from '../store/subscriber-store.ts';

/** A running send worker. */
export interface SendWorkerHandle {
  readonly worker: Worker<SendJobData, DeliveryOutcome>;
  /**
   * Stops taking jobs and waits up to `shutdownTimeoutMs` for the ones in flight. Past that it
   * closes without them: their locks lapse and BullMQ hands them to another worker as stalled
   * jobs, where the recipient record keeps an accepted recipient from being mailed twice.
   */
  close(): Promise<{ handedBack: boolean }>;
}

/** Starts one send worker in this process: BullMQ worker, pooled SMTP transport, Redis connections. */
export async function startSendWorker(config: Config): Promise<SendWorkerHandle> {
  // Auto-pipelining batches the per-job reads and writes of concurrent jobs into fewer round trips.
  const [blocking, store] = await Promise.all([connectRedis(config.redis.url, { blocking: true }), connectRedis(config.redis.url, { autoPipelining: true })]);
  const transport = createSmtpTransport(config.smtp);
  const sends = new SendStore(store, config.redis.prefix);
  const subscribers = new SubscriberStore(store, config.redis.prefix);
  const queue = createSendQueue(store, config);
  let pausedUntil = 0;
  const handler = createDeliveryHandler({
    config,
    sends,
    subscribers,
    transport,
    async pauseSending(durationMs, reason) {
      if (Date.now() >= pausedUntil) console.warn(`SMTP service unavailable (${reason}); holding the queue for ${durationMs} ms`);
      pausedUntil = Date.now() + durationMs;
      await queue.rateLimit(durationMs);
    },
  });

  const worker = new Worker<SendJobData, DeliveryOutcome>(SEND_QUEUE_NAME, handler, {
    connection: blocking,
    prefix: redisKeys(config.redis.prefix).bullPrefix,
    concurrency: config.send.workerConcurrency,
    // No real limit: BullMQ 6 only honours a manual queue.rateLimit() (our hold while the SMTP
    // service is down) in workers that have a limiter, so every worker process gets one.
    limiter: { max: Number.MAX_SAFE_INTEGER, duration: 1_000 },
  });
  // A worker's own connection errors are logged by BullMQ's 'error' event; without a listener Node would crash.
  worker.on('error', (error) => console.error(`worker error: ${error.message}`));
  /** Outcome writes still under way; close() waits for them before it disconnects. */
  const pendingRecords = new Set<Promise<unknown>>();
  // The handler records failures it sees itself. This catches the rest (an error before its try, a
  // Redis hiccup on the last attempt), so a send still completes and shows who failed. Recording is
  // a no-op for a recipient already in a final state.
  worker.on('failed', (job, error) => {
    if (!job || (job.attemptsMade < (job.opts.attempts ?? 1) && !(error instanceof UnrecoverableError))) return;
    const { sendId, subscriberId } = job.data;
    const recorded =
      error instanceof AcceptedButUnrecordedError
        ? sends.markRecipient(sendId, subscriberId, 'accepted')
        : sends.markRecipient(sendId, subscriberId, 'failed', {
            at: new Date().toISOString(),
            permanent: error instanceof UnrecoverableError,
            code: 'EJOB',
            response: error.message,
            attempts: job.attemptsMade,
          });
    pendingRecords.add(recorded);
    recorded
      .catch((recordError: unknown) => console.error(`could not record the outcome of job ${job.id}: ${(recordError as Error).message}`))
      .finally(() => pendingRecords.delete(recorded));
  });
  let closing: Promise<{ handedBack: boolean }> | undefined;
  return {
    worker,
    close() {
      closing ??= (async () => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), config.send.shutdownTimeoutMs);
        });
        const outcome = await Promise.race([worker.close().then(() => 'closed' as const), timedOut]);
        clearTimeout(timer);
        if (outcome === 'timeout') await worker.close(true);
        await Promise.allSettled(pendingRecords);
        await queue.close();
        transport.close();
        store.disconnect();
        blocking.disconnect();
        return { handedBack: outcome === 'timeout' };
      })();
      return closing;
    },
  };
}
