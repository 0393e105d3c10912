import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { describe, expect, it, onTestFinished } from 'vitest';
import { applyDeliveryEvent, takeInReport } from '../../src/app/delivery-events.ts';
import type { DeliveryEvent } from '../../src/core/delivery-event.ts';
import { readVerpAddress, verpToken } from '../../src/core/verp.ts';
import { startBounceServer } from '../../src/workers/bounce-smtp.ts';
import { runCliInProcess } from '../support/cli.ts';
import { waitFor, withFault } from '../support/faults.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';
import { buildArf, buildDsn } from '../support/reports.ts';

const BOUNCES = { BOUNCE_ADDRESS: 'bounces@bounce.example.org' };

async function scratchFile(name: string, content: Buffer): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-bounces-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, name);
  await writeFile(file, content);
  return file;
}

/** Sends vol-138 to `count` readers and returns what the SMTP sink received, by recipient. */
async function sendTo(harness: Harness, count: number) {
  await seedSubscribers(harness.services, count);
  await harness.startWorker();
  const { sendId } = await harness.send('vol-138');
  const record = await harness.waitForSend(sendId);
  const byRecipient = new Map(harness.received.map((message) => [message.recipients[0] ?? '', message]));
  return { sendId, record, byRecipient };
}

describe('VERP and DSN requests', () => {
  it('sends every message from a signed VERP address naming its send and subscriber, and asks for failure reports under the same token', async () => {
    const harness = await createHarness('verp', { config: BOUNCES });
    const { sendId, byRecipient } = await sendTo(harness, 3);
    expect(byRecipient.size).toBe(3);
    for (const [recipient, message] of byRecipient) {
      const subscriberId = recipient.replace(/^reader(\d+)@.*$/, '$1');
      const { mailFrom, envelopeId, dsnReturn, notify } = message.envelope;
      expect(mailFrom).toBe(`bounces+${verpToken(harness.config.appSecret, { sendId, subscriberId })}@bounce.example.org`);
      expect(mailFrom.split('@')[0]!.length).toBeLessThanOrEqual(64);
      expect(readVerpAddress(harness.config.appSecret, mailFrom)).toEqual({ sendId, subscriberId });
      expect(envelopeId).toBe(verpToken(harness.config.appSecret, { sendId, subscriberId }));
      expect(dsnReturn).toBe('HDRS');
      expect(notify).toEqual([['FAILURE']]);
      // The fallback for a report that lost the envelope: the headers of the quoted original.
      const parsed = await simpleParser(message.raw);
      expect(parsed.headers.get('x-newsletter-send')).toBe(sendId);
      expect(parsed.headers.get('x-newsletter-subscriber')).toBe(subscriberId);
    }
    // A token signed with another secret, or altered, names nobody.
    const [first] = [...byRecipient.values()];
    expect(readVerpAddress('another-secret-0123456789abcdef0123456789', first!.envelope.mailFrom)).toBeUndefined();
    expect(readVerpAddress(harness.config.appSecret, first!.envelope.mailFrom.replace(/-(\d+)-/, '-999-'))).toBeUndefined();
  });

  it('without BOUNCE_ADDRESS, sends from MAIL_FROM and asks for no DSN', async () => {
    const harness = await createHarness('no-verp');
    const { byRecipient } = await sendTo(harness, 1);
    const [message] = [...byRecipient.values()];
    expect(message!.envelope).toMatchObject({ mailFrom: 'weekly@example.org', envelopeId: undefined });
  });
});

describe('SMTP rejections as delivery events', () => {
  it('suppresses a hard bounce, never a block, and counts both on the send', async () => {
    const harness = await createHarness('smtp-events', {
      config: BOUNCES,
      rejectRecipient: (address) => {
        if (address === 'reader1@example.org') return { responseCode: 550, message: '5.1.1 <reader1@example.org>: Recipient address rejected: User unknown' };
        if (address === 'reader2@example.org') return { responseCode: 550, message: '5.7.1 Service unavailable; client host blocked using a reputation list' };
        return undefined;
      },
    });
    const { record } = await sendTo(harness, 3);
    expect(record).toMatchObject({ accepted: 1, failed: 2 });
    // The events are applied just after each failure is recorded: a moment after the send finished.
    await waitFor(
      async () => {
        const counted = await harness.services.sends.get(record.id);
        return counted && counted.blocked > 0 && counted.bounced > 0;
      },
      5_000,
      'the hard bounce and the block to be counted',
    );
    expect(await harness.services.sends.get(record.id)).toMatchObject({ bounced: 1, blocked: 1, complained: 0 });
    const { subscribers, events } = harness.services;
    expect((await subscribers.get('1'))?.status).toBe('bounced');
    expect((await subscribers.get('2'))?.status).toBe('active');
    const [hard] = await events.recentEvents('1');
    expect(hard).toMatchObject({ kind: 'hard', source: 'smtp', sendId: record.id, diagnostic: { status: '5.1.1', replyCode: 550 } });
    const [block] = await events.recentEvents('2');
    expect(block).toMatchObject({ kind: 'block', source: 'smtp', diagnostic: { status: '5.7.1', replyCode: 550 } });

    const failures = await runCliInProcess(['status', 'vol-138', '--failures', '--json'], harness.config);
    expect(failures.code).toBe(0);
    const { problems } = JSON.parse(failures.out) as { problems: { email: string; state: string; event: { kind: string; source: string } }[] };
    expect(problems.map(({ email, state, event }) => [email, state, event.kind, event.source])).toEqual([
      ['reader1@example.org', 'failed', 'hard', 'smtp'],
      ['reader2@example.org', 'failed', 'block', 'smtp'],
    ]);
  });
});

describe('bounces ingest', () => {
  it('applies a DSN mailed back to the VERP address, late, and a replay of it changes nothing', async () => {
    const harness = await createHarness('ingest-dsn', { config: BOUNCES });
    const { sendId, byRecipient } = await sendTo(harness, 3);
    const original = byRecipient.get('reader3@example.org')!;
    const dsn = buildDsn({
      to: original.envelope.mailFrom,
      original: original.raw,
      envelopeId: original.envelope.envelopeId,
      recipients: [{ recipient: 'reader3@example.org', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 <reader3@example.org>: user unknown' }],
    });
    const file = await scratchFile('dsn.eml', dsn);

    const first = await runCliInProcess(['bounces', 'ingest', '--to', original.envelope.mailFrom, file], harness.config);
    expect(first).toMatchObject({ code: 0, err: '' });
    expect(first.out).toMatch(
      /^applied: hard bounce for reader3@example\.org \(subscriber 3\) on send vol-138\.weekly\.1, matched by verp \(dsn\): 550 5\.1\.1 .*status active → bounced$/,
    );
    expect((await harness.services.subscribers.get('3'))?.status).toBe('bounced');
    const status = JSON.parse((await runCliInProcess(['status', 'vol-138', '--json'], harness.config)).out) as Record<string, unknown>;
    // Accepted at SMTP time, bounced later: both are true, and status shows both.
    expect(status).toMatchObject({ sendId, accepted: 3, failed: 0, bounced: 1, blocked: 0, complained: 0 });

    const replay = await runCliInProcess(['bounces', 'ingest', '--to', original.envelope.mailFrom, file], harness.config);
    expect(replay.code).toBe(0);
    expect(replay.out).toMatch(/^already applied: hard bounce for reader3@example\.org/);
    expect(JSON.parse((await runCliInProcess(['status', 'vol-138', '--json'], harness.config)).out)).toMatchObject({ bounced: 1 });
    expect(await harness.services.events.recentEvents('3')).toHaveLength(1);

    const shown = JSON.parse((await runCliInProcess(['subscribers', 'show', 'reader3@example.org', '--json'], harness.config)).out) as {
      events: DeliveryEvent[];
    };
    expect(shown.events).toEqual([
      expect.objectContaining({ kind: 'hard', source: 'dsn', sendId, diagnostic: expect.objectContaining({ status: '5.1.1', replyCode: 550 }) }),
    ]);
  });

  it('attributes by the quoted headers when the envelope was lost, but never to a subscriber the report does not name by address or signature', async () => {
    const harness = await createHarness('ingest-headers', { config: BOUNCES });
    const { byRecipient } = await sendTo(harness, 3);
    const ingest = async (name: string, raw: Buffer) => runCliInProcess(['bounces', 'ingest', await scratchFile(name, raw)], harness.config);
    const withoutListUnsubscribe = (raw: Buffer) => Buffer.from(raw.toString('utf8').replace(/^List-Unsubscribe:.*\r\n/m, ''));
    const mailbox = (raw: Buffer) => ({ to: 'postmaster@bounce.example.org', original: raw });

    // Relayed, without the VERP address: the quoted List-Unsubscribe carries a signed token.
    const first = byRecipient.get('reader1@example.org')!;
    const relayed = buildDsn({
      ...mailbox(first.raw),
      recipients: [{ recipient: 'reader1@example.org', action: 'failed', status: '5.2.2', diagnostic: '552 5.2.2 mailbox full' }],
    });
    expect((await ingest('relayed.eml', relayed)).out).toMatch(
      /^applied: soft bounce for reader1@example\.org \(subscriber 1\) on send vol-138\.weekly\.1, matched by list-unsubscribe/,
    );
    expect((await harness.services.subscribers.get('1'))?.status).toBe('active');

    // Nothing signed left: the quoted Message-ID is trusted because the report names that subscriber's address.
    const second = byRecipient.get('reader2@example.org')!;
    const unsigned = buildDsn({
      ...mailbox(withoutListUnsubscribe(second.raw)),
      messageId: '<unsigned@mx.sender.example>',
      recipients: [{ recipient: 'READER2@example.org', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 user unknown' }],
    });
    expect((await ingest('unsigned.eml', unsigned)).out).toMatch(
      /^applied: hard bounce for reader2@example\.org \(subscriber 2\) on send vol-138\.weekly\.1, matched by message-id/,
    );

    // The quoted headers name reader3, but the report is about someone else: a forged or confused
    // report must not touch reader3. The address itself is unknown, so the report is kept unmatched.
    const third = byRecipient.get('reader3@example.org')!;
    const forged = buildDsn({
      ...mailbox(withoutListUnsubscribe(third.raw)),
      messageId: '<other@mx.sender.example>',
      recipients: [{ recipient: 'stranger@elsewhere.example', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 user unknown' }],
    });
    const unmatched = await ingest('forged.eml', forged);
    expect(unmatched.code).toBe(0);
    expect(unmatched.out).toMatch(/^unmatched: hard bounce for stranger@elsewhere\.example \(dsn\): no subscriber has the address/);
    // A complaint naming no address and only unsigned ids (subscriber ids are sequential: a forger
    // could walk them) suppresses no one either.
    const redacted = Buffer.from(
      withoutListUnsubscribe(third.raw)
        .toString('utf8')
        .replace(/^To:.*\r\n/m, 'To: <redacted@example.org>\r\n'),
    );
    const anonymous = buildArf({ to: 'fbl@bounce.example.org', original: redacted });
    const refused = await ingest('anonymous-arf.eml', anonymous);
    expect(refused.out).toMatch(
      /^unmatched: complaint \(arf\): the report names a message of ours only by unsigned headers, and no address to check them against/,
    );
    expect((await harness.services.subscribers.get('3'))?.status).toBe('active');

    const listed = await runCliInProcess(['bounces', 'unmatched', '--json'], harness.config);
    const { total, reports } = JSON.parse(listed.out) as { total: number; reports: { recipient?: string; raw: string; reason: string }[] };
    expect(total).toBe(2);
    expect(reports[1]).toMatchObject({ recipient: 'stranger@elsewhere.example', reason: expect.stringContaining('no subscriber') });
    expect(reports[1]!.raw).toContain('Final-Recipient: rfc822; stranger@elsewhere.example');
    // The same unmatched report again is not kept twice.
    await ingest('forged-again.eml', forged);
    expect((await harness.services.events.unmatched(10)).total).toBe(2);
  });

  it('says "ignored" with exit 0 for a message that is not a report, and exit 65 for a garbled one, which it keeps', async () => {
    const harness = await createHarness('ingest-bad');
    const reply = Buffer.from('From: reader@example.org\r\nTo: bounces@bounce.example.org\r\nSubject: Re: IR Weekly\r\n\r\nThanks for the issue!\r\n');
    const ignored = await runCliInProcess(['bounces', 'ingest', await scratchFile('reply.eml', reply)], harness.config);
    expect(ignored).toMatchObject({ code: 0 });
    expect(ignored.out).toMatch(/^ignored: not a delivery report/);

    const garbled = Buffer.from(
      'From: MAILER-DAEMON@mx.example\r\nTo: bounces@bounce.example.org\r\nSubject: failure\r\nMIME-Version: 1.0\r\n' +
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n' +
        '--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n--b--\r\n',
    );
    const result = await runCliInProcess(['bounces', 'ingest', await scratchFile('garbled.eml', garbled)], harness.config);
    expect(result.code).toBe(65);
    expect(result.err).toMatch(/^error: garbled delivery report: .+; kept for inspection/);
    const { reports } = await harness.services.events.unmatched(10);
    expect(reports).toEqual([expect.objectContaining({ source: 'mail', reason: expect.stringMatching(/^garbled report: /) })]);

    const missing = await runCliInProcess(['bounces', 'ingest', '/nonexistent/report.eml'], harness.config);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^error: cannot read \/nonexistent\/report\.eml: no such file/);
  });

  it('suppresses on an ARF complaint, takes the subscriber off every list, and a later hard bounce does not relabel it', async () => {
    const harness = await createHarness('ingest-arf', { config: BOUNCES });
    const { byRecipient } = await sendTo(harness, 2);
    await harness.services.subscribers.upsert({ email: 'reader2@example.org', list: 'monthly' });
    expect(await harness.services.subscribers.listsOf('2')).toEqual(['monthly', 'weekly']);
    const original = byRecipient.get('reader2@example.org')!;
    // Providers redact the recipient; the quoted message's headers still name it.
    const arf = buildArf({ to: 'fbl@bounce.example.org', original: original.raw });
    const applied = await runCliInProcess(['bounces', 'ingest', await scratchFile('arf.eml', arf)], harness.config);
    expect(applied.out).toMatch(
      /^applied: complaint for reader2@example\.org \(subscriber 2\) on send vol-138\.weekly\.1, matched by list-unsubscribe \(arf\).*status active → complained$/,
    );
    expect(await harness.services.subscribers.listsOf('2')).toEqual([]);
    expect(await harness.services.subscribers.countList('weekly')).toMatchObject({ total: 1, byStatus: { active: 1, complained: 0 } });
    expect(await harness.services.subscribers.countList('monthly')).toMatchObject({ total: 0, byStatus: { active: 0 } });

    const dsn = buildDsn({
      to: original.envelope.mailFrom,
      original: original.raw,
      recipients: [{ recipient: 'reader2@example.org', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 user unknown' }],
    });
    const later = await runCliInProcess(['bounces', 'ingest', await scratchFile('later.eml', dsn)], harness.config);
    expect(later.out).toMatch(/^applied: hard bounce for reader2@example\.org/);
    expect(later.out).not.toMatch(/status/);
    expect((await harness.services.subscribers.get('2'))?.status).toBe('complained');
    expect(JSON.parse((await runCliInProcess(['status', 'vol-138', '--json'], harness.config)).out)).toMatchObject({ complained: 1, bounced: 1 });
  });
});

describe('the bounce policy', () => {
  it('suppresses after SOFT_BOUNCE_LIMIT soft bounces within the window, and older ones expire (no sleeping: the clock is moved)', async () => {
    const harness = await createHarness('soft-decay', { config: { SOFT_BOUNCE_LIMIT: '3', SOFT_BOUNCE_WINDOW_DAYS: '30' } });
    await seedSubscribers(harness.services, 1);
    const day = 86_400_000;
    const start = Date.parse('2026-01-01T00:00:00Z');
    let now = start;
    const deps = { ...harness.services, now: () => new Date(now) };
    const soft = (n: number, atMs: number): DeliveryEvent => ({
      id: `soft-${n}`,
      source: 'webhook',
      kind: 'soft',
      subscriberId: '1',
      sendId: undefined,
      diagnostic: { status: '4.2.2' },
      at: new Date(atMs).toISOString(),
    });
    const status = async () => (await harness.services.subscribers.get('1'))?.status;

    await applyDeliveryEvent(deps, soft(1, now));
    now += 20 * day;
    await applyDeliveryEvent(deps, soft(2, now));
    // Day 40: the first one is 40 days old and no longer counts, so the third makes two, not three.
    now += 20 * day;
    await applyDeliveryEvent(deps, soft(3, now));
    expect(await status()).toBe('active');
    expect(await harness.services.events.softBounceCount('1', 30 * day, new Date(now))).toBe(2);
    // A replay of the third changes nothing either.
    expect((await applyDeliveryEvent(deps, soft(3, now))).outcome).toBe('duplicate');
    expect(await status()).toBe('active');
    // A soft bounce reported very late, from before the window, never counts.
    now += 5 * day;
    await applyDeliveryEvent(deps, soft(99, now - 35 * day));
    expect(await status()).toBe('active');
    expect(await harness.services.events.softBounceCount('1', 30 * day, new Date(now))).toBe(2);
    // A fourth within the window: three in 30 days.
    const fourth = await applyDeliveryEvent(deps, soft(4, now));
    expect(fourth).toMatchObject({ outcome: 'applied', statusBefore: 'active', statusAfter: 'bounced' });
    expect(await status()).toBe('bounced');
    expect(await harness.services.events.softBounceCount('1', 30 * day, new Date(now))).toBe(3);
  });

  it('counts soft bounces per message: a provider reporting every retry of one message as a soft bounce does not suppress', async () => {
    const harness = await createHarness('soft-per-message', { config: { SOFT_BOUNCE_LIMIT: '2' } });
    await seedSubscribers(harness.services, 1);
    const { sendId } = await harness.send('vol-138');
    const deferral = (n: number): DeliveryEvent => ({
      id: `deferred-${n}`,
      source: 'sendgrid',
      kind: 'soft',
      subscriberId: '1',
      sendId,
      diagnostic: { providerType: 'deferred' },
      at: new Date().toISOString(),
    });
    for (const n of [1, 2, 3, 4]) expect(await applyDeliveryEvent(harness.services, deferral(n))).toMatchObject({ outcome: 'applied', statusAfter: 'active' });
    expect(await harness.services.sends.get(sendId)).toMatchObject({ softBounced: 1 });
    // A soft bounce of another message makes two messages: the limit.
    const other: DeliveryEvent = { ...deferral(5), sendId: undefined };
    expect(await applyDeliveryEvent(harness.services, other)).toMatchObject({ statusAfter: 'bounced' });
  });

  it('never downgrades a suppression: an unsubscribe or a block after a hard bounce leaves it bounced', async () => {
    const harness = await createHarness('no-downgrade');
    await seedSubscribers(harness.services, 1);
    const event = (id: string, kind: DeliveryEvent['kind']): DeliveryEvent => ({
      id,
      source: 'webhook',
      kind,
      subscriberId: '1',
      sendId: undefined,
      diagnostic: {},
      at: new Date().toISOString(),
    });
    expect(await applyDeliveryEvent(harness.services, event('a', 'hard'))).toMatchObject({ statusAfter: 'bounced' });
    expect(await applyDeliveryEvent(harness.services, event('b', 'unsubscribe'))).toMatchObject({ statusBefore: 'bounced', statusAfter: 'bounced' });
    expect(await applyDeliveryEvent(harness.services, event('c', 'block'))).toMatchObject({ statusAfter: 'bounced' });
    expect(await applyDeliveryEvent(harness.services, event('d', 'complaint'))).toMatchObject({ statusBefore: 'bounced', statusAfter: 'complained' });
    expect(await applyDeliveryEvent(harness.services, event('e', 'hard'))).toMatchObject({ statusAfter: 'complained' });
  });
});

describe('the bounce server', () => {
  it('receives DSNs over SMTP, answers 250 once recorded, applies them, and refuses other domains', async () => {
    const harness = await createHarness('bounce-server', { config: BOUNCES });
    const { byRecipient } = await sendTo(harness, 3);
    const server = await startBounceServer(harness.services, { port: 0 });
    onTestFinished(() => server.close());
    const mta = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
    onTestFinished(() => mta.close());

    const original = byRecipient.get('reader2@example.org')!;
    const dsn = buildDsn({
      to: original.envelope.mailFrom,
      original: original.raw,
      envelopeId: original.envelope.envelopeId,
      recipients: [{ recipient: 'reader2@example.org', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 user unknown' }],
    });
    const info = await mta.sendMail({ envelope: { from: 'mailer-daemon@mx.sender.example', to: [original.envelope.mailFrom] }, raw: dsn });
    expect(info.response).toMatch(/^250 .*report recorded/);
    expect((await harness.services.subscribers.get('2'))?.status).toBe('bounced');

    const refused = await mta
      .sendMail({ envelope: { from: 'someone@elsewhere.example', to: ['victim@elsewhere.example'] }, raw: dsn })
      .catch((error: unknown) => error);
    expect(refused).toMatchObject({ responseCode: 550, response: expect.stringContaining('relay access denied') });
  });

  it('takes one recipient per message (452 for more), refuses an oversized message (552), and answers 451 when it cannot record, so the MTA keeps the report', async () => {
    const harness = await createHarness('bounce-server-refusals', { config: { ...BOUNCES, BOUNCE_MAX_MESSAGE_BYTES: '20000' } });
    const { byRecipient } = await sendTo(harness, 1);
    const original = byRecipient.get('reader1@example.org')!;
    const dsn = buildDsn({
      to: original.envelope.mailFrom,
      original: original.raw,
      recipients: [{ recipient: 'reader1@example.org', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 user unknown' }],
    });
    let recordsRefused = 0;
    const reports = withFault(harness.services.reports, 'record', () => {
      if (recordsRefused > 0) return;
      recordsRefused += 1;
      throw new Error('injected: Redis refused the write');
    });
    const server = await startBounceServer({ ...harness.services, reports }, { port: 0 });
    onTestFinished(() => server.close());
    const mta = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true });
    onTestFinished(() => mta.close());
    const envelope = { from: 'mailer-daemon@mx.sender.example', to: [original.envelope.mailFrom] };

    const unrecorded = await mta.sendMail({ envelope, raw: dsn }).catch((error: unknown) => error);
    expect(recordsRefused).toBe(1);
    expect(unrecorded).toMatchObject({ responseCode: 451 });
    expect((await harness.services.subscribers.get('1'))?.status).toBe('active');
    // The MTA tries again later: now it is recorded and applied.
    expect((await mta.sendMail({ envelope, raw: dsn })).response).toMatch(/^250 /);
    expect((await harness.services.subscribers.get('1'))?.status).toBe('bounced');

    const two = await mta.sendMail({ envelope: { ...envelope, to: [original.envelope.mailFrom, 'postmaster@bounce.example.org'] }, raw: dsn });
    expect(two.rejectedErrors?.map((error) => (error as Error & { responseCode?: number }).responseCode)).toEqual([452]);
    const oversized = Buffer.concat([dsn, Buffer.from(`X-Padding: ${'x'.repeat(30_000)}\r\n`)]);
    expect(await mta.sendMail({ envelope, raw: oversized }).catch((error: unknown) => error)).toMatchObject({ responseCode: 552 });
  });

  it('exits 75 from `bounces ingest` when Redis cannot take the report, so the MTA retries', async () => {
    const harness = await createHarness('ingest-no-redis');
    const file = await scratchFile(
      'dsn.eml',
      buildDsn({
        to: 'bounces@bounce.example.org',
        original: Buffer.from('Message-ID: <x@y>\r\n\r\n'),
        recipients: [{ recipient: 'a@example.org', action: 'failed', status: '5.1.1' }],
      }),
    );
    const result = await runCliInProcess(['bounces', 'ingest', file], { ...harness.config, redis: { ...harness.config.redis, url: 'redis://127.0.0.1:1' } });
    expect(result.code).toBe(75);
    expect(result.err).toMatch(/^error: Cannot reach Redis at redis:\/\/127\.0\.0\.1:1 .*; the report was not recorded, try again later$/);
  });

  it('keeps a report it recorded but could not apply, and a worker applies it later: nothing received is lost', async () => {
    const harness = await createHarness('bounce-deferred', { config: BOUNCES });
    const { byRecipient } = await sendTo(harness, 1);
    const original = byRecipient.get('reader1@example.org')!;
    let refused = 0;
    // Redis refuses the event writes (as in a failover) right after the report is recorded.
    const events = withFault(harness.services.events, 'applyToSubscriber', () => {
      refused += 1;
      throw new Error("READONLY You can't write against a read only replica.");
    });
    const result = await takeInReport(
      { ...harness.services, events },
      {
        channel: 'webhook',
        receivedAt: new Date().toISOString(),
        raw: '{}',
        events: [{ id: 'late-1', source: 'webhook', kind: 'hard', diagnostic: { providerType: 'hard' }, clues: { verpAddress: original.envelope.mailFrom } }],
      },
      { retryDelayMs: 200 },
    );
    expect(refused).toBe(1);
    expect(result).toMatchObject({ deferred: true, outcomes: [] });
    expect((await harness.services.subscribers.get('1'))?.status).toBe('active');
    // The send worker started by sendTo also runs the report worker: it applies the recorded report.
    await waitFor(
      async () => (await harness.services.subscribers.get('1'))?.status === 'bounced',
      10_000,
      () => 'the recorded report to be applied',
    );
    expect(await harness.services.events.recentEvents('1')).toEqual([expect.objectContaining({ id: 'late-1', kind: 'hard' })]);
  });
});
