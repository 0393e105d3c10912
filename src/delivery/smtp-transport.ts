import nodemailer, { type Transporter } from 'nodemailer';
import type { Config } from '../../config/index.ts';

/**
 * How long the transport waits for the SMTP server (nodemailer's defaults are 2 min to connect,
 * 30 s for the greeting and 10 min of silence, so a hung server could hold a job, and its slot,
 * for ten minutes).
 */
export const SMTP_TIMEOUTS = {
  /**
   * Setting a session up, from the DNS lookup to the end of a STARTTLS upgrade (nodemailer bounds
   * the greeting by what is left of it too). A relay answers in milliseconds; 15 s leaves room for
   * a greeting delay (Postfix postscreen waits up to 6 s before greeting) and a slow TLS handshake.
   */
  connectionMs: 15_000,
  /** The 220 greeting, within connectionMs; see above. */
  greetingMs: 15_000,
  /**
   * Silence in the middle of a session. The longest legitimate one is the server's verdict after
   * the message's final dot (content scanning): giving up on it too early makes a message the
   * server did accept look failed, and it would be sent again. A minute covers any relay's scan
   * and keeps a hung server from holding a job for ten.
   */
  socketMs: 60_000,
} as const;

/**
 * A pooled SMTP transport: connections are reused across messages, not opened per message.
 * A connection the server closes before any reply is put back once (nodemailer's default is five
 * times per message, six connections for one message to a service that accepts and hangs up); the
 * one retry still covers a pooled connection the server dropped while it was idle.
 */
export function createSmtpTransport(smtp: Config['smtp']): Transporter {
  return nodemailer.createTransport({
    url: smtp.url,
    pool: true,
    maxConnections: smtp.poolSize,
    maxMessages: smtp.maxMessagesPerConnection,
    maxRequeues: 1,
    connectionTimeout: SMTP_TIMEOUTS.connectionMs,
    greetingTimeout: SMTP_TIMEOUTS.greetingMs,
    socketTimeout: SMTP_TIMEOUTS.socketMs,
  });
}
