import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/index.ts';
import { redisKeys } from '../redis/keys.ts';

/** The BullMQ queue that holds one job per recipient of a send. */
export const SEND_QUEUE_NAME = 'newsletter-send';

/** Job data: ids only. The worker reloads the subscriber and the compiled issue. */
export interface SendJobData {
  readonly sendId: string;
  readonly subscriberId: string;
}

/**
 * Deterministic, so a repeated fan-out adds nothing twice (BullMQ ignores an id it already holds).
 * Send ids contain dots and letters, so the id is never all digits and has no ':'.
 */
export function sendJobId(sendId: string, subscriberId: string): string {
  return `${sendId}.${subscriberId}`;
}

/** Retry and retention policy of send jobs, from config. */
export function sendJobOptions(send: Config['send']): JobsOptions {
  return {
    attempts: send.maxAttempts,
    backoff: { type: 'exponential', delay: send.backoffMs },
    // Our own per-recipient record is the source of truth; BullMQ keeps recent history for the dashboard.
    removeOnComplete: { age: 24 * 3600, count: 10_000 },
    removeOnFail: { age: 14 * 24 * 3600 },
  };
}

export function createSendQueue(connection: Redis, config: Config): Queue<SendJobData> {
  return new Queue<SendJobData>(SEND_QUEUE_NAME, {
    connection,
    prefix: redisKeys(config.redis.prefix).bullPrefix,
    defaultJobOptions: sendJobOptions(config.send),
  });
}
