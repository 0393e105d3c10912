import { createHash, timingSafeEqual } from 'node:crypto';
import type { z } from 'zod';
import { classifyBounce, type BounceKind } from '../../core/classify-bounce.ts';
import type { DeliveryEventSource, Diagnostic } from '../../core/delivery-event.ts';
import { MalformedWebhookError, WebhookAuthError } from './errors.ts';

/** Request headers as node's http module gives them: lower-case names, repeated ones as arrays. */
export type WebhookHeaders = Readonly<Record<string, string | string[] | undefined>>;

/**
 * One webhook request as the HTTP route received it. The body stays raw bytes, because SendGrid
 * signs the exact bytes and any re-serialisation would break the signature.
 */
export interface WebhookInput {
  readonly rawBody: Buffer;
  readonly headers: WebhookHeaders;
}

/**
 * The one value of a header, matched without regard to case. Undefined when absent. A header
 * given more than once is refused: which copy a proxy or framework keeps differs, and an
 * authentication header must not be ambiguous.
 */
export function singleHeader(headers: WebhookHeaders, name: string): string | undefined {
  const wanted = name.toLowerCase();
  const values = Object.entries(headers)
    .filter(([key]) => key.toLowerCase() === wanted)
    .flatMap(([, value]) => (value === undefined ? [] : Array.isArray(value) ? value : [value]));
  if (values.length > 1) throw new WebhookAuthError(`header ${name} is given more than once`);
  return values[0];
}

/** The body parsed as JSON, or MalformedWebhookError. */
export function parseJsonBody(rawBody: Buffer): unknown {
  try {
    return JSON.parse(rawBody.toString('utf8')) as unknown;
  } catch {
    throw new MalformedWebhookError('the body is not JSON');
  }
}

/**
 * Compares a secret the caller sent with the configured one in time that doesn't depend on where
 * they differ or how long either is: both are hashed to 32 bytes first, so timingSafeEqual always
 * compares equal lengths and the length of the secret doesn't leak either.
 */
export function secretsEqual(given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * Refuses a signed timestamp (epoch ms) further than maxAgeMs from now, in the past (a replay of
 * an old request) or in the future (a clock that is wrong, or a request made to be replayed later).
 */
export function checkFreshness(signedAtMs: number, now: Date, maxAgeMs: number, what: string): void {
  if (!Number.isFinite(signedAtMs)) throw new WebhookAuthError(`${what} is not a time`);
  const skew = now.getTime() - signedAtMs;
  if (skew > maxAgeMs) throw new WebhookAuthError(`${what} is ${Math.round(skew / 1000)} s old, more than the ${Math.round(maxAgeMs / 1000)} s allowed`);
  if (-skew > maxAgeMs)
    throw new WebhookAuthError(`${what} is ${Math.round(-skew / 1000)} s in the future, more than the ${Math.round(maxAgeMs / 1000)} s allowed`);
}

/**
 * Refuses an empty secret in the configuration: with one, a request carrying an empty password or
 * key would pass. A plain Error, not an auth error: it is our mistake and should page us (5xx).
 */
export function requireConfigured(value: string, what: string): void {
  if (value.length === 0) throw new Error(`${what} is not configured`);
}

/**
 * Checks a value against a schema; on failure, a MalformedWebhookError that names every field at
 * fault, prefixed with where the value sits (e.g. "event 2: email is missing").
 */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.slice(0, 5).map((issue) => {
    if (issue.path.length === 0) return value === undefined ? `${where} is missing` : `${where} is invalid: ${issue.message}`;
    const field = formatPath(issue.path);
    return valueAt(value, issue.path) === undefined ? `${where}: ${field} is missing` : `${where}: ${field} is invalid: ${issue.message}`;
  });
  throw new MalformedWebhookError(problems.join('; '));
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((part, index) => (typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`)).join('');
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = value;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[part];
  }
  return current;
}

/** A time the provider gave (ISO 8601 text, or epoch seconds) as ISO 8601 UTC, or MalformedWebhookError naming the field. */
export function isoTime(value: string | number, field: string): string {
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) throw new MalformedWebhookError(`${field} is not a time: ${String(value)}`);
  return date.toISOString();
}

/**
 * A Message-ID in the form our messages carry it (compose-message: `<local@domain>`). Mailgun
 * reports it without the angle brackets, SES as written; both are brought to one form so the
 * attribution can compare them as strings.
 */
export function normaliseMessageId(value: string | null | undefined): string | undefined {
  const trimmed = value?.trim();
  if (!trimmed) return undefined;
  return trimmed.startsWith('<') && trimmed.endsWith('>') ? trimmed : `<${trimmed.replace(/^<|>$/g, '')}>`;
}

/** A custom variable as a string: providers echo them as JSON, where an id may come back as a number. */
export function variable(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim() || undefined;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

/**
 * The kind of a failed delivery: classifyBounce on the structured fields, and `soft` when none of
 * them decides. Soft is the kind that does least on its own (the policy suppresses only after
 * several), so an unclassifiable report can't take a good address off the list.
 */
export function bounceKind(source: DeliveryEventSource, diagnostic: Diagnostic): BounceKind {
  return classifyBounce(source, diagnostic) ?? 'soft';
}

/** The object without its undefined properties, so events serialise and compare without noise. */
export function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as T;
}
