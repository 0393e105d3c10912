import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import { createLogger, type Logger } from './logger.ts';
import { connectionErrorLogger, connectRedis } from './store/connection.ts';
import { EventStore } from './store/event-store.ts';
import { ReportInbox } from './store/report-inbox.ts';
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
  /** Delivery events: per subscriber and per send. */
  readonly events: EventStore;
  /** Received bounce and complaint reports, held until applied. */
  readonly reports: ReportInbox;
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
  const reports = new ReportInbox(redis, config.redis.prefix);
  reports.queue.on('error', connectionErrorLogger(logger, 'report inbox'));
  return {
    config,
    logger,
    redis,
    subscribers: new SubscriberStore(redis, config.redis.prefix),
    sends: new SendStore(redis, config.redis.prefix),
    queue,
    events: new EventStore(redis, config.redis.prefix),
    reports,
    async close() {
      await Promise.all([queue.close(), reports.close()]);
      redis.disconnect();
    },
  };
}
