import type { Config } from '../../config/index.ts';
import { emailKey } from '../core/address.ts';
import { bouncePolicy } from '../core/bounce-policy.ts';
import type { AttributionClues, DeliveryEvent, ReportedEvent } from '../core/delivery-event.ts';
import type { SubscriberStatus } from '../core/subscriber.ts';
import { UNSUBSCRIBE_PURPOSE, verifyToken } from '../core/tokens.ts';
import { readMessageId, readVerpAddress, readVerpToken, type MessageIds } from '../core/verp.ts';
import type { Logger } from '../logger.ts';
import type { EventStore } from '../store/event-store.ts';
import type { ReceivedReport, ReportInbox } from '../store/report-inbox.ts';
import type { SendStore } from '../store/send-store.ts';
import type { SendControlStore } from '../store/send-control.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import { domainOf } from '../core/pacing-policy.ts';
import { BREAKER_KINDS, type BreakerKind } from '../core/breaker-policy.ts';
import { countForBreakers } from './send-control.ts';

/** What recording and applying delivery events works with. */
export interface EventDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly subscribers: SubscriberStore;
  readonly sends: SendStore;
  readonly events: EventStore;
  readonly reports: ReportInbox;
  /** The breakers of the send an event belongs to count its hard bounces, complaints and blocks. */
  readonly control: SendControlStore;
  /** The clock; tests move it to check the soft-bounce window without sleeping. */
  readonly now?: () => Date;
}

/** How an event was matched to its subscriber, strongest first. */
export type AttributedVia = 'verp' | 'envelope-id' | 'list-unsubscribe' | 'message-id' | 'headers' | 'address';

/** What became of one reported event. */
export type EventOutcome =
  | {
      readonly outcome: 'applied' | 'duplicate';
      readonly event: DeliveryEvent;
      readonly via: AttributedVia;
      readonly email: string;
      readonly statusBefore: SubscriberStatus | undefined;
      readonly statusAfter: SubscriberStatus | undefined;
    }
  | { readonly outcome: 'unmatched'; readonly reported: ReportedEvent; readonly reason: string };

/**
 * How long an intake waits before its recorded report is applied by a report worker instead: it
 * applies the report itself at once, so the worker only ever sees reports whose intake died or
 * could not reach Redis in the middle.
 */
export const REPORT_RETRY_DELAY_MS = 60_000;

/**
 * Takes a report in: records it durably (the report inbox), applies its events, and forgets it.
 * Callers acknowledge the sender (exit 0, SMTP 250, HTTP 2xx) only after this resolves; once it
 * is recorded, a failure to apply leaves it to the report worker instead of losing it, and the
 * result says so (`deferred`).
 */
export async function takeInReport(
  deps: EventDeps,
  report: ReceivedReport,
  options: { readonly retryDelayMs?: number } = {},
): Promise<{ readonly outcomes: readonly EventOutcome[]; readonly deferred: boolean }> {
  const jobId = await deps.reports.record(report, options.retryDelayMs ?? REPORT_RETRY_DELAY_MS);
  let outcomes: EventOutcome[];
  try {
    outcomes = await applyReport(deps, report);
  } catch (error) {
    deps.logger.warn({ err: error, jobId, channel: report.channel }, 'report recorded but not applied yet; the report worker will apply it');
    return { outcomes: [], deferred: true };
  }
  await deps.reports.applied(jobId);
  return { outcomes, deferred: false };
}

/**
 * Attributes and applies every event of a report; the ones no subscriber can be found for are
 * kept for inspection (`newsletter bounces unmatched`). Idempotent: what the report worker runs.
 */
export async function applyReport(deps: EventDeps, report: ReceivedReport): Promise<EventOutcome[]> {
  const outcomes: EventOutcome[] = [];
  for (const reported of report.events) {
    const attributed = await attributeEvent(deps, reported, report.receivedAt);
    if ('reason' in attributed) {
      await deps.events.addUnmatched({
        receivedAt: report.receivedAt,
        source: reported.source,
        reason: attributed.reason,
        recipient: reported.clues.recipient,
        kind: reported.kind,
        eventId: reported.id,
        // A mail report is kept whole (cut to size); of a webhook's batch, only this event.
        raw: report.channel === 'mail' ? report.raw : JSON.stringify(reported),
      });
      deps.logger.warn(
        { source: reported.source, eventId: reported.id, recipient: reported.clues.recipient, reason: attributed.reason },
        'unmatched delivery report kept',
      );
      outcomes.push({ outcome: 'unmatched', reported, reason: attributed.reason });
      continue;
    }
    const applied = await applyDeliveryEvent(deps, attributed.event);
    outcomes.push({ ...applied, event: attributed.event, via: attributed.via, email: attributed.email });
  }
  return outcomes;
}

/**
 * Applies one attributed event by the bounce policy: to the subscriber (suppression, soft-bounce
 * window, recent events) and to its send (counters, latest report). Each side refuses a replay
 * on its own, so a report applied twice, or half-applied before a crash, ends the same.
 */
export async function applyDeliveryEvent(
  deps: Pick<EventDeps, 'config' | 'events' | 'logger' | 'now' | 'control' | 'subscribers'>,
  event: DeliveryEvent,
): Promise<{ outcome: 'applied' | 'duplicate'; statusBefore: SubscriberStatus | undefined; statusAfter: SubscriberStatus | undefined }> {
  const effect = bouncePolicy(deps.config.bounces)[event.kind];
  const now = deps.now?.() ?? new Date();
  const subscriber = await deps.events.applyToSubscriber(event, effect, now);
  const sendId = event.sendId;
  // The recipient's domain: the send counts the event under it too (the dashboard's breakdown), and its breakers judge it.
  const email = sendId === undefined ? undefined : await deps.subscribers.emailOf(event.subscriberId);
  const domain = email ? domainOf(email) : '';
  const appliedToSend = sendId !== undefined && (await deps.events.applyToSend({ ...event, sendId }, effect, domain));
  // A hard bounce, complaint or block counts once against its send's breakers (replays don't).
  if (appliedToSend && isBreakerKind(event.kind)) {
    await countForBreakers(deps, sendId, { domain, sample: false, kind: event.kind }).catch((error: unknown) =>
      deps.logger.warn({ err: error, sendId, eventId: event.id }, 'could not count the event for the breakers'),
    );
  }
  const changed = subscriber.statusBefore !== subscriber.statusAfter;
  deps.logger.info(
    {
      sendId,
      subscriberId: event.subscriberId,
      eventId: event.id,
      source: event.source,
      kind: event.kind,
      status: event.diagnostic.status,
      replyCode: event.diagnostic.replyCode,
      ...(changed ? { statusBefore: subscriber.statusBefore, statusAfter: subscriber.statusAfter } : {}),
      duplicate: !subscriber.applied,
    },
    subscriber.applied ? 'delivery event applied' : 'delivery event already applied',
  );
  return { outcome: subscriber.applied ? 'applied' : 'duplicate', statusBefore: subscriber.statusBefore, statusAfter: subscriber.statusAfter };
}

/**
 * Records an event of our own SMTP session in the report inbox, as any report is recorded, before
 * the job records anything else: if the process dies before applyHeldEvent, the report worker
 * applies it. Returns the record's id.
 */
export async function holdEvent(deps: Pick<EventDeps, 'reports'>, event: DeliveryEvent, email: string): Promise<string> {
  const reported: ReportedEvent = {
    id: event.id,
    source: event.source,
    kind: event.kind,
    diagnostic: event.diagnostic,
    at: event.at,
    // Our own ids, with the address to check them against: attribution finds the same subscriber and send.
    clues: { sendId: event.sendId, subscriberId: event.subscriberId, recipient: email },
  };
  return deps.reports.record({ channel: 'smtp', receivedAt: event.at, events: [reported], raw: JSON.stringify(reported) }, REPORT_RETRY_DELAY_MS);
}

/** Applies an event holdEvent recorded, then forgets the record. */
export async function applyHeldEvent(
  deps: Pick<EventDeps, 'config' | 'events' | 'logger' | 'reports' | 'now' | 'control' | 'subscribers'>,
  event: DeliveryEvent,
  heldAs: string,
): Promise<void> {
  await applyDeliveryEvent(deps, event);
  await deps.reports.applied(heldAs);
}

type Attribution = { readonly event: DeliveryEvent; readonly via: AttributedVia; readonly email: string } | { readonly reason: string };

/**
 * Finds the subscriber (and the send) an event is about, trying the clues strongest first: the
 * signed VERP address, the signed envelope id, the signed token in the quoted List-Unsubscribe;
 * then the quoted Message-ID and X-Newsletter-* headers or a provider's custom variables, which
 * are not signed and so are trusted only when the report names an address and it is that
 * subscriber's (a forged report can't suppress a subscriber by id); and last the address alone,
 * counted against the subscriber's latest send.
 */
export async function attributeEvent(deps: EventDeps, reported: ReportedEvent, receivedAt: string): Promise<Attribution> {
  const { clues } = reported;
  const secret = deps.config.appSecret;
  const candidates: [AttributedVia, MessageIds | undefined, boolean][] = [
    ['verp', clues.verpAddress ? readVerpAddress(secret, clues.verpAddress) : undefined, true],
    ['envelope-id', clues.envelopeId ? readVerpToken(secret, clues.envelopeId) : undefined, true],
    ['list-unsubscribe', clues.listUnsubscribe ? readUnsubscribeHeader(secret, clues.listUnsubscribe) : undefined, true],
    ['message-id', clues.messageId ? readMessageId(clues.messageId) : undefined, false],
    ['headers', headerIds(clues), false],
  ];
  for (const [via, ids, signed] of candidates) {
    if (!ids) continue;
    if (!signed && !clues.recipient) continue;
    const email = await deps.subscribers.emailOf(ids.subscriberId);
    if (email === undefined) continue;
    if (!signed && clues.recipient && emailKey(clues.recipient) !== emailKey(email)) continue;
    // A send the clue names but that doesn't have this recipient (deleted, or never ours) is not
    // replaced by another: its counters, which the breakers read, only count their own messages.
    const sendId = (await isRecipientOf(deps, ids)) ? ids.sendId : undefined;
    return { event: toEvent(reported, ids.subscriberId, sendId, receivedAt), via, email };
  }
  if (clues.recipient) {
    const subscriberId = await deps.subscribers.findIdByEmail(clues.recipient);
    if (subscriberId) {
      const named = clues.sendId ? { sendId: clues.sendId, subscriberId } : undefined;
      const sendId = named && (await isRecipientOf(deps, named)) ? named.sendId : await deps.sends.latestSendOf(subscriberId);
      const email = (await deps.subscribers.emailOf(subscriberId)) ?? clues.recipient;
      return { event: toEvent(reported, subscriberId, sendId, receivedAt), via: 'address', email };
    }
    return { reason: `no subscriber has the address ${clues.recipient}, and the report names no message of ours` };
  }
  if (candidates.some(([, ids]) => ids !== undefined))
    return { reason: 'the report names a message of ours only by unsigned headers, and no address to check them against' };
  return { reason: 'the report names neither a message of ours nor an address' };
}

/** The ids in the signed token of a List-Unsubscribe header (`<https://…/unsubscribe?token=…>`). */
function readUnsubscribeHeader(secret: string, header: string): MessageIds | undefined {
  const token = /[?&]token=([^&>]+)/.exec(header.replace(/\s+/g, ''))?.[1];
  const payload = token ? verifyToken(secret, UNSUBSCRIBE_PURPOSE, decodeURIComponent(token)) : undefined;
  return payload?.s && payload.m ? { sendId: payload.m, subscriberId: payload.s } : undefined;
}

/** The ids of our X-Newsletter-* headers or a provider's custom variables, when both are there. */
function headerIds(clues: AttributionClues): MessageIds | undefined {
  return clues.sendId && clues.subscriberId ? { sendId: clues.sendId, subscriberId: clues.subscriberId } : undefined;
}

async function isRecipientOf(deps: EventDeps, ids: MessageIds): Promise<boolean> {
  return (await deps.sends.recipientState(ids.sendId, ids.subscriberId).catch(() => undefined)) !== undefined;
}

function toEvent(reported: ReportedEvent, subscriberId: string, sendId: string | undefined, receivedAt: string): DeliveryEvent {
  const at = reported.at && !Number.isNaN(Date.parse(reported.at)) ? reported.at : receivedAt;
  return { id: reported.id, source: reported.source, kind: reported.kind, subscriberId, sendId, diagnostic: reported.diagnostic, at };
}

function isBreakerKind(kind: string): kind is BreakerKind {
  return (BREAKER_KINDS as readonly string[]).includes(kind);
}
