import { z } from 'zod';
import { emailKey } from '../core/address.ts';
import { SUBSCRIBER_STATUSES, type StatusChange, type Subscriber, type SubscriberInput, type SubscriberStatus } from '../core/subscriber.ts';
import { parseJson, parseRecord } from './records.ts';

import { withEveryList } from './every-list.ts';
import { RedisStore } from './redis-store.ts';
import { parseReply, queueScript, runScript } from './scripts.ts';

/**
 * A subscriber hash as stored. A status this code doesn't know must never be read as "active"
 * (that would mail a suppressed address), so an unknown one fails the parse.
 */
const subscriberHashSchema = z.object({
  email: z.string().min(3),
  name: z.string().default(''),
  status: z.enum(SUBSCRIBER_STATUSES, { error: (issue) => `unknown status ${JSON.stringify(issue.input ?? '')}` }),
  attributes: z
    .string()
    .default('{}')
    .transform((json, ctx) => {
      const parsed = z.record(z.string(), z.string()).safeParse(parseJson(json));
      if (parsed.success) return parsed.data;
      ctx.addIssue({ code: 'custom', message: 'attributes are not a JSON object of strings' });
      return z.NEVER;
    }),
  createdAt: z.string().default(''),
  updatedAt: z.string().default(''),
});

/** Counts of one list, kept by the scripts: no scan. */
export interface ListCounts {
  readonly total: number;
  readonly byStatus: Readonly<Record<SubscriberStatus, number>>;
}

/** Rows per call of upsert-subscribers.lua: large enough to spread the call's cost, small enough not to hold Redis. */
const ROWS_PER_CALL = 100;

/** How often a batch is retried when parallel writers keep racing it; each retry makes progress. */
const MAX_RACE_RETRIES = 10;

/** Subscribers and lists in Redis. Addresses are matched on emailKey(); the given form is kept for delivery. */
export class SubscriberStore extends RedisStore {
  /**
   * Adds or merges many subscribers; results are in input order. Two round trips per batch: look the
   * addresses up (and reserve ids for the new ones), then one script per row. A row that raced a
   * parallel import (or an earlier row of the same batch with the same address) is looked up again.
   */
  async upsertMany(inputs: readonly SubscriberInput[]): Promise<{ id: string; created: boolean }[]> {
    const results: ({ id: string; created: boolean } | undefined)[] = Array.from({ length: inputs.length }, () => undefined);
    let todo = inputs.map((_, index) => index);
    for (let round = 0; todo.length > 0; round += 1) {
      if (round > MAX_RACE_RETRIES) throw new Error(`could not store ${todo.length} subscribers: parallel writers kept changing them`);
      const now = new Date().toISOString();
      const known = await this.redis.hmget(this.keys.subscriberByEmail, ...todo.map((index) => emailKey(inputs[index]!.email)));
      const fresh = known.filter((id) => id === null).length;
      let nextId = fresh > 0 ? (await this.redis.incrby(this.keys.subscriberSeq, fresh)) - fresh + 1 : 0;
      // One script call per list and ROWS_PER_CALL rows: the cost of a call, not of its work, bounds an import.
      const calls: { list: string; rows: { index: number; id: string; isNew: boolean }[] }[] = [];
      todo.forEach((index, position) => {
        const input = inputs[index]!;
        const existing = known[position];
        let call = calls.findLast((candidate) => candidate.list === input.list && candidate.rows.length < ROWS_PER_CALL);
        if (!call) calls.push((call = { list: input.list, rows: [] }));
        call.rows.push({ index, id: existing ?? String(nextId++), isNew: existing === null });
      });
      const pipeline = this.redis.pipeline();
      for (const { list, rows } of calls) {
        queueScript(
          pipeline,
          'upsertSubscribers',
          { byEmail: this.keys.subscriberByEmail, list: this.keys.list(list), listCounts: this.keys.listCounts(list), lists: this.keys.lists },
          { listName: list, now },
          {
            keys: rows.map((row) => this.keys.subscriber(row.id)),
            argv: rows.flatMap(({ index, id, isNew }) => {
              const input = inputs[index]!;
              return [emailKey(input.email), input.email, input.name ?? '', JSON.stringify(input.attributes ?? {}), id, isNew ? '1' : '0'];
            }),
          },
        );
      }
      const replies = (await pipeline.exec()) ?? [];
      const retry: number[] = [];
      replies.forEach(([error, reply], callIndex) => {
        if (error) throw error;
        const values = parseReply('upsertSubscribers', reply);
        calls[callIndex]!.rows.forEach(({ index }, row) => {
          if (values[row * 3] === 'ok') results[index] = { id: String(values[row * 3 + 1]), created: values[row * 3 + 2] === 1 };
          else retry.push(index);
        });
      });
      todo = retry;
    }
    return results as { id: string; created: boolean }[];
  }

  async upsert(input: SubscriberInput): Promise<{ id: string; created: boolean }> {
    const [result] = await this.upsertMany([input]);
    if (!result) throw new Error('upsert returned no result');
    return result;
  }

  /** The id of the subscriber with this address, whatever its case. */
  async findIdByEmail(email: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.subscriberByEmail, emailKey(email))) ?? undefined;
  }

  async getByEmail(email: string): Promise<Subscriber | undefined> {
    const id = await this.findIdByEmail(email);
    return id ? this.get(id) : undefined;
  }

  /** The subscriber, parsed; CorruptRecordError (records.ts) for a record this code can't read. */
  async get(id: string): Promise<Subscriber | undefined> {
    const hash = await this.redis.hgetall(this.keys.subscriber(id));
    if (Object.keys(hash).length === 0) return undefined;
    return { id, ...parseRecord(subscriberHashSchema, hash, `The record of subscriber ${id}`) };
  }

  /** Just the address, which stays readable whatever else is wrong with the record. */
  async emailOf(id: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.subscriber(id), 'email')) ?? undefined;
  }

  /** The addresses of many subscribers in one round trip, in input order (undefined: no such subscriber). */
  async emailsOf(ids: readonly string[]): Promise<(string | undefined)[]> {
    return (await this.fieldOfMany(ids, 'email')).map((email) => email ?? undefined);
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
   * Changes the status along one of STATUS_CHANGES, atomically, keeping every list's counters;
   * returns the status before and whether it changed. A bounce recorded by a worker in the
   * meantime is never overwritten by an unsubscribe.
   */
  async changeStatus(id: string, change: StatusChange): Promise<{ changed: boolean; previous: SubscriberStatus | undefined }> {
    const [outcome, previous] = await withEveryList(this.redis, this.keys, `change the status of subscriber ${id}`, ({ listCount, listKeys }) =>
      runScript(
        this.redis,
        'changeStatus',
        { subscriber: this.keys.subscriber(id), lists: this.keys.lists },
        { subscriberId: id, fromStatuses: change.from.join(','), toStatus: change.to, now: new Date().toISOString(), listCount },
        { keys: listKeys },
      ),
    );
    return { changed: outcome === 'changed', previous: SUBSCRIBER_STATUSES.find((status) => status === previous) };
  }

  /** Members of a list, in id order, strictly after `afterId` (0 for the start). */
  async listPage(list: string, afterId: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.list(list), `(${afterId}`, '+inf', 'LIMIT', 0, limit);
  }

  /** The statuses of many subscribers in one round trip, in input order. */
  async statusesOf(ids: readonly string[]): Promise<(string | null)[]> {
    return this.fieldOfMany(ids, 'status');
  }

  /** One field of many subscribers' records in one round trip, in input order. */
  private async fieldOfMany(ids: readonly string[], field: 'email' | 'status'): Promise<(string | null)[]> {
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hget(this.keys.subscriber(id), field);
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([error, value]) => {
      if (error) throw error;
      return typeof value === 'string' ? value : null;
    });
  }

  /** A list's members by status, from the counters the scripts keep: two reads, whatever the list's size. */
  async countList(list: string): Promise<ListCounts> {
    const [total, counts] = await Promise.all([this.redis.zcard(this.keys.list(list)), this.redis.hgetall(this.keys.listCounts(list))]);
    const byStatus = Object.fromEntries(SUBSCRIBER_STATUSES.map((status) => [status, Number(counts[status] ?? 0)])) as Record<SubscriberStatus, number>;
    return { total, byStatus };
  }

  /** The names of every list that has (or had) subscribers, sorted. */
  async listNames(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.lists)).sort();
  }

  async listExists(list: string): Promise<boolean> {
    return (await this.redis.sismember(this.keys.lists, list)) === 1;
  }
}
