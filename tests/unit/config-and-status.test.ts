import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../config/index.ts';
import { MINIMAL_VALID_ENV as valid } from '../support/test-config.ts';
import { computeSendStatus } from '../../src/core/send-status.ts';

describe('config', () => {
  it('parses a valid environment into a frozen object with defaults', () => {
    const config = parseConfig(valid);
    expect(config.publicUrl).toBe('https://newsletter.example.org');
    expect(config.mail.from).toEqual({ name: 'IR Research Weekly', address: 'weekly@example.org' });
    expect(config.send).toMatchObject({ workerConcurrency: 40, maxAttempts: 5, backoffMs: 30_000 });
    expect(config.smtp.poolSize).toBe(10);
    expect(Object.isFrozen(config.send)).toBe(true);
  });

  it.each([
    ['SMTP_URL', undefined, /SMTP_URL is required/],
    ['APP_SECRET', 'short', /APP_SECRET must be at least 32 characters/],
    ['PUBLIC_URL', 'http://newsletter.example.org', /PUBLIC_URL must be a URL starting with https:\/\//],
    ['MAIL_FROM', 'not an address', /MAIL_FROM must be one mailbox/],
    ['MAIL_FROM', 'A <a@example.org>, B <b@example.org>', /MAIL_FROM must be one mailbox/],
    ['PUBLIC_URL', 'https://newsletter.example.org/?utm=x', /PUBLIC_URL must be a base URL without \?query or #fragment/],
    ['REDIS_URL', 'localhost:6379', /REDIS_URL must be a URL starting with redis:\/\//],
    ['WORKER_CONCURRENCY', 'many', /WORKER_CONCURRENCY must be a whole number/],
    ['SMTP_POOL_SIZE', '0', /SMTP_POOL_SIZE must be greater than 0/],
    ['SEND_MAX_ATTEMPTS', '2.5', /SEND_MAX_ATTEMPTS must be a whole number/],
    ['SEND_BACKOFF_MS', '-1', /SEND_BACKOFF_MS must be greater than 0/],
  ])('names %s when it is %j', (key, value, message) => {
    const env: Record<string, string | undefined> = { ...valid, [key]: value };
    expect(() => parseConfig(env)).toThrow(ConfigError);
    expect(() => parseConfig(env)).toThrow(message);
  });
});

describe('computeSendStatus', () => {
  const facts = { total: 10, accepted: 0, failed: 0, skipped: 0, fanOutDone: true, finished: false, control: 'active' as const };
  it.each([
    [{ ...facts, fanOutDone: false }, 'preparing', 10],
    [facts, 'queued', 10],
    [{ ...facts, accepted: 4, failed: 1 }, 'sending', 5],
    [{ ...facts, accepted: 9, skipped: 1, finished: true }, 'sent', 0],
    [{ ...facts, accepted: 8, failed: 2, finished: true }, 'sent-with-failures', 0],
    [{ ...facts, accepted: 4, control: 'paused' as const }, 'paused', 6],
    [{ ...facts, fanOutDone: false, control: 'paused' as const }, 'paused', 10],
    // A pause that came as the last recipient finished: the send is done, not paused.
    [{ ...facts, accepted: 10, finished: true, control: 'paused' as const }, 'sent', 0],
    [{ ...facts, accepted: 4, skipped: 6, finished: true, control: 'cancelled' as const }, 'cancelled', 0],
    // Cancelled with a message still in flight: final for ops, the last record comes in later.
    [{ ...facts, accepted: 4, skipped: 5, control: 'cancelled' as const }, 'cancelled', 1],
  ])('%j is %s with %d pending', (input, state, pending) => {
    expect(computeSendStatus(input)).toMatchObject({ state, pending });
  });
});

describe('.env.example', () => {
  it('documents every key the config schema reads', async () => {
    const { readFile } = await import('node:fs/promises');
    const { envSchema } = await import('../../config/schema.ts');
    const { PROJECT_ROOT } = await import('../../config/index.ts');
    const example = await readFile(`${PROJECT_ROOT}/.env.example`, 'utf8');
    const documented = [...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((match) => match[1] ?? '');
    expect(documented.sort()).toEqual(Object.keys(envSchema.shape).sort());
  });
});
