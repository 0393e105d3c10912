import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import { createLogger, type Logger } from './logger.ts';
import { connectionErrorLogger, connectRedis } from './store/connection.ts';
import { migrateStore } from './store/migrate.ts';
import { createSendQueue, type SendJobData } from './store/send-queue.ts';
import { SendStore } from './store/send-store.ts';
import { SubscriberStore } from './store/subscriber-store.ts';

/** The stores, the queue and the logger the use cases work with, over one Redis connection. */
export interface Services {
  readonly config: Config;
  readonly logger: Logger;
  readonly redis: Redis;
  readonly subscribers: SubscriberStore;
  readonly sends: SendStore;
  readonly queue: Queue<SendJobData>;
  close(): Promise<void>;
}

/**
 * The one place where everything is wired: connects to Redis (failing with a message naming
 * REDIS_URL), brings the stored data to the current key layout, and opens the stores and the queue.
 * Every entry point (CLI commands, the HTTP server, workers, the demo) opens its services here.
 */
export async function openServices(config: Config, options: { readonly logger?: Logger; readonly autoPipelining?: boolean } = {}): Promise<Services> {
  const logger = options.logger ?? createLogger(config);
  const redis = await connectRedis(config.redis.url, { autoPipelining: options.autoPipelining ?? false, logger });
  try {
    await migrateStore(redis, config.redis.prefix, logger);
  } catch (error) {
    redis.disconnect();
    throw error;
  }
  const queue = createSendQueue(redis, config);
  queue.on('error', connectionErrorLogger(logger, 'send queue'));
  return {
    config,
    logger,
    redis,
    subscribers: new SubscriberStore(redis, config.redis.prefix),
    sends: new SendStore(redis, config.redis.prefix),
    queue,
    async close() {
      await queue.close();
      redis.disconnect();
    },
  };
}
