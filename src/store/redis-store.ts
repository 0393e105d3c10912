import type { Redis } from 'ioredis';
import { redisKeys, type RedisKeys } from './keys.ts';
import { defineScripts } from './scripts.ts';

/**
 * What every store over a Redis connection starts from: the key builders of its prefix (keys.ts),
 * and the store's Lua scripts defined on the connection (once per connection, whichever store
 * comes first).
 */
export abstract class RedisStore {
  readonly keys: RedisKeys;

  constructor(
    protected readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = redisKeys(prefix);
    defineScripts(redis);
  }
}
