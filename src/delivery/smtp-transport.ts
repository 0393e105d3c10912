import nodemailer, { type Transporter } from 'nodemailer';
import type { Config } from '../../config/index.ts';

/** A pooled SMTP transport: connections are reused across messages, not opened per message. */
export function createSmtpTransport(smtp: Config['smtp']): Transporter {
  return nodemailer.createTransport({
    url: smtp.url,
    pool: true,
    maxConnections: smtp.poolSize,
    maxMessages: smtp.maxMessagesPerConnection,
  });
}
