import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { compiledIssueSchema, type CompiledIssue } from '../core/compiled-issue.ts';
import {
  computeSendStatus,
  FINAL_RECIPIENT_STATES,
  type RecipientFailure,
  type RecipientState,
  type SendStatus,
  type StateReason,
} from '../core/send-status.ts';
import { heldLease, takeLease, type Lease } from './lease.ts';
import { parseJson, parseRecord, subscriberJobPairs } from './records.ts';
import { PROGRESS_BUCKET_MS, progressBucket, recipientDomains } from './recipient-domains.ts';
import { runScript } from './scripts.ts';
import { RedisStore } from './redis-store.ts';

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
  /**
   * Recipients with a delivery event of each kind, late reports included (each recipient counted
   * once per kind): hard bounces, soft bounces, blocks, complaints, unsubscribes from a provider.
   */
  readonly bounced: number;
  readonly softBounced: number;
  readonly blocked: number;
  readonly complained: number;
  readonly unsubscribed: number;
  /** Who or what paused or cancelled the send, and why (undefined while it runs). */
  readonly stateReason: StateReason | undefined;
  /** Recipient domains a breaker holds: their jobs wait until `resume`. */
  readonly heldDomains: readonly ({ readonly domain: string } & StateReason)[];
  /** Recipients a worker is sending to right now (their `sending` claim). */
  readonly sending: number;
  /** Of the skipped recipients, those skipped because the send was cancelled. */
  readonly skippedCancelled: number;
}

/** A stateReason as stored (JSON in the send hash or the held-domains hash). */
export const stateReasonSchema = z.object({
  by: z.enum(['ops', 'breaker']),
  who: z.string().optional(),
  reason: z.string(),
  at: z.string(),
});

const count = z.coerce.number().int().nonnegative().default(0);
/** A counter that a later change may take back below what one bucket added (requeued failures). */
const signedCount = z.coerce.number().int().default(0);

/** The send hash as create-send.lua and the other scripts write it. */
const sendHashSchema = z.object({
  id: z.string().min(1),
  issueId: z.string().min(1),
  list: z.string().min(1),
  createdAt: z.string(),
  finishedAt: z.string().optional(),
  fanOutDoneAt: z.string().optional(),
  fanOutCursor: count,
  accepted: count,
  failed: count,
  skipped: count,
  contentHash: z.string().default(''),
  bounced: count,
  softBounced: count,
  blocked: count,
  complained: count,
  unsubscribed: count,
  control: z.enum(['paused', 'cancelled']).optional(),
  stateReason: z.string().optional(),
  'skipped:cancelled': count,
});

/** A recipient's failure as stored (JSON in the failures hash). */
const recipientFailureSchema = z.object({
  at: z.string(),
  permanent: z.boolean(),
  code: z.string().optional(),
  responseCode: z.number().optional(),
  response: z.string().optional(),
  attempts: z.number(),
});

const RECIPIENT_STATES = ['queued', 'accepted', 'failed', 'skipped'] as const satisfies readonly RecipientState[];
const recipientStateSchema = z.enum(RECIPIENT_STATES).optional();

/**
 * What a fan-out lease holds: unique to its holder (the id), and saying who holds it since when,
 * so that a `send` refused while another queues the send can say by whom.
 */
const fanOutLeaseSchema = z.object({ id: z.string(), holder: z.string(), since: z.string() });

function fanOutLeaseToken(holder: string): string {
  return JSON.stringify({ id: randomUUID(), holder, since: new Date().toISOString() } satisfies z.infer<typeof fanOutLeaseSchema>);
}

/** How often create() proposes a new send id when another send of the same issue raced it. */
const MAX_CREATE_RACES = 10;

/** What goes with a recipient's final state (SendStore.markRecipient). */
export interface RecipientRecordDetails {
  readonly failure?: RecipientFailure | undefined;
  /** Why a recipient was skipped, counted apart on the send (e.g. cancelled). */
  readonly reason?: string | undefined;
  /**
   * The recipient's domain, for the per-domain counters ('' when unknown). The job handler knows
   * it; when it is not given, it is looked up (one more read, on the rarer paths only).
   */
  readonly domain?: string | undefined;
  /** A late record of this job: it applies only while the job is still the recipient's (mark-recipient.lua). */
  readonly onlyIfJob?: string | undefined;
}

/** Sends, their compiled issue and their per-recipient record, in Redis. */
export class SendStore extends RedisStore {
  /**
   * Creates a send unless one exists for the same issue and list (and `resend` is not set), and
   * stores the compiled issue with it, in one script, so two editors pressing "send" at once get
   * one send. Send ids read "<issue>.<list>.<n>": no ':' (BullMQ job ids), unique, and legible.
   */
  async create(
    compiled: CompiledIssue,
    resend: boolean,
    /** Takes the new send's fan-out lease in the same script call, for `ms`, naming `holder` (see takeFanOutLease). */
    fanOutLease?: { readonly ms: number; readonly holder: string },
  ): Promise<{ created: boolean; sendId: string; lease?: Lease }> {
    const listSends = this.keys.listSends(compiled.issueId, compiled.listName);
    const leaseToken = fanOutLease ? fanOutLeaseToken(fanOutLease.holder) : '';
    for (let round = 0; round < MAX_CREATE_RACES; round += 1) {
      const existing = await this.redis.llen(listSends);
      const sendId = `${compiled.issueId}.${compiled.listName}.${existing + 1}`;
      const [outcome, id] = await runScript(
        this.redis,
        'createSend',
        {
          listSends,
          issueSends: this.keys.issueSends(compiled.issueId),
          send: this.keys.send(sendId),
          artifact: this.keys.sendArtifact(sendId),
          fanOutLease: this.keys.sendFanOutLease(sendId),
        },
        {
          expectedCount: existing,
          sendId,
          issueId: compiled.issueId,
          list: compiled.listName,
          resend: resend ? '1' : '0',
          now: new Date().toISOString(),
          artifact: JSON.stringify(compiled),
          contentHash: compiled.contentHash,
          leaseToken,
          leaseMs: fanOutLease?.ms ?? 0,
        },
      );
      if (outcome === 'retry') continue;
      if (outcome !== 'created' || !fanOutLease) return { created: outcome === 'created', sendId: id };
      return { created: true, sendId: id, lease: heldLease(this.redis, this.keys.sendFanOutLease(id), fanOutLease.ms, leaseToken) };
    }
    throw new Error(`could not create a send of ${compiled.issueId}: other sends kept being created at the same time`);
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
    const key = list ? this.keys.listSends(issueId, list) : this.keys.issueSends(issueId);
    return (await this.redis.lindex(key, -1)) ?? undefined;
  }

  /** The send with its counters and derived state: two reads, whatever the send's size. */
  async get(sendId: string): Promise<SendRecord | undefined> {
    // One transaction, so the counters and the total are of the same moment (the keys share a hash tag).
    const replies =
      (await this.redis
        .multi()
        .hgetall(this.keys.send(sendId))
        .hlen(this.keys.sendRecipients(sendId))
        .hlen(this.keys.sendClaims(sendId))
        .hgetall(this.keys.sendHeldDomains(sendId))
        .exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const hash = (replies[0]?.[1] ?? {}) as Record<string, string>;
    const total = Number(replies[1]?.[1] ?? 0);
    const held = (replies[3]?.[1] ?? {}) as Record<string, string>;
    if (Object.keys(hash).length === 0) return undefined;
    const stored = parseRecord(sendHashSchema, hash, `The record of send ${sendId}`);
    const status = computeSendStatus({
      total,
      accepted: stored.accepted,
      failed: stored.failed,
      skipped: stored.skipped,
      fanOutDone: stored.fanOutDoneAt !== undefined,
      finished: stored.finishedAt !== undefined,
      control: stored.control ?? 'active',
    });
    return {
      ...status,
      id: stored.id,
      issueId: stored.issueId,
      list: stored.list,
      createdAt: stored.createdAt,
      finishedAt: stored.finishedAt,
      fanOutCursor: stored.fanOutCursor,
      contentHash: stored.contentHash,
      bounced: stored.bounced,
      softBounced: stored.softBounced,
      blocked: stored.blocked,
      complained: stored.complained,
      unsubscribed: stored.unsubscribed,
      stateReason:
        stored.stateReason === undefined ? undefined : parseRecord(stateReasonSchema, parseJson(stored.stateReason), `The state reason of send ${sendId}`),
      heldDomains: Object.entries(held)
        .map(([domain, json]) => ({ domain, ...parseRecord(stateReasonSchema, parseJson(json), `The hold of ${domain} on send ${sendId}`) }))
        .sort((a, b) => a.domain.localeCompare(b.domain)),
      sending: Number(replies[2]?.[1] ?? 0),
      skippedCancelled: stored['skipped:cancelled'],
    };
  }

  /**
   * The newest send that had this subscriber among its recipients, looking through the sends of
   * the `issues` most recently sent issues: what a report naming only an address counts against.
   */
  async latestSendOf(subscriberId: string, issues = 10): Promise<string | undefined> {
    const issueIds = await this.redis.zrevrange(this.keys.sentIssues, 0, issues - 1);
    const sendLists = await Promise.all(issueIds.map((issueId) => this.redis.lrange(this.keys.issueSends(issueId), 0, -1)));
    const candidates = sendLists.flatMap((sendIds) => [...sendIds].reverse());
    if (candidates.length === 0) return undefined;
    const pipeline = this.redis.pipeline();
    for (const sendId of candidates) pipeline.hexists(this.keys.sendRecipients(sendId), subscriberId);
    const replies = (await pipeline.exec()) ?? [];
    return candidates.find((_, index) => replies[index]?.[1] === 1);
  }

  /** Whether the send exists. */
  async exists(sendId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.send(sendId))) === 1;
  }

  /** The compiled issue stored with the send, parsed: a record missing a part can't be sent as its editor saw it. */
  async loadCompiled(sendId: string): Promise<CompiledIssue | undefined> {
    const json = await this.redis.get(this.keys.sendArtifact(sendId));
    if (!json) return undefined;
    return parseRecord(compiledIssueSchema, parseJson(json), `The compiled issue stored with send ${sendId}`);
  }

  /**
   * Records recipients as queued (first time only, so a repeated chunk changes nothing). Done
   * before their jobs are added: a crash in between leaves them queued, and the resumed fan-out
   * adds the jobs.
   */
  async addRecipients(sendId: string, subscriberIds: readonly string[]): Promise<'added' | 'cancelled'> {
    if (subscriberIds.length === 0) return 'added';
    const added = await runScript(
      this.redis,
      'addRecipients',
      { send: this.keys.send(sendId), recipients: this.keys.sendRecipients(sendId) },
      {},
      { argv: subscriberIds },
    );
    return added === 1 ? 'added' : 'cancelled';
  }

  async advanceFanOutCursor(sendId: string, cursor: number): Promise<void> {
    await this.redis.hset(this.keys.send(sendId), 'fanOutCursor', String(cursor));
  }

  async markFanOutDone(sendId: string): Promise<void> {
    await runScript(
      this.redis,
      'fanOutDone',
      { send: this.keys.send(sendId), recipients: this.keys.sendRecipients(sendId) },
      { now: new Date().toISOString() },
    );
  }

  /** The recipient's state, and so whether this job still has work to do. */
  async recipientState(sendId: string, subscriberId: string): Promise<RecipientState | undefined> {
    return parseRecord(
      recipientStateSchema,
      (await this.redis.hget(this.keys.sendRecipients(sendId), subscriberId)) ?? undefined,
      `Recipient ${subscriberId} of send ${sendId}`,
    );
  }

  /** The states of many recipients in one round trip, in input order (undefined: not a recipient). */
  async recipientStates(sendId: string, subscriberIds: readonly string[]): Promise<(RecipientState | undefined)[]> {
    if (subscriberIds.length === 0) return [];
    const states = await this.redis.hmget(this.keys.sendRecipients(sendId), ...subscriberIds);
    return states.map((state, index) => parseRecord(recipientStateSchema, state ?? undefined, `Recipient ${subscriberIds[index]} of send ${sendId}`));
  }

  /**
   * Moves a recipient from queued to a final state (with `details`, see RecipientRecordDetails). Returns false when it was not queued (already
   * final), so the caller knows nothing was counted. The send's progress and per-domain counters
   * move in the same script call.
   */
  async markRecipient(sendId: string, subscriberId: string, state: Exclude<RecipientState, 'queued'>, details: RecipientRecordDetails = {}): Promise<boolean> {
    const { failure, reason, domain, onlyIfJob } = details;
    let recipientDomain = domain;
    if (recipientDomain === undefined) {
      // Read with the recipient's state, in the same round trip: a record for a recipient already
      // final (the worker's second record of a failed job, say) stops here, as quickly as the script would.
      const [current, [looked]] = await Promise.all([
        this.redis.hget(this.keys.sendRecipients(sendId), subscriberId),
        recipientDomains(this.redis, this.keys, [subscriberId]),
      ]);
      if (current !== 'queued') return false;
      recipientDomain = looked ?? '';
    }
    // The domain goes into the failure record too: a --retry-failed round takes it off that domain's count.
    const storedFailure = failure ? JSON.stringify({ ...failure, domain: recipientDomain }) : '';
    const previous = await runScript(
      this.redis,
      'markRecipient',
      {
        send: this.keys.send(sendId),
        recipients: this.keys.sendRecipients(sendId),
        failures: this.keys.sendFailures(sendId),
        queuedJobs: this.keys.sendQueuedJobs(sendId),
        claims: this.keys.sendClaims(sendId),
        progress: this.keys.sendProgress(sendId),
        domains: this.keys.sendDomains(sendId),
      },
      {
        subscriberId,
        state,
        now: new Date().toISOString(),
        failure: storedFailure,
        reason: reason ?? '',
        bucket: progressBucket(Date.now()),
        domain: recipientDomain,
        onlyIfJob: onlyIfJob ?? '',
      },
    );
    return previous === 'queued';
  }

  /**
   * One page of `send --retry-failed`: walks the send's failures hash with HSCAN from `cursor` ('0'
   * starts it; the cursor returned is '0' when the walk is over) and puts the recipients of this
   * page still failed on a temporary error back to queued (requeue-failed.lua), in script calls of
   * at most `pageSize` ids, so Redis is never blocked for long whatever the send's size. They stay
   * in the pending set until their jobs are added: call requeueDone() with them then. `round` is the
   * run's retry round, 0 until it has one: the first recipient requeued takes the send's next
   * round, and the round returned is the one to pass with the next page. Ids in `skip` (already
   * requeued by this run: HSCAN may return an entry twice) are left alone.
   */
  async requeueTemporaryFailures(
    sendId: string,
    page: { readonly cursor?: string; readonly round?: number; readonly pageSize?: number; readonly skip?: ReadonlySet<string> } = {},
  ): Promise<{ cursor: string; round: number; subscriberIds: string[] }> {
    // 500 ids: about 2 ms of script on a small machine (bench/retry-failed.ts).
    const pageSize = page.pageSize ?? 500;
    const [cursor, flat] = await this.redis.hscan(this.keys.sendFailures(sendId), page.cursor ?? '0', 'COUNT', pageSize);
    const candidates = new Set<string>();
    for (let index = 0; index + 1 < flat.length; index += 2) {
      const subscriberId = flat[index]!;
      if (page.skip?.has(subscriberId)) continue;
      const failure = parseRecord(recipientFailureSchema, parseJson(flat[index + 1]), `The failure of recipient ${subscriberId} of send ${sendId}`);
      // The script checks again: the recipient may have changed since the scan.
      if (!failure.permanent) candidates.add(subscriberId);
    }
    const ids = [...candidates];
    let round = page.round ?? 0;
    const subscriberIds: string[] = [];
    // HSCAN's COUNT is a hint: a page may hold more than asked, so the script calls are cut to size.
    for (let start = 0; start < ids.length; start += pageSize) {
      const [taken, requeued] = await runScript(
        this.redis,
        'requeueFailed',
        {
          send: this.keys.send(sendId),
          recipients: this.keys.sendRecipients(sendId),
          failures: this.keys.sendFailures(sendId),
          pending: this.keys.sendRequeuePending(sendId),
          progress: this.keys.sendProgress(sendId),
          domains: this.keys.sendDomains(sendId),
        },
        { round, bucket: progressBucket(Date.now()) },
        { argv: ids.slice(start, start + pageSize) },
      );
      round = taken;
      subscriberIds.push(...requeued);
    }
    return { cursor, round, subscriberIds };
  }

  /** The jobs of these requeued recipients are added: they are no longer pending. */
  async requeueDone(sendId: string, subscriberIds: readonly string[]): Promise<void> {
    if (subscriberIds.length === 0) return;
    await this.redis.srem(this.keys.sendRequeuePending(sendId), ...subscriberIds);
  }

  /**
   * One page (SSCAN from `cursor`; '0' ends) of the recipients a retry run requeued but may not have
   * given jobs (it died in between), with the round they were requeued under: the send's current
   * retry round, since requeue-failed.lua takes a new round only when nothing is pending.
   */
  async pendingRequeues(sendId: string, cursor: string, pageSize: number): Promise<{ cursor: string; round: number; subscriberIds: string[] }> {
    const [next, subscriberIds] = await this.redis.sscan(this.keys.sendRequeuePending(sendId), cursor, 'COUNT', pageSize);
    const round = parseRecord(count, (await this.redis.hget(this.keys.send(sendId), 'retryRound')) ?? undefined, `The retry round of send ${sendId}`);
    return { cursor: next, round, subscriberIds };
  }

  /**
   * Records which job serves each recipient still queued (assign-jobs.lua), before the jobs are
   * added, so a crash in between shows as a stuck send; `expectedJobId` makes an entry change only
   * if it still names that job. Returns the ids whose entry was set: add jobs for those only.
   */
  async assignJobs(
    sendId: string,
    jobs: readonly { readonly subscriberId: string; readonly jobId: string; readonly expectedJobId?: string }[],
  ): Promise<Set<string>> {
    if (jobs.length === 0) return new Set();
    const assigned = await runScript(
      this.redis,
      'assignJobs',
      { recipients: this.keys.sendRecipients(sendId), queuedJobs: this.keys.sendQueuedJobs(sendId) },
      {},
      { argv: jobs.flatMap(({ subscriberId, jobId, expectedJobId }) => [subscriberId, jobId, expectedJobId ?? '']) },
    );
    return new Set(jobs.filter((_, index) => assigned[index] === 1).map(({ subscriberId }) => subscriberId));
  }

  /** The job that may send to a queued recipient (undefined: not queued, or a send from before the job index). */
  async assignedJob(sendId: string, subscriberId: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.sendQueuedJobs(sendId), subscriberId)) ?? undefined;
  }

  /**
   * Takes the send's fan-out lease for `ms` (renew it every chunk, so a fan-out that died shows),
   * or undefined when another fan-out of the send holds it: only one process queues a send at a
   * time. `holder` says who, for whoever finds the lease taken (fanOutHolder).
   */
  async takeFanOutLease(sendId: string, ms: number, holder: string): Promise<Lease | undefined> {
    return takeLease(this.redis, this.keys.sendFanOutLease(sendId), ms, fanOutLeaseToken(holder));
  }

  /** Whether a fan-out of this send is running (its lease is held). */
  async fanOutRunning(sendId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.sendFanOutLease(sendId))) === 1;
  }

  /**
   * Who holds the send's fan-out lease and since when; undefined when nobody does. A lease of an
   * older version (it held '1') names nobody: `holder` and `since` are then undefined.
   */
  async fanOutHolder(sendId: string): Promise<{ holder: string | undefined; since: string | undefined } | undefined> {
    const token = await this.redis.get(this.keys.sendFanOutLease(sendId));
    if (token === null) return undefined;
    const named = fanOutLeaseSchema.safeParse(parseJson(token));
    return named.success ? { holder: named.data.holder, since: named.data.since } : { holder: undefined, since: undefined };
  }

  /** Ends the fan-out lease whoever holds it: for a lease known to be dead (tests, repairs), never to stop a live fan-out. */
  async releaseFanOutLease(sendId: string): Promise<void> {
    await this.redis.del(this.keys.sendFanOutLease(sendId));
  }

  /** Up to `count` random queued recipients with their job ids: enough to tell a stuck send, at a bounded cost. */
  async sampleQueuedJobs(sendId: string, count: number): Promise<{ subscriberId: string; jobId: string }[]> {
    const reply = (await this.redis.call('HRANDFIELD', this.keys.sendQueuedJobs(sendId), String(count), 'WITHVALUES')) as (string | [string, string])[];
    // RESP3 answers with [field, value] pairs, RESP2 with one flat list.
    return subscriberJobPairs(reply.flat());
  }

  /** Queued recipients with their job ids, a page at a time (HSCAN; for repairs, never for a status). '0' ends. */
  async queuedJobsPage(sendId: string, cursor: string): Promise<{ cursor: string; jobs: { subscriberId: string; jobId: string }[] }> {
    const [next, flat] = await this.redis.hscan(this.keys.sendQueuedJobs(sendId), cursor, 'COUNT', 500);
    return { cursor: next, jobs: subscriberJobPairs(flat) };
  }

  /** Takes the send's retry lock for `ms` (renew it while working); undefined when another retry holds it. */
  async takeRetryLease(sendId: string, ms: number): Promise<Lease | undefined> {
    return takeLease(this.redis, this.keys.sendRepairLock(sendId), ms);
  }

  /** Adds one to the send's repair round and returns it: every repair gets job ids of its own. */
  async nextRepairRound(sendId: string): Promise<number> {
    return this.redis.hincrby(this.keys.send(sendId), 'repairRound', 1);
  }

  /**
   * Every send id, by way of the issues that have been sent (`markIssueSent` runs as a send is
   * created) and each issue's list of sends: a read per issue, never a scan of the keyspace.
   */
  async allIds(): Promise<string[]> {
    const issueIds = await this.redis.zrevrange(this.keys.sentIssues, 0, -1);
    // One read per issue, not one pipeline: each issue's keys are in a slot of their own.
    const sendLists = await Promise.all(issueIds.map((issueId) => this.redis.lrange(this.keys.issueSends(issueId), 0, -1)));
    return sendLists.flat();
  }

  /** The send's progress counters (keys.ts `sendProgress`): recipients per final state (and requeued) per bucket. */
  async progress(sendId: string): Promise<{ bucketMs: number; state: string; count: number }[]> {
    const hash = await this.redis.hgetall(this.keys.sendProgress(sendId));
    return Object.entries(hash).map(([field, value]) => {
      const separator = field.lastIndexOf('|');
      return {
        bucketMs: parseRecord(count, field.slice(0, separator), `A progress bucket of send ${sendId}`),
        state: field.slice(separator + 1),
        count: parseRecord(signedCount, value, `The progress count ${field} of send ${sendId}`),
      };
    });
  }

  /** Recipients that reached each final state in the progress buckets from `fromMs` to `toMs` (inclusive): one read of a few fields. */
  async progressBetween(sendId: string, fromMs: number, toMs: number): Promise<Record<(typeof FINAL_RECIPIENT_STATES)[number], number>> {
    const fields: string[] = [];
    for (let bucket = progressBucket(fromMs); bucket <= toMs; bucket += PROGRESS_BUCKET_MS)
      for (const state of FINAL_RECIPIENT_STATES) fields.push(`${bucket}|${state}`);
    const values = fields.length === 0 ? [] : await this.redis.hmget(this.keys.sendProgress(sendId), ...fields);
    const sums = { accepted: 0, failed: 0, skipped: 0 };
    values.forEach((value, index) => {
      const state = FINAL_RECIPIENT_STATES[index % FINAL_RECIPIENT_STATES.length]!;
      sums[state] += parseRecord(signedCount, value ?? undefined, `The progress of send ${sendId}`);
    });
    return sums;
  }

  /**
   * The send's per-domain counters (keys.ts `sendDomains`): domain ('' unknown), counter, count.
   * Read a page at a time (HSCAN), so a send to tens of thousands of domains never holds Redis
   * for one long read; a field HSCAN returns twice is counted once.
   */
  async domainCounts(sendId: string): Promise<{ domain: string; counter: string; count: number }[]> {
    const hash = new Map<string, string>();
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(this.keys.sendDomains(sendId), cursor, 'COUNT', 1000);
      cursor = next;
      for (let index = 0; index + 1 < flat.length; index += 2) hash.set(flat[index]!, flat[index + 1]!);
    } while (cursor !== '0');
    return [...hash].map(([field, value]) => {
      const separator = field.lastIndexOf('|');
      return {
        domain: field.slice(0, separator),
        counter: field.slice(separator + 1),
        count: parseRecord(signedCount, value, `The domain count ${field} of send ${sendId}`),
      };
    });
  }

  /** Who failed and why, for ops. */
  async failures(sendId: string, limit = 100): Promise<{ subscriberId: string; failure: RecipientFailure }[]> {
    const result: { subscriberId: string; failure: RecipientFailure }[] = [];
    let cursor = '0';
    do {
      const [next, entries] = await this.redis.hscan(this.keys.sendFailures(sendId), cursor, 'COUNT', 200);
      cursor = next;
      for (let index = 0; index + 1 < entries.length && result.length < limit; index += 2) {
        const subscriberId = entries[index]!;
        result.push({
          subscriberId,
          failure: parseRecord(recipientFailureSchema, parseJson(entries[index + 1]), `The failure of recipient ${subscriberId} of send ${sendId}`),
        });
      }
    } while (cursor !== '0' && result.length < limit);
    return result;
  }
}
