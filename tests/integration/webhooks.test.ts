import { describe, expect, it, onTestFinished } from 'vitest';
import { buildHttpApp } from '../../src/http/server.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';
import {
  basicAuthorization,
  forgerKey,
  sendgridHeaders,
  sendgridKeyPair,
  signMailgunBody,
  signSnsMessage,
  snsNotificationOf,
  snsTestValidator,
  SNS_TEST_TOPIC_ARN,
} from '../support/webhook-signing.ts';

const MAILGUN_KEY = 'key-mailgun-signing-0123456789abcdef';
const POSTMARK = { user: 'postmark', password: 'postmark-hook-password-0123' };
const GENERIC_SECRET = 'generic-webhook-secret-0123456789abcdef0123';
const SENDGRID = sendgridKeyPair();

/** A finished send of vol-138 to readers 1–3, and the serve app on a loopback port with every webhook configured. */
async function served(label: string, config: Record<string, string> = {}) {
  const harness = await createHarness(label, {
    config: {
      SES_TOPIC_ARNS: SNS_TEST_TOPIC_ARN,
      MAILGUN_WEBHOOK_SIGNING_KEY: MAILGUN_KEY,
      POSTMARK_WEBHOOK_USER: POSTMARK.user,
      POSTMARK_WEBHOOK_PASSWORD: POSTMARK.password,
      SENDGRID_WEBHOOK_PUBLIC_KEY: SENDGRID.publicKey,
      WEBHOOK_SECRET: GENERIC_SECRET,
      ...config,
    },
  });
  await seedSubscribers(harness.services, 3);
  await harness.startWorker();
  const { sendId } = await harness.send('vol-138');
  await harness.waitForSend(sendId);
  const confirmed: string[] = [];
  const app = await buildHttpApp(harness.services, {
    webhooks: { snsValidator: snsTestValidator(), confirmSubscription: async (url) => void confirmed.push(url) },
  });
  onTestFinished(() => app.close());
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  const post = async (path: string, body: Buffer | string, headers: Record<string, string> = {}) => {
    const response = await fetch(`${origin}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  return { harness, sendId, post, confirmed };
}

const statusOf = async (harness: Harness, id: string) => (await harness.services.subscribers.get(id))?.status;
const nowSeconds = () => String(Math.floor(Date.now() / 1000));

describe('POST /webhooks/generic', () => {
  it('applies one event or an array, refuses a wrong secret with 401 and a malformed body with 400 naming the field, changing nothing', async () => {
    const { harness, sendId, post } = await served('wh-generic');
    const auth = { authorization: `Bearer ${GENERIC_SECRET}` };
    const events = [
      { id: 'g-1', email: 'reader1@example.org', type: 'hard', sendId, diagnostic: '550 5.1.1 user unknown', at: '2026-11-26T10:00:00Z' },
      { id: 'g-2', email: 'READER2@example.org', type: 'block', diagnostic: '554 5.7.1 blocked' },
    ];
    expect(await post('/webhooks/generic', JSON.stringify(events), { authorization: 'Bearer wrong-secret-0123456789abcdef0123456789' })).toMatchObject({
      status: 401,
    });
    expect(await post('/webhooks/generic', JSON.stringify(events))).toMatchObject({ status: 401 });
    expect(await statusOf(harness, '1')).toBe('active');

    const malformed = await post('/webhooks/generic', JSON.stringify([events[0], { id: 'g-3', type: 'hard' }]), auth);
    expect(malformed.status).toBe(400);
    expect(malformed.body.error).toMatch(/event 1: email/);
    expect(await post('/webhooks/generic', '{not json', auth)).toMatchObject({ status: 400 });
    expect(await statusOf(harness, '1')).toBe('active');

    expect(await post('/webhooks/generic', JSON.stringify(events), auth)).toEqual({
      status: 200,
      body: { received: 'applied', applied: 2, duplicates: 0, unmatched: 0 },
    });
    expect(await statusOf(harness, '1')).toBe('bounced');
    expect(await statusOf(harness, '2')).toBe('active');
    expect(await harness.services.sends.get(sendId)).toMatchObject({ bounced: 1, blocked: 1 });
    // The provider retries: nothing changes.
    expect(await post('/webhooks/generic', JSON.stringify(events), auth)).toMatchObject({ status: 200, body: { applied: 0, duplicates: 2 } });
    expect(await harness.services.sends.get(sendId)).toMatchObject({ bounced: 1, blocked: 1 });
  });

  it('answers 404 for a provider whose credential is not configured', async () => {
    const harness = await createHarness('wh-unconfigured');
    const app = await buildHttpApp(harness.services);
    onTestFinished(() => app.close());
    for (const provider of ['ses', 'mailgun', 'postmark', 'sendgrid', 'generic']) {
      const response = await app.inject({ method: 'POST', url: `/webhooks/${provider}`, payload: '{}', headers: { 'content-type': 'application/json' } });
      expect([provider, response.statusCode]).toEqual([provider, 404]);
    }
  });
});

describe('POST /webhooks/ses', () => {
  const bounce = (email: string, sendId: string) => ({
    notificationType: 'Bounce',
    bounce: {
      bounceType: 'Transient',
      bounceSubType: 'General',
      feedbackId: '0100018c-ses-feedback-1',
      timestamp: new Date().toISOString(),
      // SES calls it Transient, but the status says the domain does not exist (listmonk #1463).
      bouncedRecipients: [{ emailAddress: email, action: 'failed', status: '5.4.4', diagnosticCode: 'smtp; 550 5.4.4 Invalid domain' }],
    },
    mail: {
      messageId: '0100018c-ses-message-1',
      timestamp: new Date().toISOString(),
      source: 'weekly@example.org',
      destination: [email],
      headers: [
        { name: 'Message-ID', value: `<${sendId}.1@example.org>` },
        { name: 'X-Newsletter-Send', value: sendId },
        { name: 'X-Newsletter-Subscriber', value: '1' },
      ],
    },
  });

  it('applies an SNS-signed notification, and refuses a forged signature, a foreign topic and a stale message', async () => {
    const { harness, sendId, post } = await served('wh-ses');
    const fields = snsNotificationOf(bounce('reader1@example.org', sendId), { timestamp: new Date().toISOString() });

    const forged = signSnsMessage(fields, { privateKeyPem: forgerKey() });
    expect(await post('/webhooks/ses', JSON.stringify(forged), { 'content-type': 'text/plain; charset=UTF-8' })).toMatchObject({ status: 401 });
    const foreign = signSnsMessage({ ...fields, TopicArn: 'arn:aws:sns:us-east-1:999999999999:someone-else' });
    expect(await post('/webhooks/ses', JSON.stringify(foreign))).toMatchObject({ status: 401 });
    const stale = signSnsMessage({ ...fields, Timestamp: new Date(Date.now() - 2 * 3600_000).toISOString() });
    expect(await post('/webhooks/ses', JSON.stringify(stale))).toMatchObject({ status: 401 });
    expect(await statusOf(harness, '1')).toBe('active');

    const valid = await post('/webhooks/ses', JSON.stringify(signSnsMessage(fields)), { 'content-type': 'text/plain; charset=UTF-8' });
    expect(valid).toEqual({ status: 200, body: { received: 'applied', applied: 1, duplicates: 0, unmatched: 0 } });
    expect(await statusOf(harness, '1')).toBe('bounced');
    const [event] = await harness.services.events.recentEvents('1');
    expect(event).toMatchObject({ kind: 'hard', source: 'ses', sendId, diagnostic: { status: '5.4.4', replyCode: 550, providerType: 'Transient/General' } });
  });

  it('confirms a subscription only for an SNS host', async () => {
    const { post, confirmed } = await served('wh-ses-subscribe');
    const subscription = {
      Type: 'SubscriptionConfirmation' as const,
      MessageId: '165545c9-2a5c-472c-8df2-7ff2be2b3b1b',
      TopicArn: SNS_TEST_TOPIC_ARN,
      Message: 'You have chosen to subscribe to the topic.',
      Timestamp: new Date().toISOString(),
      Token: '2336412f37fb687f5d51e6e2425dacbbaf1e2bbd5a5b9bd7dfa4bb8b6c0e44ebf',
      SubscribeURL: `https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=${SNS_TEST_TOPIC_ARN}&Token=2336412f`,
    };
    expect(await post('/webhooks/ses', JSON.stringify(signSnsMessage(subscription)))).toMatchObject({
      status: 200,
      body: { outcome: 'subscription-confirmed' },
    });
    expect(confirmed).toEqual([subscription.SubscribeURL]);
    const elsewhere = signSnsMessage({ ...subscription, SubscribeURL: 'https://attacker.example/?Action=ConfirmSubscription' });
    expect(await post('/webhooks/ses', JSON.stringify(elsewhere))).toMatchObject({ status: 401 });
    expect(confirmed).toHaveLength(1);
  });
});

describe('POST /webhooks/mailgun', () => {
  const failed = (email: string, sendId: string, id: string) => ({
    'event-data': {
      id,
      timestamp: Date.now() / 1000,
      event: 'failed',
      severity: 'permanent',
      reason: 'bounce',
      recipient: email,
      'delivery-status': { code: 550, 'enhanced-code': '5.1.1', message: '5.1.1 The email account does not exist' },
      message: { headers: { 'message-id': `${sendId}.2@example.org` } },
      'user-variables': { newsletter_send: sendId, newsletter_subscriber: '2' },
    },
  });

  it('applies a signed event, and refuses a bad signature, a stale timestamp and a reused token', async () => {
    const { harness, sendId, post } = await served('wh-mailgun');
    const bad = signMailgunBody(failed('reader2@example.org', sendId, 'mg-1'), 'not-the-signing-key-0123456789', {
      timestamp: nowSeconds(),
      token: 'token-bad-1',
    });
    expect(await post('/webhooks/mailgun', bad)).toMatchObject({ status: 401 });
    const stale = signMailgunBody(failed('reader2@example.org', sendId, 'mg-1'), MAILGUN_KEY, {
      timestamp: String(Number(nowSeconds()) - 600),
      token: 'token-stale-1',
    });
    expect(await post('/webhooks/mailgun', stale)).toMatchObject({ status: 401 });
    expect(await statusOf(harness, '2')).toBe('active');

    const good = signMailgunBody(failed('reader2@example.org', sendId, 'mg-1'), MAILGUN_KEY, { timestamp: nowSeconds(), token: 'token-good-1' });
    expect(await post('/webhooks/mailgun', good)).toMatchObject({ status: 200, body: { applied: 1 } });
    expect(await statusOf(harness, '2')).toBe('bounced');
    // The same signed request again: its token is spent.
    expect(await post('/webhooks/mailgun', good)).toMatchObject({ status: 401 });
    // Mailgun signs the timestamp and token, not the body: the token lifted onto another body is refused too.
    const lifted = JSON.parse(good.toString('utf8')) as { signature: unknown };
    const otherBody = Buffer.from(JSON.stringify({ ...failed('reader1@example.org', sendId, 'mg-9'), signature: lifted.signature }));
    expect(await post('/webhooks/mailgun', otherBody)).toMatchObject({ status: 401 });
    expect(await statusOf(harness, '1')).toBe('active');
    const malformed = signMailgunBody({ 'event-data': { id: 'mg-2', event: 'failed' } }, MAILGUN_KEY, { timestamp: nowSeconds(), token: 'token-malformed' });
    expect(await post('/webhooks/mailgun', malformed)).toMatchObject({ status: 400, body: { error: expect.stringMatching(/recipient|timestamp/) } });
  });
});

describe('POST /webhooks/postmark and /webhooks/sendgrid', () => {
  it('applies a Postmark complaint behind basic auth, and refuses wrong credentials', async () => {
    const { harness, sendId, post } = await served('wh-postmark');
    const complaint = JSON.stringify({
      RecordType: 'SpamComplaint',
      ID: 42001,
      Type: 'SpamComplaint',
      TypeCode: 100001,
      Email: 'reader3@example.org',
      BouncedAt: new Date().toISOString(),
      Details: 'Test spam complaint details',
      Metadata: { newsletter_send: sendId, newsletter_subscriber: '3' },
    });
    expect(await post('/webhooks/postmark', complaint, { authorization: basicAuthorization(POSTMARK.user, 'wrong-password-0123456') })).toMatchObject({
      status: 401,
    });
    expect(await statusOf(harness, '3')).toBe('active');
    expect(await post('/webhooks/postmark', complaint, { authorization: basicAuthorization(POSTMARK.user, POSTMARK.password) })).toMatchObject({
      status: 200,
      body: { applied: 1 },
    });
    expect(await statusOf(harness, '3')).toBe('complained');
    expect(await harness.services.sends.get(sendId)).toMatchObject({ complained: 1 });
  });

  it('applies a signed SendGrid batch, and refuses a forged or stale signature', async () => {
    const { harness, sendId, post } = await served('wh-sendgrid');
    const body = Buffer.from(
      JSON.stringify([
        {
          email: 'reader1@example.org',
          timestamp: Math.floor(Date.now() / 1000),
          event: 'bounce',
          type: 'blocked',
          status: '5.7.1',
          reason: '554 5.7.1 blocked',
          sg_event_id: 'sg-1',
          newsletter_send: sendId,
          newsletter_subscriber: '1',
        },
        {
          email: 'reader2@example.org',
          timestamp: Math.floor(Date.now() / 1000),
          event: 'spamreport',
          sg_event_id: 'sg-2',
          newsletter_send: sendId,
          newsletter_subscriber: '2',
        },
      ]),
    );
    const forged = sendgridHeaders(sendgridKeyPair().privateKey, nowSeconds(), body);
    expect(await post('/webhooks/sendgrid', body, forged)).toMatchObject({ status: 401 });
    const stale = sendgridHeaders(SENDGRID.privateKey, String(Number(nowSeconds()) - 3600), body);
    expect(await post('/webhooks/sendgrid', body, stale)).toMatchObject({ status: 401 });
    expect(await harness.services.sends.get(sendId)).toMatchObject({ blocked: 0, complained: 0 });

    expect(await post('/webhooks/sendgrid', body, sendgridHeaders(SENDGRID.privateKey, nowSeconds(), body))).toMatchObject({
      status: 200,
      body: { applied: 2 },
    });
    expect(await statusOf(harness, '1')).toBe('active');
    expect(await statusOf(harness, '2')).toBe('complained');
    expect(await harness.services.sends.get(sendId)).toMatchObject({ blocked: 1, complained: 1 });
  });
});
