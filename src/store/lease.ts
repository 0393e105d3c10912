import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { runScript } from './scripts.ts';

/** A lock held for a while under a token of its own: renewed by its holder, released only by it. */
export interface Lease {
  readonly token: string;
  /** Extends the lease; false when it is no longer this holder's (it ran out and another took it). */
  renew(): Promise<boolean>;
  release(): Promise<void>;
}

/**
 * Takes the lock at `key` for `ms`, or returns undefined when someone else holds it. The token is
 * what the lock holds: random unless given (a token may carry who holds the lock, for the others
 * to read; it must still be unique to this holder).
 */
export async function takeLease(redis: Redis, key: string, ms: number, token: string = randomUUID()): Promise<Lease | undefined> {
  if ((await redis.set(key, token, 'PX', ms, 'NX')) !== 'OK') return undefined;
  return heldLease(redis, key, ms, token);
}

/** The lease of a lock already set to `token` (by a script that took it with other writes). */
export function heldLease(redis: Redis, key: string, ms: number, token: string): Lease {
  return {
    token,
    renew: async () => (await runScript(redis, 'renewLock', { lock: key }, { token, ms })) === 1,
    release: async () => void (await runScript(redis, 'releaseLock', { lock: key }, { token })),
  };
}
