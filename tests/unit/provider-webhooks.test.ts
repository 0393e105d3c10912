import { describe, expect, it } from 'vitest';
import type { ReportedEvent } from '../../src/core/delivery-event.ts';
import { MalformedWebhookError, WebhookAuthError } from '../../src/intake/webhooks/errors.ts';
import { genericWebhook } from '../../src/intake/webhooks/generic.ts';
import { mailgunWebhook } from '../../src/intake/webhooks/mailgun.ts';
import { postmarkWebhook } from '../../src/intake/webhooks/postmark.ts';
import { sendgridWebhook } from '../../src/intake/webhooks/sendgrid.ts';
import { isSnsHost, sesWebhook, type SesWebhookOptions } from '../../src/intake/webhooks/ses.ts';
import {
  basicAuthorization,
  forgerKey,
  sendgridHeaders,
  sendgridKeyPair,
  signMailgunBody,
  signSnsMessage,
  SNS_TEST_CERT_URL,
  SNS_TEST_TOPIC_ARN,
  snsNotificationOf,
  snsTestValidator,
  webhookFixture,
  type SnsFields,
} from '../support/webhook-signing.ts';

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

describe('SES via SNS', () => {
  const published = '2024-05-02T10:00:00.000Z';
  const options: SesWebhookOptions = {
    topicArns: [SNS_TEST_TOPIC_ARN],
    now: new Date('2024-05-02T10:01:00Z'),
    maxAgeMs: 5 * 60_000,
    validator: snsTestValidator(),
  };
  const post = (message: Record<string, string>, opts: SesWebhookOptions = options) => sesWebhook({ rawBody: json(message), headers: {} }, opts);
  const notification = (fixture: string, extra: Partial<SnsFields> = {}): SnsFields => ({
    ...snsNotificationOf(webhookFixture(fixture), { timestamp: published }),
    ...extra,
  });
  const eventsOf = async (message: Record<string, string>): Promise<ReportedEvent[]> => {
    const result = await post(message);
    if (result.type !== 'notification') throw new Error(`expected a notification, got ${result.type}`);
    return result.events;
  };

  it('a Permanent/General bounce with status 5.1.1 is hard, attributed by the headers we wrote', async () => {
    expect(await eventsOf(signSnsMessage(notification('ses-bounce-permanent-general.json')))).toEqual([
      {
        id: '00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000:jane@example.com',
        source: 'ses',
        kind: 'hard',
        diagnostic: { status: '5.1.1', replyCode: 550, providerType: 'Permanent/General', text: 'smtp; 550 5.1.1 <jane@example.com>... User' },
        at: '2016-01-27T14:59:38.237Z',
        clues: { recipient: 'jane@example.com', messageId: '<vol-138.weekly.1.42@example.org>', sendId: 'vol-138.weekly.1', subscriberId: '42' },
      },
    ]);
  });

  it('a Transient/General bounce whose status says 5.4.4 (no such domain) is hard, not soft (listmonk #1463)', async () => {
    const [event] = await eventsOf(signSnsMessage(notification('ses-bounce-transient-invalid-domain.json')));
    expect(event).toMatchObject({ kind: 'hard', diagnostic: { status: '5.4.4', replyCode: 550, providerType: 'Transient/General' } });
    // No original headers in this notification: only the address is known.
    expect(event?.clues).toEqual({ recipient: 'someone@no-such-domain.example' });
  });

  it('a Transient/MailboxFull bounce with 4.2.2 is soft', async () => {
    const [event] = await eventsOf(signSnsMessage(notification('ses-bounce-transient-mailbox-full.json')));
    expect(event).toMatchObject({ kind: 'soft', diagnostic: { status: '4.2.2', replyCode: 452, providerType: 'Transient/MailboxFull' } });
    expect(event?.clues).toEqual({
      recipient: 'full@example.com',
      messageId: '<vol-140.weekly.1.7@example.org>',
      sendId: 'vol-140.weekly.1',
      subscriberId: '7',
    });
  });

  it('a complaint is a complaint, one event per complained recipient', async () => {
    expect(await eventsOf(signSnsMessage(notification('ses-complaint.json')))).toEqual([
      {
        id: '000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000:richard@example.com',
        source: 'ses',
        kind: 'complaint',
        diagnostic: { providerType: 'abuse' },
        at: '2016-01-27T14:59:38.237Z',
        clues: { recipient: 'richard@example.com', messageId: '<vol-138.weekly.1.43@example.org>', sendId: 'vol-138.weekly.1', subscriberId: '43' },
      },
    ]);
  });

  it('a not-spam complaint and a delivery give no events', async () => {
    const notSpam = webhookFixture<{ complaint: Record<string, unknown> }>('ses-complaint.json');
    notSpam.complaint['complaintFeedbackType'] = 'not-spam';
    expect(await post(signSnsMessage(snsNotificationOf(notSpam, { timestamp: published })))).toEqual({ type: 'ignored', reason: 'not-spam feedback' });
    expect(await post(signSnsMessage(notification('ses-delivery.json')))).toEqual({ type: 'ignored', reason: 'SES Delivery notification' });
  });

  it('verifies SignatureVersion 2 (SHA256) as well as 1', async () => {
    expect(await eventsOf(signSnsMessage(notification('ses-complaint.json'), { signatureVersion: '2' }))).toHaveLength(1);
  });

  it('a subscription confirmation gives its SubscribeURL to fetch', async () => {
    const confirmation = webhookFixture<SnsFields>('sns-subscription-confirmation.json');
    expect(await post(signSnsMessage({ ...confirmation, Timestamp: published }))).toEqual({
      type: 'subscription-confirmation',
      subscribeUrl: confirmation.SubscribeURL,
      topicArn: SNS_TEST_TOPIC_ARN,
    });
  });

  it('refuses a SubscribeURL that is not SNS’s own host, or not in the topic’s region', async () => {
    const confirmation = { ...webhookFixture<SnsFields>('sns-subscription-confirmation.json'), Timestamp: published };
    for (const SubscribeURL of [
      'https://attacker.example/?Action=ConfirmSubscription',
      'https://sns.us-east-1.amazonaws.com.attacker.example/',
      'http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription',
      'https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription',
    ]) {
      await expect(post(signSnsMessage({ ...confirmation, SubscribeURL }))).rejects.toThrow(WebhookAuthError);
    }
  });

  it('isSnsHost takes only https://sns.<region>.amazonaws.com[.cn] with no port or credentials', () => {
    expect(isSnsHost('https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x')).toBe(true);
    expect(isSnsHost('https://sns.cn-north-1.amazonaws.com.cn/?Action=ConfirmSubscription')).toBe(true);
    for (const url of [
      'http://sns.us-east-1.amazonaws.com/',
      'https://sns.us-east-1.amazonaws.com:8443/',
      'https://user:pw@sns.us-east-1.amazonaws.com/',
      'https://sqs.us-east-1.amazonaws.com/',
      'https://sns.us-east-1.amazonaws.com.evil.example/',
      'https://evil.example/sns.us-east-1.amazonaws.com',
      'not a url',
    ]) {
      expect(isSnsHost(url), url).toBe(false);
    }
  });

  it('refuses a forged signature and a message changed after signing', async () => {
    await expect(post(signSnsMessage(notification('ses-complaint.json'), { privateKeyPem: forgerKey() }))).rejects.toThrow(WebhookAuthError);
    const signed = signSnsMessage(notification('ses-bounce-permanent-general.json'));
    const tampered = { ...signed, Message: signed['Message']!.replace('jane@example.com', 'someone-else@example.com') };
    await expect(post(tampered)).rejects.toThrow(WebhookAuthError);
  });

  it('refuses a Timestamp older than maxAgeMs, or too far in the future', async () => {
    await expect(post(signSnsMessage(notification('ses-complaint.json', { Timestamp: '2024-05-02T09:50:00.000Z' })))).rejects.toThrow(/old/);
    await expect(post(signSnsMessage(notification('ses-complaint.json', { Timestamp: '2024-05-02T10:30:00.000Z' })))).rejects.toThrow(/future/);
    await expect(post(signSnsMessage(notification('ses-complaint.json', { Timestamp: 'yesterday' })))).rejects.toThrow(WebhookAuthError);
  });

  it('refuses a topic we did not subscribe, however well signed', async () => {
    const other = notification('ses-complaint.json', { TopicArn: 'arn:aws:sns:us-east-1:999999999999:someone-elses-topic' });
    await expect(post(signSnsMessage(other))).rejects.toThrow(WebhookAuthError);
  });

  it('refuses a signing certificate URL that is not on SNS’s pattern, before fetching anything', async () => {
    for (const certUrl of [
      'https://attacker.example/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem',
      'https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem',
      'http://sns.us-east-1.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem',
      'https://sns.us-east-1.amazonaws.com/attacker.pem',
    ]) {
      // The validator caches this URL's certificate too, so only the pattern check can refuse it.
      const validator = snsTestValidator(certUrl);
      await expect(post(signSnsMessage(notification('ses-complaint.json'), { certUrl }), { ...options, validator })).rejects.toThrow(/SigningCertURL/);
    }
  });

  it('drops a cached "certificate" that is an error page, so the next message fetches it again; keeps a real one', async () => {
    const poisoned = snsTestValidator(SNS_TEST_CERT_URL, '<html><body>503 Service Unavailable</body></html>');
    const cache = (poisoned as unknown as { certCache: { has(url: string): boolean } }).certCache;
    await expect(post(signSnsMessage(notification('ses-complaint.json')), { ...options, validator: poisoned })).rejects.toThrow(WebhookAuthError);
    expect(cache.has(SNS_TEST_CERT_URL)).toBe(false);
    const healthy = snsTestValidator();
    await expect(post(signSnsMessage(notification('ses-complaint.json'), { privateKeyPem: forgerKey() }), { ...options, validator: healthy })).rejects.toThrow(
      WebhookAuthError,
    );
    expect((healthy as unknown as { certCache: { has(url: string): boolean } }).certCache.has(SNS_TEST_CERT_URL)).toBe(true);
  });

  it('refuses an unknown SignatureVersion', async () => {
    const signed = { ...signSnsMessage(notification('ses-complaint.json')), SignatureVersion: '3' };
    await expect(post(signed)).rejects.toThrow(WebhookAuthError);
  });

  it('names what is malformed: the body, the envelope, the SES notification', async () => {
    await expect(sesWebhook({ rawBody: Buffer.from('{"Type": "Notification",'), headers: {} }, options)).rejects.toThrow(MalformedWebhookError);
    const { TopicArn: _omitted, ...withoutTopic } = signSnsMessage(notification('ses-complaint.json'));
    await expect(post(withoutTopic)).rejects.toThrow('SNS message: TopicArn is missing');
    await expect(post(signSnsMessage(notification('ses-complaint.json', { Message: 'not json' })))).rejects.toThrow('Message is not JSON');
    const bounce = webhookFixture<{ bounce: { bouncedRecipients: Record<string, unknown>[] } }>('ses-bounce-permanent-general.json');
    delete bounce.bounce.bouncedRecipients[0]!['emailAddress'];
    const result = post(signSnsMessage(snsNotificationOf(bounce, { timestamp: published })));
    await expect(result).rejects.toThrow(MalformedWebhookError);
    await expect(result).rejects.toThrow('SES notification: bounce.bouncedRecipients[0].emailAddress is missing');
  });

  it('the test certificate URL is on SNS’s pattern (so the tests above exercise the real check)', () => {
    expect(SNS_TEST_CERT_URL).toMatch(/^https:\/\/sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?\/SimpleNotificationService-[a-zA-Z0-9]{32}\.pem$/);
  });
});

describe('Mailgun', () => {
  const signingKey = 'key-3ax6xnjp29jd6fds4gc373sgvjxteol0';
  const options = (signedAt: string, lateMs = 30_000) => ({ signingKey, now: new Date(Number(signedAt) * 1000 + lateMs), maxAgeMs: 5 * 60_000 });
  const deliver = (fixture: string, tweak: (payload: Record<string, unknown>) => void = () => {}) => {
    const payload = webhookFixture<{ signature: { timestamp: string; token: string } } & Record<string, unknown>>(fixture);
    tweak(payload);
    const rawBody = signMailgunBody(payload, signingKey, payload.signature);
    return { input: { rawBody, headers: { 'content-type': 'application/json' } }, signature: payload.signature };
  };

  it('a permanent failure with 550 5.1.1 is hard; the token comes back to be recorded', () => {
    const { input, signature } = deliver('mailgun-failed-permanent.json');
    expect(mailgunWebhook(input, options(signature.timestamp))).toEqual({
      replayToken: signature.token,
      events: [
        {
          id: 'G9Bn5sl1TC6nu79C8C0bwg',
          source: 'mailgun',
          kind: 'hard',
          diagnostic: {
            status: '5.1.1',
            replyCode: 550,
            providerType: 'permanent/bounce',
            text: "5.1.1 The email account that you tried to reach does not exist. Please try\n5.1.1 double-checking the recipient's email address for typos",
          },
          at: '2018-08-12T21:47:02.389Z',
          // Mailgun drops the angle brackets of the Message-ID; they are put back.
          clues: { recipient: 'invalid@example.com', messageId: '<vol-138.weekly.1.44@example.org>', sendId: 'vol-138.weekly.1', subscriberId: '44' },
        },
      ],
    });
  });

  it('a temporary failure is soft, whatever the code', () => {
    const { input, signature } = deliver('mailgun-failed-temporary.json');
    const { events } = mailgunWebhook(input, options(signature.timestamp));
    expect(events).toEqual([
      expect.objectContaining({
        id: 'Fs7-5t81S2ueroJdVWYzOg',
        kind: 'soft',
        diagnostic: { replyCode: 498, providerType: 'temporary/generic', text: 'No MX for nomx.example.com' },
      }),
    ]);
  });

  it('complained is a complaint and unsubscribed an unsubscribe; a numeric custom variable is read as a string', () => {
    const complained = deliver('mailgun-complained.json');
    expect(mailgunWebhook(complained.input, options(complained.signature.timestamp)).events).toEqual([
      {
        id: '-Agny091SquKnsrW2NEKUA',
        source: 'mailgun',
        kind: 'complaint',
        diagnostic: {},
        at: '2018-03-16T20:45:23.501Z',
        clues: { recipient: 'alice@example.com', messageId: '<vol-138.weekly.1.46@example.org>', sendId: 'vol-138.weekly.1', subscriberId: '46' },
      },
    ]);
    const unsubscribed = deliver('mailgun-unsubscribed.json');
    expect(mailgunWebhook(unsubscribed.input, options(unsubscribed.signature.timestamp)).events).toEqual([
      expect.objectContaining({ id: 'Ase7i2zsRYeDXztHGENqRA', kind: 'unsubscribe', clues: expect.objectContaining({ subscriberId: '47' }) }),
    ]);
  });

  it('gives no event for a delivery, nor for a failure that only echoes Mailgun’s unsubscribe suppression list', () => {
    const suppressed = deliver('mailgun-failed-suppress-unsubscribe.json');
    expect(mailgunWebhook(suppressed.input, options(suppressed.signature.timestamp)).events).toEqual([]);
    const delivered = deliver('mailgun-complained.json', (payload) => {
      (payload['event-data'] as Record<string, unknown>)['event'] = 'delivered';
    });
    expect(mailgunWebhook(delivered.input, options(delivered.signature.timestamp)).events).toEqual([]);
  });

  it('refuses a signature made with another key, a missing signature block, and a stale or future timestamp', () => {
    const payload = webhookFixture<{ signature: { timestamp: string; token: string } } & Record<string, unknown>>('mailgun-failed-permanent.json');
    const forged = signMailgunBody(payload, 'not-the-key', payload.signature);
    expect(() => mailgunWebhook({ rawBody: forged, headers: {} }, options(payload.signature.timestamp))).toThrow(WebhookAuthError);
    const { signature: _dropped, ...unsigned } = payload;
    expect(() => mailgunWebhook({ rawBody: json(unsigned), headers: {} }, options(payload.signature.timestamp))).toThrow(WebhookAuthError);
    const { input, signature } = deliver('mailgun-failed-permanent.json');
    expect(() => mailgunWebhook(input, options(signature.timestamp, 10 * 60_000))).toThrow(/old/);
    expect(() => mailgunWebhook(input, options(signature.timestamp, -10 * 60_000))).toThrow(/future/);
  });

  it('names the missing field of a signed event, and refuses a body that is not JSON', () => {
    const { input, signature } = deliver('mailgun-failed-permanent.json', (payload) => {
      delete (payload['event-data'] as Record<string, unknown>)['recipient'];
    });
    expect(() => mailgunWebhook(input, options(signature.timestamp))).toThrow(new MalformedWebhookError('event-data: recipient is missing'));
    expect(() => mailgunWebhook({ rawBody: Buffer.from('signature=x&token=y'), headers: {} }, options(signature.timestamp))).toThrow(MalformedWebhookError);
  });
});

describe('Postmark', () => {
  const credentials = { user: 'postmark', password: 'correct horse battery staple' };
  const post = (fixture: unknown, authorization: string | null = basicAuthorization(credentials.user, credentials.password)) =>
    postmarkWebhook(
      { rawBody: json(typeof fixture === 'string' ? webhookFixture(fixture) : fixture), headers: authorization === null ? {} : { authorization } },
      credentials,
    );

  it('a HardBounce is hard; its ID becomes a string; Postmark’s own MessageID is not taken for ours', () => {
    expect(post('postmark-hard-bounce.json').events).toEqual([
      {
        id: '692560173',
        source: 'postmark',
        kind: 'hard',
        diagnostic: { providerType: 'HardBounce', text: 'smtp;550 5.1.1 The email account that you tried to reach does not exist.' },
        at: '2019-11-05T16:33:54.907Z',
        clues: { recipient: 'john@example.com', sendId: 'vol-138.weekly.1', subscriberId: '48' },
      },
    ]);
  });

  it('a SoftBounce is soft, Blocked is a block, a SpamComplaint a complaint', () => {
    expect(post('postmark-soft-bounce.json').events).toEqual([expect.objectContaining({ id: '692560174', kind: 'soft', at: '2019-11-05T21:35:12.123Z' })]);
    expect(post('postmark-blocked.json').events).toEqual([expect.objectContaining({ id: '692560175', kind: 'block' })]);
    expect(post('postmark-spam-complaint.json').events).toEqual([
      expect.objectContaining({
        id: '692560176',
        kind: 'complaint',
        clues: { recipient: 'complainer@example.com', sendId: 'vol-138.weekly.1', subscriberId: '51' },
      }),
    ]);
  });

  it('a recipient’s own suppression is an unsubscribe; a suppression that repeats a bounce, or an auto-reply, gives none', () => {
    expect(post('postmark-subscription-change.json').events).toEqual([
      {
        id: 'subscription-change:883953f4-6105-42a2-a16a-77a8eac79483:leaver@example.com:2020-02-01T10:53:34.416071Z',
        source: 'postmark',
        kind: 'unsubscribe',
        diagnostic: { providerType: 'SubscriptionChange/ManualSuppression' },
        at: '2020-02-01T10:53:34.416Z',
        clues: { recipient: 'leaver@example.com', sendId: 'vol-138.weekly.1', subscriberId: '52' },
      },
    ]);
    expect(post({ ...webhookFixture<object>('postmark-subscription-change.json'), SuppressionReason: 'HardBounce' }).events).toEqual([]);
    expect(post({ ...webhookFixture<object>('postmark-soft-bounce.json'), Type: 'AutoResponder', TypeCode: 64 }).events).toEqual([]);
  });

  it('refuses a wrong password, a wrong user, another scheme and no Authorization at all', () => {
    expect(() => post('postmark-hard-bounce.json', basicAuthorization(credentials.user, 'wrong'))).toThrow(WebhookAuthError);
    expect(() => post('postmark-hard-bounce.json', basicAuthorization('someone', credentials.password))).toThrow(WebhookAuthError);
    expect(() => post('postmark-hard-bounce.json', `Bearer ${credentials.password}`)).toThrow(WebhookAuthError);
    expect(() => post('postmark-hard-bounce.json', null)).toThrow(WebhookAuthError);
  });

  it('names the missing field', () => {
    const { Email: _omitted, ...withoutEmail } = webhookFixture<Record<string, unknown>>('postmark-hard-bounce.json');
    expect(() => post(withoutEmail)).toThrow(new MalformedWebhookError('record: Email is missing'));
  });
});

describe('SendGrid', () => {
  const keys = sendgridKeyPair();
  const signedAt = '1700000200';
  const options = (lateMs = 20_000) => ({ publicKey: keys.publicKey, now: new Date(Number(signedAt) * 1000 + lateMs), maxAgeMs: 5 * 60_000 });
  const signed = (body: Buffer, timestamp = signedAt) => ({ rawBody: body, headers: sendgridHeaders(keys.privateKey, timestamp, body) });
  // The bytes as SendGrid sent them, not re-serialised: the signature covers exactly these.
  const batch = Buffer.from(JSON.stringify(webhookFixture('sendgrid-events.json'), null, 2));

  it('maps a batch: bounce → hard, blocked → block, deferred → soft, spamreport, unsubscribe; dropped and delivered give none', () => {
    const { events, replayToken } = sendgridWebhook(signed(batch), options());
    expect(events.map((event) => [event.id, event.kind])).toEqual([
      ['lC0Rc-FuQmKbnxCWxX1jRQ', 'hard'],
      ['bWx2X2V2ZW50X2lkX2Jsb2NrZWRfMDAx', 'block'],
      ['b_syL5UiTvWC_Ky5L6Bs5Q', 'soft'],
      ['c3BhbXJlcG9ydF9ldmVudF9pZF8wMDAx', 'complaint'],
      ['dW5zdWJzY3JpYmVfZXZlbnRfaWRfMDAx', 'unsubscribe'],
    ]);
    expect(events[0]).toEqual({
      id: 'lC0Rc-FuQmKbnxCWxX1jRQ',
      source: 'sendgrid',
      kind: 'hard',
      diagnostic: { status: '5.1.1', replyCode: 550, providerType: 'bounce', text: '550 5.1.1 The email account that you tried to reach does not exist.' },
      at: '2023-11-14T22:15:00.000Z',
      clues: { recipient: 'noreply@example.com', sendId: 'vol-138.weekly.1', subscriberId: '60' },
    });
    expect(events[2]?.diagnostic).toEqual({ replyCode: 400, providerType: 'deferred', text: '400 try again later' });
    expect(replayToken).toMatch(/^[0-9a-f]{64}$/);
    // The same signed request gives the same token; a new signature time gives another.
    expect(sendgridWebhook(signed(batch), options()).replayToken).toBe(replayToken);
    expect(sendgridWebhook(signed(batch, '1700000201'), options()).replayToken).not.toBe(replayToken);
  });

  it('a bounce without a status (no MX: no SMTP answer at all) falls back to its type', () => {
    const noMx = [
      { email: 'x@nowhere.example', event: 'bounce', type: 'blocked', reason: 'unable to get mx info', sg_event_id: 'bm9teA', timestamp: 1740300320 },
    ];
    expect(sendgridWebhook(signed(json(noMx)), options()).events[0]).toMatchObject({ kind: 'block', diagnostic: { providerType: 'blocked' } });
  });

  it('refuses a signature by another key, a body changed after signing, and missing headers', () => {
    const other = sendgridKeyPair();
    expect(() => sendgridWebhook({ rawBody: batch, headers: sendgridHeaders(other.privateKey, signedAt, batch) }, options())).toThrow(WebhookAuthError);
    const request = signed(batch);
    const reformatted = Buffer.from(JSON.stringify(JSON.parse(batch.toString())));
    expect(() => sendgridWebhook({ ...request, rawBody: reformatted }, options())).toThrow(WebhookAuthError);
    expect(() => sendgridWebhook({ rawBody: batch, headers: {} }, options())).toThrow(WebhookAuthError);
    expect(() =>
      sendgridWebhook({ rawBody: batch, headers: { ...request.headers, 'x-twilio-email-event-webhook-signature': 'bm90IGRlcg==' } }, options()),
    ).toThrow(WebhookAuthError);
  });

  it('refuses a stale or future timestamp, even with a valid signature', () => {
    expect(() => sendgridWebhook(signed(batch), options(10 * 60_000))).toThrow(/old/);
    expect(() => sendgridWebhook(signed(batch), options(-10 * 60_000))).toThrow(/future/);
  });

  it('names the malformed event and field', () => {
    const events = webhookFixture<Record<string, unknown>[]>('sendgrid-events.json');
    delete events[1]!['email'];
    expect(() => sendgridWebhook(signed(json(events)), options())).toThrow(new MalformedWebhookError('event 1: email is missing'));
    expect(() => sendgridWebhook(signed(json({ event: 'bounce' })), options())).toThrow(new MalformedWebhookError('the body is not a JSON array of events'));
    expect(() => sendgridWebhook(signed(Buffer.from('[{')), options())).toThrow(MalformedWebhookError);
  });
});

describe('generic webhook', () => {
  const secret = 'whsec_9c2f0d4e8b1a6c3f5e7d9b2a4c6e8f0a';
  const post = (body: unknown, authorization: string | null = `Bearer ${secret}`) =>
    genericWebhook({ rawBody: Buffer.isBuffer(body) ? body : json(body), headers: authorization === null ? {} : { authorization } }, { secret });

  it('one event: its type is its kind, its time in UTC', () => {
    expect(post(webhookFixture('generic-single.json')).events).toEqual([
      {
        id: 'relay-7f3a9c21',
        source: 'webhook',
        kind: 'hard',
        diagnostic: { providerType: 'hard', text: '550 5.1.1 user unknown' },
        at: '2024-05-02T08:00:00.000Z',
        clues: { recipient: 'gone@example.com', sendId: 'vol-138.weekly.1' },
      },
    ]);
  });

  it('an array: each type is taken as given', () => {
    const { events } = post(webhookFixture('generic-array.json'));
    expect(events.map((event) => [event.id, event.kind, event.at])).toEqual([
      ['relay-0001', 'soft', undefined],
      ['relay-0002', 'block', undefined],
      ['relay-0003', 'complaint', '2024-05-02T08:00:00.000Z'],
    ]);
    expect(events[1]?.clues).toEqual({ recipient: 'b@example.com', sendId: 'vol-138.weekly.1' });
  });

  it('refuses a wrong or missing bearer secret', () => {
    expect(() => post(webhookFixture('generic-single.json'), 'Bearer nope')).toThrow(WebhookAuthError);
    expect(() => post(webhookFixture('generic-single.json'), `Basic ${secret}`)).toThrow(WebhookAuthError);
    expect(() => post(webhookFixture('generic-single.json'), null)).toThrow(WebhookAuthError);
  });

  it('names the index and the field at fault', () => {
    const events = webhookFixture<Record<string, unknown>[]>('generic-array.json');
    delete events[2]!['email'];
    expect(() => post(events)).toThrow(new MalformedWebhookError('event 2: email is missing'));
    expect(() => post({ id: 'x', email: 'a@example.com', type: 'bounced' })).toThrow(/^event 0: type is invalid/);
    expect(() => post({ id: 'x', email: 'a@example.com', type: 'hard', at: 'last tuesday' })).toThrow(/^event 0: at is invalid/);
    expect(() => post(Buffer.from('{"id": '))).toThrow(new MalformedWebhookError('the body is not JSON'));
  });
});
