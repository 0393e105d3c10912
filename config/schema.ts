import { createPublicKey } from 'node:crypto';
import { z } from 'zod';
import addressparser from 'nodemailer/lib/addressparser';

const positiveInt = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a whole number` })
    .int(`${name} must be a whole number`)
    .positive(`${name} must be greater than 0`);

const portNumber = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a port number` })
    .int(`${name} must be a port number`)
    .min(1, `${name} must be between 1 and 65535`)
    .max(65_535, `${name} must be between 1 and 65535`);

function requiredString(name: string) {
  return z
    .string({ error: `${name} is required` })
    .trim()
    .min(1, `${name} is required`);
}

function urlWithScheme(name: string, schemes: readonly string[]) {
  return requiredString(name).refine(
    (value) => {
      try {
        return schemes.includes(new URL(value).protocol.replace(/:$/, ''));
      } catch {
        return false;
      }
    },
    { message: `${name} must be a URL starting with ${schemes.map((s) => `${s}://`).join(' or ')}` },
  );
}

/** pino's levels, quietest last. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
/** One of LOG_LEVELS. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A sender, parsed from `Name <address>`. */
export interface Mailbox {
  readonly name: string;
  readonly address: string;
}

function parseMailbox(name: string) {
  return requiredString(name).transform((value, ctx): Mailbox => {
    const mailboxes = addressparser(value);
    const [parsed] = mailboxes;
    const address = parsed && 'address' in parsed ? parsed.address : '';
    if (mailboxes.length !== 1 || !parsed || !address || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(address)) {
      ctx.addIssue({ code: 'custom', message: `${name} must be one mailbox such as "IR Weekly <news@example.org>"` });
      return z.NEVER;
    }
    return { name: parsed.name, address };
  });
}

/** A rate: a number of messages per second greater than 0 (fractions allowed: 0.5 is one message every 2 s). */
const positiveRate = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a number of messages per second` })
    .positive(`${name} must be greater than 0`)
    .refine(Number.isFinite, { message: `${name} must be a number of messages per second` });

/** A share between 0 and 1, such as 0.05 for 5%. */
const fraction = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a number between 0 and 1, such as 0.05 for 5%` })
    .gt(0, `${name} must be a number between 0 and 1, such as 0.05 for 5%`)
    .max(1, `${name} must be a number between 0 and 1, such as 0.05 for 5%`);

/** A recipient domain as DOMAIN_RATE_LIMITS names it: lower-case labels joined by dots. */
const DOMAIN_SHAPE = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

/** `gmail.com=20,outlook.com=10`: per-second ceilings of recipient domains. */
function domainRates(name: string) {
  return z
    .string()
    .default('')
    .transform((value, ctx): Readonly<Record<string, number>> => {
      const rates: Record<string, number> = {};
      for (const entry of value
        .split(',')
        .map((part) => part.trim())
        .filter(Boolean)) {
        const match = /^([^=\s]+)\s*=\s*([^=\s]+)$/.exec(entry);
        const domain = match?.[1]?.toLowerCase() ?? '';
        const rate = Number(match?.[2]);
        if (!match || !DOMAIN_SHAPE.test(domain) || !Number.isFinite(rate) || rate <= 0) {
          ctx.addIssue({
            code: 'custom',
            message: `${name}: "${entry}" is not domain=messages-per-second; write it as gmail.com=20,outlook.com=10`,
          });
          return z.NEVER;
        }
        if (domain in rates) {
          ctx.addIssue({ code: 'custom', message: `${name} names ${domain} twice` });
          return z.NEVER;
        }
        rates[domain] = rate;
      }
      return rates;
    });
}

/** An address such as bounces@bounce.example.org, or unset. */
function optionalAddress(name: string) {
  return z
    .string()
    .trim()
    .optional()
    .refine((value) => !value || /^[A-Za-z0-9._-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/.test(value), {
      message: `${name} must be a plain address such as bounces@bounce.example.org (letters, digits, . _ - before the @)`,
    })
    .transform((value) => value || undefined);
}

/** Whether a text is an EC P-256 public key, base64 DER (SubjectPublicKeyInfo) or PEM: SendGrid's verification key. */
function isP256PublicKey(text: string): boolean {
  try {
    const key = text.includes('-----BEGIN') ? createPublicKey(text) : createPublicKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  } catch {
    return false;
  }
}

/** Whether a text is an absolute http:// or https:// URL. */
function isHttpUrl(value: string): boolean {
  try {
    return ['http:', 'https:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** A credential that turns a feature on when set; short ones are refused, they can be guessed. */
function optionalSecret(name: string, minLength: number) {
  return z
    .string()
    .trim()
    .optional()
    .refine((value) => !value || value.length >= minLength, { message: `${name} must be at least ${minLength} characters` })
    .transform((value) => value || undefined);
}

/**
 * The environment keys the pipeline reads, with their defaults. Every key is documented in .env.example;
 * keep the two in step.
 */
export const envSchema = z.object({
  REDIS_URL: urlWithScheme('REDIS_URL', ['redis', 'rediss']),
  REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_{}-]+$/, 'REDIS_PREFIX may hold letters, digits, _, -, { and } only')
    .default('nl'),
  SMTP_URL: urlWithScheme('SMTP_URL', ['smtp', 'smtps']),
  MAIL_FROM: parseMailbox('MAIL_FROM'),
  NEWSLETTER_NAME: z.string().trim().min(1, 'NEWSLETTER_NAME must not be empty').default('IR Research Weekly'),
  PUBLIC_URL: urlWithScheme('PUBLIC_URL', ['https'])
    .refine((value) => !/[?#]/.test(value), { message: 'PUBLIC_URL must be a base URL without ?query or #fragment (links are appended to it)' })
    .transform((value) => value.replace(/\/+$/, '')),
  APP_SECRET: requiredString('APP_SECRET').refine((value) => value.length >= 32, {
    message: 'APP_SECRET must be at least 32 characters (try: openssl rand -hex 32)',
  }),
  ISSUES_DIR: z.string().min(1).default('emails/issues'),
  HTTP_HOST: z.string().trim().min(1, 'HTTP_HOST must not be empty').default('127.0.0.1'),
  HTTP_PORT: portNumber('HTTP_PORT').default(8080),
  METRICS_TOKEN: optionalSecret('METRICS_TOKEN', 32),
  SESSION_MAX_AGE_HOURS: positiveInt('SESSION_MAX_AGE_HOURS').default(12),
  LOGIN_ATTEMPTS_PER_15_MIN: positiveInt('LOGIN_ATTEMPTS_PER_15_MIN').default(10),
  TEST_SENDS_PER_HOUR: positiveInt('TEST_SENDS_PER_HOUR').default(20),
  TRUST_PROXY: z
    .string()
    .trim()
    .default('')
    .refine((value) => value === '' || /^[0-9a-fA-F.:/,\s]+$/.test(value), {
      message: 'TRUST_PROXY must be the address (or CIDR range) of your reverse proxy, comma-separated for several, e.g. 127.0.0.1',
    }),
  WORKER_CONCURRENCY: positiveInt('WORKER_CONCURRENCY').default(40),
  SMTP_POOL_SIZE: positiveInt('SMTP_POOL_SIZE').default(10),
  SMTP_MAX_MESSAGES_PER_CONNECTION: positiveInt('SMTP_MAX_MESSAGES_PER_CONNECTION').default(1000),
  SEND_MAX_ATTEMPTS: positiveInt('SEND_MAX_ATTEMPTS').default(5),
  SEND_BACKOFF_MS: positiveInt('SEND_BACKOFF_MS').default(30_000),
  FANOUT_CHUNK_SIZE: positiveInt('FANOUT_CHUNK_SIZE').default(1000),
  WORKER_SHUTDOWN_TIMEOUT_MS: positiveInt('WORKER_SHUTDOWN_TIMEOUT_MS').default(30_000),
  WORKER_MAX_STALLED_COUNT: positiveInt('WORKER_MAX_STALLED_COUNT').default(5),
  WORKER_LOCK_DURATION_MS: positiveInt('WORKER_LOCK_DURATION_MS').default(5_000),
  WORKER_STALLED_INTERVAL_MS: positiveInt('WORKER_STALLED_INTERVAL_MS').default(1_000),
  SEND_RATE_PER_SEC: positiveRate('SEND_RATE_PER_SEC').optional(),
  DOMAIN_RATE_LIMITS: domainRates('DOMAIN_RATE_LIMITS'),
  DOMAIN_BACKOFF_MS: positiveInt('DOMAIN_BACKOFF_MS').default(60_000),
  SMTP_OUTAGE_MAX_BACKOFF_MS: positiveInt('SMTP_OUTAGE_MAX_BACKOFF_MS').default(5_000),
  BREAKER_BOUNCE_RATE: fraction('BREAKER_BOUNCE_RATE').default(0.05),
  BREAKER_COMPLAINT_RATE: fraction('BREAKER_COMPLAINT_RATE').default(0.003),
  BREAKER_BLOCK_RATE: fraction('BREAKER_BLOCK_RATE').default(0.05),
  BREAKER_MIN_SAMPLE: positiveInt('BREAKER_MIN_SAMPLE').default(200),
  BREAKER_WINDOW_MINUTES: positiveInt('BREAKER_WINDOW_MINUTES').default(15),
  NODE_ENV: z.enum(['production', 'development', 'test'], { error: 'NODE_ENV must be production, development or test' }).default('development'),
  ALLOW_NO_PERSISTENCE: z.enum(['0', '1'], { error: 'ALLOW_NO_PERSISTENCE must be 1 (allow) or 0' }).default('0'),
  BOUNCE_ADDRESS: optionalAddress('BOUNCE_ADDRESS'),
  BOUNCE_SMTP_HOST: z.string().trim().min(1, 'BOUNCE_SMTP_HOST must not be empty').default('127.0.0.1'),
  BOUNCE_SMTP_PORT: portNumber('BOUNCE_SMTP_PORT').default(2526),
  BOUNCE_MAX_MESSAGE_BYTES: positiveInt('BOUNCE_MAX_MESSAGE_BYTES').default(2_000_000),
  SOFT_BOUNCE_LIMIT: positiveInt('SOFT_BOUNCE_LIMIT').default(3),
  SOFT_BOUNCE_WINDOW_DAYS: positiveInt('SOFT_BOUNCE_WINDOW_DAYS').default(30),
  WEBHOOK_MAX_AGE_SECONDS: positiveInt('WEBHOOK_MAX_AGE_SECONDS').default(300),
  SES_MAX_AGE_SECONDS: positiveInt('SES_MAX_AGE_SECONDS').default(3600),
  SES_TOPIC_ARNS: z
    .string()
    .default('')
    .transform((value) =>
      value
        .split(',')
        .map((arn) => arn.trim())
        .filter(Boolean),
    )
    .refine((arns) => arns.every((arn) => /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/.test(arn)), {
      message: 'SES_TOPIC_ARNS must be a comma-separated list of SNS topic ARNs (arn:aws:sns:<region>:<account>:<topic>)',
    }),
  MAILGUN_WEBHOOK_SIGNING_KEY: optionalSecret('MAILGUN_WEBHOOK_SIGNING_KEY', 16),
  POSTMARK_WEBHOOK_USER: optionalSecret('POSTMARK_WEBHOOK_USER', 1),
  POSTMARK_WEBHOOK_PASSWORD: optionalSecret('POSTMARK_WEBHOOK_PASSWORD', 16),
  SENDGRID_WEBHOOK_PUBLIC_KEY: optionalSecret('SENDGRID_WEBHOOK_PUBLIC_KEY', 40).refine((value) => !value || isP256PublicKey(value), {
    message: 'SENDGRID_WEBHOOK_PUBLIC_KEY must be the verification key SendGrid shows: a base64 (or PEM) EC P-256 public key',
  }),
  WEBHOOK_SECRET: optionalSecret('WEBHOOK_SECRET', 32),
  EVENT_WEBHOOK_URL: z
    .string()
    .trim()
    .optional()
    .refine((value) => !value || isHttpUrl(value), { message: 'EVENT_WEBHOOK_URL must be a URL starting with http:// or https://' })
    .transform((value) => value || undefined),
  EVENT_WEBHOOK_SECRET: optionalSecret('EVENT_WEBHOOK_SECRET', 32),
  EVENT_WEBHOOK_MAX_ATTEMPTS: positiveInt('EVENT_WEBHOOK_MAX_ATTEMPTS').default(8),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
});

/** envSchema with the rules between keys, checked once every key parses alone: what parseConfig applies. */
export const environmentSchema = envSchema.superRefine((env, ctx) => {
  // Outgoing webhooks are signed: a URL without the secret would send events anyone could forge.
  if (env.EVENT_WEBHOOK_URL && !env.EVENT_WEBHOOK_SECRET) {
    ctx.addIssue({
      code: 'custom',
      path: ['EVENT_WEBHOOK_SECRET'],
      message: 'EVENT_WEBHOOK_SECRET is required when EVENT_WEBHOOK_URL is set: at least 32 characters, shared with the receiver (try: openssl rand -hex 32)',
    });
  }
});
