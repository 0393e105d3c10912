import { Redis, type RedisOptions } from 'ioredis';
import { UserFacingError } from '../core/errors.ts';
import type { Logger } from '../logger.ts';

/** Redis did not answer at the configured URL. */
export class RedisUnavailableError extends UserFacingError {
  override readonly name = 'RedisUnavailableError';
  constructor(url: string, cause: unknown) {
    super(`Cannot reach Redis at ${redactUrl(url)} (REDIS_URL): ${(cause as Error).message ?? String(cause)}`);
  }
}

/**
 * Opens a Redis connection and waits until it answers. `blocking: true` is for BullMQ workers,
 * which need `maxRetriesPerRequest: null` so a blocking command is never cut short.
 */
export async function connectRedis(url: string, options: { blocking?: boolean; autoPipelining?: boolean; logger?: Logger } = {}): Promise<Redis> {
  const redisOptions: RedisOptions = {
    enableAutoPipelining: options.autoPipelining ?? false,
    lazyConnect: true,
    connectTimeout: 5_000,
    maxRetriesPerRequest: options.blocking ? null : 3,
    // connectTimeout bounds the first connection (connect() below then fails with a clear error);
    // later drops reconnect for ever, backing off up to 2 s between tries.
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  };
  const redis = new Redis(url, redisOptions);
  // Connection errors also reject the commands they affect, which is where callers see them. The
  // listener keeps ioredis from printing each reconnect attempt as an "unhandled error event" with
  // a stack; one log line per outage says it is happening, and one says it is over.
  watchConnection(redis, options.logger);
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    throw new RedisUnavailableError(url, error);
  }
  return redis;
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

/**
 * Logs a connection's outages once each, as structured lines, for any connection: ours and the
 * ones BullMQ duplicates from them (a duplicate copies the options, not the listeners).
 */
export function watchConnection(redis: Redis, logger: Logger | undefined): void {
  let down = false;
  redis.on('error', (error: Error & { code?: string }) => {
    if (down) return;
    down = true;
    logger?.warn({ code: error.code, reason: error.message }, 'Redis connection lost; reconnecting');
  });
  redis.on('ready', () => {
    if (!down) return;
    down = false;
    logger?.info('Redis connection restored');
  });
}

/** How long the same connection error is reported once; reconnect attempts repeat it every 2 s. */
const REPEAT_WINDOW_MS = 30_000;

/**
 * An error listener for BullMQ's workers and queues (which report their own connections' errors):
 * a connection error is logged once, with its code and no stack, then at most once per 30 s while
 * it repeats, with the count of repeats; anything else is logged every time, with its stack.
 */
export function connectionErrorLogger(logger: Logger, source: string): (error: Error & { code?: string }) => void {
  let last: { code: string; at: number; repeats: number } | undefined;
  return (error) => {
    const code = error.code ?? (/Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE/.exec(error.message)?.[0] as string | undefined);
    if (code === undefined) {
      logger.error({ err: error, source }, `${source} error`);
      return;
    }
    const now = Date.now();
    if (last && last.code === code && now - last.at < REPEAT_WINDOW_MS) {
      last.repeats += 1;
      return;
    }
    logger.warn(
      { source, code, reason: error.message, repeatsSinceLastLine: last?.code === code ? last.repeats : 0 },
      `${source}: Redis connection error; retrying`,
    );
    last = { code, at: now, repeats: 0 };
  };
}
