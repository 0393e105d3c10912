import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import { connectRedis } from './store/connection.ts';
import { createSendQueue, type SendJobData } from './store/send-queue.ts';
import { SendStore } from './store/send-store.ts';
import { SubscriberStore } from './store/subscriber-store.ts';

/** The stores and the queue the use cases work with, over one Redis connection. */
export interface Services {
  readonly redis: Redis;
  readonly subscribers: SubscriberStore;
  readonly sends: SendStore;
  readonly queue: Queue<SendJobData>;
  close(): Promise<void>;
}

/** Connects to Redis (failing with a message naming REDIS_URL) and opens the stores and the queue. */
export async function openServices(config: Config): Promise<Services> {
  const redis = await connectRedis(config.redis.url);
  const queue = createSendQueue(redis, config);
  return {
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
