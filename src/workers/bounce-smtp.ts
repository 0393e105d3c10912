import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { takeInMail, type MailIntakeResult } from '../app/mail-intake.ts';
import type { EventDeps } from '../app/delivery-events.ts';
import { UserFacingError } from '../core/errors.ts';

/** A running bounce server. */
export interface BounceServer {
  readonly port: number;
  /** The domain it takes mail for: BOUNCE_ADDRESS's. */
  readonly domain: string;
  close(): Promise<void>;
}

/** What tests may change. */
export interface BounceServerOptions {
  /** Port to listen on; BOUNCE_SMTP_PORT by default (0: a free one). */
  readonly port?: number;
  /** Sees what became of each message, after it is recorded and before the 250. */
  readonly onReport?: (result: MailIntakeResult) => void;
  /** How long a recorded report waits for the report worker if applying it fails (REPORT_RETRY_DELAY_MS by default). */
  readonly retryDelayMs?: number;
}

type SmtpError = Error & { responseCode: number };

function smtpError(responseCode: number, message: string): SmtpError {
  return Object.assign(new Error(message), { responseCode });
}

/**
 * An inbound SMTP listener for bounce and complaint reports (`newsletter bounce-server`): the
 * bounce domain's MX, or a relay, delivers here. It takes mail only for the domain of
 * BOUNCE_ADDRESS, and answers 250 only once the report is recorded in Redis, so a crash never
 * drops a bounce: until then the sending MTA keeps it and retries (451 on a Redis failure).
 */
export async function startBounceServer(deps: EventDeps, options: BounceServerOptions = {}): Promise<BounceServer> {
  const { config, logger } = deps;
  const bounceAddress = config.bounces.address;
  if (!bounceAddress) throw new UserFacingError("BOUNCE_ADDRESS must be set for the bounce server: it takes mail for that address's domain only");
  const domain = bounceAddress.slice(bounceAddress.lastIndexOf('@') + 1).toLowerCase();
  const maxBytes = config.bounces.maxMessageBytes;

  const server = new SMTPServer({
    // Reports come from other MTAs, unauthenticated, as to any MX. TLS is left to the relay or MX
    // in front (no certificate is configured here).
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    banner: 'bounce intake',
    size: maxBytes,
    // Unauthenticated peers: bound how many may hold a connection at once.
    maxClients: 100,
    logger: false,
    onRcptTo(address: SMTPServerAddress, session, callback) {
      // A report is about one message, mailed to its one envelope sender: one recipient per
      // transaction keeps the VERP clue unambiguous. 452 makes the client send the rest separately.
      if (session.envelope.rcptTo.length > 0) return callback(smtpError(452, '4.5.3 one recipient per message, send the others separately'));
      const at = address.address.lastIndexOf('@');
      if (at === -1 || address.address.slice(at + 1).toLowerCase() !== domain) {
        return callback(smtpError(550, `5.7.1 <${address.address}>: relay access denied, this server takes mail for @${domain} only`));
      }
      return callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      let size = 0;
      // smtp-server keeps streaming a message past its SIZE limit: keep nothing beyond it, so an
      // oversized message costs no memory, and refuse it at the end.
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= maxBytes) chunks.push(chunk);
      });
      stream.on('end', () => {
        if (size > maxBytes || (stream as typeof stream & { sizeExceeded?: boolean }).sizeExceeded) {
          return callback(smtpError(552, `5.3.4 message larger than ${maxBytes} bytes`));
        }
        const envelopeRecipient = session.envelope.rcptTo[0]?.address;
        takeInMail(deps, Buffer.concat(chunks), envelopeRecipient, options.retryDelayMs === undefined ? {} : { retryDelayMs: options.retryDelayMs }).then(
          (result) => {
            options.onReport?.(result);
            logger.info(
              {
                envelopeRecipient,
                outcome: result.outcome,
                ...(result.outcome === 'taken' ? { events: result.outcomes.length, deferred: result.deferred } : { reason: result.reason }),
              },
              'bounce server: message taken in',
            );
            // Not a report, or garbled (kept for inspection): still 250, so no MTA bounces a bounce.
            callback(
              null,
              result.outcome === 'taken'
                ? 'report recorded'
                : result.outcome === 'garbled'
                  ? 'garbled report kept for inspection'
                  : 'ignored: not a delivery report',
            );
          },
          (error: unknown) => {
            logger.error({ err: error, envelopeRecipient }, 'bounce server: could not record a report; the sender will retry');
            callback(smtpError(451, '4.3.0 could not record the report now, try again later'));
          },
        );
      });
    },
  });
  server.on('error', (error: Error) => logger.warn({ err: error }, 'bounce server connection error'));
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? config.bounces.smtpPort, config.bounces.smtpHost, () => {
      server.off('error', reject);
      const address = server.server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port,
    domain,
    close: () => (closing ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}
