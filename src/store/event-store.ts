import { createHash } from 'node:crypto';
import { z } from 'zod';
import { weakerThan, type EventEffect } from '../core/bounce-policy.ts';
import { DELIVERY_EVENT_KINDS, DELIVERY_EVENT_SOURCES, type DeliveryEvent } from '../core/delivery-event.ts';
import { SUBSCRIBER_STATUSES, type SubscriberStatus } from '../core/subscriber.ts';
import { parseJson, parseRecord } from './records.ts';
import { withEveryList } from './every-list.ts';
import { runScript } from './scripts.ts';
import { RedisStore } from './redis-store.ts';

/** A delivery event as stored (JSON), parsed on the way out. */
export const storedEventSchema = z.object({
  id: z.string().min(1),
  source: z.enum(DELIVERY_EVENT_SOURCES),
  kind: z.enum(DELIVERY_EVENT_KINDS),
  subscriberId: z.string().min(1),
  sendId: z.string().optional(),
  diagnostic: z.object({
    status: z.string().optional(),
    replyCode: z.number().optional(),
    providerType: z.string().optional(),
    text: z.string().optional(),
  }),
  at: z.string(),
});

/** A report no subscriber could be found for, kept for ops to inspect (`newsletter bounces unmatched`). */
export interface UnmatchedReport {
  readonly receivedAt: string;
  readonly source: string;
  /** Why it could not be attributed (or applied). */
  readonly reason: string;
  /** The address the report names, if any. */
  readonly recipient: string | undefined;
  readonly kind: string | undefined;
  readonly eventId: string | undefined;
  /** The report as received (a mail report's text; for a webhook, the event as read), cut at UNMATCHED_RAW_BYTES. */
  readonly raw: string;
}

const unmatchedSchema = z.object({
  receivedAt: z.string(),
  source: z.string(),
  reason: z.string(),
  recipient: z.string().optional(),
  kind: z.string().optional(),
  eventId: z.string().optional(),
  raw: z.string(),
});

/** What applying an event to its subscriber did. */
export interface SubscriberEventOutcome {
  /** False for a replay (the id was applied before) or a subscriber that no longer exists. */
  readonly applied: boolean;
  readonly missing: boolean;
  readonly statusBefore: SubscriberStatus | undefined;
  readonly statusAfter: SubscriberStatus | undefined;
}

/**
 * How long an event id is remembered to refuse a replay. Providers retry webhooks for up to a
 * few days and MTAs retry a bounce for five; 90 days is far beyond both.
 */
const EVENT_ID_HORIZON_MS = 90 * 86_400_000;
/** How many events `subscribers show` keeps per subscriber. */
const RECENT_EVENTS_KEPT = 50;
/** Unattributed reports kept for inspection; older ones are dropped (with their count logged by the caller). */
export const UNMATCHED_KEPT = 10_000;
/** The part of an unattributed report kept with it: a DSN with headers only is a few KB. */
export const UNMATCHED_RAW_BYTES = 16 * 1024;

/** Delivery events in Redis: per subscriber (status, recent events, soft-bounce window) and per send (counters, latest report). */
export class EventStore extends RedisStore {
  /**
   * Applies an event to its subscriber as `effect` says, in one script: a replay changes nothing,
   * a soft bounce counts in the window, a suppression only ever replaces a weaker status.
   */
  async applyToSubscriber(event: DeliveryEvent, effect: EventEffect, now: Date): Promise<SubscriberEventOutcome> {
    const id = event.subscriberId;
    const suppressTo = effect.suppress ?? effect.suppressAfter?.as ?? '';
    const [outcome, before, after] = await withEveryList(this.redis, this.keys, `apply event ${event.id} to subscriber ${id}`, ({ listCount, listKeys }) =>
      runScript(
        this.redis,
        'applySubscriberEvent',
        {
          subscriber: this.keys.subscriber(id),
          lists: this.keys.lists,
          eventIds: this.keys.subscriberEventIds(id),
          recentEvents: this.keys.subscriberEvents(id),
          softBounces: this.keys.subscriberSoftBounces(id),
        },
        {
          subscriberId: id,
          eventId: `${event.source}:${event.id}`,
          event: JSON.stringify(event),
          nowMs: now.getTime(),
          now: now.toISOString(),
          idHorizonMs: EVENT_ID_HORIZON_MS,
          recentLimit: RECENT_EVENTS_KEPT,
          softMember: event.sendId === undefined ? `${event.source}:${event.id}` : `send:${event.sendId}`,
          // A time in the future (a clock off, or a sender's mistake) would never expire: now at the latest.
          softAtMs: Math.min(Date.parse(event.at) || now.getTime(), now.getTime()),
          softWindowMs: effect.suppressAfter?.windowMs ?? 0,
          softLimit: effect.suppressAfter?.limit ?? 0,
          suppressTo,
          fromStatuses: suppressTo ? weakerThan(suppressTo).join(',') : '',
          leaveLists: effect.leaveLists ? '1' : '0',
          listCount,
        },
        { keys: listKeys },
      ),
    );
    const status = (value: string) => SUBSCRIBER_STATUSES.find((known) => known === value);
    return { applied: outcome === 'applied', missing: outcome === 'missing', statusBefore: status(before), statusAfter: status(after) };
  }

  /**
   * Records an event on its send (counter, strongest report), once; false for a replay or an
   * unknown send. The counter is also kept under the recipient's `domain` ('' when unknown).
   */
  async applyToSend(
    event: DeliveryEvent & { readonly sendId: string },
    effect: Pick<EventEffect, 'sendCounter' | 'reportRank'>,
    domain: string,
  ): Promise<boolean> {
    const { sendId } = event;
    const applied = await runScript(
      this.redis,
      'applySendEvent',
      {
        send: this.keys.send(sendId),
        eventIds: this.keys.sendEventIds(sendId),
        eventKinds: this.keys.sendEventKinds(sendId),
        reported: this.keys.sendReportedEvents(sendId),
        domains: this.keys.sendDomains(sendId),
      },
      {
        subscriberId: event.subscriberId,
        eventId: `${event.source}:${event.id}`,
        kind: event.kind,
        counter: effect.sendCounter ?? '',
        rank: effect.reportRank,
        event: JSON.stringify(event),
        domain,
      },
    );
    return applied === 1;
  }

  /** The subscriber's most recent events, newest first. */
  async recentEvents(subscriberId: string, limit = 20): Promise<DeliveryEvent[]> {
    const entries = await this.redis.lrange(this.keys.subscriberEvents(subscriberId), 0, limit - 1);
    return entries.map((json) => toEvent(parseRecord(storedEventSchema, parseJson(json), `An event of subscriber ${subscriberId}`)));
  }

  /** Soft bounces of the subscriber that still count (within the window ending `now`). */
  async softBounceCount(subscriberId: string, windowMs: number, now: Date): Promise<number> {
    return this.redis.zcount(this.keys.subscriberSoftBounces(subscriberId), now.getTime() - windowMs, '+inf');
  }

  /** The strongest reported event of each recipient of a send that has one, a page at a time (HSCAN). '0' ends. */
  async reportedPage(sendId: string, cursor: string): Promise<{ cursor: string; events: DeliveryEvent[] }> {
    const [next, flat] = await this.redis.hscan(this.keys.sendReportedEvents(sendId), cursor, 'COUNT', 500);
    const events: DeliveryEvent[] = [];
    for (let index = 1; index < flat.length; index += 2)
      events.push(toEvent(parseRecord(storedEventSchema, parseJson(flat[index]), `A reported event of send ${sendId}`)));
    return { cursor: next, events };
  }

  /**
   * Keeps a report that could not be attributed, once (a replay of the same event or report adds
   * nothing); returns false when it was kept already.
   */
  async addUnmatched(report: UnmatchedReport): Promise<boolean> {
    const seenAs = report.eventId ? `${report.source}:${report.eventId}` : `sha256:${createHash('sha256').update(report.raw).digest('hex')}`;
    if ((await this.redis.set(this.keys.unmatchedSeen(seenAs), '1', 'PX', EVENT_ID_HORIZON_MS, 'NX')) !== 'OK') return false;
    const kept = { ...report, raw: report.raw.slice(0, UNMATCHED_RAW_BYTES) };
    const replies =
      (await this.redis
        .multi()
        .lpush(this.keys.unmatchedReports, JSON.stringify(kept))
        .ltrim(this.keys.unmatchedReports, 0, UNMATCHED_KEPT - 1)
        .exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    return true;
  }

  /** Unattributed reports, newest first. */
  async unmatched(limit: number): Promise<{ total: number; reports: UnmatchedReport[] }> {
    const [total, entries] = await Promise.all([this.redis.llen(this.keys.unmatchedReports), this.redis.lrange(this.keys.unmatchedReports, 0, limit - 1)]);
    const reports = entries.map((json) => {
      const parsed = parseRecord(unmatchedSchema, parseJson(json), 'An unmatched report');
      return { ...parsed, recipient: parsed.recipient, kind: parsed.kind, eventId: parsed.eventId };
    });
    return { total, reports };
  }

  /** Claims a webhook's one-time token for `ms`; false when it was seen already (a replay). */
  async claimWebhookToken(provider: string, token: string, ms: number): Promise<boolean> {
    return (await this.redis.set(this.keys.webhookToken(provider, token), '1', 'PX', ms, 'NX')) === 'OK';
  }

  /** Gives a claimed token back: its request was not recorded, so the same request sent again must get in. */
  async releaseWebhookToken(provider: string, token: string): Promise<void> {
    await this.redis.del(this.keys.webhookToken(provider, token));
  }
}

function toEvent(stored: z.infer<typeof storedEventSchema>): DeliveryEvent {
  return { ...stored, sendId: stored.sendId };
}
