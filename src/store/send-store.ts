import type { Redis } from 'ioredis';
import type { CompiledIssue } from '../render/compile-issue.ts';
import { redisKeys, type RedisKeys } from './keys.ts';
import { computeSendStatus, type SendStatus } from '../core/send-status.ts';

/** One delivery run of one issue to one list. */
export interface SendRecord extends SendStatus {
  readonly id: string;
  readonly issueId: string;
  readonly list: string;
  readonly createdAt: string;
  readonly finishedAt: string | undefined;
  /** Highest subscriber id fanned out so far; fan-out resumes after it. */
  readonly fanOutCursor: number;
  readonly contentHash: string;
}

/** What happened to one recipient of a send. */
export type RecipientState = 'queued' | 'accepted' | 'failed' | 'skipped';

/** Why a recipient failed, kept for ops. */
export interface RecipientFailure {
  readonly at: string;
  readonly permanent: boolean;
  readonly code?: string | undefined;
  readonly responseCode?: number | undefined;
  readonly response?: string | undefined;
  readonly attempts: number;
}

/**
 * Creates a send unless one exists for the same issue and list (and `resend` is not set), and
 * stores the compiled issue with it, in one script, so two editors pressing "send" at once get one
 * send. Send ids read "<issue>.<list>.<n>": no ':' (BullMQ job ids), unique, and legible on the dashboard.
 */
const CREATE_SCRIPT = `
local listSends, issueSends = KEYS[1], KEYS[2]
local issueId, list, resend, now, artifact, contentHash, sendPrefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local count = redis.call('LLEN', listSends)
if count > 0 and resend ~= '1' then
  return {'exists', redis.call('LINDEX', listSends, -1)}
end
local id = issueId .. '.' .. list .. '.' .. (count + 1)
redis.call('RPUSH', listSends, id)
redis.call('RPUSH', issueSends, id)
redis.call('HSET', sendPrefix .. id, 'id', id, 'issueId', issueId, 'list', list, 'createdAt', now,
  'fanOutCursor', '0', 'accepted', '0', 'failed', '0', 'skipped', '0', 'contentHash', contentHash)
redis.call('SET', sendPrefix .. id .. ':artifact', artifact)
return {'created', id}
`;

/**
 * Moves one recipient from `queued` to a final state and counts it, once: a duplicate job, a retry
 * after a crash, or a second worker finds the state already final and changes nothing. When the
 * last recipient of a fanned-out send is done, the send gets its finishedAt.
 */
const MARK_SCRIPT = `
local sendKey, recipients, failures = KEYS[1], KEYS[2], KEYS[3]
local subscriberId, newState, now, failure = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('HGET', recipients, subscriberId)
if current ~= 'queued' then return current or 'unknown' end
redis.call('HSET', recipients, subscriberId, newState)
redis.call('HINCRBY', sendKey, newState, 1)
if failure ~= '' then redis.call('HSET', failures, subscriberId, failure) end
local done = tonumber(redis.call('HGET', sendKey, 'accepted')) + tonumber(redis.call('HGET', sendKey, 'failed')) + tonumber(redis.call('HGET', sendKey, 'skipped'))
if redis.call('HEXISTS', sendKey, 'fanOutDoneAt') == 1 and done >= redis.call('HLEN', recipients) then
  redis.call('HSETNX', sendKey, 'finishedAt', now)
end
return 'queued'
`;

const FAN_OUT_DONE_SCRIPT = `
local sendKey, recipients = KEYS[1], KEYS[2]
local now = ARGV[1]
redis.call('HSETNX', sendKey, 'fanOutDoneAt', now)
local done = tonumber(redis.call('HGET', sendKey, 'accepted')) + tonumber(redis.call('HGET', sendKey, 'failed')) + tonumber(redis.call('HGET', sendKey, 'skipped'))
if done >= redis.call('HLEN', recipients) then redis.call('HSETNX', sendKey, 'finishedAt', now) end
return 1
`;

/**
 * Puts the recipients who failed temporarily (attempts ran out) back to queued, fixing the counts,
 * and returns their ids with the retry round. Permanent failures (a 5xx for that address) stay
 * failed: sending again would get the same answer. The ids stay in a pending set until their jobs
 * are added; a run that died before that gets the same round and ids back, never a stuck send.
 */
const REQUEUE_FAILED_SCRIPT = `
local sendKey, recipients, failures, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', pending) == 1 then
  return {tonumber(redis.call('HGET', sendKey, 'retryRound')), redis.call('SMEMBERS', pending)}
end
local ids = {}
local entries = redis.call('HGETALL', failures)
for index = 1, #entries, 2 do
  local id, failure = entries[index], cjson.decode(entries[index + 1])
  if not failure.permanent and redis.call('HGET', recipients, id) == 'failed' then
    redis.call('HSET', recipients, id, 'queued')
    redis.call('HINCRBY', sendKey, 'failed', -1)
    redis.call('HDEL', failures, id)
    ids[#ids + 1] = id
  end
end
if #ids == 0 then return {0, ids} end
redis.call('HDEL', sendKey, 'finishedAt')
redis.call('SADD', pending, unpack(ids))
return {redis.call('HINCRBY', sendKey, 'retryRound', 1), ids}
`;

interface SendScripts {
  nlCreateSend(...args: string[]): Promise<[string, string]>;
  nlMarkRecipient(...args: string[]): Promise<string>;
  nlFanOutDone(...args: string[]): Promise<number>;
  nlRequeueFailed(...args: string[]): Promise<[number, string[]]>;
}

/** Sends, their compiled issue and their per-recipient record, in Redis. */
export class SendStore {
  readonly keys: RedisKeys;
  private readonly scripts: SendScripts;

  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.keys = redisKeys(prefix);
    if (!('nlCreateSend' in redis)) {
      redis.defineCommand('nlCreateSend', { numberOfKeys: 2, lua: CREATE_SCRIPT });
      redis.defineCommand('nlMarkRecipient', { numberOfKeys: 3, lua: MARK_SCRIPT });
      redis.defineCommand('nlFanOutDone', { numberOfKeys: 2, lua: FAN_OUT_DONE_SCRIPT });
      redis.defineCommand('nlRequeueFailed', { numberOfKeys: 4, lua: REQUEUE_FAILED_SCRIPT });
    }
    this.scripts = redis as unknown as SendScripts;
  }

  private listSendsKey(issueId: string, list: string): string {
    return `${this.keys.issueSends(issueId)}:${list}`;
  }

  /** Creates a send, or reports the existing one for this issue and list (unless `resend`). */
  async create(compiled: CompiledIssue, resend: boolean): Promise<{ created: boolean; sendId: string }> {
    const [outcome, sendId] = await this.scripts.nlCreateSend(
      this.listSendsKey(compiled.issueId, compiled.listName),
      this.keys.issueSends(compiled.issueId),
      compiled.issueId,
      compiled.listName,
      resend ? '1' : '0',
      new Date().toISOString(),
      JSON.stringify(compiled),
      compiled.contentHash,
      this.keys.send(''),
    );
    return { created: outcome === 'created', sendId };
  }

  /** Records that an issue has gone out (the web archive lists it); keeps the time of its first send. */
  async markIssueSent(issueId: string): Promise<void> {
    await this.redis.zadd(this.keys.sentIssues, 'NX', Date.now(), issueId);
  }

  /** Issues that have been sent, newest first, with the time of their first send. */
  async sentIssues(): Promise<{ issueId: string; sentAt: string }[]> {
    const flat = await this.redis.zrevrange(this.keys.sentIssues, 0, -1, 'WITHSCORES');
    const result: { issueId: string; sentAt: string }[] = [];
    for (let index = 0; index + 1 < flat.length; index += 2) result.push({ issueId: flat[index]!, sentAt: new Date(Number(flat[index + 1])).toISOString() });
    return result;
  }

  /** The newest send of an issue (to one list, if given). */
  async latestId(issueId: string, list?: string): Promise<string | undefined> {
    const key = list ? this.listSendsKey(issueId, list) : this.keys.issueSends(issueId);
    return (await this.redis.lindex(key, -1)) ?? undefined;
  }

  async get(sendId: string): Promise<SendRecord | undefined> {
    const replies = (await this.redis.multi().hgetall(this.keys.send(sendId)).hlen(this.keys.sendRecipients(sendId)).exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const hash = replies[0]?.[1] as Record<string, string>;
    const total = replies[1]?.[1] as number;
    if (!hash.id) return undefined;
    const status = computeSendStatus({
      total,
      accepted: Number(hash.accepted ?? 0),
      failed: Number(hash.failed ?? 0),
      skipped: Number(hash.skipped ?? 0),
      fanOutDone: hash.fanOutDoneAt !== undefined,
    });
    return {
      ...status,
      id: hash.id,
      issueId: hash.issueId ?? '',
      list: hash.list ?? '',
      createdAt: hash.createdAt ?? '',
      finishedAt: hash.finishedAt,
      fanOutCursor: Number(hash.fanOutCursor ?? 0),
      contentHash: hash.contentHash ?? '',
    };
  }

  async loadCompiled(sendId: string): Promise<CompiledIssue | undefined> {
    const json = await this.redis.get(this.keys.sendArtifact(sendId));
    if (!json) return undefined;
    const compiled = JSON.parse(json) as Partial<CompiledIssue>;
    // Stored by this code's CREATE_SCRIPT; a record missing a part can't be sent as its editor saw it.
    const missing: string[] = (['issueId', 'listName', 'subject', 'htmlTemplate', 'textTemplate', 'newsletterName', 'publicUrl'] as const).filter(
      (field) => typeof compiled[field] !== 'string',
    );
    if (!compiled.from?.address) missing.push('from');
    if (missing.length > 0) throw new Error(`The compiled issue stored with send ${sendId} lacks ${missing.join(', ')}`);
    return compiled as CompiledIssue;
  }

  /**
   * Records recipients as queued (first time only, so a repeated chunk changes nothing). Done before their jobs are added: a crash in between leaves them
   * queued, and the resumed fan-out adds the jobs.
   */
  async addRecipients(sendId: string, subscriberIds: readonly string[]): Promise<void> {
    if (subscriberIds.length === 0) return;
    const pipeline = this.redis.pipeline();
    for (const id of subscriberIds) pipeline.hsetnx(this.keys.sendRecipients(sendId), id, 'queued');
    await pipeline.exec();
  }

  async advanceFanOutCursor(sendId: string, cursor: number): Promise<void> {
    await this.redis.hset(this.keys.send(sendId), 'fanOutCursor', String(cursor));
  }

  async markFanOutDone(sendId: string): Promise<void> {
    await this.scripts.nlFanOutDone(this.keys.send(sendId), this.keys.sendRecipients(sendId), new Date().toISOString());
  }

  /** The recipient's state, and so whether this job still has work to do. */
  async recipientState(sendId: string, subscriberId: string): Promise<RecipientState | undefined> {
    return ((await this.redis.hget(this.keys.sendRecipients(sendId), subscriberId)) ?? undefined) as RecipientState | undefined;
  }

  /** The states of many recipients in one round trip, in input order (undefined: not a recipient). */
  async recipientStates(sendId: string, subscriberIds: readonly string[]): Promise<(RecipientState | undefined)[]> {
    if (subscriberIds.length === 0) return [];
    const states = await this.redis.hmget(this.keys.sendRecipients(sendId), ...subscriberIds);
    return states.map((state) => (state ?? undefined) as RecipientState | undefined);
  }

  /**
   * Moves a recipient from queued to a final state. Returns false when it was not queued (already
   * final), so the caller knows nothing was counted.
   */
  async markRecipient(sendId: string, subscriberId: string, state: Exclude<RecipientState, 'queued'>, failure?: RecipientFailure): Promise<boolean> {
    const previous = await this.scripts.nlMarkRecipient(
      this.keys.send(sendId),
      this.keys.sendRecipients(sendId),
      this.keys.sendFailures(sendId),
      subscriberId,
      state,
      new Date().toISOString(),
      failure ? JSON.stringify(failure) : '',
    );
    return previous === 'queued';
  }

  /**
   * Requeues the temporarily failed recipients of a send; returns the retry round and their ids.
   * Call requeueDone() once their jobs are added.
   */
  async requeueTemporaryFailures(sendId: string): Promise<{ round: number; subscriberIds: string[] }> {
    const [round, subscriberIds] = await this.scripts.nlRequeueFailed(
      this.keys.send(sendId),
      this.keys.sendRecipients(sendId),
      this.keys.sendFailures(sendId),
      this.keys.sendRequeuePending(sendId),
    );
    return { round, subscriberIds };
  }

  /** The jobs of the last requeue are added: forget its pending ids. */
  async requeueDone(sendId: string): Promise<void> {
    await this.redis.del(this.keys.sendRequeuePending(sendId));
  }

  /** Who failed and why, for ops. */
  async failures(sendId: string, limit = 100): Promise<{ subscriberId: string; failure: RecipientFailure }[]> {
    const result: { subscriberId: string; failure: RecipientFailure }[] = [];
    let cursor = '0';
    do {
      const [next, entries] = await this.redis.hscan(this.keys.sendFailures(sendId), cursor, 'COUNT', 200);
      cursor = next;
      for (let index = 0; index + 1 < entries.length && result.length < limit; index += 2) {
        result.push({ subscriberId: entries[index] ?? '', failure: JSON.parse(entries[index + 1] ?? '{}') as RecipientFailure });
      }
    } while (cursor !== '0' && result.length < limit);
    return result;
  }
}
