import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { parseSmtpReply } from '../../core/classify-bounce.ts';
import type { ReportedEvent } from '../../core/delivery-event.ts';
import {
  bounceKind,
  checkFreshness,
  isoTime,
  parseJsonBody,
  parseWith,
  requireConfigured,
  singleHeader,
  variable,
  withoutUndefined,
  type WebhookHeaders,
  type WebhookInput,
} from './common.ts';
import { MalformedWebhookError, WebhookAuthError } from './errors.ts';

/**
 * SendGrid's signed Event Webhook: a JSON array of events (`event`, `email`, `timestamp` in epoch
 * seconds, `sg_event_id`, `sg_message_id`, custom args as top-level fields), signed with ECDSA
 * P-256 over SHA-256 of the timestamp header followed by the raw body. Documented at
 * twilio.com/docs/sendgrid/for-developers/tracking-events/event and …/getting-started-event-webhook-security-features.
 */

/** The header with the base64 DER ECDSA signature. */
export const SENDGRID_SIGNATURE_HEADER = 'X-Twilio-Email-Event-Webhook-Signature';
/** The header with the epoch seconds the signature covers. */
export const SENDGRID_TIMESTAMP_HEADER = 'X-Twilio-Email-Event-Webhook-Timestamp';

/** What sendgridWebhook needs. */
export interface SendgridWebhookOptions {
  /** The verification key SendGrid shows (Mail Settings → Signed Event Webhook): base64 DER SubjectPublicKeyInfo; PEM is taken too. */
  readonly publicKey: string;
  readonly now: Date;
  /** How far the signed timestamp may be from now. */
  readonly maxAgeMs: number;
}

let cachedKey: { readonly text: string; readonly key: KeyObject } | undefined;

/** The configured key as a KeyObject, parsed once; a key that isn't EC P-256 is a configuration error (plain Error). */
function publicKeyOf(text: string): KeyObject {
  if (cachedKey?.text === text) return cachedKey.key;
  requireConfigured(text, 'the SendGrid webhook verification key');
  const key = text.includes('-----BEGIN') ? createPublicKey(text) : createPublicKey({ key: Buffer.from(text.trim(), 'base64'), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error('the SendGrid webhook verification key is not an EC P-256 public key');
  cachedKey = { text, key };
  return key;
}

/**
 * Checks SendGrid's signature over the exact bytes received and the signed timestamp's age.
 * Returns a replay token: a digest of what was signed, so the same signed request is refused the
 * second time even if its signature is re-encoded (an ECDSA signature has two valid forms, so the
 * signature itself would not do).
 */
export function verifySendgridSignature(rawBody: Buffer, headers: WebhookHeaders, options: SendgridWebhookOptions): string {
  const key = publicKeyOf(options.publicKey);
  const signature = singleHeader(headers, SENDGRID_SIGNATURE_HEADER);
  const timestamp = singleHeader(headers, SENDGRID_TIMESTAMP_HEADER);
  if (!signature || !timestamp) throw new WebhookAuthError('the SendGrid signature or timestamp header is missing');
  if (!/^\d+$/.test(timestamp)) throw new WebhookAuthError('the SendGrid timestamp header is not epoch seconds');
  const signed = Buffer.concat([Buffer.from(timestamp, 'utf8'), rawBody]);
  let valid: boolean;
  try {
    valid = verify('sha256', signed, { key, dsaEncoding: 'der' }, Buffer.from(signature, 'base64'));
  } catch {
    // A signature that isn't DER at all: as forged as a wrong one.
    valid = false;
  }
  if (!valid) throw new WebhookAuthError('the SendGrid signature does not match');
  checkFreshness(Number(timestamp) * 1000, options.now, options.maxAgeMs, 'the SendGrid signature timestamp');
  return createHash('sha256').update(signed).digest('hex');
}

const eventNameSchema = z.object({ event: z.string() });

const eventSchema = z.object({
  sg_event_id: z.string().min(1),
  email: z.string().min(1),
  timestamp: z.number(),
  event: z.string(),
  // bounce: "bounce" or "blocked".
  type: z.string().nullish(),
  // bounce: the enhanced status, absent when there was no SMTP answer (no MX, say).
  status: z.string().nullish(),
  // bounce: the receiver's answer; dropped: why SendGrid did not send.
  reason: z.string().nullish(),
  // deferred: the receiver's answer.
  response: z.string().nullish(),
  newsletter_send: z.unknown().optional(),
  newsletter_subscriber: z.unknown().optional(),
});

type SendgridEvent = z.infer<typeof eventSchema>;

/**
 * The events of one SendGrid batch (already authenticated), one per relevant array element:
 * `bounce` (type bounce or blocked) → classified; `deferred` → soft; `spamreport` → complaint;
 * `unsubscribe` and `group_unsubscribe` → unsubscribe. `dropped` gives none: SendGrid dropped the
 * message without trying, mostly because the address is on its own suppression lists (Bounced,
 * Unsubscribed, Spam Reporting Address), which only repeat an event already reported when it
 * happened; the rest (Invalid, Spam Content…) say nothing new about the subscriber. processed,
 * delivered, open, click give none either.
 */
export function parseSendgridEvents(body: unknown): ReportedEvent[] {
  if (!Array.isArray(body)) throw new MalformedWebhookError('the body is not a JSON array of events');
  return body.flatMap((element: unknown, index) => {
    const where = `event ${index}`;
    const { event } = parseWith(eventNameSchema, element, where);
    if (!['bounce', 'deferred', 'spamreport', 'unsubscribe', 'group_unsubscribe'].includes(event)) return [];
    return [toReportedEvent(parseWith(eventSchema, element, where), `${where}: timestamp`)];
  });
}

function toReportedEvent(event: SendgridEvent, timestampField: string): ReportedEvent {
  const base = {
    id: event.sg_event_id,
    source: 'sendgrid' as const,
    at: isoTime(event.timestamp, timestampField),
    clues: withoutUndefined({
      recipient: event.email,
      // Custom args come back as top-level fields of the event.
      sendId: variable(event.newsletter_send),
      subscriberId: variable(event.newsletter_subscriber),
    }),
  };
  switch (event.event) {
    case 'bounce': {
      const reply = parseSmtpReply(event.reason ?? undefined);
      const diagnostic = withoutUndefined({
        status: event.status || reply.status,
        replyCode: reply.replyCode,
        providerType: event.type || 'bounce',
        text: event.reason || undefined,
      });
      return { ...base, kind: bounceKind('sendgrid', diagnostic), diagnostic };
    }
    case 'deferred': {
      // SendGrid retries a deferred message itself: soft whatever the answer was.
      const text = event.response || event.reason || undefined;
      const diagnostic = withoutUndefined({ ...parseSmtpReply(text), providerType: 'deferred', text });
      return { ...base, kind: 'soft', diagnostic };
    }
    case 'spamreport':
      return { ...base, kind: 'complaint', diagnostic: {} };
    default:
      return { ...base, kind: 'unsubscribe', diagnostic: { providerType: event.event } };
  }
}

/**
 * A SendGrid webhook request: verifies the signature over the raw body, then reads the batch.
 * The replay token is for the caller to record (SET NX) and refuse when seen again.
 */
export function sendgridWebhook(input: WebhookInput, options: SendgridWebhookOptions): { events: ReportedEvent[]; replayToken: string } {
  const replayToken = verifySendgridSignature(input.rawBody, input.headers, options);
  return { events: parseSendgridEvents(parseJsonBody(input.rawBody)), replayToken };
}
