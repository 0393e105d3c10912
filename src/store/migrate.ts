import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { emailKey } from '../core/address.ts';
import { SUBSCRIBER_STATUSES, type SubscriberStatus } from '../core/subscriber.ts';
import type { Logger } from '../logger.ts';
import { redisKeys } from './keys.ts';

/** The key layout this code reads and writes; see keys.ts. */
export const SCHEMA_VERSION = 2;

/** How long one process may hold the migration lock, and how long others wait for it. */
const LOCK_MS = 120_000;

/** The key names of layout 1 (before hash tags and case-insensitive addresses), for the migration only. */
function layoutOneKeys(prefix: string) {
  return {
    subscriberSeq: `${prefix}:sub:seq`,
    subscriberByEmail: `${prefix}:sub:by-email`,
    subscriber: (id: string) => `${prefix}:sub:${id}`,
    lists: `${prefix}:lists`,
    list: (name: string) => `${prefix}:list:${name}`,
    sendSeq: `${prefix}:send:seq`,
    send: (sendId: string) => `${prefix}:send:${sendId}`,
    sendSuffixes: ['', ':artifact', ':recipients', ':requeue-pending', ':failures'] as const,
    issueSendsPattern: `${prefix}:issue:*:sends*`,
  };
}

/** Stronger suppressions win when two records of one person are merged: never weaken a suppression. */
const STATUS_STRENGTH: Readonly<Record<SubscriberStatus, number>> = { active: 0, unsubscribed: 1, bounced: 2, complained: 3 };

/**
 * Brings the data under a prefix to the current key layout, once, whichever process gets there
 * first; the others wait for it. Layout 1 → 2 renames every key into its hash-tagged name, re-keys
 * the address index on the lower-cased address (merging subscribers whose addresses differed only
 * in case into the oldest, with the strongest status and every list of both), and fills the list
 * counters from the records.
 */
export async function migrateStore(redis: Redis, prefix: string, logger: Logger): Promise<void> {
  const keys = redisKeys(prefix);
  if (Number(await redis.get(keys.schemaVersion)) >= SCHEMA_VERSION) return;
  const old = layoutOneKeys(prefix);
  const hasLayoutOne =
    (await redis.exists(old.subscriberByEmail, old.lists, old.subscriberSeq)) > 0 || (await firstMatch(redis, old.issueSendsPattern)) !== undefined;
  if (!hasLayoutOne) {
    await redis.set(keys.schemaVersion, String(SCHEMA_VERSION), 'NX');
    return;
  }
  const token = randomUUID();
  if ((await redis.set(keys.migrationLock, token, 'PX', LOCK_MS, 'NX')) !== 'OK') {
    const deadline = Date.now() + LOCK_MS;
    while (Number(await redis.get(keys.schemaVersion)) < SCHEMA_VERSION) {
      if (Date.now() > deadline)
        throw new Error(`Another process has been migrating the Redis data under "${prefix}" for too long; check it, or delete ${keys.migrationLock}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return;
  }
  try {
    logger.info({ prefix, from: 1, to: SCHEMA_VERSION }, 'migrating the Redis key layout');
    const merged = await migrateSubscribers(redis, prefix);
    const sends = await migrateSends(redis, prefix);
    await redis.set(keys.schemaVersion, String(SCHEMA_VERSION));
    logger.info({ prefix, mergedSubscribers: merged, sends }, 'Redis key layout migrated');
  } finally {
    if ((await redis.get(keys.migrationLock)) === token) await redis.del(keys.migrationLock);
  }
}

async function firstMatch(redis: Redis, pattern: string): Promise<string | undefined> {
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (found.length > 0) return found[0];
    cursor = next;
  } while (cursor !== '0');
  return undefined;
}

async function renameIfExists(redis: Redis, from: string, to: string): Promise<void> {
  if (from !== to && (await redis.exists(from)) === 1) await redis.rename(from, to);
}

/** Returns how many subscriber records were merged into another with the same address. */
async function migrateSubscribers(redis: Redis, prefix: string): Promise<number> {
  const keys = redisKeys(prefix);
  const old = layoutOneKeys(prefix);
  await renameIfExists(redis, old.subscriberSeq, keys.subscriberSeq);
  await renameIfExists(redis, old.lists, keys.lists);
  const lists = await redis.smembers(keys.lists);
  for (const list of lists) await renameIfExists(redis, old.list(list), keys.list(list));

  const byKey = new Map<string, string[]>();
  const index = await redis.hgetall(old.subscriberByEmail);
  for (const [address, id] of Object.entries(index)) {
    await renameIfExists(redis, old.subscriber(id), keys.subscriber(id));
    const ids = byKey.get(emailKey(address)) ?? [];
    ids.push(id);
    byKey.set(emailKey(address), ids);
  }
  let merged = 0;
  for (const [key, ids] of byKey) {
    const [keep, ...duplicates] = ids.sort((a, b) => Number(a) - Number(b)) as [string, ...string[]];
    await redis.hset(keys.subscriberByEmail, key, keep);
    for (const duplicate of duplicates) {
      await mergeInto(redis, prefix, lists, keep, duplicate);
      merged += 1;
    }
  }
  await redis.del(old.subscriberByEmail);
  for (const list of lists) await recount(redis, prefix, list);
  return merged;
}

async function mergeInto(redis: Redis, prefix: string, lists: readonly string[], keep: string, duplicate: string): Promise<void> {
  const keys = redisKeys(prefix);
  const [kept, dropped] = await Promise.all([redis.hget(keys.subscriber(keep), 'status'), redis.hget(keys.subscriber(duplicate), 'status')]);
  const strength = (status: string | null) => STATUS_STRENGTH[(status ?? 'active') as SubscriberStatus] ?? 0;
  if (dropped && strength(dropped) > strength(kept)) await redis.hset(keys.subscriber(keep), 'status', dropped);
  for (const list of lists) {
    if ((await redis.zscore(keys.list(list), duplicate)) !== null) {
      await redis.zadd(keys.list(list), Number(keep), keep);
      await redis.zrem(keys.list(list), duplicate);
    }
  }
  // Jobs already queued for the duplicate find no subscriber and end as skipped.
  await redis.del(keys.subscriber(duplicate));
}

/** Fills a list's per-status counters from its members' records (once, during the migration). */
async function recount(redis: Redis, prefix: string, list: string): Promise<void> {
  const keys = redisKeys(prefix);
  const counts = Object.fromEntries(SUBSCRIBER_STATUSES.map((status) => [status, 0])) as Record<SubscriberStatus, number>;
  for (let after = 0; ;) {
    const ids = await redis.zrangebyscore(keys.list(list), `(${after}`, '+inf', 'LIMIT', 0, 1000);
    if (ids.length === 0) break;
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.hget(keys.subscriber(id), 'status');
    for (const [, status] of (await pipeline.exec()) ?? []) {
      if (typeof status === 'string' && status in counts) counts[status as SubscriberStatus] += 1;
    }
    after = Number(ids.at(-1));
  }
  await redis.del(keys.listCounts(list));
  await redis.hset(keys.listCounts(list), counts);
}

/** Returns how many sends were moved to their issue's hash tag. */
async function migrateSends(redis: Redis, prefix: string): Promise<number> {
  const keys = redisKeys(prefix);
  const old = layoutOneKeys(prefix);
  const sendLists: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', old.issueSendsPattern, 'COUNT', 1000);
    sendLists.push(...found);
    cursor = next;
  } while (cursor !== '0');
  let moved = 0;
  const issuePrefix = `${prefix}:issue:`;
  for (const listKey of sendLists) {
    // "<prefix>:issue:<issueId>:sends" or "…:sends:<list>"
    const [issueId, , list] = listKey.slice(issuePrefix.length).split(':');
    if (!issueId) continue;
    if (list === undefined) {
      for (const sendId of await redis.lrange(listKey, 0, -1)) {
        for (const suffix of old.sendSuffixes) await renameIfExists(redis, `${old.send(sendId)}${suffix}`, `${keys.send(sendId)}${suffix}`);
        moved += 1;
      }
      await redis.zadd(keys.sentIssues, 'NX', Date.now(), issueId);
      await renameIfExists(redis, listKey, keys.issueSends(issueId));
    } else {
      await renameIfExists(redis, listKey, keys.listSends(issueId, list));
    }
  }
  await redis.del(old.sendSeq);
  return moved;
}
