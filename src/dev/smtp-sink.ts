import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';

/** A rejection the sink gives at RCPT TO, as a real MTA would (e.g. 550 5.1.1 user unknown). */
export interface SmtpRejection {
  readonly responseCode: number;
  readonly message: string;
}

/** How the sink treats what it receives. */
export interface SmtpSinkOptions {
  /** Writes each accepted message to this folder as <n>.eml. */
  readonly outboxDir?: string;
  /** Sees each accepted message: raw bytes, envelope recipients, and the MAIL FROM with its DSN envelope id. */
  readonly onMessage?: (raw: Buffer, recipients: readonly string[], envelope: SinkEnvelope) => void;
  /** Decides per recipient whether to reject it at RCPT TO. */
  readonly rejectRecipient?: (address: string) => SmtpRejection | undefined;
  /**
   * Decides per connection whether to turn it away instead of greeting it: the reply goes out as
   * the greeting (e.g. 421 4.3.2 Service not available) and the connection is closed, as a server
   * that is overloaded or shutting down does.
   */
  readonly rejectConnection?: () => SmtpRejection | undefined;
  /** Keep the bytes of each message in memory; off for the benchmark. */
  readonly bufferMessages?: boolean;
  /** Hangs up, without a reply, on a client that names this recipient (a server dropping a connection). */
  readonly hangUpOn?: (address: string) => boolean;
  /** Waits this long before answering 250 to each message, to hold jobs in flight in tests. */
  readonly acceptDelayMs?: number;
  /** Port to listen on; a free one by default. */
  readonly port?: number;
  /**
   * Requires SMTP AUTH (PLAIN or LOGIN, allowed without TLS on loopback) with these credentials,
   * as a provider's submission server does: other credentials get 535 5.7.8, and mail without
   * AUTH gets 530. Off by default (no AUTH at all).
   */
  readonly auth?: { readonly user: string; readonly pass: string };
  /** Sees each AUTH attempt: the user name given and whether it was accepted. */
  readonly onAuth?: (user: string, accepted: boolean) => void;
}

/** What the client said in MAIL FROM: the envelope sender (VERP) and its RFC 3461 ENVID and RET. */
export interface SinkEnvelope {
  readonly mailFrom: string;
  readonly envelopeId: string | undefined;
  readonly dsnReturn: string | undefined;
  /** The NOTIFY of each RCPT TO, in order. */
  readonly notify: readonly (readonly string[] | undefined)[];
}

/** A running sink. */
export interface SmtpSink {
  readonly url: string;
  readonly port: number;
  /** Messages accepted (250 after DATA). */
  accepted(): number;
  stop(): Promise<void>;
}

/**
 * A real SMTP server (npm smtp-server) on loopback that accepts mail like an MTA and can reject
 * chosen recipients. The demo writes what it accepts to ./outbox; tests parse it.
 */
export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  if (options.outboxDir) await mkdir(options.outboxDir, { recursive: true });
  let acceptedCount = 0;
  let stopping: Promise<void> | undefined;
  const buffer = options.bufferMessages ?? Boolean(options.outboxDir || options.onMessage);
  const required = options.auth;
  const server = new SMTPServer({
    ...(required
      ? {
          authOptional: false,
          allowInsecureAuth: true,
          authMethods: ['PLAIN', 'LOGIN'],
          disabledCommands: ['STARTTLS'],
          onAuth(auth, _session, callback) {
            const accepted = auth.username === required.user && auth.password === required.pass;
            options.onAuth?.(auth.username ?? '', accepted);
            if (accepted) return callback(null, { user: auth.username });
            const error = new Error('5.7.8 Authentication credentials invalid') as Error & { responseCode: number };
            error.responseCode = 535;
            return callback(error);
          },
        }
      : { authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'] }),
    logger: false,
    // Advertise DSN (RFC 3461) as Postfix and Exim do; smtp-server hides it by default.
    hideDSN: false,
    size: 25 * 1024 * 1024,
    onConnect(_session, callback) {
      const rejection = options.rejectConnection?.();
      if (!rejection) return callback();
      const error = new Error(rejection.message) as Error & { responseCode: number };
      error.responseCode = rejection.responseCode;
      return callback(error);
    },
    onRcptTo(address: SMTPServerAddress, session, callback) {
      if (options.hangUpOn?.(address.address)) {
        // smtp-server keeps its open connections in `connections`; the one whose id is this session's is ours.
        for (const connection of (server as unknown as { connections: Set<{ id: string; close(): void }> }).connections) {
          if (connection.id === session.id) connection.close();
        }
        return;
      }
      const rejection = options.rejectRecipient?.(address.address);
      if (!rejection) return callback();
      const error = new Error(rejection.message) as Error & { responseCode: number };
      error.responseCode = rejection.responseCode;
      return callback(error);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        if (buffer) chunks.push(chunk);
      });
      stream.on('end', () => {
        const accept = () => {
          acceptedCount += 1;
          const raw = Buffer.concat(chunks);
          const recipients = session.envelope.rcptTo.map((rcpt) => rcpt.address);
          const { mailFrom, dsn } = session.envelope;
          options.onMessage?.(raw, recipients, {
            mailFrom: mailFrom ? mailFrom.address : '',
            envelopeId: dsn?.envid ?? undefined,
            dsnReturn: dsn?.ret ?? undefined,
            notify: session.envelope.rcptTo.map((rcpt) => rcpt.dsn?.notify),
          });
          if (!options.outboxDir) return callback();
          const file = path.join(options.outboxDir, `${String(acceptedCount).padStart(5, '0')}.eml`);
          writeFile(file, raw).then(() => callback(), callback);
        };
        if (options.acceptDelayMs) setTimeout(accept, options.acceptDelayMs);
        else accept();
      });
    },
  });
  // A client that drops its connection (a worker killed mid-send) is routine for a sink; logged
  // and ignored rather than crashing the process that hosts it.
  server.on('error', (error: Error) => {
    if (!listening) return;
    console.error(`smtp sink: ${error.message}`);
  });
  let listening = false;
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', (error) => (listening ? undefined : reject(error)));
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      listening = true;
      const address = server.server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    accepted: () => acceptedCount,
    stop: () => (stopping ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}
