import { Redis } from 'ioredis';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { sendStatusReport } from '../../src/app/send-report.ts';
import { loadIssue } from '../../src/content/load-issue.ts';
import { compileContextFor, compileIssue } from '../../src/render/compile-issue.ts';
import { createLogger } from '../../src/logger.ts';
import { openServices, type Services } from '../../src/services.ts';
import { redisKeys } from '../../src/store/keys.ts';
import { MigrationConflictError, migrateStore } from '../../src/store/migrate.ts';
import { withFault } from '../support/faults.ts';
import { testConfig } from '../support/test-config.ts';

/** Writes data the way the first release stored it (key layout 1): before hash tags and case-insensitive addresses. */
async function writeLayoutOne(redis: Redis, prefix: string): Promise<void> {
  const config = testConfig('layout-one');
  const compiled = await compileIssue(await loadIssue(config.issuesDir, 'vol-138'), compileContextFor(config, 'weekly'));
  const now = '2026-11-01T08:00:00.000Z';
  await redis
    .multi()
    .set(`${prefix}:sub:seq`, '3')
    // Layout 1 kept the local part's case, so one person could be two subscribers.
    .hset(`${prefix}:sub:by-email`, { 'reader5@example.com': '1', 'READER5@example.com': '2', 'ada@example.org': '3' })
    .hset(`${prefix}:sub:1`, {
      email: 'reader5@example.com',
      name: 'Reader Five',
      status: 'active',
      attributes: '{"team":"ir"}',
      createdAt: now,
      updatedAt: now,
    })
    .hset(`${prefix}:sub:2`, { email: 'READER5@example.com', name: 'R5', status: 'unsubscribed', attributes: '{}', createdAt: now, updatedAt: now })
    .hset(`${prefix}:sub:3`, { email: 'ada@example.org', name: 'Ada', status: 'active', attributes: '{}', createdAt: now, updatedAt: now })
    .sadd(`${prefix}:lists`, 'weekly')
    .zadd(`${prefix}:list:weekly`, 1, '1', 2, '2', 3, '3')
    .rpush(`${prefix}:issue:vol-138:sends`, 'vol-138.weekly.1')
    .rpush(`${prefix}:issue:vol-138:sends:weekly`, 'vol-138.weekly.1')
    .hset(`${prefix}:send:vol-138.weekly.1`, {
      id: 'vol-138.weekly.1',
      issueId: 'vol-138',
      list: 'weekly',
      createdAt: now,
      fanOutCursor: '3',
      accepted: '2',
      failed: '0',
      skipped: '0',
      contentHash: compiled.contentHash,
      fanOutDoneAt: now,
      finishedAt: now,
    })
    .set(`${prefix}:send:vol-138.weekly.1:artifact`, JSON.stringify(compiled))
    .hset(`${prefix}:send:vol-138.weekly.1:recipients`, { '1': 'accepted', '3': 'accepted' })
    .exec();
}

/** What every scenario must end with, whatever happened on the way. */
async function expectMigrated(services: Services, redis: Redis, prefix: string): Promise<void> {
  const { subscribers, sends } = services;
  // One person, one subscriber: the oldest record, reached by the address in any case.
  for (const address of ['reader5@example.com', 'READER5@EXAMPLE.COM', 'Reader5@Example.com']) expect(await subscribers.findIdByEmail(address)).toBe('1');
  // The duplicate had unsubscribed: merging never weakens a suppression.
  expect(await subscribers.get('1')).toMatchObject({ email: 'reader5@example.com', status: 'unsubscribed', attributes: { team: 'ir' } });
  expect(await subscribers.get('2')).toBeUndefined();
  expect(await subscribers.listsOf('1')).toEqual(['weekly']);
  expect(await subscribers.countList('weekly')).toEqual({ total: 2, byStatus: { active: 1, unsubscribed: 1, bounced: 0, complained: 0 } });

  // The sends, their compiled issue and their recipients moved with them.
  expect(await sends.get('vol-138.weekly.1')).toMatchObject({ state: 'sent', total: 2, accepted: 2, failed: 0 });
  expect((await sends.loadCompiled('vol-138.weekly.1'))?.issueId).toBe('vol-138');
  expect(await sendStatusReport(services, 'vol-138', 'weekly')).toMatchObject({ sendId: 'vol-138.weekly.1', state: 'sent', stuck: false });
  // The archive dates an issue by its first send, not by the migration.
  expect(await sends.sentIssues()).toEqual([{ issueId: 'vol-138', sentAt: '2026-11-01T08:00:00.000Z' }]);
  // Nothing is left under the old names.
  expect(
    await redis.exists(`${prefix}:sub:by-email`, `${prefix}:sub:1`, `${prefix}:lists`, `${prefix}:send:vol-138.weekly.1`, `${prefix}:issue:vol-138:sends`),
  ).toBe(0);
}

/** A connection whose first call of `command` on a key containing `keyPart` fails, as if the process died there. */
function dyingAt(redis: Redis, command: 'hset' | 'lrange', keyPart: string): { redis: Redis; died: () => boolean } {
  let died = false;
  const proxy = withFault(redis, command, (...args: unknown[]) => {
    if (died || !String(args[0]).includes(keyPart)) return;
    died = true;
    throw new Error(`injected: the migrating process died at ${command} ${String(args[0])}`);
  });
  return { redis: proxy, died: () => died };
}

describe('data stored by the first release', () => {
  it('is migrated once to the new key layout: one subscriber per address in any case, the strongest suppression kept, sends readable', async () => {
    const config = testConfig('migrate');
    const prefix = config.redis.prefix;
    const redis = new Redis(inject('redisUrl'));
    onTestFinished(() => {
      redis.disconnect();
    });
    await writeLayoutOne(redis, prefix);

    const services = await openServices(config);
    onTestFinished(() => services.close());
    await expectMigrated(services, redis, prefix);

    // A new subscriber gets a fresh id, and opening again changes nothing.
    expect(await services.subscribers.upsert({ email: 'grace@example.org', list: 'weekly' })).toMatchObject({ created: true });
    expect(Number(await services.subscribers.findIdByEmail('grace@example.org'))).toBeGreaterThan(3);
    const again = await openServices(config);
    await again.close();
    expect(await services.subscribers.countList('weekly')).toEqual({ total: 3, byStatus: { active: 2, unsubscribed: 1, bounced: 0, complained: 0 } });
  });

  it.each([
    ['while filling the list counters', 'hset', ':counts'],
    ['while moving the sends', 'lrange', ':issue:vol-138:sends'],
  ] as const)('is finished by the next process when the migrating one dies %s', async (_when, command, keyPart) => {
    const config = testConfig('migrate-crash');
    const prefix = config.redis.prefix;
    const redis = new Redis(inject('redisUrl'));
    onTestFinished(() => {
      redis.disconnect();
    });
    await writeLayoutOne(redis, prefix);

    const dying = dyingAt(redis, command, keyPart);
    await expect(migrateStore(dying.redis, prefix, createLogger({ logLevel: 'silent' }))).rejects.toThrow('injected');
    expect(dying.died()).toBe(true);
    expect(await redis.get(`${prefix}:schema-version`)).toBeNull();

    const services = await openServices(config);
    onTestFinished(() => services.close());
    await expectMigrated(services, redis, prefix);
    expect(await redis.exists(`${prefix}:migration-in-progress`, `${prefix}:migration-lock`)).toBe(0);
  });

  it('is migrated by one of two processes opening the store at once; the other waits for it', async () => {
    const config = testConfig('migrate-race');
    const redis = new Redis(inject('redisUrl'));
    onTestFinished(() => {
      redis.disconnect();
    });
    await writeLayoutOne(redis, config.redis.prefix);
    const [first, second] = await Promise.all([openServices(config), openServices(config)]);
    onTestFinished(async () => {
      await first.close();
      await second.close();
    });
    await expectMigrated(first, redis, config.redis.prefix);
    await expectMigrated(second, redis, config.redis.prefix);
  });

  it('stops, losing nothing, when a process of the previous release writes during the migration', async () => {
    const config = testConfig('migrate-conflict');
    const prefix = config.redis.prefix;
    const redis = new Redis(inject('redisUrl'));
    onTestFinished(() => {
      redis.disconnect();
    });
    await writeLayoutOne(redis, prefix);
    // A new-layout key already exists for a layout-1 key that is still there.
    const newRecipients = redisKeys(prefix).sendRecipients('vol-138.weekly.1');
    await redis.hset(newRecipients, '9', 'queued');

    await expect(openServices(config)).rejects.toThrow(MigrationConflictError);
    // Both versions are kept, and the next run tries again.
    expect(await redis.hgetall(`${prefix}:send:vol-138.weekly.1:recipients`)).toEqual({ '1': 'accepted', '3': 'accepted' });
    expect(await redis.hgetall(newRecipients)).toEqual({ '9': 'queued' });
    expect(await redis.exists(`${prefix}:migration-in-progress`)).toBe(1);
    expect(await redis.get(`${prefix}:schema-version`)).toBeNull();

    // Once the stray key is dealt with (here: the old process's write dropped), the migration finishes.
    await redis.del(newRecipients);
    const services = await openServices(config);
    onTestFinished(() => services.close());
    await expectMigrated(services, redis, prefix);
  });
});
