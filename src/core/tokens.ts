import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed, URL-safe tokens for unsubscribe and confirmation links: base64url(JSON payload) "."
 * base64url(HMAC-SHA256). The payload is readable but cannot be forged or altered without
 * APP_SECRET. `purpose` is signed too, so an unsubscribe token can't be replayed as another kind.
 */
export function signToken(secret: string, purpose: string, payload: Readonly<Record<string, string>>): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${body}.${mac(secret, purpose, body)}`;
}

/** Returns the payload of a valid token, or undefined for a malformed, altered or foreign one. */
export function verifyToken(secret: string, purpose: string, token: string): Record<string, string> | undefined {
  const [body, signature, extra] = token.split('.');
  if (!body || !signature || extra !== undefined) return undefined;
  const expected = Buffer.from(mac(secret, purpose, body));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    return payload && typeof payload === 'object' && !Array.isArray(payload) ? (payload as Record<string, string>) : undefined;
  } catch {
    return undefined;
  }
}

function mac(secret: string, purpose: string, body: string): string {
  return createHmac('sha256', secret).update(purpose).update('\0').update(body).digest('base64url');
}

/** Token purpose of one-click unsubscribe links (RFC 8058). */
export const UNSUBSCRIBE_PURPOSE = 'unsubscribe';

/** The one-click unsubscribe URL of one subscriber, for the footer link and List-Unsubscribe. */
export function unsubscribeUrl(publicUrl: string, secret: string, subscriberId: string, list: string, sendId: string): string {
  return `${publicUrl}/unsubscribe?token=${signToken(secret, UNSUBSCRIBE_PURPOSE, { s: subscriberId, l: list, m: sendId })}`;
}
