import type { Redis } from 'ioredis';
import { emailKey } from '../core/address.ts';
import { UserFacingError } from '../core/errors.ts';
import { SUBSCRIBER_STATUSES, type SubscriberStatus } from '../core/subscriber.ts';
import type { Logger } from '../logger.ts';
import { redisKeys, type RedisKeys } from './keys.ts';
import { takeLease, type Lease } from './lease.ts';
import { sendJobId } from './send-queue.ts';
import { runScript } from './scripts.ts';

/** The key layout this code reads and writes; see keys.ts. */
export const SCHEMA_VERSION = 2;

/** The migration lock's lease, renewed while the migration runs. */
const LOCK_MS = 30_000;
/** How long a process waits for another one's migration before it gives up. */
const WAIT_FOR_OTHER_MS = 30 * 60_000;
/** Keys renamed per round trip. */
const BATCH = 1000;

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
    sendArtifact: (sendId: string) => `${prefix}:send:${sendId}:artifact`,
    sendRecipients: (sendId: string) => `${prefix}:send:${sendId}:recipients`,
    sendRequeuePending: (sendId: string) => `${prefix}:send:${sendId}:requeue-pending`,
    sendFailures: (sendId: string) => `${prefix}:send:${sendId}:failures`,
    issueSendsPattern: `${prefix}:issue:*:sends*`,
    issuePrefix: `${prefix}:issue:`,
  };
}
type LayoutOneKeys = ReturnType<typeof layoutOneKeys>;

/** Stronger suppressions win when two records of one person are merged: never weaken a suppression. */
const STATUS_STRENGTH: Readonly<Record<SubscriberStatus, number>> = { active: 0, unsubscribed: 1, bounced: 2, complained: 3 };

/**
 * Brings the data under a prefix to the current key layout, once, whichever process gets there
 * first; the others wait for it. Layout 1 → 2 renames every key into its hash-tagged name, re-keys
 * the address index on the lower-cased address (merging subscribers whose addresses differed only
 * in case into the oldest, with the strongest status and every list of both), and fills the list
 * counters and the job index of unfinished sends.
 *
 * Crash-safe: a marker says a migration is under way, every step can run again, and the old
 * address index (what tells layout 1 apart) goes last, so a migration that died is finished by the
 * next process that opens the store.
 */
export async function migrateStore(redis: Redis, prefix: string, logger: Logger): Promise<void> {
  const keys = redisKeys(prefix);
  const old = layoutOneKeys(prefix);
  const deadline = Date.now() + WAIT_FOR_OTHER_MS;
  for (;;) {
    if (Number(await redis.get(keys.schemaVersion)) >= SCHEMA_VERSION) return;
    if (!(await hasLayoutOne(redis, keys, old))) {
      await redis.set(keys.schemaVersion, String(SCHEMA_VERSION), 'NX');
      return;
    }
    const lease = await takeLease(redis, keys.migrationLock, LOCK_MS);
    if (lease) {
      await migrateUnderLock(redis, keys, old, lease, logger);
      return;
    }
    // Another process migrates; if it dies, its lease runs out and this one takes over.
    if (Date.now() > deadline) throw new Error(`Another process has been migrating the Redis data under "${prefix}" for over 30 minutes; check it`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function hasLayoutOne(redis: Redis, keys: RedisKeys, old: LayoutOneKeys): Promise<boolean> {
  if ((await redis.exists(keys.migrationInProgress, old.subscriberByEmail, old.lists, old.subscriberSeq)) > 0) return true;
  return (await firstMatch(redis, old.issueSendsPattern)) !== undefined;
}

async function migrateUnderLock(redis: Redis, keys: RedisKeys, old: LayoutOneKeys, lease: Lease, logger: Logger): Promise<void> {
  let lost = false;
  const stillHeld = () => {
    if (lost) throw new Error('lost the migration lock to another process; it finishes the migration');
  };
  const renew = setInterval(() => {
    void lease.renew().then(
      (renewed) => (lost ||= !renewed),
      () => undefined,
    );
  }, LOCK_MS / 3);
  try {
    await redis.set(keys.migrationInProgress, String(SCHEMA_VERSION));
    logger.info({ from: 1, to: SCHEMA_VERSION }, 'migrating the Redis key layout');
    const merged = await migrateSubscribers(redis, keys, old, stillHeld);
    const sends = await migrateSends(redis, keys, old, stillHeld);
    // Last, and only while the lock is still ours: what marks layout 1 goes, and the version is set.
    // Until then, the next process re-runs the (repeatable) steps.
    const finished = await runScript(
      redis,
      'finishMigration',
      { lock: keys.migrationLock, schemaVersion: keys.schemaVersion, inProgress: keys.migrationInProgress },
      { token: lease.token, version: SCHEMA_VERSION },
      { keys: [old.subscriberByEmail, old.subscriberSeq, old.lists, old.sendSeq] },
    );
    if (finished !== 1) throw new Error('lost the migration lock to another process; it finishes the migration');
    logger.info({ mergedSubscribers: merged, sends }, 'Redis key layout migrated');
  } finally {
    clearInterval(renew);
    await lease.release();
  }
}

async function firstMatch(redis: Redis, pattern: string): Promise<string | undefined> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    if (keys[0] !== undefined) return keys[0];
    cursor = next;
  } while (cursor !== '0');
  return undefined;
}

async function scanAll(redis: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    found.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return found;
}

/** A key exists under both its old and its new name: something of the old release still writes. */
export class MigrationConflictError extends UserFacingError {
  override readonly name = 'MigrationConflictError';
}

/**
 * Renames what exists, BATCH keys per round trip; a key already renamed (by a run that died) is
 * skipped. Never overwrites: a new name that exists while the old one does too means a process of
 * the old release wrote meanwhile, and the migration stops (the in-progress marker stays) rather
 * than lose either.
 */
async function renameAll(redis: Redis, renames: readonly (readonly [string, string])[]): Promise<void> {
  for (let start = 0; start < renames.length; start += BATCH) {
    const batch = renames.slice(start, start + BATCH).filter(([from, to]) => from !== to);
    const pipeline = redis.pipeline();
    for (const [from, to] of batch) pipeline.renamenx(from, to);
    const replies = (await pipeline.exec()) ?? [];
    for (const [index, [error, renamed]] of replies.entries()) {
      if (error && !/no such key/i.test(error.message)) throw error;
      if (!error && renamed === 0) {
        const [from, to] = batch[index]!;
        throw new MigrationConflictError(
          `Both ${from} (layout 1) and ${to} (layout 2) exist: a process of the previous release is still writing. Stop every newsletter process of the previous release, then run any newsletter command to finish the migration.`,
        );
      }
    }
  }
}

/** Returns how many subscriber records were merged into another with the same address. */
async function migrateSubscribers(redis: Redis, keys: RedisKeys, old: LayoutOneKeys, stillHeld: () => void): Promise<number> {
  // Copies, not renames, of what marks layout 1: those go last (see migrateUnderLock).
  const seq = Number(await redis.get(old.subscriberSeq));
  if (seq > Number(await redis.get(keys.subscriberSeq))) await redis.set(keys.subscriberSeq, String(seq));
  const lists = await redis.smembers(old.lists);
  if (lists.length > 0) await redis.sadd(keys.lists, ...lists);
  await renameAll(
    redis,
    lists.map((list) => [old.list(list), keys.list(list)] as const),
  );

  const byKey = new Map<string, string[]>();
  const index = await redis.hgetall(old.subscriberByEmail);
  await renameAll(
    redis,
    Object.values(index).map((id) => [old.subscriber(id), keys.subscriber(id)] as const),
  );
  for (const [address, id] of Object.entries(index)) {
    const ids = byKey.get(emailKey(address)) ?? [];
    ids.push(id);
    byKey.set(emailKey(address), ids);
  }
  let merged = 0;
  const entries: Record<string, string> = {};
  for (const [key, ids] of byKey) {
    stillHeld();
    const [keep, ...duplicates] = ids.sort((a, b) => Number(a) - Number(b)) as [string, ...string[]];
    entries[key] = keep;
    for (const duplicate of duplicates) {
      await mergeInto(redis, keys, lists, keep, duplicate);
      merged += 1;
    }
  }
  if (Object.keys(entries).length > 0) await redis.hset(keys.subscriberByEmail, entries);
  for (const list of lists) {
    stillHeld();
    await recount(redis, keys, list);
  }
  return merged;
}

async function mergeInto(redis: Redis, keys: RedisKeys, lists: readonly string[], keep: string, duplicate: string): Promise<void> {
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
async function recount(redis: Redis, keys: RedisKeys, list: string): Promise<void> {
  const counts = Object.fromEntries(SUBSCRIBER_STATUSES.map((status) => [status, 0])) as Record<SubscriberStatus, number>;
  for (let after = 0; ;) {
    const ids = await redis.zrangebyscore(keys.list(list), `(${after}`, '+inf', 'LIMIT', 0, BATCH);
    if (ids.length === 0) break;
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.hget(keys.subscriber(id), 'status');
    for (const [, status] of (await pipeline.exec()) ?? []) {
      if (typeof status === 'string' && status in counts) counts[status as SubscriberStatus] += 1;
    }
    after = Number(ids.at(-1));
  }
  // Every status is written: no delete first, so a crash here leaves the counters as they were.
  await redis.hset(keys.listCounts(list), counts);
}

/** Returns how many sends were moved to their issue's hash tag. */
async function migrateSends(redis: Redis, keys: RedisKeys, old: LayoutOneKeys, stillHeld: () => void): Promise<number> {
  let moved = 0;
  for (const listKey of await scanAll(redis, old.issueSendsPattern)) {
    stillHeld();
    // "<prefix>:issue:<issueId>:sends" or "…:sends:<list>"
    const [issueId, , list] = listKey.slice(old.issuePrefix.length).split(':');
    if (!issueId) continue;
    if (list !== undefined) {
      await renameAll(redis, [[listKey, keys.listSends(issueId, list)]]);
      continue;
    }
    const sendIds = await redis.lrange(listKey, 0, -1);
    for (const sendId of sendIds) {
      await renameAll(redis, [
        [old.send(sendId), keys.send(sendId)],
        [old.sendArtifact(sendId), keys.sendArtifact(sendId)],
        [old.sendRecipients(sendId), keys.sendRecipients(sendId)],
        [old.sendRequeuePending(sendId), keys.sendRequeuePending(sendId)],
        [old.sendFailures(sendId), keys.sendFailures(sendId)],
      ]);
      // A send retried with --retry-failed may serve its queued recipients by a retry round's job,
      // which layout 1 did not record: those are left unindexed (their jobs all may send).
      if ((await redis.hexists(keys.send(sendId), 'retryRound')) === 0) await indexQueuedJobs(redis, keys, sendId);
      moved += 1;
    }
    // The archive orders issues by their first send, not by when this migration ran.
    const firstSentAt = Date.parse((await redis.hget(keys.send(sendIds[0] ?? ''), 'createdAt')) ?? '');
    await redis.zadd(keys.sentIssues, 'NX', Number.isNaN(firstSentAt) ? Date.now() : firstSentAt, issueId);
    await renameAll(redis, [[listKey, keys.issueSends(issueId)]]);
  }
  return moved;
}

/** Layout 1 kept no job index: a recipient still queued of a send never retried is served by its fan-out job. */
async function indexQueuedJobs(redis: Redis, keys: RedisKeys, sendId: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, flat] = await redis.hscan(keys.sendRecipients(sendId), cursor, 'COUNT', BATCH);
    cursor = next;
    const queued: Record<string, string> = {};
    for (let index = 0; index + 1 < flat.length; index += 2) if (flat[index + 1] === 'queued') queued[flat[index]!] = sendJobId(sendId, flat[index]!);
    if (Object.keys(queued).length > 0) await redis.hset(keys.sendQueuedJobs(sendId), queued);
  } while (cursor !== '0');
}
