import type { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import type { AppServices } from './app/app-services.ts';
import { startupRedisProblems, type RedisProblem } from './core/redis-requirements.ts';
import { UserFacingError } from './core/errors.ts';
import { createLogger, type Logger } from './logger.ts';
import { connectionErrorLogger, connectRedis } from './store/connection.ts';
import { EventStore } from './store/event-store.ts';
import { ReportInbox } from './store/report-inbox.ts';
import { migrateStore } from './store/migrate.ts';
import { readRedisSettings } from './store/redis-settings.ts';
import { createSendQueue } from './store/send-queue.ts';
import { PacingStore } from './store/pacing-store.ts';
import { SendControlStore } from './store/send-control.ts';
import { SendStore } from './store/send-store.ts';
import { SubscriberStore } from './store/subscriber-store.ts';

/** The stores, the queue and the logger the use cases work with, over one Redis connection. */
export interface Services extends AppServices {
  close(): Promise<void>;
}

/** Options of openServices. */
export interface OpenServicesOptions {
  readonly logger?: Logger;
  readonly autoPipelining?: boolean;
  /**
   * Who tells about `redisWarnings`: `log` (the default) logs each at warn level, once per process;
   * `caller` leaves it to the caller (the demo prints them as notes), and the later openServices of
   * the same process (its worker) stays quiet about them too.
   */
  readonly redisWarnings?: 'log' | 'caller';
}

/** The Redis problems already told about in this process, by Redis URL and problem code. */
const announcedRedisProblems = new Set<string>();

/**
 * The one place where everything is wired: connects to Redis (failing with a message naming
 * REDIS_URL), checks that Redis keeps what it is given (see checkRedis), brings the stored data to
 * the current key layout, and opens the stores and the queue.
 * Every entry point (CLI commands, the HTTP server, workers, the demo) opens its services here.
 */
export async function openServices(config: Config, options: OpenServicesOptions = {}): Promise<Services> {
  const logger = options.logger ?? createLogger(config);
  const redis = await connectRedis(config.redis.url, { autoPipelining: options.autoPipelining ?? false, logger });
  let redisWarnings: readonly RedisProblem[];
  try {
    redisWarnings = await checkRedis(redis, config, logger, options.redisWarnings ?? 'log');
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
    control: new SendControlStore(redis, config.redis.prefix),
    pacing: new PacingStore(redis, config.redis.prefix),
    reports,
    redisWarnings,
    async close() {
      await Promise.all([queue.close(), reports.close()]);
      redis.disconnect();
    },
  };
}

/**
 * Start-up's check of Redis as a durable store: the eviction policy and persistence decide what a
 * crash or a full memory can lose. Runs before anything is written, so a refusal (NODE_ENV=production
 * without persistence, unless ALLOW_NO_PERSISTENCE=1) leaves the store untouched. The rest are
 * warnings, logged once per process with the setting to change as a field.
 */
async function checkRedis(redis: Redis, config: Config, logger: Logger, announce: 'log' | 'caller'): Promise<readonly RedisProblem[]> {
  const problems = startupRedisProblems(await readRedisSettings(redis), config.deployment);
  const fatal = problems.find((problem) => problem.fatal);
  if (fatal) throw new UserFacingError(fatal.message);
  for (const problem of problems) {
    const key = `${config.redis.url}\n${problem.code}`;
    if (announcedRedisProblems.has(key)) continue;
    announcedRedisProblems.add(key);
    if (announce === 'log') logger.warn({ setting: problem.setting, problem: problem.code }, problem.message);
  }
  return problems;
}
