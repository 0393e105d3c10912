import { breakerMinutes, type BreakerCounts, type BreakerKind } from '../core/breaker-policy.ts';
import type { SendControl, StateReason } from '../core/send-status.ts';
import { runScript, type ReplyOf } from './scripts.ts';
import { RedisStore } from './redis-store.ts';
import { subscriberJobPairs } from './records.ts';
import { progressBucket, recipientDomains } from './recipient-domains.ts';

/** A `sending` claim: which worker process holds a recipient, since when, for which job. */
export interface Claim {
  readonly workerId: string;
  readonly at: number;
  readonly jobId: string;
}

/** Claims are stored as "<worker id>|<claimed at, ms>|<job id>" (worker ids have no '|'). */
export function formatClaim(claim: Claim): string {
  return `${claim.workerId}|${claim.at}|${claim.jobId}`;
}

export function parseClaim(value: string): Claim | undefined {
  const [workerId, at, ...jobId] = value.split('|');
  if (!workerId || !at || !/^\d+$/.test(at)) return undefined;
  return { workerId, at: Number(at), jobId: jobId.join('|') };
}

/** What the claim script found. */
export type ClaimOutcome = ReplyOf<'claimRecipient'>;

/** What a pause, resume or cancel did. */
export type ControlOutcome = ReplyOf<'setSendControl'>;

/** The breaker counts after one outcome was counted, for the send and for the recipient's domain. */
export interface BreakerReading {
  /** The send's control, or `unjudged` when no judgement is due (the counts are then zero). */
  readonly control: string;
  readonly domainHeld: boolean;
  readonly send: BreakerCounts;
  readonly domain: BreakerCounts;
  /** How many times the send was resumed when the counts were read: a trip passes it on. */
  readonly armed: number;
}

/** A send event for the console and outgoing webhooks (work item #6 reads the stream). */
export interface SendEvent {
  readonly type:
    | 'send.started'
    | 'send.paused'
    | 'send.resumed'
    | 'send.cancelled'
    | 'send.domain-held'
    | 'send.finished'
    | 'breaker.tripped'
    | 'schedule.nothing-new';
  /** The send it is about; empty for schedule.nothing-new (a schedule's occurrence that started no send: see its scheduleId). */
  readonly sendId: string;
  readonly [field: string]: string;
}

/** A send's pause/cancel and held domains, as a job sees them before composing. */
export interface SendGate {
  readonly control: SendControl;
  readonly heldDomains: ReadonlySet<string>;
}

/**
 * How long a process reuses a send's gate: a read saved per message. Safe, because the claim
 * checks the same things again, atomically, right before SMTP; a stale "active" only means the job
 * finds the pause there, a stale "paused" puts a job off that resume then brings forward.
 */
const GATE_CACHE_MS = 200;

/** How many send events the stream keeps (approximately: MAXLEN ~). */
const SEND_EVENTS_KEPT = 10_000;

/**
 * Send control in Redis: pause, resume and cancel; the `sending` claims that keep two workers from
 * mailing one recipient; the breaker counts and the domains a breaker holds; the send event stream.
 */
export class SendControlStore extends RedisStore {
  /** Recent gates per send (see GATE_CACHE_MS). */
  private readonly gates = new Map<string, { readonly gate: Promise<SendGate>; readonly until: number }>();

  /** The last check before SMTP, and the claim: see claim-recipient.lua. */
  async claim(
    sendId: string,
    subscriberId: string,
    request: { readonly jobId: string; readonly claim: Claim; readonly domain: string; readonly takeOver?: string | undefined },
  ): Promise<ClaimOutcome> {
    return runScript(
      this.redis,
      'claimRecipient',
      {
        send: this.keys.send(sendId),
        recipients: this.keys.sendRecipients(sendId),
        queuedJobs: this.keys.sendQueuedJobs(sendId),
        claims: this.keys.sendClaims(sendId),
        heldDomains: this.keys.sendHeldDomains(sendId),
      },
      { subscriberId, jobId: request.jobId, claim: formatClaim(request.claim), domain: request.domain, takeOver: request.takeOver ?? '' },
    );
  }

  /**
   * What a job checks first, in one round trip: whether the send is paused or cancelled, and the
   * domains its breakers hold (a handful at most). The claim checks both again, atomically.
   */
  async gate(sendId: string, options: { readonly fresh?: boolean } = {}): Promise<SendGate> {
    const cached = this.gates.get(sendId);
    if (cached && cached.until > Date.now() && !options.fresh) return cached.gate;
    const gate = (async (): Promise<SendGate> => {
      const [control, held] = await Promise.all([this.redis.hget(this.keys.send(sendId), 'control'), this.redis.hkeys(this.keys.sendHeldDomains(sendId))]);
      return { control: control === 'paused' || control === 'cancelled' ? control : 'active', heldDomains: new Set(held) };
    })();
    this.gates.set(sendId, { gate, until: Date.now() + GATE_CACHE_MS });
    gate.catch(() => this.gates.delete(sendId));
    if (this.gates.size > 64) this.gates.delete(this.gates.keys().next().value as string);
    return gate;
  }

  /** Records a job put off while its send is paused (or its domain held). */
  async park(sendId: string, jobId: string): Promise<void> {
    await this.redis.sadd(this.keys.sendParkedJobs(sendId), jobId);
  }

  /** One page (SSCAN; '0' ends) of the jobs parked while the send was paused or a domain held. */
  async parkedPage(sendId: string, cursor: string, count = 500): Promise<{ cursor: string; jobIds: string[] }> {
    const [next, jobIds] = await this.redis.sscan(this.keys.sendParkedJobs(sendId), cursor, 'COUNT', count);
    return { cursor: next, jobIds };
  }

  /** Forgets parked jobs once they have been brought forward. */
  async unpark(sendId: string, jobIds: readonly string[]): Promise<void> {
    if (jobIds.length > 0) await this.redis.srem(this.keys.sendParkedJobs(sendId), ...jobIds);
  }

  /** Gives up a claim, if it is still this one. */
  async releaseClaim(sendId: string, subscriberId: string, claim: Claim): Promise<boolean> {
    return (await runScript(this.redis, 'releaseClaim', { claims: this.keys.sendClaims(sendId) }, { subscriberId, claim: formatClaim(claim) })) === 1;
  }

  /** The claim on one recipient, if any. */
  async claimOf(sendId: string, subscriberId: string): Promise<Claim | undefined> {
    const value = await this.redis.hget(this.keys.sendClaims(sendId), subscriberId);
    return value === null ? undefined : parseClaim(value);
  }

  /** Whether a worker process still beats (its heartbeat thread renews the key every second). */
  async workerAlive(workerId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.workerAlive(workerId))) === 1;
  }

  /** The claims held now, by recipient (a few dozen per worker: what is in flight). */
  async claims(sendId: string): Promise<Map<string, Claim>> {
    const entries = await this.redis.hgetall(this.keys.sendClaims(sendId));
    const claims = new Map<string, Claim>();
    for (const [subscriberId, value] of Object.entries(entries)) {
      const claim = parseClaim(value);
      if (claim) claims.set(subscriberId, claim);
    }
    return claims;
  }

  /**
   * Pauses, resumes or cancels a send (set-send-control.lua). Resume also deletes the breaker
   * buckets of the window, which re-arms the breakers.
   */
  async setControl(
    sendId: string,
    action: 'pause' | 'resume' | 'cancel',
    reason: StateReason | undefined,
    windowMinutes: number,
    /** A breaker's pause: the resume count its reading was taken under (BreakerReading.armed). */
    armed?: number,
  ): Promise<ControlOutcome> {
    return runScript(
      this.redis,
      'setSendControl',
      { send: this.keys.send(sendId), recipients: this.keys.sendRecipients(sendId), heldDomains: this.keys.sendHeldDomains(sendId) },
      { action, reason: reason ? JSON.stringify(reason) : '', now: new Date().toISOString(), armed: armed ?? '' },
      { keys: action === 'resume' ? this.bucketKeys(sendId, windowMinutes) : [] },
    );
  }

  /**
   * One page of a cancelled send's recipients: the queued, unclaimed ones end as skipped (cancelled),
   * counted under their domains for the dashboard (looked up first, one round trip). Returns their job ids.
   */
  async cancelRecipients(sendId: string, subscriberIds: readonly string[]): Promise<{ subscriberId: string; jobId: string }[]> {
    if (subscriberIds.length === 0) return [];
    const domains = await recipientDomains(this.redis, this.keys, subscriberIds);
    const flat = await runScript(
      this.redis,
      'cancelRecipients',
      {
        send: this.keys.send(sendId),
        recipients: this.keys.sendRecipients(sendId),
        queuedJobs: this.keys.sendQueuedJobs(sendId),
        claims: this.keys.sendClaims(sendId),
        progress: this.keys.sendProgress(sendId),
        domains: this.keys.sendDomains(sendId),
      },
      { now: new Date().toISOString(), bucket: progressBucket(Date.now()) },
      { argv: subscriberIds.flatMap((subscriberId, index) => [subscriberId, domains[index] ?? '']) },
    );
    return subscriberJobPairs(flat);
  }

  /** Recipient ids of a send, a page at a time (HSCAN of its recipients); '0' ends. */
  async recipientsPage(sendId: string, cursor: string, count = 500): Promise<{ cursor: string; subscriberIds: string[] }> {
    const [next, flat] = await this.redis.hscan(this.keys.sendRecipients(sendId), cursor, 'COUNT', count);
    return { cursor: next, subscriberIds: flat.filter((_, index) => index % 2 === 0) };
  }

  /**
   * Counts one outcome for the breakers (breaker-count.lua) and returns the window's counts: a
   * message answered (`sample`), and/or an event of a kind the breakers watch.
   */
  async countForBreakers(
    sendId: string,
    outcome: { readonly domain: string; readonly sample: boolean; readonly kind?: BreakerKind | undefined },
    windowMinutes: number,
  ): Promise<BreakerReading> {
    const [control, held, ...sums] = await runScript(
      this.redis,
      'breakerCount',
      { send: this.keys.send(sendId), heldDomains: this.keys.sendHeldDomains(sendId) },
      { domain: outcome.domain, sample: outcome.sample ? 1 : 0, kind: outcome.kind ?? '', ttlSeconds: (windowMinutes + 1) * 60 },
      { keys: this.bucketKeys(sendId, windowMinutes) },
    );
    const counts = (offset: number): BreakerCounts => ({
      sample: sums[offset] ?? 0,
      hard: sums[offset + 1] ?? 0,
      complaint: sums[offset + 2] ?? 0,
      block: sums[offset + 3] ?? 0,
    });
    return { control, domainHeld: held === 1, send: counts(0), domain: counts(4), armed: sums[8] ?? 0 };
  }

  /** A breaker holds one domain of the send; false when it was held already (or the send is cancelled). */
  async holdDomain(sendId: string, domain: string, reason: StateReason, armed: number): Promise<boolean> {
    return (
      (await runScript(
        this.redis,
        'holdDomain',
        { send: this.keys.send(sendId), heldDomains: this.keys.sendHeldDomains(sendId) },
        { domain, reason: JSON.stringify(reason), armed },
      )) === 1
    );
  }

  /** Adds an event to the send event stream (capped), for the console and outgoing webhooks. */
  async publish(event: SendEvent): Promise<void> {
    await this.redis.xadd(this.keys.sendEvents, 'MAXLEN', '~', SEND_EVENTS_KEPT, '*', ...Object.entries({ ...event, at: new Date().toISOString() }).flat());
  }

  /** The latest send events, newest last. */
  async recentEvents(count = 100): Promise<Record<string, string>[]> {
    const entries = await this.redis.xrevrange(this.keys.sendEvents, '+', '-', 'COUNT', count);
    return entries
      .reverse()
      .map(([, fields]) => Object.fromEntries(fields.flatMap((_, index) => (index % 2 === 0 ? [[fields[index]!, fields[index + 1] ?? '']] : []))));
  }

  private bucketKeys(sendId: string, windowMinutes: number): string[] {
    return breakerMinutes(Date.now(), windowMinutes).map((minute) => this.keys.sendBreakerBucket(sendId, minute));
  }
}
