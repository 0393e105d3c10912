import type { Redis } from 'ioredis';
import { redisKeys, type RedisKeys } from './keys.ts';

/** Every subscriber status; all but `active` are suppressed. */
export const SUBSCRIBER_STATUSES = ['active', 'unsubscribed', 'bounced', 'complained'] as const;
/** Only `active` subscribers are mailed; the others are suppressed until someone lifts it. */
export type SubscriberStatus = (typeof SUBSCRIBER_STATUSES)[number];

/** The default list a subscriber joins and a send goes to. */
export const DEFAULT_LIST = 'weekly';

/** What a list name may look like: it becomes part of Redis keys and send ids. */
export const LIST_NAME_SHAPE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** One subscriber as stored; the address is normalised. */
export interface Subscriber {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly status: SubscriberStatus;
  readonly attributes: Readonly<Record<string, string>>;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** A subscriber to add or merge; the address must already be normalised. */
export interface SubscriberInput {
  readonly email: string;
  readonly name?: string | undefined;
  readonly attributes?: Readonly<Record<string, string>> | undefined;
  readonly list: string;
}

/**
 * Adds a subscriber or merges into the existing one with the same address, atomically, so that
 * parallel imports never create two ids for one address. The status of an existing subscriber is
 * never changed here: re-importing an unsubscribed address must not mail it again.
 * Returns {id, created}.
 */
const UPSERT_SCRIPT = `
local byEmail, seq, listKey, listsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local email, name, attributes, listName, now, subscriberPrefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local id = redis.call('HGET', byEmail, email)
local created = 0
if not id then
  id = tostring(redis.call('INCR', seq))
  redis.call('HSET', byEmail, email, id)
  redis.call('HSET', subscriberPrefix .. id, 'email', email, 'status', 'active', 'createdAt', now, 'attributes', '{}')
  created = 1
end
local key = subscriberPrefix .. id
if name ~= '' then redis.call('HSET', key, 'name', name) end
if attributes ~= '{}' then
  local merged = cjson.decode(redis.call('HGET', key, 'attributes') or '{}')
  for k, v in pairs(cjson.decode(attributes)) do merged[k] = v end
  redis.call('HSET', key, 'attributes', cjson.encode(merged))
end
redis.call('HSET', key, 'updatedAt', now)
redis.call('ZADD', listKey, tonumber(id), id)
redis.call('SADD', listsKey, listName)
return {id, created}
`;

type UpsertReply = [string, number];

const CHANGE_STATUS_SCRIPT = `
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updatedAt', ARGV[3])
return 1
`;

/** Subscribers and lists in Redis. */
export class SubscriberStore {
  private readonly keys: RedisKeys;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = redisKeys(prefix);
    if (!('nlUpsertSubscriber' in this.redis)) {
      this.redis.defineCommand('nlUpsertSubscriber', { numberOfKeys: 4, lua: UPSERT_SCRIPT });
      this.redis.defineCommand('nlChangeStatus', { numberOfKeys: 1, lua: CHANGE_STATUS_SCRIPT });
    }
  }

  /** Adds or merges many subscribers in one round trip; results are in input order. */
  async upsertMany(inputs: readonly SubscriberInput[]): Promise<{ id: string; created: boolean }[]> {
    if (inputs.length === 0) return [];
    const now = new Date().toISOString();
    const pipeline = this.redis.pipeline();
    for (const input of inputs) {
      (pipeline as unknown as UpsertCommand).nlUpsertSubscriber(
        this.keys.subscriberByEmail,
        this.keys.subscriberSeq,
        this.keys.list(input.list),
        this.keys.lists,
        input.email,
        input.name ?? '',
        JSON.stringify(input.attributes ?? {}),
        input.list,
        now,
        this.keys.subscriberPrefix,
      );
    }
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, reply]) => {
      if (error) throw error;
      const [id, created] = reply as UpsertReply;
      return { id: String(id), created: created === 1 };
    });
  }

  async upsert(input: SubscriberInput): Promise<{ id: string; created: boolean }> {
    const [result] = await this.upsertMany([input]);
    if (!result) throw new Error('upsert returned no result');
    return result;
  }

  async findIdByEmail(email: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.subscriberByEmail, email)) ?? undefined;
  }

  async getByEmail(email: string): Promise<Subscriber | undefined> {
    const id = await this.findIdByEmail(email);
    return id ? this.get(id) : undefined;
  }

  async get(id: string): Promise<Subscriber | undefined> {
    return toSubscriber(id, await this.redis.hgetall(this.keys.subscriber(id)));
  }

  /** Just the address, which stays readable whatever else is wrong with the record. */
  async emailOf(id: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.subscriber(id), 'email')) ?? undefined;
  }

  /** The lists a subscriber belongs to. */
  async listsOf(id: string): Promise<string[]> {
    const lists = await this.redis.smembers(this.keys.lists);
    if (lists.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const list of lists) pipeline.zscore(this.keys.list(list), id);
    const replies = (await pipeline.exec()) ?? [];
    return lists.filter((_, index) => replies[index]?.[1] !== null).sort();
  }

  /**
   * Changes the status only from `expected`, atomically; returns whether it changed. A bounce
   * recorded by a worker in the meantime is never overwritten by an unsubscribe.
   */
  async changeStatus(id: string, expected: SubscriberStatus, status: SubscriberStatus): Promise<boolean> {
    const changed = await (this.redis as unknown as StatusCommand).nlChangeStatus(this.keys.subscriber(id), expected, status, new Date().toISOString());
    return changed === 1;
  }

  async setStatus(id: string, status: SubscriberStatus): Promise<void> {
    await this.redis.hset(this.keys.subscriber(id), 'status', status, 'updatedAt', new Date().toISOString());
  }

  /** Members of a list, in id order, strictly after `afterId` (0 for the start). */
  async listPage(list: string, afterId: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.list(list), `(${afterId}`, '+inf', 'LIMIT', 0, limit);
  }

  /** The statuses of many subscribers in one round trip, in input order. */
  async statusesOf(ids: readonly string[]): Promise<(string | null)[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hget(this.keys.subscriber(id), 'status');
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, value]) => {
      if (error) throw error;
      return value as string | null;
    });
  }

  /** Counts a list's members, by status. */
  async countList(list: string, pageSize = 1000): Promise<{ total: number; byStatus: Record<SubscriberStatus, number> }> {
    const byStatus = Object.fromEntries(SUBSCRIBER_STATUSES.map((status) => [status, 0])) as Record<SubscriberStatus, number>;
    let total = 0;
    for (let afterId = 0; ; ) {
      const ids = await this.listPage(list, afterId, pageSize);
      if (ids.length === 0) break;
      const statuses = await this.statusesOf(ids);
      for (const status of statuses) {
        if (status && status in byStatus) byStatus[status as SubscriberStatus] += 1;
      }
      total += ids.length;
      afterId = Number(ids.at(-1));
    }
    return { total, byStatus };
  }

  async listExists(list: string): Promise<boolean> {
    return (await this.redis.sismember(this.keys.lists, list)) === 1;
  }
}

interface StatusCommand {
  nlChangeStatus(key: string, expected: string, status: string, now: string): Promise<number>;
}

interface UpsertCommand {
  nlUpsertSubscriber(...args: string[]): void;
}

function toSubscriber(id: string, hash: Record<string, string>): Subscriber | undefined {
  if (!hash.email) return undefined;
  return {
    id,
    email: hash.email,
    name: hash.name ?? '',
    status: parseStatus(id, hash.status),
    attributes: JSON.parse(hash.attributes ?? '{}') as Record<string, string>,
    createdAt: hash.createdAt ?? '',
    updatedAt: hash.updatedAt ?? '',
  };
}

function parseStatus(id: string, status: string | undefined): SubscriberStatus {
  // A status this code doesn't know must never be read as "active": that would mail a suppressed address.
  if ((SUBSCRIBER_STATUSES as readonly string[]).includes(status ?? '')) return status as SubscriberStatus;
  throw new Error(`Subscriber ${id} has an unknown status "${status ?? ''}"`);
}
