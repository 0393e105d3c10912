import path from 'node:path';
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
import { answered, probeSmtp, type SmtpProbe, type SmtpProbeError } from '../delivery/smtp-probe.ts';
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

/** The SMTP checks: connect, EHLO, STARTTLS and AUTH, each judged from what the probe found. */
async function checkSmtp(url: string, timeoutMs: number): Promise<DoctorCheck[]> {
  const probe = await probeSmtp(url, timeoutMs);
  const { target, failure, greeting, firstEhlo, helo, starttls, startedAt } = probe;
  const where = `${target.host}:${target.port}${target.secure ? ' (TLS)' : ''}`;
  if (!probe.greeted || !greeting) {
    const reason = !failure
      ? `unexpected greeting: ${oneLine(greeting?.text ?? '')}`
      : probe.connectedAt !== undefined && !greeting && failure.code === 'ETIMEDOUT'
        ? `connected after ${span(startedAt, probe.connectedAt)} ms, but no greeting within ${timeoutMs} ms (ETIMEDOUT)`
        : describeSmtpError(failure, timeoutMs);
    return [
      {
        name: 'smtp connect',
        status: 'fail',
        detail: `${where}: ${reason}`,
        fix: 'check the host and port of SMTP_URL, and that the server runs and is reachable from here',
        durationMs: span(startedAt, probe.setupEndedAt),
      },
      ...['smtp ehlo', 'smtp starttls', 'smtp auth'].map((name) => skip(name, 'no SMTP connection')),
    ];
  }
  const steps: DoctorCheck[] = [
    {
      name: 'smtp connect',
      status: 'ok',
      detail: `${where}: connected in ${span(startedAt, probe.connectedAt ?? greeting.at)} ms, greeting in ${span(startedAt, greeting.at)} ms: ${oneLine(greeting.text)}`,
      durationMs: span(startedAt, greeting.at),
    },
  ];
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
      steps.push({ name: 'smtp ehlo', status: 'fail', detail: `EHLO failed: ${reason}`, durationMs: span(startedAt, probe.setupEndedAt) });
      return [...steps, skip('smtp starttls', notReached), skip('smtp auth', notReached)];
    }
  } else {
    steps.push({
      name: 'smtp ehlo',
      status: 'ok',
      detail: `answered in ${span(firstEhlo.sent.at, firstEhlo.answer.at)} ms; extensions: ${probe.extensions.join(', ') || '(none)'}`,
      durationMs: span(firstEhlo.sent.at, firstEhlo.answer.at),
    });
  }
  steps.push(starttlsStep(probe, timeoutMs));
  if (failure) {
    // A failure after EHLO without STARTTLS (the server hung up, say) still shows on a line of its own.
    if (!starttls)
      steps.push({ name: 'smtp session', status: 'fail', detail: describeSmtpError(failure, timeoutMs), durationMs: span(startedAt, probe.setupEndedAt) });
    return [...steps, skip('smtp auth', notReached)];
  }
  steps.push(authStep(probe, timeoutMs));
  return steps;
}

function starttlsStep(probe: SmtpProbe, timeoutMs: number): DoctorCheck {
  const name = 'smtp starttls';
  const { target, starttls, failure } = probe;
  if (target.secure) return { name, status: 'ok', detail: 'not needed: TLS from the start (smtps://)' };
  if (starttls && (failure || !probe.tls)) {
    return {
      name,
      status: 'fail',
      detail: `STARTTLS failed: ${failure ? describeSmtpError(failure, timeoutMs) : oneLine(starttls.answer?.text ?? 'no answer')}`,
      fix: "check the server's certificate (SMTP_URL can set tls.servername or, for a test server only, tls.rejectUnauthorized=false)",
    };
  }
  if (starttls)
    return {
      name,
      status: 'ok',
      detail: `offered and used (the server agreed in ${span(starttls.sent.at, starttls.answer?.at ?? starttls.sent.at)} ms)`,
    };
  if (probe.starttlsOffered && target.ignoreTLS) {
    return {
      name,
      status: 'warn',
      detail: 'offered, but not used: SMTP_URL sets ignoreTLS, so messages and credentials go unencrypted',
      fix: 'remove ignoreTLS from SMTP_URL',
    };
  }
  if (target.loopback) return { name, status: 'ok', detail: 'not offered; fine on loopback, where nothing leaves this machine' };
  return {
    name,
    status: 'warn',
    detail: 'not offered: messages (and credentials) go unencrypted to the server',
    fix: 'use smtps:// (port 465), or a server that offers STARTTLS (port 587)',
  };
}

function authStep(probe: SmtpProbe, timeoutMs: number): DoctorCheck {
  const name = 'smtp auth';
  if (!probe.target.auth) {
    return {
      name,
      status: 'ok',
      detail: probe.allowsAuth
        ? 'not tried: SMTP_URL has no credentials (the server offers AUTH; if it requires it, put user:password@ in SMTP_URL)'
        : 'not needed: the server offers no AUTH and SMTP_URL has no credentials',
    };
  }
  const user = probe.target.auth.user;
  if (!probe.allowsAuth) {
    return {
      name,
      status: 'warn',
      detail: `SMTP_URL has credentials (user "${user}"), but the server offers no AUTH: messages would go without logging in`,
      fix: 'check that SMTP_URL points at the submission server (usually port 587 with STARTTLS, or 465)',
    };
  }
  // The probe logs in whenever the session is up, and the doctor gets here only then.
  const login = probe.login;
  if (!login) return skip(name, 'the session did not get that far');
  const durationMs = span(login.startedAt, login.endedAt);
  if (login.failure) {
    return {
      name,
      status: 'fail',
      detail: `user "${user}" refused: ${describeSmtpError(login.failure, timeoutMs)}`,
      fix: 'check the user and password in SMTP_URL (percent-encode special characters: @ as %40, : as %3A)',
      durationMs,
    };
  }
  const detail = `user "${user}" accepted${login.method ? ` (${login.method})` : ''} in ${durationMs} ms`;
  if (!probe.tls && !probe.target.loopback) {
    return {
      name,
      status: 'warn',
      detail: `${detail}, over an unencrypted connection`,
      fix: 'use smtps:// or a server that offers STARTTLS',
      durationMs,
    };
  }
  return { name, status: 'ok', detail, durationMs };
}

/** An SMTP failure from its structured fields: nodemailer's code (and the system's), and the server's reply. */
function describeSmtpError(error: SmtpProbeError, timeoutMs: number): string {
  const code = error.originalCode ?? error.code;
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
