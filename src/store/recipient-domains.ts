import type { Redis } from 'ioredis';
import { domainOf } from '../core/pacing-policy.ts';
import type { RedisKeys } from './keys.ts';

/** Rounds a time down to the start of its progress bucket (keys.ts `sendProgress`). */
export const PROGRESS_BUCKET_MS = 10_000;

/** The start (ms) of the progress bucket `atMs` falls in. */
export function progressBucket(atMs: number): number {
  return atMs - (atMs % PROGRESS_BUCKET_MS);
}

/**
 * The recipient domain of each subscriber, in input order, in one round trip: what the per-domain
 * counters of a send are kept under when the caller doesn't know it already. '' for a subscriber
 * that no longer exists. The subscriber keys share `{subs}`, so one pipeline serves them all.
 */
export async function recipientDomains(redis: Redis, keys: RedisKeys, subscriberIds: readonly string[]): Promise<string[]> {
  if (subscriberIds.length === 0) return [];
  const pipeline = redis.pipeline();
  for (const subscriberId of subscriberIds) pipeline.hget(keys.subscriber(subscriberId), 'email');
  const replies = (await pipeline.exec()) ?? [];
  return subscriberIds.map((_, index) => {
    const [error, email] = replies[index] ?? [null, null];
    if (error) throw error;
    return typeof email === 'string' ? domainOf(email) : '';
  });
}
