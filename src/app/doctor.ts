import path from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { format } from 'node:util';
import type { NodemailerError } from 'nodemailer/lib/errors';
import { parseConnectionUrl } from 'nodemailer/lib/shared';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { PROJECT_ROOT, type Config, type Mailbox } from '../../config/index.ts';
import { envSchema } from '../../config/schema.ts';
import { listIssueIds, loadIssue } from '../content/load-issue.ts';
import { IssueContentError, TemplateError, UserFacingError } from '../core/errors.ts';
import {
  judgeEvictionPolicy,
  judgeMemory,
  judgePersistence,
  judgeVersion,
  formatBytes,
  type DeploymentStrictness,
  type RedisFinding,
} from '../core/redis-requirements.ts';
import { DEFAULT_LIST } from '../core/subscriber.ts';
import { compileIssue, TEMPLATES_DIR } from '../render/compile-issue.ts';
import { connectRedis } from '../store/connection.ts';
import { readRedisSettings } from '../store/redis-settings.ts';

/** ok, warn and fail as the checks judge; skip: the check could not run (the line says why). */
export type DoctorStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** One line of `newsletter doctor`: what was checked, how it stands, and how to fix it. */
export interface DoctorCheck {
  /** "redis persistence", "smtp auth", "template vol-138". */
  readonly name: string;
  readonly status: DoctorStatus;
  /** What was found; for warn and fail, what is wrong. */
  readonly detail: string;
  /** How to fix it, when there is something to fix. */
  readonly fix?: string | undefined;
  /** How long the step took (SMTP steps, the Redis connection), ms. */
  readonly durationMs?: number | undefined;
}

/** Every check, in order; `ok` unless one of them failed. */
export interface DoctorReport {
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

/** What the doctor checks with: the settings it needs, each undefined when the config does not give a valid one. */
export interface DoctorSettings {
  readonly redisUrl: string | undefined;
  readonly smtpUrl: string | undefined;
  /** Absolute path of the issue files. */
  readonly issuesDir: string | undefined;
  readonly deployment: DeploymentStrictness;
  /** Sender, name and link base the issues are compiled with; undefined: neutral stand-ins (they don't decide whether a template compiles). */
  readonly compile: { readonly from: Mailbox; readonly newsletterName: string; readonly publicUrl: string } | undefined;
}

/** How the doctor runs. */
export interface DoctorOptions {
  /** The problems of a config that does not parse (ConfigError.problems); empty when it parses. */
  readonly configProblems: readonly string[];
  /** How long each SMTP step may take before it counts as failed, ms. @defaultValue 8000 */
  readonly smtpTimeoutMs?: number;
}

// Above the 6 s greeting delay of a Postfix postscreen, well below the transport's own 15 s.
const DEFAULT_SMTP_TIMEOUT_MS = 8_000;
const STAND_IN_COMPILE = { from: { name: 'Newsletter', address: 'newsletter@example.org' }, newsletterName: 'Newsletter', publicUrl: 'https://example.org' };

/** The doctor's settings from a config that parses. */
export function doctorSettingsOf(config: Config): DoctorSettings {
  return {
    redisUrl: config.redis.url,
    smtpUrl: config.smtp.url,
    issuesDir: config.issuesDir,
    deployment: config.deployment,
    compile: { from: config.mail.from, newsletterName: config.mail.newsletterName, publicUrl: config.publicUrl },
  };
}

/**
 * The doctor's settings from raw settings whose config as a whole does not parse: each key parsed
 * alone with the config's own schema, so that the checks whose keys are fine still run.
 */
export function partialDoctorSettings(raw: Readonly<Record<string, string | undefined>>): DoctorSettings {
  const given = (key: string) => (raw[key] === '' ? undefined : raw[key]);
  const valid = <T>(result: { success: true; data: T } | { success: false }) => (result.success ? result.data : undefined);
  const shape = envSchema.shape;
  const issuesDir = valid(shape.ISSUES_DIR.safeParse(given('ISSUES_DIR')));
  const from = valid(shape.MAIL_FROM.safeParse(given('MAIL_FROM')));
  const newsletterName = valid(shape.NEWSLETTER_NAME.safeParse(given('NEWSLETTER_NAME')));
  const publicUrl = valid(shape.PUBLIC_URL.safeParse(given('PUBLIC_URL')));
  return {
    redisUrl: valid(shape.REDIS_URL.safeParse(given('REDIS_URL'))),
    smtpUrl: valid(shape.SMTP_URL.safeParse(given('SMTP_URL'))),
    issuesDir: issuesDir === undefined ? undefined : path.resolve(PROJECT_ROOT, issuesDir),
    deployment: {
      production: valid(shape.NODE_ENV.safeParse(given('NODE_ENV'))) === 'production',
      allowNoPersistence: valid(shape.ALLOW_NO_PERSISTENCE.safeParse(given('ALLOW_NO_PERSISTENCE'))) === '1',
    },
    compile: from && newsletterName && publicUrl ? { from, newsletterName, publicUrl } : undefined,
  };
}

/**
 * `newsletter doctor`: checks the config, Redis (version, eviction policy, persistence, memory),
 * SMTP (connect, EHLO, STARTTLS, AUTH, each timed) and every issue file with the real compiler.
 * Changes nothing anywhere; every check that can run does, whatever the others found.
 */
export async function runDoctor(settings: DoctorSettings, options: DoctorOptions): Promise<DoctorReport> {
  const invalid = (key: string) => (options.configProblems.length > 0 ? `${key} is not set or not valid (see config)` : `${key} is not set`);
  const configCheck: DoctorCheck =
    options.configProblems.length === 0
      ? { name: 'config', status: 'ok', detail: `parses${settings.deployment.production ? ' (NODE_ENV=production)' : ''}` }
      : {
          name: 'config',
          status: 'fail',
          detail: `Invalid configuration: ${options.configProblems.join('; ')}`,
          fix: 'set the keys named, in the environment or .env (see .env.example)',
        };
  const groups = await Promise.all([
    settings.redisUrl === undefined ? [skip('redis', invalid('REDIS_URL'))] : checkRedis(settings.redisUrl, settings.deployment),
    settings.smtpUrl === undefined ? [skip('smtp', invalid('SMTP_URL'))] : checkSmtp(settings.smtpUrl, options.smtpTimeoutMs ?? DEFAULT_SMTP_TIMEOUT_MS),
    settings.issuesDir === undefined ? [skip('templates', invalid('ISSUES_DIR'))] : checkTemplates(settings.issuesDir, settings.compile ?? STAND_IN_COMPILE),
  ]);
  const checks = [configCheck, ...groups.flat()];
  return { ok: checks.every((check) => check.status !== 'fail'), checks };
}

function skip(name: string, why: string): DoctorCheck {
  return { name, status: 'skip', detail: `not checked: ${why}` };
}

function fromFinding(name: string, finding: RedisFinding): DoctorCheck {
  return { name, status: finding.status, detail: finding.summary, fix: finding.fix };
}

async function checkRedis(url: string, deployment: DeploymentStrictness): Promise<DoctorCheck[]> {
  const started = performance.now();
  let redis;
  try {
    redis = await connectRedis(url);
  } catch (error) {
    const notTried = 'no connection to Redis';
    return [
      {
        name: 'redis connection',
        status: 'fail',
        detail: (error as Error).message,
        fix: 'check REDIS_URL, and that Redis runs and is reachable from here',
        durationMs: elapsed(started),
      },
      ...['redis version', 'redis eviction policy', 'redis persistence', 'redis memory'].map((name) => skip(name, notTried)),
    ];
  }
  try {
    const answeredMs = elapsed(started);
    const settings = await readRedisSettings(redis);
    return [
      { name: 'redis connection', status: 'ok', detail: `answered PING in ${answeredMs} ms`, durationMs: answeredMs },
      fromFinding('redis version', judgeVersion(settings.version)),
      fromFinding('redis eviction policy', judgeEvictionPolicy(settings)),
      fromFinding('redis persistence', judgePersistence(settings, deployment)),
      fromFinding('redis memory', judgeMemory(settings)),
    ];
  } finally {
    redis.disconnect();
  }
}

/** One line of nodemailer's transaction log, with when it came. */
interface TranscriptLine {
  readonly at: number;
  readonly tnx: string | undefined;
  readonly text: string;
  readonly method: string | undefined;
  /** Set on the line that says the TCP (or TLS) connection is up. */
  readonly remoteAddress: string | undefined;
}

/**
 * SMTP step by step, with nodemailer's own SMTPConnection (the client the transport uses): its
 * transaction log, timestamped here, tells when the connection, the greeting and each reply came.
 * Every step is bounded by `timeoutMs`, so a server that never answers fails the check instead of
 * hanging it.
 */
async function checkSmtp(url: string, timeoutMs: number): Promise<DoctorCheck[]> {
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
  const started = performance.now();
  try {
    let failure: NodemailerError | undefined;
    try {
      await bounded(
        settle(connection, (done) => connection.connect(done)),
        timeoutMs + 1_000,
        connection,
      );
    } catch (error) {
      failure = error as NodemailerError;
    }
    const session = readTranscript(transcript);
    const where = `${host}:${port}${secure ? ' (TLS)' : ''}`;
    const { greeting, connected, firstEhlo, helo, starttls, lastEhlo } = session;
    if (!greeting || !/^220[ -]/.test(greeting.text)) {
      const reason = !failure
        ? `unexpected greeting: ${oneLine(greeting?.text ?? '')}`
        : connected && !greeting && failure.code === 'ETIMEDOUT'
          ? `connected after ${span(started, connected.at)} ms, but no greeting within ${timeoutMs} ms (ETIMEDOUT)`
          : describeSmtpError(failure, timeoutMs);
      return [
        {
          name: 'smtp connect',
          status: 'fail',
          detail: `${where}: ${reason}`,
          fix: 'check the host and port of SMTP_URL, and that the server runs and is reachable from here',
          durationMs: elapsed(started),
        },
        ...['smtp ehlo', 'smtp starttls', 'smtp auth'].map((name) => skip(name, 'no SMTP connection')),
      ];
    }
    const steps: DoctorCheck[] = [
      {
        name: 'smtp connect',
        status: 'ok',
        detail: `${where}: connected in ${span(started, connected?.at ?? greeting.at)} ms, greeting in ${span(started, greeting.at)} ms: ${oneLine(greeting.text)}`,
        durationMs: span(started, greeting.at),
      },
    ];
    const answered = (exchange: Exchange | undefined): exchange is Exchange & { answer: TranscriptLine } => exchange?.answer?.text.startsWith('2') === true;
    const notReached = 'the session did not get that far';
    if (!answered(firstEhlo)) {
      if (answered(helo) && !failure) {
        steps.push({
          name: 'smtp ehlo',
          status: 'warn',
          detail: `EHLO refused (${oneLine(firstEhlo?.answer?.text ?? 'no answer')}); HELO worked, so no extensions (no STARTTLS, AUTH or PIPELINING)`,
        });
      } else {
        const reason = failure ? describeSmtpError(failure, timeoutMs) : oneLine(firstEhlo?.answer?.text ?? 'no answer');
        steps.push({ name: 'smtp ehlo', status: 'fail', detail: `EHLO failed: ${reason}`, durationMs: elapsed(started) });
        return [...steps, skip('smtp starttls', notReached), skip('smtp auth', notReached)];
      }
    } else {
      const extensions = ehloExtensions((answered(lastEhlo) ? lastEhlo : firstEhlo).answer.text);
      steps.push({
        name: 'smtp ehlo',
        status: 'ok',
        detail: `answered in ${span(firstEhlo.sent.at, firstEhlo.answer.at)} ms; extensions: ${extensions.join(', ') || '(none)'}`,
        durationMs: span(firstEhlo.sent.at, firstEhlo.answer.at),
      });
    }
    const offered = answered(firstEhlo) && ehloExtensions(firstEhlo.answer.text).some((extension) => /^STARTTLS\b/i.test(extension));
    steps.push(starttlsStep({ secure, offered, starttls, failure, loopback, upgraded: connection.secure, timeoutMs, ignoreTLS: target.ignoreTLS === true }));
    if (failure) {
      // A failure after EHLO without STARTTLS (the server hung up, say) still shows on a line of its own.
      if (!starttls) steps.push({ name: 'smtp session', status: 'fail', detail: describeSmtpError(failure, timeoutMs), durationMs: elapsed(started) });
      return [...steps, skip('smtp auth', notReached)];
    }
    steps.push(await authStep(connection, { auth: target.auth, loopback, secure: connection.secure, transcript, timeoutMs }));
    return steps;
  } finally {
    connection.close();
  }
}

/** A command of the transcript and the reply that came to it. */
interface Exchange {
  readonly sent: TranscriptLine;
  readonly answer: TranscriptLine | undefined;
}

/** The session as the transcript tells it: the connection, the greeting, and the EHLO, HELO and STARTTLS exchanges. */
function readTranscript(transcript: readonly TranscriptLine[]) {
  const exchange = (command: RegExp, after = -1): (Exchange & { readonly index: number }) | undefined => {
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

function starttlsStep(state: {
  secure: boolean;
  offered: boolean;
  starttls: Exchange | undefined;
  failure: NodemailerError | undefined;
  loopback: boolean;
  upgraded: boolean;
  timeoutMs: number;
  ignoreTLS: boolean;
}): DoctorCheck {
  const name = 'smtp starttls';
  if (state.secure) return { name, status: 'ok', detail: 'not needed: TLS from the start (smtps://)' };
  if (state.starttls && (state.failure || !state.upgraded)) {
    return {
      name,
      status: 'fail',
      detail: `STARTTLS failed: ${state.failure ? describeSmtpError(state.failure, state.timeoutMs) : oneLine(state.starttls.answer?.text ?? 'no answer')}`,
      fix: "check the server's certificate (SMTP_URL can set tls.servername or, for a test server only, tls.rejectUnauthorized=false)",
    };
  }
  if (state.starttls)
    return {
      name,
      status: 'ok',
      detail: `offered and used (the server agreed in ${span(state.starttls.sent.at, state.starttls.answer?.at ?? state.starttls.sent.at)} ms)`,
    };
  if (state.offered && state.ignoreTLS) {
    return {
      name,
      status: 'warn',
      detail: 'offered, but not used: SMTP_URL sets ignoreTLS, so messages and credentials go unencrypted',
      fix: 'remove ignoreTLS from SMTP_URL',
    };
  }
  if (state.loopback) return { name, status: 'ok', detail: 'not offered; fine on loopback, where nothing leaves this machine' };
  return {
    name,
    status: 'warn',
    detail: 'not offered: messages (and credentials) go unencrypted to the server',
    fix: 'use smtps:// (port 465), or a server that offers STARTTLS (port 587)',
  };
}

async function authStep(
  connection: SMTPConnection,
  state: { auth: { user: string; pass: string } | undefined; loopback: boolean; secure: boolean; transcript: readonly TranscriptLine[]; timeoutMs: number },
): Promise<DoctorCheck> {
  const name = 'smtp auth';
  if (!state.auth) {
    return {
      name,
      status: 'ok',
      detail: connection.allowsAuth
        ? 'not tried: SMTP_URL has no credentials (the server offers AUTH; if it requires it, put user:password@ in SMTP_URL)'
        : 'not needed: the server offers no AUTH and SMTP_URL has no credentials',
    };
  }
  const user = state.auth.user;
  if (!connection.allowsAuth) {
    return {
      name,
      status: 'warn',
      detail: `SMTP_URL has credentials (user "${user}"), but the server offers no AUTH: messages would go without logging in`,
      fix: 'check that SMTP_URL points at the submission server (usually port 587 with STARTTLS, or 465)',
    };
  }
  const started = performance.now();
  try {
    await bounded(
      settle(connection, (done) => connection.login({ user, pass: state.auth!.pass }, (error) => done(error ?? undefined))),
      state.timeoutMs + 1_000,
      connection,
    );
  } catch (error) {
    return {
      name,
      status: 'fail',
      detail: `user "${user}" refused: ${describeSmtpError(error as NodemailerError, state.timeoutMs)}`,
      fix: 'check the user and password in SMTP_URL (percent-encode special characters: @ as %40, : as %3A)',
      durationMs: elapsed(started),
    };
  }
  const method = state.transcript.findLast((line) => line.method !== undefined)?.method;
  const detail = `user "${user}" accepted${method ? ` (${method})` : ''} in ${elapsed(started)} ms`;
  if (!state.secure && !state.loopback) {
    return {
      name,
      status: 'warn',
      detail: `${detail}, over an unencrypted connection`,
      fix: 'use smtps:// or a server that offers STARTTLS',
      durationMs: elapsed(started),
    };
  }
  return { name, status: 'ok', detail, durationMs: elapsed(started) };
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

/** An SMTP failure from its structured fields: nodemailer's code (and the system's), and the server's reply. */
function describeSmtpError(error: NodemailerError, timeoutMs: number): string {
  const code = (error as NodemailerError & { originalCode?: string }).originalCode ?? error.code;
  if (code === 'ECONNREFUSED') return 'connection refused (ECONNREFUSED): nothing listens there';
  if (code === 'ETIMEDOUT') return `no answer within ${timeoutMs} ms (ETIMEDOUT)`;
  if (error.response) return `${oneLine(error.response)}${error.code ? ` (${error.code})` : ''}`;
  return `${oneLine(error.message)}${code ? ` (${code})` : ''}`;
}

/** Compiles every issue file with the real compiler: a send would fail on what fails here. */
async function checkTemplates(issuesDir: string, compile: NonNullable<DoctorSettings['compile']>): Promise<DoctorCheck[]> {
  let ids: string[];
  try {
    ids = await listIssueIds(issuesDir);
  } catch (error) {
    return [
      {
        name: 'templates',
        status: 'fail',
        detail: `cannot read ${issuesDir}: ${(error as Error).message}`,
        fix: 'set ISSUES_DIR to the folder of the issue files',
      },
    ];
  }
  if (ids.length === 0) {
    return [
      { name: 'templates', status: 'warn', detail: `no issue files (<issue>.yaml) in ${issuesDir}`, fix: 'set ISSUES_DIR to the folder of the issue files' },
    ];
  }
  const checks: DoctorCheck[] = [];
  for (const id of ids) {
    const name = `template ${id}`;
    try {
      const issue = await loadIssue(issuesDir, id);
      const compiled = await compileIssue(issue, { ...compile, listName: DEFAULT_LIST, templatesDir: TEMPLATES_DIR });
      const sizes = `HTML ${formatBytes(Buffer.byteLength(compiled.htmlTemplate))}, text ${formatBytes(Buffer.byteLength(compiled.textTemplate))}`;
      const draft = issue.status === 'draft' ? ' (draft)' : '';
      checks.push(
        compiled.warnings.length > 0
          ? { name, status: 'warn', detail: `compiles${draft}, but: ${compiled.warnings.join(' ')}`, fix: 'shorten the issue' }
          : { name, status: 'ok', detail: `compiles${draft}: ${sizes}` },
      );
    } catch (error) {
      checks.push({
        name,
        status: 'fail',
        detail: oneLine((error as Error).message),
        fix:
          error instanceof IssueContentError
            ? `fix the fields named in ${error.file}`
            : error instanceof TemplateError
              ? `fix ${error.template} (in ${TEMPLATES_DIR})`
              : error instanceof UserFacingError
                ? undefined
                : `run newsletter build ${id} for the whole error`,
      });
    }
  }
  return checks;
}

function oneLine(text: string): string {
  return text
    .replace(/\n\s*-\s*/g, '; ')
    .replace(/\s*\n\s*/g, ' ')
    .replace(/:\s*;/g, ':')
    .trim();
}

function elapsed(since: number): number {
  return Math.round(performance.now() - since);
}

function span(from: number, to: number): number {
  return Math.max(0, Math.round(to - from));
}
