import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AttributionClues, DeliveryEventKind } from '../../src/core/delivery-event.ts';
import { GarbledReportError, type MailReport, parseMailReport } from '../../src/intake/mail-report.ts';

const FIXTURES = path.join(import.meta.dirname, '../fixtures/reports');
const VERP = 'bounces+vol-138.weekly.1-42-0123456789ab@bounce.example.org';
const ENVELOPE_ID = 'vol-138.weekly.1-42-0123456789ab';

function fixture(name: string): Buffer {
  return readFileSync(path.join(FIXTURES, name));
}

/** A fixture as text with LF line ends, to derive variants from. */
function fixtureText(name: string): string {
  return fixture(name).toString('utf8').replace(/\r\n/g, '\n');
}

async function report(raw: Buffer | string, options?: { envelopeRecipient?: string }): Promise<Extract<MailReport, { kind: 'report' }>> {
  const parsed = await parseMailReport(typeof raw === 'string' ? Buffer.from(raw) : raw, options);
  if (parsed.kind !== 'report') throw new Error(`expected a report, got not-a-report: ${parsed.reason}`);
  return parsed;
}

async function notAReport(raw: Buffer | string): Promise<string> {
  const parsed = await parseMailReport(typeof raw === 'string' ? Buffer.from(raw) : raw);
  if (parsed.kind !== 'not-a-report') throw new Error(`expected not-a-report, got a ${parsed.format} report`);
  return parsed.reason;
}

async function garbled(raw: Buffer | string): Promise<GarbledReportError> {
  try {
    await parseMailReport(typeof raw === 'string' ? Buffer.from(raw) : raw);
  } catch (error) {
    if (error instanceof GarbledReportError) return error;
    throw error;
  }
  throw new Error('expected a GarbledReportError, the message parsed');
}

/** The clues of our own message quoted back: every fixture quotes vol-138.weekly.1 to subscriber 42. */
function clues(recipient: string | undefined, more: AttributionClues = {}): AttributionClues {
  return {
    verpAddress: VERP,
    recipient,
    messageId: 'vol-138.weekly.1.42@example.org',
    listUnsubscribe: '<https://example.org/unsubscribe/weekly/42/0f3a9c2e7b1d>',
    sendId: 'vol-138.weekly.1',
    subscriberId: '42',
    ...more,
  };
}

interface ExpectedEvent {
  readonly kind: DeliveryEventKind;
  readonly status?: string;
  readonly replyCode?: number;
  readonly providerType?: string;
  readonly at: string;
  readonly clues: AttributionClues;
}

const TABLE: readonly (readonly [file: string, format: 'dsn' | 'arf' | 'legacy-bounce', reportMessageId: string, events: readonly ExpectedEvent[]])[] = [
  [
    'postfix-dsn-hard.eml',
    'dsn',
    '20261104091503.5D2F21A0F4@mail.example.net',
    [{ kind: 'hard', status: '5.1.1', replyCode: 550, at: '2026-11-04T09:15:02.000Z', clues: clues('nobody@example.net', { envelopeId: ENVELOPE_ID }) }],
  ],
  // A delay warning: the MTA is still trying, so it is no bounce and gives no event.
  ['postfix-dsn-delayed.eml', 'dsn', '20261104131508.8F0B41A0FA@mail.example.net', []],
  [
    'postfix-dsn-two-recipients.eml',
    'dsn',
    '20261104091505.A31C71A0E2@relay.example.net',
    [
      { kind: 'hard', status: '5.1.1', replyCode: 550, at: '2026-11-04T09:15:02.000Z', clues: clues('alice@example.net', { envelopeId: ENVELOPE_ID }) },
      // No Original-Recipient: Final-Recipient, as written.
      { kind: 'block', status: '5.7.1', replyCode: 554, at: '2026-11-04T09:15:02.000Z', clues: clues('Bob@Example.com', { envelopeId: ENVELOPE_ID }) },
    ],
  ],
  [
    'exim-legacy.eml',
    'legacy-bounce',
    'E1tG2kX-000Abc-1x@mail.example.net',
    [
      { kind: 'hard', status: '5.1.1', replyCode: 550, at: '2026-11-04T09:15:05.000Z', clues: clues('nobody@example.net') },
      // "Unrouteable address" is words: no reply code, so soft. The "550 reasons…" line of the quoted body is not read.
      { kind: 'soft', at: '2026-11-04T09:15:05.000Z', clues: clues('gone@nowhere.example') },
    ],
  ],
  // Exim's Status is 5.0.0 and wins over the quoted 5.1.1; the 550 then decides.
  [
    'exim-dsn.eml',
    'dsn',
    'E1tG2kY-000Abd-2Q@mail.example.net',
    [{ kind: 'hard', status: '5.0.0', replyCode: 550, at: '2026-11-04T09:15:05.000Z', clues: clues('nobody@example.net', { envelopeId: ENVELOPE_ID }) }],
  ],
  [
    'microsoft-ndr.eml',
    'dsn',
    '4f6c1b2a-9d3e-4e8f-a0b1-c2d3e4f5a6b7@AM9PR01MB8123.eurprd01.prod.exchangelabs.com',
    [{ kind: 'hard', status: '5.1.10', replyCode: 550, at: '2026-11-04T09:15:03.000Z', clues: clues('nobody@outlook.com') }],
  ],
  [
    'microsoft-access-denied.eml',
    'dsn',
    '4f6c1b2a-9d3e-4e8f-a0b1-c2d3e4f5a6b7@AM9PR01MB8123.eurprd01.prod.exchangelabs.com',
    [{ kind: 'hard', status: '5.4.1', replyCode: 550, at: '2026-11-04T09:15:03.000Z', clues: clues('someone@contoso.com') }],
  ],
  [
    'gmail-dsn.eml',
    'dsn',
    '6729e7b8.050a0220.1c2d3e.4f5a.GMR@mx.google.com',
    [{ kind: 'hard', status: '5.1.1', replyCode: 550, at: '2026-11-04T09:15:04.000Z', clues: clues('nobody@gmail.com') }],
  ],
  [
    'gmail-block.eml',
    'dsn',
    '6729e7b8.050a0220.1c2d3e.4f5a.GMR@mx.google.com',
    [{ kind: 'block', status: '5.7.26', replyCode: 550, at: '2026-11-04T09:15:04.000Z', clues: clues('reader@gmail.com') }],
  ],
  [
    'gmail-legacy.eml',
    'legacy-bounce',
    '047d7b6d8a2e3f4c5d6e7f80@google.com',
    [{ kind: 'hard', status: '5.1.1', replyCode: 550, at: '2026-11-04T09:15:04.000Z', clues: clues('nobody@example.com') }],
  ],
  [
    'yahoo-or-generic-arf.eml',
    'arf',
    '1793783999.4815162342.JavaMail.arf@arf.mail.yahoo.com',
    [{ kind: 'complaint', providerType: 'abuse', at: '2026-11-04T09:15:03.000Z', clues: clues('reader@yahoo.com') }],
  ],
  [
    'hotmail-arf.eml',
    'arf',
    '3c2b1a09-8f7e-4d6c-b5a4-93827160f5e4@jmrp.outlook.com',
    [{ kind: 'complaint', providerType: 'abuse', at: '2026-11-04T09:15:04.000Z', clues: clues('Reader@Hotmail.com') }],
  ],
  [
    'arf-redacted.eml',
    'arf',
    'arf-20261104-000042@feedback.example.net',
    [{ kind: 'complaint', providerType: 'abuse', at: '2026-11-04T09:15:05.000Z', clues: clues(undefined) }],
  ],
];

describe('parseMailReport: the fixtures', () => {
  it.each(TABLE)('%s is a %s report with its events', async (file, format, reportMessageId, expected) => {
    const parsed = await report(fixture(file));
    expect(parsed.format).toBe(format);
    expect(parsed.reportMessageId).toBe(reportMessageId);
    expect(parsed.events).toHaveLength(expected.length);
    parsed.events.forEach((event, index) => {
      const want = expected[index];
      expect(event.source).toBe(format === 'arf' ? 'arf' : 'dsn');
      expect(event.kind).toBe(want?.kind);
      expect(event.diagnostic.status).toBe(want?.status);
      expect(event.diagnostic.replyCode).toBe(want?.replyCode);
      expect(event.diagnostic.providerType).toBe(want?.providerType);
      expect(event.at).toBe(want?.at);
      expect(event.clues).toEqual(want?.clues);
      // The id names the report and the recipient, lower-cased.
      expect(event.id).toBe(`${reportMessageId}:${(want?.clues.recipient ?? 'unknown-recipient').toLowerCase()}`);
    });
  });

  it.each(TABLE)('%s gives the same ids when read twice, and one id per recipient', async (file) => {
    const [first, second] = [await report(fixture(file)), await report(fixture(file))];
    expect(second.events.map((event) => event.id)).toEqual(first.events.map((event) => event.id));
    expect(new Set(first.events.map((event) => event.id)).size).toBe(first.events.length);
  });

  it.each(TABLE)('%s reads the same with CRLF and with LF line ends', async (file) => {
    const lf = fixtureText(file);
    expect(await parseMailReport(Buffer.from(lf.replace(/\n/g, '\r\n')))).toEqual(await parseMailReport(Buffer.from(lf)));
  });

  it('keeps the diagnostic text without its type, for ops', async () => {
    const [postfix] = (await report(fixture('postfix-dsn-hard.eml'))).events;
    expect(postfix?.diagnostic.text).toBe('550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in virtual mailbox table');
    const [block] = (await report(fixture('gmail-block.eml'))).events;
    expect(block?.diagnostic.text).toMatch(/^550-5\.7\.26 /);
  });

  it('gives two recipients of one report different ids', async () => {
    const { events } = await report(fixture('postfix-dsn-two-recipients.eml'));
    expect(events.map((event) => event.id)).toEqual([
      '20261104091505.A31C71A0E2@relay.example.net:alice@example.net',
      '20261104091505.A31C71A0E2@relay.example.net:bob@example.com',
    ]);
  });
});

describe('parseMailReport: attribution and ids', () => {
  it('takes the envelope recipient over the delivery headers', async () => {
    const other = 'bounces+vol-139.weekly.1-7-aaaaaaaaaaaa@bounce.example.org';
    for (const file of ['postfix-dsn-hard.eml', 'exim-legacy.eml', 'microsoft-ndr.eml']) {
      expect((await report(fixture(file))).events[0]?.clues.verpAddress).toBe(VERP);
      const { events } = await report(fixture(file), { envelopeRecipient: `<${other}>` });
      expect(events.length).toBeGreaterThan(0);
      expect(events.map((event) => event.clues.verpAddress)).toEqual(events.map(() => other));
    }
  });

  it('reads the VERP address of a complaint from Original-Mail-From, not from the feedback-loop mailbox it was delivered to', async () => {
    const { events } = await report(fixture('yahoo-or-generic-arf.eml'), { envelopeRecipient: 'fbl@example.org' });
    expect(events.map((event) => event.clues.verpAddress)).toEqual([VERP]);
  });

  it('falls back to a hash of the bytes for a report without a Message-ID, stable across reads', async () => {
    const raw = fixtureText('postfix-dsn-two-recipients.eml').replace(/^Message-Id: .*\n/m, '');
    const [first, second] = [await report(raw), await report(raw)];
    expect(first.reportMessageId).toBeUndefined();
    expect(first.events.map((event) => event.id)).toEqual(second.events.map((event) => event.id));
    expect(first.events[0]?.id).toMatch(/^sha256:[0-9a-f]{64}:alice@example\.net$/);
    expect(first.events[1]?.id).toMatch(/^sha256:[0-9a-f]{64}:bob@example\.com$/);
  });

  it('numbers a recipient that a report names twice, so the ids stay distinct', async () => {
    const raw = fixtureText('postfix-dsn-two-recipients.eml').replace('Final-Recipient: rfc822; Bob@Example.com', 'Final-Recipient: rfc822; alice@example.net');
    const { events } = await report(raw);
    expect(events.map((event) => event.id)).toEqual([
      '20261104091505.A31C71A0E2@relay.example.net:alice@example.net',
      '20261104091505.A31C71A0E2@relay.example.net:alice@example.net#2',
    ]);
  });
});

describe('parseMailReport: variants real MTAs send', () => {
  it('reads one complaint per Original-Rcpt-To', async () => {
    const raw = fixtureText('yahoo-or-generic-arf.eml').replace(
      'Original-Rcpt-To: reader@yahoo.com\n',
      'Original-Rcpt-To: reader@yahoo.com\nOriginal-Rcpt-To: <second@yahoo.com>\n',
    );
    const { events } = await report(raw);
    expect(events.map((event) => [event.kind, event.clues.recipient, event.id])).toEqual([
      ['complaint', 'reader@yahoo.com', '1793783999.4815162342.JavaMail.arf@arf.mail.yahoo.com:reader@yahoo.com'],
      ['complaint', 'second@yahoo.com', '1793783999.4815162342.JavaMail.arf@arf.mail.yahoo.com:second@yahoo.com'],
    ]);
  });

  it.each(['fraud', 'virus', 'other'])('reads Feedback-Type %s as a complaint', async (type) => {
    const { events } = await report(fixtureText('yahoo-or-generic-arf.eml').replace('Feedback-Type: abuse', `Feedback-Type: ${type}`));
    expect(events.map((event) => [event.kind, event.diagnostic.providerType])).toEqual([['complaint', type]]);
  });

  it('takes the recipient of a complaint without Original-Rcpt-To from the quoted To', async () => {
    const { events } = await report(fixtureText('yahoo-or-generic-arf.eml').replace('Original-Rcpt-To: reader@yahoo.com\n', ''));
    expect(events[0]?.clues.recipient).toBe('reader@yahoo.com');
  });

  it('reads an older Exim bounce that puts the host before the reply', async () => {
    const raw = fixtureText('exim-legacy.eml').replace(
      '    host mx.example.net [198.51.100.25]\n    SMTP error from remote mail server after RCPT TO:<nobody@example.net>:\n    550 5.1.1',
      '    SMTP error from remote mail server after RCPT TO:<nobody@example.net>:\n    host mx.example.net [198.51.100.25]: 552 5.2.2',
    );
    const { events } = await report(raw);
    expect(events.map((event) => [event.kind, event.diagnostic.replyCode, event.diagnostic.status])).toEqual([
      ['soft', 552, '5.2.2'],
      ['soft', undefined, undefined],
    ]);
  });

  it('accepts message/global-delivery-status (RFC 6533)', async () => {
    const raw = fixtureText('postfix-dsn-hard.eml').replace('Content-Type: message/delivery-status', 'Content-Type: message/global-delivery-status');
    expect((await report(raw)).events.map((event) => event.kind)).toEqual(['hard']);
  });

  it('reads a base64-encoded status part', async () => {
    const text = fixtureText('exim-dsn.eml');
    const fields = /Content-type: message\/delivery-status\n\n([\s\S]*?)\n--1793783705/.exec(text)?.[1] ?? '';
    expect(fields).toContain('Final-Recipient');
    const raw = text.replace(
      `Content-type: message/delivery-status\n\n${fields}`,
      `Content-type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n${Buffer.from(fields).toString('base64')}\n`,
    );
    const { events } = await report(raw);
    expect(events.map((event) => [event.kind, event.diagnostic.status, event.clues.envelopeId])).toEqual([['hard', '5.0.0', ENVELOPE_ID]]);
  });

  it('reads a DSN that only reports deliveries as a report without events', async () => {
    const raw = fixtureText('postfix-dsn-hard.eml').replace('Action: failed\nStatus: 5.1.1', 'Action: relayed (to a non-DSN-aware mailer)\nStatus: 2.0.0');
    const parsed = await report(raw);
    expect([parsed.format, parsed.events]).toEqual(['dsn', []]);
  });

  it('gives no event for a delayed action, whatever its status says: the message may still be delivered', async () => {
    const raw = fixtureText('postfix-dsn-hard.eml').replace('Action: failed', 'Action: delayed');
    expect((await report(raw)).events).toEqual([]);
  });
});

describe('parseMailReport: not a report', () => {
  it('says an ordinary reply is not a report', async () => {
    expect(await notAReport(fixture('not-a-report.eml'))).toBe('no delivery status (RFC 3464), feedback report (RFC 5965) or X-Failed-Recipients header');
  });

  it('says an out-of-office is an automatic message, not a report', async () => {
    expect(await notAReport(fixture('auto-reply.eml'))).toContain('Auto-Submitted: auto-replied');
  });

  it.each(['not-spam', 'auth-failure'])('says a feedback report of type %s is not a complaint', async (type) => {
    expect(await notAReport(fixtureText('hotmail-arf.eml').replace('Feedback-Type: abuse', `Feedback-Type: ${type}`))).toBe(
      `a feedback report of type ${type}, which is not a complaint`,
    );
  });

  it('says a read receipt (report-type=disposition-notification) is not a report', async () => {
    const raw = fixtureText('garbled-dsn.eml')
      .replace('report-type=delivery-status', 'report-type=disposition-notification')
      .replace('Content-Type: message/delivery-status', 'Content-Type: message/disposition-notification');
    expect(await notAReport(raw)).toBe('a multipart/report of type disposition-notification, not a delivery status or feedback report');
  });

  it('does not read a bounce forwarded inside another message', async () => {
    const forwarded = `From: Someone <someone@example.net>\nTo: news@example.org\nSubject: Fwd: look at this\nMessage-ID: <fwd-1@example.net>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="fwd"\n\n--fwd\nContent-Type: text/plain\n\nSee below.\n\n--fwd\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n${fixtureText('postfix-dsn-hard.eml')}\n--fwd--\n`;
    expect(await notAReport(forwarded)).toBe('no delivery status (RFC 3464), feedback report (RFC 5965) or X-Failed-Recipients header');
  });

  it('says bytes that are not a message at all are not a report', async () => {
    const noise = Buffer.from(Array.from({ length: 8192 }, (_, index) => (index * 7919 + 13) % 256));
    expect((await parseMailReport(noise)).kind).toBe('not-a-report');
    expect((await parseMailReport(Buffer.alloc(0))).kind).toBe('not-a-report');
    expect((await parseMailReport(Buffer.from('hello\n\nworld\n'))).kind).toBe('not-a-report');
  });
});

describe('parseMailReport: garbled reports', () => {
  it('names the missing per-recipient fields of a DSN', async () => {
    const error = await garbled(fixture('garbled-dsn.eml'));
    expect(error.name).toBe('GarbledReportError');
    expect(error.message).toBe('delivery report has no per-recipient fields (RFC 3464 §2.3): no Final-Recipient');
  });

  it('names the missing Feedback-Type of an ARF report', async () => {
    expect((await garbled(fixture('garbled-arf.eml'))).message).toBe('feedback report has no Feedback-Type field (RFC 5965 §3.1)');
  });

  it.each([
    ['Action', 'Action: failed\n', "delivery report's per-recipient block 1 (rfc822; nobody@example.net) has no Action (RFC 3464 §2.3.3)"],
    ['Status', 'Status: 5.1.1\n', "delivery report's per-recipient block 1 (rfc822; nobody@example.net) has no Status (RFC 3464 §2.3.4)"],
  ])('names a per-recipient block without %s', async (_field, line, message) => {
    expect((await garbled(fixtureText('postfix-dsn-hard.eml').replace(line, ''))).message).toBe(message);
  });

  it('names a per-recipient block without Final-Recipient', async () => {
    const raw = fixtureText('postfix-dsn-two-recipients.eml').replace('Final-Recipient: rfc822; Bob@Example.com\n', '');
    expect((await garbled(raw)).message).toBe("delivery report's per-recipient block 2 has no Final-Recipient (RFC 3464 §2.3.2)");
  });

  it('names an Action RFC 3464 does not define', async () => {
    const raw = fixtureText('postfix-dsn-hard.eml').replace('Action: failed', 'Action: bounced');
    expect((await garbled(raw)).message).toBe(
      `delivery report's per-recipient block 1 (rfc822; nobody@example.net) has Action "bounced", not one of failed, delayed, delivered, relayed, expanded (RFC 3464 §2.3.3)`,
    );
  });

  it('names the missing status part of a delivery-status report', async () => {
    const raw = fixtureText('postfix-dsn-hard.eml').replace('Content-Type: message/delivery-status', 'Content-Type: text/plain');
    expect((await garbled(raw)).message).toBe('multipart/report; report-type=delivery-status has no message/delivery-status part (RFC 3464 §2)');
  });

  it('names the missing feedback part of a feedback report', async () => {
    const raw = fixtureText('yahoo-or-generic-arf.eml').replace('Content-Type: message/feedback-report', 'Content-Type: text/plain');
    expect((await garbled(raw)).message).toBe('multipart/report; report-type=feedback-report has no message/feedback-report part (RFC 5965 §2)');
  });

  it('calls a report whose top header block is too large to split garbled, and anything else that large not a report', async () => {
    const huge = `Subject: ${'a'.repeat(300 * 1024)}\n\nbody\n`;
    expect((await garbled(`X-Failed-Recipients: nobody@example.net\n${huge}`)).message).toMatch(/^report could not be split into MIME parts: \w/);
    expect(await notAReport(`From: someone@example.net\n${huge}`)).toMatch(/^not a MIME message: \w/);
  });

  it('names an X-Failed-Recipients header without an address', async () => {
    const raw = fixtureText('exim-legacy.eml').replace('X-Failed-Recipients: nobody@example.net,\n  gone@nowhere.example', 'X-Failed-Recipients: undisclosed');
    expect((await garbled(raw)).message).toBe('X-Failed-Recipients names no address: "undisclosed"');
  });
});
