import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Diagnostic, ReportedEvent } from '../../core/delivery-event.ts';
import {
  bounceKind,
  checkFreshness,
  normaliseMessageId,
  parseJsonBody,
  parseWith,
  requireConfigured,
  variable,
  withoutUndefined,
  isoTime,
  type WebhookInput,
} from './common.ts';
import { WebhookAuthError } from './errors.ts';

/**
 * Mailgun webhooks (JSON, one event per request): `{ signature: { timestamp, token, signature },
 * "event-data": { id, event, severity, reason, recipient, timestamp, "delivery-status",
 * "user-variables", message: { headers } } }`. Documented at
 * documentation.mailgun.com/docs/mailgun/user-manual/webhooks/webhook-payloads.
 */

/** What mailgunWebhook needs. */
export interface MailgunWebhookOptions {
  /** The HTTP webhook signing key (Mailgun: Settings → API Keys), not the API key. */
  readonly signingKey: string;
  readonly now: Date;
  /**
   * How far signature.timestamp may be from now. Mailgun retries a failed delivery for hours; a
   * retry carries a new timestamp and token, so a few minutes is enough.
   */
  readonly maxAgeMs: number;
}

/** The signature block Mailgun puts in the body. */
export interface MailgunSignature {
  readonly timestamp: string;
  readonly token: string;
  readonly signature: string;
}

const signatureSchema = z.object({
  // Mailgun sends the timestamp as a string of epoch seconds; a number is taken too.
  timestamp: z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]).transform(String),
  token: z.string().min(1),
  signature: z.string().min(1),
});

/**
 * Checks a Mailgun signature: hex HMAC-SHA256 of timestamp + token under the signing key, and the
 * timestamp within maxAgeMs of now. The signature covers neither the event nor the body, only the
 * token, so what binds a signature to one request is that the token is used once: the caller
 * records the token (SET NX) and refuses a request whose token was seen.
 */
export function verifyMailgunSignature(signature: MailgunSignature, options: MailgunWebhookOptions): void {
  requireConfigured(options.signingKey, 'the Mailgun webhook signing key');
  const expected = createHmac('sha256', options.signingKey)
    .update(signature.timestamp + signature.token, 'utf8')
    .digest();
  const given = /^[0-9a-f]{64}$/i.test(signature.signature) ? Buffer.from(signature.signature, 'hex') : undefined;
  if (!given || !timingSafeEqual(given, expected)) throw new WebhookAuthError('the Mailgun signature does not match');
  checkFreshness(Number(signature.timestamp) * 1000, options.now, options.maxAgeMs, 'the Mailgun signature timestamp');
}

const eventNameSchema = z.object({ event: z.string() });

const failureReasonsToSkip = new Set([
  // Mailgun refused to send because the address is on its complaint or unsubscribe suppression
  // list: the complaint or unsubscribe was reported when it happened, and read as a bounce
  // (severity permanent) it would say the address is bad, which nobody said.
  'suppress-complaint',
  'suppress-unsubscribe',
]);

const eventDataSchema = z.object({
  id: z.string().min(1),
  event: z.string(),
  recipient: z.string().min(1),
  // Epoch seconds with a fraction; taken as a numeric string too.
  timestamp: z.union([
    z.number(),
    z
      .string()
      .regex(/^\d+(\.\d+)?$/)
      .transform(Number),
  ]),
  severity: z.string().nullish(),
  reason: z.string().nullish(),
  'delivery-status': z
    .object({
      // An SMTP reply code, or one of Mailgun's own above 599 (605: "Not delivering to previously bounced address").
      code: z.union([z.number().int(), z.string().regex(/^\d+$/).transform(Number)]).nullish(),
      message: z.string().nullish(),
      description: z.string().nullish(),
      // Absent, null or "" when the receiver gave none.
      'enhanced-code': z.string().nullish(),
    })
    .nullish(),
  'user-variables': z.record(z.string(), z.unknown()).nullish(),
  message: z.object({ headers: z.record(z.string(), z.unknown()).nullish() }).nullish(),
});

type MailgunEventData = z.infer<typeof eventDataSchema>;

/**
 * The events in Mailgun's `event-data` (already authenticated): `failed` → a bounce (`temporary`
 * → soft; `permanent` → classified), `complained` → complaint, `unsubscribed` → unsubscribe.
 * Other events (accepted, delivered, opened…) and failures Mailgun reports for its own complaint
 * and unsubscribe suppressions give none.
 */
export function parseMailgunEvent(eventData: unknown): ReportedEvent[] {
  const { event } = parseWith(eventNameSchema, eventData, 'event-data');
  if (event !== 'failed' && event !== 'complained' && event !== 'unsubscribed') return [];
  const data = parseWith(eventDataSchema, eventData, 'event-data');
  if (event === 'failed' && data.reason && failureReasonsToSkip.has(data.reason)) return [];
  const base = { id: data.id, source: 'mailgun' as const, at: isoTime(data.timestamp, 'event-data.timestamp'), clues: clues(data) };
  if (event === 'complained') return [{ ...base, kind: 'complaint', diagnostic: {} }];
  if (event === 'unsubscribed') return [{ ...base, kind: 'unsubscribe', diagnostic: {} }];
  const diagnostic = failureDiagnostic(data);
  // A temporary failure is Mailgun retrying: soft whatever the code says (Mailgun's own 498 "No MX"
  // among them). Only a permanent one goes through the classification.
  const kind = data.severity === 'temporary' ? 'soft' : bounceKind('mailgun', diagnostic);
  return [{ ...base, kind, diagnostic }];
}

function failureDiagnostic(data: MailgunEventData): Diagnostic {
  const status = data['delivery-status'];
  const severity = data.severity ?? undefined;
  return withoutUndefined({
    status: status?.['enhanced-code'] || undefined,
    replyCode: status?.code ?? undefined,
    // "permanent/espblock" has its own rule; any other reason falls back to the severity's.
    providerType: severity && data.reason ? `${severity}/${data.reason}` : severity,
    text: status?.message || status?.description || undefined,
  });
}

function clues(data: MailgunEventData): ReportedEvent['clues'] {
  const headers = data.message?.headers ?? {};
  const variables = data['user-variables'] ?? {};
  return withoutUndefined({
    recipient: data.recipient,
    messageId: normaliseMessageId(variable(headers['message-id'])),
    sendId: variable(variables['newsletter_send']),
    subscriberId: variable(variables['newsletter_subscriber']),
  });
}

const bodySchema = z.object({ 'event-data': z.unknown().optional() });

/**
 * A Mailgun webhook request: verifies the signature in the body and returns the events with the
 * token, which the caller must record so the same token is refused next time.
 */
export function mailgunWebhook(input: WebhookInput, options: MailgunWebhookOptions): { events: ReportedEvent[]; replayToken: string } {
  const body = parseJsonBody(input.rawBody);
  const block = body !== null && typeof body === 'object' && 'signature' in body ? body.signature : undefined;
  const signature = signatureSchema.safeParse(block);
  if (!signature.success) throw new WebhookAuthError('the Mailgun signature block is missing or incomplete');
  verifyMailgunSignature(signature.data, options);
  const { 'event-data': eventData } = parseWith(bodySchema, body, 'body');
  return { events: parseMailgunEvent(eventData), replayToken: signature.data.token };
}
