import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../config/index.ts';
import { MINIMAL_VALID_ENV as valid } from '../support/test-config.ts';
import { classifyWebhookStatus, signEventWebhook, webhookPayloadOf } from '../../src/app/event-webhooks.ts';

/** Outgoing webhooks: their settings, the verdict on each answer, the signature and the payload, without Redis. */

const secret = 'event-webhook-secret-0123456789abcdef';

describe('EVENT_WEBHOOK_* settings', () => {
  it('are off when EVENT_WEBHOOK_URL is unset', () => {
    expect(parseConfig(valid).eventWebhook).toBeUndefined();
    expect(parseConfig({ ...valid, EVENT_WEBHOOK_URL: '', EVENT_WEBHOOK_SECRET: secret }).eventWebhook).toBeUndefined();
  });

  it('give the URL, the secret and 8 attempts by default', () => {
    const config = parseConfig({ ...valid, EVENT_WEBHOOK_URL: 'https://ops.example.org/hooks/newsletter', EVENT_WEBHOOK_SECRET: secret });
    expect(config.eventWebhook).toEqual({ url: 'https://ops.example.org/hooks/newsletter', secret, maxAttempts: 8 });
    expect(Object.isFrozen(config.eventWebhook)).toBe(true);
    expect(
      parseConfig({ ...valid, EVENT_WEBHOOK_URL: 'http://127.0.0.1:9000/', EVENT_WEBHOOK_SECRET: secret, EVENT_WEBHOOK_MAX_ATTEMPTS: '3' }).eventWebhook,
    ).toMatchObject({ maxAttempts: 3 });
  });

  it.each([
    [{ EVENT_WEBHOOK_URL: 'https://ops.example.org/hook' }, /EVENT_WEBHOOK_SECRET is required when EVENT_WEBHOOK_URL is set: at least 32 characters/],
    [{ EVENT_WEBHOOK_URL: 'https://ops.example.org/hook', EVENT_WEBHOOK_SECRET: 'too-short' }, /EVENT_WEBHOOK_SECRET must be at least 32 characters/],
    [
      { EVENT_WEBHOOK_URL: 'ftp://ops.example.org/hook', EVENT_WEBHOOK_SECRET: secret },
      /EVENT_WEBHOOK_URL must be a URL starting with http:\/\/ or https:\/\//,
    ],
    [{ EVENT_WEBHOOK_URL: 'ops.example.org/hook', EVENT_WEBHOOK_SECRET: secret }, /EVENT_WEBHOOK_URL must be a URL starting with http:\/\/ or https:\/\//],
    [
      { EVENT_WEBHOOK_URL: 'https://ops.example.org/hook', EVENT_WEBHOOK_SECRET: secret, EVENT_WEBHOOK_MAX_ATTEMPTS: '0' },
      /EVENT_WEBHOOK_MAX_ATTEMPTS must be greater than 0/,
    ],
  ])('refuse %j with a message naming the key', (settings, message) => {
    const env = { ...valid, ...settings };
    expect(() => parseConfig(env)).toThrow(ConfigError);
    expect(() => parseConfig(env)).toThrow(message);
  });
});

describe('classifyWebhookStatus', () => {
  it.each([
    [200, 'delivered'],
    [202, 'delivered'],
    [204, 'delivered'],
    [500, 'retry'],
    [502, 'retry'],
    [503, 'retry'],
    [408, 'retry'],
    [429, 'retry'],
    [400, 'refused'],
    [401, 'refused'],
    [404, 'refused'],
    [410, 'refused'],
    [301, 'refused'],
    [307, 'refused'],
  ])('%d: %s', (status, verdict) => {
    expect(classifyWebhookStatus(status)).toBe(verdict);
  });
});

describe('the signature', () => {
  it('is sha256= and the hex HMAC-SHA256 of "<timestamp>.<body>" under the secret', () => {
    const body = '{"id":"1-0","type":"send.started"}';
    const expected = createHmac('sha256', secret).update(`1700000000.${body}`).digest('hex');
    expect(signEventWebhook(secret, '1700000000', body)).toBe(`sha256=${expected}`);
    expect(signEventWebhook(secret, '1700000001', body)).not.toBe(`sha256=${expected}`);
    expect(signEventWebhook(`${secret}x`, '1700000000', body)).not.toBe(`sha256=${expected}`);
  });
});

describe('webhookPayloadOf', () => {
  const fields = (record: Record<string, string>) => Object.entries(record).flat();

  it('turns a stream entry into { id, type, at, data } with numbers as numbers', () => {
    const at = '2026-11-02T08:00:00.000Z';
    expect(webhookPayloadOf('1-0', fields({ type: 'send.started', sendId: 'vol-138.weekly.1', issue: 'vol-138', list: 'weekly', total: '20', at }))).toEqual({
      id: '1-0',
      type: 'send.started',
      at,
      data: { sendId: 'vol-138.weekly.1', issue: 'vol-138', list: 'weekly', total: 20 },
    });
    expect(
      webhookPayloadOf(
        '2-0',
        fields({ type: 'send.paused', sendId: 's', by: 'breaker', reason: 'hard-bounce rate…', breaker: 'hard', rate: '0.1', threshold: '0.05', at }),
      )?.data,
    ).toEqual({ sendId: 's', by: 'breaker', reason: 'hard-bounce rate…', breaker: 'hard', rate: 0.1, threshold: 0.05 });
  });

  it('leaves out the events that stay in the console', () => {
    expect(webhookPayloadOf('3-0', fields({ type: 'send.resumed', sendId: 's', by: 'ops', who: 'cli:alice', at: 'x' }))).toBeUndefined();
    expect(webhookPayloadOf('4-0', fields({ type: 'send.domain-held', sendId: 's', domain: 'example.org', at: 'x' }))).toBeUndefined();
  });

  it('refuses an entry that lacks what its type carries', () => {
    expect(() => webhookPayloadOf('5-0', fields({ type: 'send.finished', sendId: 's', at: 'x' }))).toThrow(/Send event 5-0 \(send.finished\) is unreadable/);
  });
});
