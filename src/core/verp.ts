import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * VERP (variable envelope return path): each message's envelope sender names its send and
 * subscriber, so a bounce mailed back to it is attributed without reading the report at all.
 * `bounces@bounce.example.org` becomes `bounces+<sendId>-<subscriberId>-<mac>@bounce.example.org`.
 *
 * The token is safe in a local part (send ids are lower-case letters, digits, '-' and '.';
 * subscriber ids are digits; the MAC is lower-case hex), survives MTAs that lower-case local parts,
 * and is signed with APP_SECRET so that a forged bounce can't suppress an address it names. The
 * same token is sent as the DSN envelope id (RFC 3461 ENVID), which reports echo back.
 */
const MAC_HEX_LENGTH = 12;
const TOKEN_SHAPE = /^([a-z0-9][a-z0-9.-]*)-(\d+)-([0-9a-f]{12})$/;
/** RFC 5321 §4.5.3.1.1: a local part is at most 64 octets. */
const MAX_LOCAL_PART = 64;
/** RFC 3461 §4.4: an ENVID is at most 100 characters. */
const MAX_ENVELOPE_ID = 100;

/** The ids a VERP token or envelope id carries. */
export interface MessageIds {
  readonly sendId: string;
  readonly subscriberId: string;
}

/** The signed token of one message. */
export function verpToken(secret: string, ids: MessageIds): string {
  return `${ids.sendId}-${ids.subscriberId}-${mac(secret, ids)}`;
}

/**
 * The envelope sender of one message: the bounce address with the token after a '+'. Undefined
 * when the local part would pass RFC 5321's 64 octets (a very long list name); the message then
 * goes out from the plain bounce address, and its reports are attributed by envelope id or by the
 * quoted headers instead.
 */
export function verpAddress(bounceAddress: string, secret: string, ids: MessageIds): string | undefined {
  const at = bounceAddress.lastIndexOf('@');
  const local = `${bounceAddress.slice(0, at)}+${verpToken(secret, ids)}`;
  return local.length <= MAX_LOCAL_PART ? `${local}${bounceAddress.slice(at)}` : undefined;
}

/** The DSN envelope id (ENVID) of one message: the token itself, when it fits. */
export function envelopeId(secret: string, ids: MessageIds): string | undefined {
  const token = verpToken(secret, ids);
  return token.length <= MAX_ENVELOPE_ID ? token : undefined;
}

/** The ids of a valid token; undefined for a malformed, altered or foreign one. */
export function readVerpToken(secret: string, token: string): MessageIds | undefined {
  const match = TOKEN_SHAPE.exec(token.trim().toLowerCase());
  if (!match) return undefined;
  const ids = { sendId: match[1] as string, subscriberId: match[2] as string };
  const expected = Buffer.from(mac(secret, ids));
  const given = Buffer.from(match[3] as string);
  return given.length === expected.length && timingSafeEqual(given, expected) ? ids : undefined;
}

/**
 * The ids in a VERP address such as `bounces+<token>@bounce.example.org`: the token after the
 * last '+' of the local part, checked. Any domain is accepted here (a report may be relayed);
 * what matters is the signature.
 */
export function readVerpAddress(secret: string, address: string): MessageIds | undefined {
  const bare = address.trim().replace(/^<|>$/g, '');
  const at = bare.lastIndexOf('@');
  const local = at === -1 ? bare : bare.slice(0, at);
  const plus = local.lastIndexOf('+');
  return plus === -1 ? undefined : readVerpToken(secret, local.slice(plus + 1));
}

function mac(secret: string, ids: MessageIds): string {
  return createHmac('sha256', secret).update('verp\0').update(ids.sendId).update('\0').update(ids.subscriberId).digest('hex').slice(0, MAC_HEX_LENGTH);
}

/** The local part of the Message-ID of one message: `<sendId>.<subscriberId>`. */
export function messageIdLocalPart(ids: MessageIds): string {
  return `${ids.sendId}.${ids.subscriberId}`;
}

/**
 * The ids in one of our Message-IDs (`<vol-138.weekly.1.42@example.org>`, angle brackets
 * optional). Not signed: whoever quotes it could have changed it, so attribution checks it
 * against the address the report names.
 */
export function readMessageId(messageId: string): MessageIds | undefined {
  const match = /^<?([a-z0-9][a-z0-9-]*\.[a-z0-9][a-z0-9_-]*\.\d+)\.(\d+)@[^>\s]+>?$/.exec(messageId.trim());
  return match ? { sendId: match[1] as string, subscriberId: match[2] as string } : undefined;
}
