import type { ConnectionOptions } from 'node:tls';
import { format } from 'node:util';
import type { NodemailerError } from 'nodemailer/lib/errors';
import { parseConnectionUrl } from 'nodemailer/lib/shared';
import SMTPConnection from 'nodemailer/lib/smtp-connection';

/** A line of the SMTP session: what was said (a command, a reply), and when (performance.now()). */
export interface SmtpProbeLine {
  readonly at: number;
  readonly text: string;
}

/** A command of the session and the reply that came to it. */
export interface SmtpExchange {
  readonly sent: SmtpProbeLine;
  readonly answer: SmtpProbeLine | undefined;
}

/** Why a step failed, from nodemailer's structured fields. */
export interface SmtpProbeError {
  readonly message: string;
  /** nodemailer's code (ECONNECTION, ETIMEDOUT, EAUTH…), or the system's. */
  readonly code?: string | undefined;
  /** The system's code under nodemailer's, when there is one (ECONNREFUSED, say). */
  readonly originalCode?: string | undefined;
  /** The server's reply, when it was the server that refused. */
  readonly response?: string | undefined;
}

/** AUTH with the credentials of the URL, as it went. */
export interface SmtpProbeLogin {
  readonly startedAt: number;
  readonly endedAt: number;
  /** undefined: the server accepted the credentials. */
  readonly failure: SmtpProbeError | undefined;
  /** The mechanism used (PLAIN, LOGIN…), when the session says. */
  readonly method: string | undefined;
}

/** What `probeSmtp` found, step by step; times are performance.now() values. */
export interface SmtpProbe {
  /** The server as the URL names it. */
  readonly target: {
    readonly host: string;
    readonly port: number;
    /** TLS from the start (smtps://). */
    readonly secure: boolean;
    readonly loopback: boolean;
    /** The URL sets ignoreTLS: STARTTLS is not used even when offered. */
    readonly ignoreTLS: boolean;
    /** The URL's credentials (the user only), when it has any. */
    readonly auth: { readonly user: string } | undefined;
  };
  /** When the connection was started. */
  readonly startedAt: number;
  /** When the session setup (connect, greeting, EHLO, STARTTLS) ended, set up or failed. */
  readonly setupEndedAt: number;
  /** Why the setup failed; undefined when the session is up. */
  readonly failure: SmtpProbeError | undefined;
  /** When the TCP (or TLS) connection was up; undefined when it never was. */
  readonly connectedAt: number | undefined;
  /** The server's first reply, whatever it said. */
  readonly greeting: SmtpProbeLine | undefined;
  /** The greeting is a 220. */
  readonly greeted: boolean;
  readonly firstEhlo: SmtpExchange | undefined;
  /** The HELO that nodemailer falls back to when EHLO is refused. */
  readonly helo: SmtpExchange | undefined;
  readonly starttls: SmtpExchange | undefined;
  /** The EHLO after STARTTLS (the first EHLO when there was none). */
  readonly lastEhlo: SmtpExchange | undefined;
  /** The extensions of the last EHLO (the first, when the one after STARTTLS got no 2xx); empty when the first got none. */
  readonly extensions: readonly string[];
  /** The first EHLO offered STARTTLS. */
  readonly starttlsOffered: boolean;
  /** The connection is encrypted (from the start, or upgraded by STARTTLS). */
  readonly tls: boolean;
  /** The server offers AUTH. */
  readonly allowsAuth: boolean;
  /** Tried only when the session is up, the URL has credentials and the server offers AUTH. */
  readonly login: SmtpProbeLogin | undefined;
}

/** One line of nodemailer's transaction log, with when it came. */
interface TranscriptLine extends SmtpProbeLine {
  readonly tnx: string | undefined;
  readonly method: string | undefined;
  /** Set on the line that says the TCP (or TLS) connection is up. */
  readonly remoteAddress: string | undefined;
}

/** A 2xx reply came to the command. */
export function answered(exchange: SmtpExchange | undefined): exchange is SmtpExchange & { answer: SmtpProbeLine } {
  return exchange?.answer?.text.startsWith('2') === true;
}

/**
 * SMTP step by step, with nodemailer's own SMTPConnection (the client the transport uses): its
 * transaction log, timestamped here, tells when the connection, the greeting and each reply came.
 * Every step is bounded by `timeoutMs`, so a server that never answers fails the probe instead of
 * hanging it. Logs in when it can, sends nothing.
 */
export async function probeSmtp(url: string, timeoutMs: number): Promise<SmtpProbe> {
  const target = parseConnectionUrl(url);
  const secure = target.secure === true;
  const host = target.host ?? 'localhost';
  const port = target.port ?? (secure ? 465 : 587);
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\])$/i.test(host);
  const transcript: TranscriptLine[] = [];
  const record = (entry: { tnx?: string; method?: string; remoteAddress?: string } | undefined, message?: unknown, ...args: unknown[]) =>
    void transcript.push({
      at: performance.now(),
      tnx: entry?.tnx,
      text: format(message ?? '', ...args),
      method: entry?.method,
      remoteAddress: entry?.remoteAddress,
    });
  const connection = new SMTPConnection({
    host,
    port,
    secure,
    ignoreTLS: target.ignoreTLS === true,
    requireTLS: target.requireTLS === true,
    tls: target.tls as ConnectionOptions | undefined,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    dnsTimeout: timeoutMs,
    logger: { trace: record, debug: record, info: record, warn: record, error: record, fatal: record },
    transactionLog: true,
  });
  // Errors also reach the step that waits (connect, login); without a listener a late one would throw.
  connection.on('error', () => undefined);
  const startedAt = performance.now();
  try {
    let failure: SmtpProbeError | undefined;
    try {
      await bounded(
        settle(connection, (done) => connection.connect(done)),
        timeoutMs + 1_000,
        connection,
      );
    } catch (error) {
      failure = error as NodemailerError;
    }
    const setupEndedAt = performance.now();
    const session = readTranscript(transcript);
    const { greeting, firstEhlo, helo, lastEhlo } = session;
    const greeted = greeting !== undefined && /^220[ -]/.test(greeting.text);
    const tls = connection.secure;
    const allowsAuth = connection.allowsAuth;
    const auth = target.auth;
    const sessionUp = greeted && !failure && (answered(firstEhlo) || answered(helo));
    const login = sessionUp && auth && allowsAuth ? await logIn(connection, auth, transcript, timeoutMs) : undefined;
    return {
      target: { host, port, secure, loopback, ignoreTLS: target.ignoreTLS === true, auth: auth ? { user: auth.user } : undefined },
      startedAt,
      setupEndedAt,
      failure,
      connectedAt: session.connected?.at,
      greeting,
      greeted,
      firstEhlo,
      helo,
      starttls: session.starttls,
      lastEhlo,
      extensions: answered(firstEhlo) ? ehloExtensions((answered(lastEhlo) ? lastEhlo : firstEhlo).answer.text) : [],
      starttlsOffered: answered(firstEhlo) && ehloExtensions(firstEhlo.answer.text).some((extension) => /^STARTTLS\b/i.test(extension)),
      tls,
      allowsAuth,
      login,
    };
  } finally {
    connection.close();
  }
}

/** The session as the transcript tells it: the connection, the greeting, and the EHLO, HELO and STARTTLS exchanges. */
function readTranscript(transcript: readonly TranscriptLine[]) {
  const exchange = (command: RegExp, after = -1): (SmtpExchange & { readonly index: number }) | undefined => {
    const sent = transcript.findIndex((line, index) => index > after && line.tnx === 'client' && command.test(line.text));
    if (sent === -1) return undefined;
    const answer = transcript.findIndex((line, index) => index > sent && line.tnx === 'server');
    return { sent: transcript[sent]!, answer: answer === -1 ? undefined : transcript[answer], index: answer === -1 ? sent : answer };
  };
  const hello = /^(EHLO|LHLO) /;
  const firstEhlo = exchange(hello);
  const starttls = exchange(/^STARTTLS$/);
  return {
    connected: transcript.find((line) => line.tnx === 'network' && line.remoteAddress !== undefined),
    greeting: transcript.find((line) => line.tnx === 'server'),
    firstEhlo,
    helo: exchange(/^HELO /),
    starttls,
    // After STARTTLS the client says EHLO again, and the server may offer more (AUTH, typically).
    lastEhlo: starttls ? exchange(hello, starttls.index) : firstEhlo,
  };
}

async function logIn(
  connection: SMTPConnection,
  auth: { user: string; pass: string },
  transcript: readonly TranscriptLine[],
  timeoutMs: number,
): Promise<SmtpProbeLogin> {
  const startedAt = performance.now();
  let failure: SmtpProbeError | undefined;
  try {
    await bounded(
      settle(connection, (done) => connection.login({ user: auth.user, pass: auth.pass }, (error) => done(error ?? undefined))),
      timeoutMs + 1_000,
      connection,
    );
  } catch (error) {
    failure = error as NodemailerError;
  }
  const endedAt = performance.now();
  return { startedAt, endedAt, failure, method: transcript.findLast((line) => line.method !== undefined)?.method };
}

/** Runs one SMTPConnection step to its callback, or to the first 'error' or 'end' of the connection. */
function settle(connection: SMTPConnection, start: (done: (error?: Error) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    const onEnd = () => reject(Object.assign(new Error('the server closed the connection'), { code: 'ECONNECTION' }));
    connection.once('error', onError);
    connection.once('end', onEnd);
    start((error) => {
      connection.off('error', onError);
      connection.off('end', onEnd);
      if (error) reject(error);
      else resolve();
    });
  });
}

/** Gives up on a step after `timeoutMs` (closing the connection), whatever nodemailer's own timers do. */
async function bounded(step: Promise<void>, timeoutMs: number, connection: SMTPConnection): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      connection.close();
      reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
  });
  try {
    await Promise.race([step, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The extensions of an EHLO reply: its lines after the first, without the reply codes. */
function ehloExtensions(reply: string): string[] {
  return reply
    .split(/\r?\n/)
    .map((line) => line.replace(/^\d{3}[ -]/, '').trim())
    .filter(Boolean)
    .slice(1);
}
