import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { parseConfig, type Config } from '../../config/index.ts';

/** A key prefix no other test uses, so tests share the private Redis without touching each other. */
export function uniquePrefix(label: string): string {
  return `t-${label}-${randomBytes(4).toString('hex')}`;
}

/** A valid config for tests, on the run's private Redis and a prefix of its own. */
export function testConfig(label: string, overrides: Record<string, string> = {}): Config {
  return parseConfig({
    // Unit tests run without the private Redis; they parse a config but never connect.
    REDIS_URL: inject('redisUrl') ?? 'redis://127.0.0.1:1',
    REDIS_PREFIX: uniquePrefix(label),
    SMTP_URL: 'smtp://127.0.0.1:1',
    MAIL_FROM: 'IR Research Weekly <weekly@example.org>',
    PUBLIC_URL: 'https://newsletter.example.org',
    APP_SECRET: 'test-secret-0123456789abcdef0123456789abcdef',
    SEND_BACKOFF_MS: '50',
    WORKER_SHUTDOWN_TIMEOUT_MS: '5000',
    // Tests that look at the log set their own level.
    LOG_LEVEL: 'silent',
    ...overrides,
  });
}

/** The fewest settings that make a valid config (no Redis connection is made by parsing it). */
export const MINIMAL_VALID_ENV: Readonly<Record<string, string>> = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  SMTP_URL: 'smtp://127.0.0.1:2525',
  MAIL_FROM: 'IR Research Weekly <weekly@example.org>',
  PUBLIC_URL: 'https://newsletter.example.org/',
  APP_SECRET: 'config-test-secret-0123456789abcdef012345',
};
