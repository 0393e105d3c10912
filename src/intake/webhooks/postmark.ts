import { z } from 'zod';
import type { ReportedEvent } from '../../core/delivery-event.ts';
import {
  bounceKind,
  isoTime,
  parseJsonBody,
  parseWith,
  requireConfigured,
  secretsEqual,
  singleHeader,
  variable,
  withoutUndefined,
  type WebhookHeaders,
  type WebhookInput,
} from './common.ts';
import { WebhookAuthError } from './errors.ts';

/**
 * Postmark webhooks (JSON, one record per request), told apart by RecordType: `Bounce` (ID, Type,
 * TypeCode, Email, BouncedAt, Details, MessageID, Metadata), `SpamComplaint` (the same fields) and
 * `SubscriptionChange` (Recipient, SuppressSending, SuppressionReason, Origin, ChangedAt). Postmark
 * signs nothing; it sends the user and password of the webhook URL as HTTP Basic auth. Documented
 * at postmarkapp.com/developer/webhooks.
 */

/** The user and password set in the webhook URL on Postmark's side (https://user:password@host/path). */
export interface PostmarkWebhookOptions {
  readonly user: string;
  readonly password: string;
}

/**
 * Checks `Authorization: Basic` against the configured user and password, in constant time: both
 * parts are always compared, so the answer time says neither which one was wrong nor how much of it.
 */
export function verifyBasicAuth(headers: WebhookHeaders, expected: PostmarkWebhookOptions): void {
  requireConfigured(expected.password, 'the Postmark webhook password');
  const header = singleHeader(headers, 'authorization');
  const match = header ? /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header) : null;
  if (!match) throw new WebhookAuthError('Basic authorization is missing');
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const user = colon === -1 ? decoded : decoded.slice(0, colon);
  const password = colon === -1 ? '' : decoded.slice(colon + 1);
  const userOk = secretsEqual(user, expected.user);
  const passwordOk = secretsEqual(password, expected.password);
  if (!(userOk && passwordOk)) throw new WebhookAuthError('Basic authorization does not match');
}

const recordTypeSchema = z.object({ RecordType: z.string() });

const metadataSchema = z.record(z.string(), z.unknown()).nullish();

const bounceSchema = z.object({
  // A number in Postmark's JSON; a string is taken too, it is only an id to us.
  ID: z.union([z.number().int(), z.string().min(1)]).transform(String),
  Type: z.string().min(1),
  Email: z.string().min(1),
  BouncedAt: z.string().min(1),
  Details: z.string().nullish(),
  Description: z.string().nullish(),
  Metadata: metadataSchema,
});

const subscriptionChangeSchema = z.object({
  Recipient: z.string().min(1),
  SuppressSending: z.boolean(),
  SuppressionReason: z.string().nullish(),
  Origin: z.string().nullish(),
  ChangedAt: z.string().min(1),
  MessageID: z.string().nullish(),
  Metadata: metadataSchema,
});

/**
 * Bounce types that are not a failed delivery of our mail: an auto-reply, a reply that changes a
 * subscription or an address, a challenge to confirm we are human, a relay probe, an error on
 * Postmark's inbound side. They say nothing about whether the address takes our mail.
 */
const NOT_A_FAILURE = new Set(['AutoResponder', 'Subscribe', 'AddressChange', 'ChallengeVerification', 'OpenRelayTest', 'InboundError']);

/**
 * The events in one Postmark record (already authenticated). A `Bounce` is classified by its Type
 * (Postmark's `Unsubscribe` and `SpamComplaint` bounce types become those kinds); a
 * `SpamComplaint` is a complaint; a `SubscriptionChange` is an unsubscribe only when the recipient
 * suppressed themselves (Origin Recipient, ManualSuppression: Postmark's unsubscribe link). The
 * other subscription changes repeat a bounce or complaint already sent as its own record, or are
 * our own actions or reactivations; they and the other record types give none.
 */
export function parsePostmarkRecord(record: unknown): ReportedEvent[] {
  const { RecordType } = parseWith(recordTypeSchema, record, 'record');
  if (RecordType === 'Bounce' || RecordType === 'SpamComplaint') {
    const bounce = parseWith(bounceSchema, record, 'record');
    const base = {
      id: bounce.ID,
      source: 'postmark' as const,
      at: isoTime(bounce.BouncedAt, 'BouncedAt'),
      clues: withoutUndefined({
        recipient: bounce.Email,
        // Postmark's MessageID is its own id for the message, not the Message-ID header we wrote.
        sendId: variable(bounce.Metadata?.['newsletter_send']),
        subscriberId: variable(bounce.Metadata?.['newsletter_subscriber']),
      }),
    };
    const diagnostic = withoutUndefined({ providerType: bounce.Type, text: bounce.Details || bounce.Description || undefined });
    if (RecordType === 'SpamComplaint' || bounce.Type === 'SpamComplaint') return [{ ...base, kind: 'complaint', diagnostic }];
    if (bounce.Type === 'Unsubscribe') return [{ ...base, kind: 'unsubscribe', diagnostic }];
    if (NOT_A_FAILURE.has(bounce.Type)) return [];
    return [{ ...base, kind: bounceKind('postmark', diagnostic), diagnostic }];
  }
  if (RecordType === 'SubscriptionChange') {
    const change = parseWith(subscriptionChangeSchema, record, 'record');
    if (!change.SuppressSending || change.SuppressionReason !== 'ManualSuppression' || change.Origin !== 'Recipient') return [];
    return [
      {
        // Postmark gives a subscription change no id; these fields are the same when it retries.
        id: `subscription-change:${change.MessageID ?? ''}:${change.Recipient}:${change.ChangedAt}`,
        source: 'postmark',
        kind: 'unsubscribe',
        diagnostic: { providerType: 'SubscriptionChange/ManualSuppression' },
        at: isoTime(change.ChangedAt, 'ChangedAt'),
        clues: withoutUndefined({
          recipient: change.Recipient,
          sendId: variable(change.Metadata?.['newsletter_send']),
          subscriberId: variable(change.Metadata?.['newsletter_subscriber']),
        }),
      },
    ];
  }
  return [];
}

/** A Postmark webhook request: checks the Basic auth, then reads the record. */
export function postmarkWebhook(input: WebhookInput, options: PostmarkWebhookOptions): { events: ReportedEvent[] } {
  verifyBasicAuth(input.headers, options);
  return { events: parsePostmarkRecord(parseJsonBody(input.rawBody)) };
}
