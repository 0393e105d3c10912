import { z } from 'zod';
import type { ReportedEvent } from '../../core/delivery-event.ts';
import {
  isoTime,
  parseJsonBody,
  parseWith,
  requireConfigured,
  secretsEqual,
  singleHeader,
  withoutUndefined,
  type WebhookHeaders,
  type WebhookInput,
} from './common.ts';
import { WebhookAuthError } from './errors.ts';

/**
 * Our own JSON webhook, for any sender that can POST: one event or an array of them, each
 * `{ id, email, type: hard|soft|block|complaint, sendId?, diagnostic?, at? }`, authenticated with
 * `Authorization: Bearer <secret>`. The sender classifies; we take its `type` as the kind.
 */

/** What genericWebhook needs. */
export interface GenericWebhookOptions {
  /** The shared secret the sender puts after `Bearer`. */
  readonly secret: string;
}

/** The kinds a generic event may report. */
export const GENERIC_EVENT_TYPES = ['hard', 'soft', 'block', 'complaint'] as const;

/** One event of the generic webhook, as the sender posts it. */
export const genericEventSchema = z.object({
  /** Unique per sender: posting the same id again changes nothing. */
  id: z.string().trim().min(1),
  email: z
    .string()
    .trim()
    .regex(/^[^@\s]+@[^@\s]+$/, 'not an email address'),
  type: z.enum(GENERIC_EVENT_TYPES),
  sendId: z.string().trim().min(1).optional(),
  /** Free text for the logs, never read to classify. */
  diagnostic: z.string().optional(),
  at: z.iso.datetime({ offset: true }).optional(),
});

/** One event of the generic webhook. */
export type GenericEvent = z.infer<typeof genericEventSchema>;

/** Checks `Authorization: Bearer <secret>` in constant time. */
export function verifyBearer(headers: WebhookHeaders, secret: string): void {
  requireConfigured(secret, 'the webhook secret');
  const header = singleHeader(headers, 'authorization');
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match) throw new WebhookAuthError('Bearer authorization is missing');
  if (!secretsEqual(match[1]!, secret)) throw new WebhookAuthError('Bearer authorization does not match');
}

/**
 * The events of a generic webhook body (already authenticated): one event, or an array of them.
 * Errors name the array index (the single event is index 0) and the field.
 */
export function parseGenericEvents(body: unknown): ReportedEvent[] {
  const elements: unknown[] = Array.isArray(body) ? body : [body];
  return elements.map((element, index) => {
    const event = parseWith(genericEventSchema, element, `event ${index}`);
    return {
      id: event.id,
      source: 'webhook',
      kind: event.type,
      diagnostic: withoutUndefined({ providerType: event.type, text: event.diagnostic }),
      ...(event.at === undefined ? {} : { at: isoTime(event.at, `event ${index}: at`) }),
      clues: withoutUndefined({ recipient: event.email, sendId: event.sendId }),
    };
  });
}

/** A generic webhook request: checks the bearer secret, then reads the events. */
export function genericWebhook(input: WebhookInput, options: GenericWebhookOptions): { events: ReportedEvent[] } {
  verifyBearer(input.headers, options.secret);
  return { events: parseGenericEvents(parseJsonBody(input.rawBody)) };
}
