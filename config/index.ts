import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { environmentSchema, type LogLevel, type Mailbox } from './schema.ts';

export type { LogLevel, Mailbox } from './schema.ts';

/** The project's root folder; relative paths in the config are resolved against it. */
export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The pipeline's settings: parsed once, frozen, and handed to everything else. */
export interface Config {
  readonly redis: { readonly url: string; readonly prefix: string };
  readonly smtp: {
    readonly url: string;
    /** Open SMTP connections per worker process. */
    readonly poolSize: number;
    /** Messages sent over one connection before it is recycled. */
    readonly maxMessagesPerConnection: number;
  };
  readonly mail: { readonly from: Mailbox; readonly newsletterName: string };
  /** Base for every link in the email (unsubscribe, view in browser); https, no trailing slash. */
  readonly publicUrl: string;
  /** Signs unsubscribe tokens. */
  readonly appSecret: string;
  /** Absolute path of the folder that holds one <issue>.yaml per issue. */
  readonly issuesDir: string;
  /** Where `newsletter serve` listens (the unsubscribe endpoint behind PUBLIC_URL). */
  readonly http: { readonly host: string; readonly port: number };
  /** The console, API and metrics endpoint served by `newsletter serve`. */
  readonly console: {
    /** Bearer token a Prometheus scrape of /metrics presents; unset: /metrics is open on a loopback-only server, else needs an API token. */
    readonly metricsToken: string | undefined;
    /** How long a console login lasts. */
    readonly sessionMaxAgeHours: number;
    /** Failed login attempts one client address may make per 15 minutes (an account may get five times as many, from all addresses together). */
    readonly loginAttemptsPer15Min: number;
    /** Test sends (each up to 10 addresses) one user or token may make per hour: they go straight to SMTP, outside pacing and suppression. */
    readonly testSendsPerHour: number;
    /** The reverse proxies whose X-Forwarded-For names the client (Fastify's trustProxy); empty: none, the peer is the client. */
    readonly trustProxy: readonly string[];
  };
  readonly send: {
    /** Jobs one worker process runs at once. */
    readonly workerConcurrency: number;
    /** Tries per message, the first included. */
    readonly maxAttempts: number;
    /** Delay before the first retry; each later retry doubles it. */
    readonly backoffMs: number;
    /** Jobs added per addBulk call during fan-out. */
    readonly fanOutChunkSize: number;
    /** How long a stopping worker waits for jobs in flight before handing them back. */
    readonly shutdownTimeoutMs: number;
    /** How long a job's lock lasts without renewal: a crashed worker's jobs go back after about this long. */
    readonly lockDurationMs: number;
    /** How often a worker looks for jobs whose worker died (their lock lapsed) and puts them back. */
    readonly stalledIntervalMs: number;
    /**
     * How many times a job may go back to the queue because its worker died before BullMQ gives up
     * on it; the recipient is then recorded as a temporary failure, which --retry-failed retries.
     */
    readonly maxStalledCount: number;
  };
  /** How fast mail goes out, shared by every worker process (see delivery/pacing.ts). */
  readonly pacing: {
    /** Messages per second for all workers together; undefined: no ceiling. */
    readonly ratePerSec: number | undefined;
    /** Per-second ceilings of recipient domains (lower-case domain → rate). */
    readonly domainRates: Readonly<Record<string, number>>;
    /** How long a domain is left alone after it answers "slow down" (421, 4.7.x); doubles while it keeps answering so. */
    readonly domainBackoffMs: number;
    /** Longest wait between tries to reach an SMTP service that is down (waits start short and double). */
    readonly outageMaxBackoffMs: number;
  };
  /** When a send pauses itself, or holds a recipient domain (see core/breaker-policy.ts). */
  readonly breakers: {
    /** Hard bounces per message answered. */
    readonly bounceRate: number;
    /** Complaints per message answered. */
    readonly complaintRate: number;
    /** Blocks (policy or reputation refusals) per message answered. */
    readonly blockRate: number;
    /** Messages answered in the window before a rate is judged, for the send and for each domain. */
    readonly minSample: number;
    /** The rates look at the last this-many minutes. */
    readonly windowMinutes: number;
  };
  /** How strict start-up is about the Redis it finds. */
  readonly deployment: {
    /** NODE_ENV=production: refuse to start on a Redis without persistence. */
    readonly production: boolean;
    /** ALLOW_NO_PERSISTENCE=1: start anyway (a crash of Redis then loses subscribers and sends). */
    readonly allowNoPersistence: boolean;
  };
  /** Where bounces and complaints come back, and what they do (see core/bounce-policy.ts). */
  readonly bounces: {
    /**
     * The bounce mailbox; when set, every message's envelope sender is its VERP form
     * `<local>+<token>@<domain>`, and the bounce server takes mail for its domain only.
     */
    readonly address: string | undefined;
    /** Where `newsletter bounce-server` listens for reports (SMTP). */
    readonly smtpHost: string;
    readonly smtpPort: number;
    /** Larger inbound messages are refused (552): a report with headers only is a few KB. */
    readonly maxMessageBytes: number;
    /** Soft bounces within the window that suppress an address (status bounced). */
    readonly softBounceLimit: number;
    /** Soft bounces older than this many days no longer count. */
    readonly softBounceWindowDays: number;
  };
  /** Provider webhooks on `newsletter serve`; a route whose credential is unset answers 404. */
  readonly webhooks: {
    /** Signed requests older than this (or reused tokens within it) are refused: Mailgun, SendGrid. */
    readonly maxAgeSeconds: number;
    /** SNS retries a message for up to an hour with its first Timestamp; older ones are refused. */
    readonly sesMaxAgeSeconds: number;
    /** The SNS topics whose notifications are accepted (empty: the SES route is off). */
    readonly sesTopicArns: readonly string[];
    readonly mailgunSigningKey: string | undefined;
    readonly postmark: { readonly user: string; readonly password: string } | undefined;
    /** Base64 DER (SPKI) ECDSA public key of SendGrid's signed event webhook. */
    readonly sendgridPublicKey: string | undefined;
    /** Bearer secret of the generic JSON webhook. */
    readonly genericSecret: string | undefined;
  };
  /**
   * Outgoing webhooks: send.started, send.paused, send.finished and breaker.tripped POSTed to one
   * URL, signed with the secret (see app/event-webhooks.ts); undefined when EVENT_WEBHOOK_URL is unset.
   */
  readonly eventWebhook:
    | {
        readonly url: string;
        /** HMAC-SHA256 key of the x-newsletter-signature header, shared with the receiver. */
        readonly secret: string;
        /** Tries per event, the first included, with a doubling wait between them. */
        readonly maxAttempts: number;
      }
    | undefined;
  /** pino level of the structured log (standard error). */
  readonly logLevel: LogLevel;
}

/** A setting is missing or malformed; the message names the key. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
  }
}

/**
 * Parses settings from a plain key/value source. Pure: the caller decides where the values come
 * from (process.env in the shells, literals in tests).
 */
export function parseConfig(source: Readonly<Record<string, string | undefined>>): Config {
  const result = environmentSchema.safeParse(source);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => {
        const key = String(issue.path[0] ?? '');
        return issue.message.includes(key) ? issue.message : `${key}: ${issue.message}`;
      }),
    );
  }
  const env = result.data;
  return deepFreeze({
    redis: { url: env.REDIS_URL, prefix: env.REDIS_PREFIX },
    smtp: {
      url: env.SMTP_URL,
      poolSize: env.SMTP_POOL_SIZE,
      maxMessagesPerConnection: env.SMTP_MAX_MESSAGES_PER_CONNECTION,
    },
    mail: { from: env.MAIL_FROM, newsletterName: env.NEWSLETTER_NAME },
    publicUrl: env.PUBLIC_URL,
    appSecret: env.APP_SECRET,
    issuesDir: path.resolve(PROJECT_ROOT, env.ISSUES_DIR),
    http: { host: env.HTTP_HOST, port: env.HTTP_PORT },
    console: {
      metricsToken: env.METRICS_TOKEN,
      sessionMaxAgeHours: env.SESSION_MAX_AGE_HOURS,
      loginAttemptsPer15Min: env.LOGIN_ATTEMPTS_PER_15_MIN,
      testSendsPerHour: env.TEST_SENDS_PER_HOUR,
      trustProxy: env.TRUST_PROXY.split(',')
        .map((entry) => entry.trim())
        .filter(Boolean),
    },
    send: {
      workerConcurrency: env.WORKER_CONCURRENCY,
      maxAttempts: env.SEND_MAX_ATTEMPTS,
      backoffMs: env.SEND_BACKOFF_MS,
      fanOutChunkSize: env.FANOUT_CHUNK_SIZE,
      shutdownTimeoutMs: env.WORKER_SHUTDOWN_TIMEOUT_MS,
      lockDurationMs: env.WORKER_LOCK_DURATION_MS,
      stalledIntervalMs: env.WORKER_STALLED_INTERVAL_MS,
      maxStalledCount: env.WORKER_MAX_STALLED_COUNT,
    },
    pacing: {
      ratePerSec: env.SEND_RATE_PER_SEC,
      domainRates: env.DOMAIN_RATE_LIMITS,
      domainBackoffMs: env.DOMAIN_BACKOFF_MS,
      outageMaxBackoffMs: env.SMTP_OUTAGE_MAX_BACKOFF_MS,
    },
    breakers: {
      bounceRate: env.BREAKER_BOUNCE_RATE,
      complaintRate: env.BREAKER_COMPLAINT_RATE,
      blockRate: env.BREAKER_BLOCK_RATE,
      minSample: env.BREAKER_MIN_SAMPLE,
      windowMinutes: env.BREAKER_WINDOW_MINUTES,
    },
    deployment: { production: env.NODE_ENV === 'production', allowNoPersistence: env.ALLOW_NO_PERSISTENCE === '1' },
    bounces: {
      address: env.BOUNCE_ADDRESS,
      smtpHost: env.BOUNCE_SMTP_HOST,
      smtpPort: env.BOUNCE_SMTP_PORT,
      maxMessageBytes: env.BOUNCE_MAX_MESSAGE_BYTES,
      softBounceLimit: env.SOFT_BOUNCE_LIMIT,
      softBounceWindowDays: env.SOFT_BOUNCE_WINDOW_DAYS,
    },
    webhooks: {
      maxAgeSeconds: env.WEBHOOK_MAX_AGE_SECONDS,
      sesMaxAgeSeconds: env.SES_MAX_AGE_SECONDS,
      sesTopicArns: env.SES_TOPIC_ARNS,
      mailgunSigningKey: env.MAILGUN_WEBHOOK_SIGNING_KEY,
      postmark: postmarkCredentials(env.POSTMARK_WEBHOOK_USER, env.POSTMARK_WEBHOOK_PASSWORD),
      sendgridPublicKey: env.SENDGRID_WEBHOOK_PUBLIC_KEY,
      genericSecret: env.WEBHOOK_SECRET,
    },
    eventWebhook:
      env.EVENT_WEBHOOK_URL && env.EVENT_WEBHOOK_SECRET
        ? { url: env.EVENT_WEBHOOK_URL, secret: env.EVENT_WEBHOOK_SECRET, maxAttempts: env.EVENT_WEBHOOK_MAX_ATTEMPTS }
        : undefined,
    logLevel: env.LOG_LEVEL,
  });
}

/** Both Postmark keys or neither: one without the other is a mistake worth stopping for. */
function postmarkCredentials(user: string | undefined, password: string | undefined): Config['webhooks']['postmark'] {
  if (user && password) return { user, password };
  if (user || password) throw new ConfigError(['POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD must be set together']);
  return undefined;
}

let loaded: Config | undefined;
let dotenvLoaded = false;

async function loadDotenv(): Promise<void> {
  if (dotenvLoaded) return;
  const dotenv = await import('dotenv');
  dotenv.config({ path: path.join(PROJECT_ROOT, '.env'), quiet: true });
  dotenvLoaded = true;
}

/** Whether the environment (or .env) sets a key; the demo uses it to decide what to start itself. */
export async function environmentSets(key: string): Promise<boolean> {
  await loadDotenv();
  return (process.env[key] ?? '') !== '';
}

/**
 * The one reader of the environment: loads .env (if present) into process.env, parses once, and
 * returns the same frozen Config on every later call. `defaults` fill keys the environment leaves
 * unset (the demo uses this for its embedded settings).
 */
export async function loadConfig(defaults: Readonly<Record<string, string>> = {}): Promise<Config> {
  if (loaded) return loaded;
  await loadDotenv();
  loaded = parseConfig({ ...defaults, ...definedOnly(process.env) });
  return loaded;
}

function definedOnly(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''));
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
