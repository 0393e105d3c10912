import { parseSmtpReply } from './classify-bounce.ts';

/** The recipient domain an address is paced and judged under: the part after the last @, lower-cased. */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/** Milliseconds between two sends at `perSecond`; 0 when there is no ceiling. */
export function intervalMs(perSecond: number | undefined): number {
  return perSecond === undefined ? 0 : 1000 / perSecond;
}

/**
 * Whether a receiver asked us to slow down, from the structured fields of its answer to a message
 * (never the text): 421 after the greeting ("service not available, closing channel", which
 * receivers use for rate limits; nodemailer reports it as ECONNECTION with the 421 reply) or an
 * RFC 3463 4.7.x status (4.7.0 "try again later", 4.7.28 "rate limited"…). The domain is then
 * backed off, not the whole queue. A 421 instead of the greeting (nodemailer: EPROTOCOL) is the
 * SMTP service being unavailable, which holds every worker instead.
 */
export function isSlowDown(fields: {
  readonly code?: string | undefined;
  readonly responseCode?: number | undefined;
  readonly response?: string | undefined;
}): boolean {
  if (fields.responseCode === undefined || fields.responseCode < 400 || fields.responseCode >= 500) return false;
  if (fields.code === 'EPROTOCOL') return false;
  if (fields.responseCode === 421) return true;
  return parseSmtpReply(fields.response).status?.startsWith('4.7.') ?? false;
}
