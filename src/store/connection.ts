import { Redis, type RedisOptions } from 'ioredis';
import { UserFacingError } from '../core/errors.ts';

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
export async function connectRedis(url: string, options: { blocking?: boolean; autoPipelining?: boolean } = {}): Promise<Redis> {
  const redisOptions: RedisOptions = {
    enableAutoPipelining: options.autoPipelining ?? false,
    lazyConnect: true,
    connectTimeout: 5_000,
    maxRetriesPerRequest: options.blocking ? null : 3,
    // Give up quickly on the first connection; later drops reconnect with a capped backoff.
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  };
  const redis = new Redis(url, redisOptions);
  // Connection errors also reject the commands they affect, which is where callers see them; the
  // listener keeps ioredis from printing each reconnect attempt as an "unhandled error event".
  redis.on('error', () => undefined);
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
