import { describe, expect, it } from 'vitest';
import { bouncePolicy, SUPPRESSION_STRENGTH, weakerThan } from '../../src/core/bounce-policy.ts';
import {
  classifyBounce,
  ENHANCED_STATUS_RULES,
  parseSmtpReply,
  PROVIDER_TYPE_RULES,
  REPLY_CODE_RULES,
  type BounceKind,
} from '../../src/core/classify-bounce.ts';
import type { DeliveryEventSource, Diagnostic } from '../../src/core/delivery-event.ts';
import { envelopeId, messageIdLocalPart, readMessageId, readVerpAddress, readVerpToken, verpAddress, verpToken } from '../../src/core/verp.ts';

interface ClassifyCase {
  readonly label: string;
  /**
   * The rule rows the case runs through, in order, named by pattern or provider key: every row but
   * the last says `next` (or the classification ends there); the last one decides, unless the
   * fallback for a vague status or `undefined` answers instead.
   */
  readonly rules: readonly string[];
  readonly source: DeliveryEventSource;
  readonly diagnostic: Diagnostic;
  readonly expected: BounceKind | undefined;
}

const CLASSIFY_CASES: readonly ClassifyCase[] = [
  // Enhanced status codes, one or more per row.
  { label: 'temporary status 4.2.2', rules: ['4.*.*'], source: 'dsn', diagnostic: { status: '4.2.2' }, expected: 'soft' },
  { label: 'temporary status 4.4.7 beats a 550', rules: ['4.*.*'], source: 'dsn', diagnostic: { status: '4.4.7', replyCode: 550 }, expected: 'soft' },
  { label: '5.1.7 bad sender address is a block', rules: ['5.1.7'], source: 'dsn', diagnostic: { status: '5.1.7', replyCode: 550 }, expected: 'block' },
  { label: '5.1.8 bad sender system is a block', rules: ['5.1.8'], source: 'smtp', diagnostic: { status: '5.1.8', replyCode: 553 }, expected: 'block' },
  { label: '5.1.1 user unknown', rules: ['5.1.*'], source: 'dsn', diagnostic: { status: '5.1.1' }, expected: 'hard' },
  { label: '5.1.10 null MX', rules: ['5.1.*'], source: 'dsn', diagnostic: { status: '5.1.10' }, expected: 'hard' },
  { label: 'status is trimmed', rules: ['5.1.*'], source: 'dsn', diagnostic: { status: ' 5.1.2 ' }, expected: 'hard' },
  { label: '5.2.1 mailbox disabled', rules: ['5.2.1'], source: 'dsn', diagnostic: { status: '5.2.1', replyCode: 552 }, expected: 'hard' },
  { label: '5.2.0 defers to reply 550', rules: ['5.2.0', '550'], source: 'dsn', diagnostic: { status: '5.2.0', replyCode: 550 }, expected: 'hard' },
  { label: '5.2.2 mailbox full', rules: ['5.2.*'], source: 'dsn', diagnostic: { status: '5.2.2', replyCode: 550 }, expected: 'soft' },
  { label: '5.3.0 defers to reply 554', rules: ['5.3.0', '554'], source: 'dsn', diagnostic: { status: '5.3.0', replyCode: 554 }, expected: 'block' },
  { label: '5.3.4 message too big', rules: ['5.3.*'], source: 'dsn', diagnostic: { status: '5.3.4' }, expected: 'soft' },
  { label: '5.4.1 Microsoft access denied', rules: ['5.4.1'], source: 'smtp', diagnostic: { status: '5.4.1', replyCode: 550 }, expected: 'hard' },
  {
    label: 'listmonk #1463: SES Transient/General with 5.4.4 "Invalid domain" is hard',
    rules: ['5.4.4'],
    source: 'ses',
    diagnostic: { status: '5.4.4', replyCode: 550, providerType: 'Transient/General', text: 'smtp; 550 5.4.4 Invalid domain' },
    expected: 'hard',
  },
  {
    label: '5.4.0 defers to provider type',
    rules: ['5.4.0', 'ses:Permanent'],
    source: 'ses',
    diagnostic: { status: '5.4.0', providerType: 'Permanent/General' },
    expected: 'hard',
  },
  { label: '5.4.7 delivery time expired', rules: ['5.4.*'], source: 'dsn', diagnostic: { status: '5.4.7' }, expected: 'soft' },
  { label: '5.5.0 defers to reply 551', rules: ['5.5.0', '551'], source: 'dsn', diagnostic: { status: '5.5.0', replyCode: 551 }, expected: 'hard' },
  { label: '5.5.2 syntax error', rules: ['5.5.*'], source: 'smtp', diagnostic: { status: '5.5.2', replyCode: 550 }, expected: 'soft' },
  { label: '5.6.0 content refused', rules: ['5.6.*'], source: 'dsn', diagnostic: { status: '5.6.0', replyCode: 550 }, expected: 'block' },
  {
    label: 'SES Transient with 5.7.1 is a block',
    rules: ['5.7.*'],
    source: 'ses',
    diagnostic: { status: '5.7.1', providerType: 'Transient/General' },
    expected: 'block',
  },
  { label: 'status first: 5.7.1 beats reply 550', rules: ['5.7.*'], source: 'smtp', diagnostic: { status: '5.7.1', replyCode: 550 }, expected: 'block' },
  {
    label: 'SES Transient MailboxFull 4.2.2 is soft',
    rules: ['4.*.*'],
    source: 'ses',
    diagnostic: { status: '4.2.2', providerType: 'Transient/MailboxFull' },
    expected: 'soft',
  },
  { label: '5.0.0 defers to reply 550: hard', rules: ['5.*.*', '550'], source: 'dsn', diagnostic: { status: '5.0.0', replyCode: 550 }, expected: 'hard' },
  { label: '5.0.0 alone: vague permanent falls back to soft', rules: ['5.*.*'], source: 'dsn', diagnostic: { status: '5.0.0' }, expected: 'soft' },
  {
    label: '5.8.0 unknown subject defers to reply 556',
    rules: ['5.*.*', '556'],
    source: 'dsn',
    diagnostic: { status: '5.8.0', replyCode: 556 },
    expected: 'hard',
  },

  // Reply codes.
  { label: 'reply 421', rules: ['4**'], source: 'smtp', diagnostic: { replyCode: 421 }, expected: 'soft' },
  { label: 'reply 450 beats ses:Permanent', rules: ['4**'], source: 'ses', diagnostic: { replyCode: 450, providerType: 'Permanent' }, expected: 'soft' },
  { label: 'reply 550', rules: ['550'], source: 'smtp', diagnostic: { replyCode: 550 }, expected: 'hard' },
  { label: 'reply 551', rules: ['551'], source: 'smtp', diagnostic: { replyCode: 551 }, expected: 'hard' },
  { label: 'reply 553', rules: ['553'], source: 'smtp', diagnostic: { replyCode: 553 }, expected: 'hard' },
  { label: 'reply 521 (RFC 7504)', rules: ['521'], source: 'smtp', diagnostic: { replyCode: 521 }, expected: 'hard' },
  { label: 'reply 556 (RFC 7504)', rules: ['556'], source: 'smtp', diagnostic: { replyCode: 556 }, expected: 'hard' },
  { label: 'reply 552', rules: ['552'], source: 'smtp', diagnostic: { replyCode: 552 }, expected: 'soft' },
  {
    label: 'reply beats provider type: 552 with ses:Permanent is soft',
    rules: ['552'],
    source: 'ses',
    diagnostic: { replyCode: 552, providerType: 'Permanent' },
    expected: 'soft',
  },
  { label: 'reply 554', rules: ['554'], source: 'smtp', diagnostic: { replyCode: 554 }, expected: 'block' },
  { label: 'reply 500', rules: ['5**'], source: 'smtp', diagnostic: { replyCode: 500 }, expected: 'soft' },
  { label: 'reply 5** beats sendgrid:bounce', rules: ['5**'], source: 'sendgrid', diagnostic: { replyCode: 571, providerType: 'bounce' }, expected: 'soft' },

  // Provider types, read only when there is no status and no reply code.
  { label: 'ses:Permanent', rules: ['ses:Permanent'], source: 'ses', diagnostic: { providerType: 'Permanent' }, expected: 'hard' },
  {
    label: 'ses:Permanent/General falls back to ses:Permanent',
    rules: ['ses:Permanent'],
    source: 'ses',
    diagnostic: { providerType: 'Permanent/General' },
    expected: 'hard',
  },
  {
    label: 'ses:Permanent/UnsupportedAttachment',
    rules: ['ses:Permanent/UnsupportedAttachment'],
    source: 'ses',
    diagnostic: { providerType: 'Permanent/UnsupportedAttachment' },
    expected: 'block',
  },
  {
    label: 'ses:Permanent/ContentRejected',
    rules: ['ses:Permanent/ContentRejected'],
    source: 'ses',
    diagnostic: { providerType: 'Permanent/ContentRejected' },
    expected: 'block',
  },
  {
    label: 'ses:Permanent/AttachmentRejected',
    rules: ['ses:Permanent/AttachmentRejected'],
    source: 'ses',
    diagnostic: { providerType: 'Permanent/AttachmentRejected' },
    expected: 'block',
  },
  { label: 'ses:Transient', rules: ['ses:Transient'], source: 'ses', diagnostic: { providerType: 'Transient' }, expected: 'soft' },
  {
    label: 'ses:Transient/MailboxFull falls back to ses:Transient',
    rules: ['ses:Transient'],
    source: 'ses',
    diagnostic: { providerType: 'Transient/MailboxFull' },
    expected: 'soft',
  },
  {
    label: 'ses:Transient/ContentRejected',
    rules: ['ses:Transient/ContentRejected'],
    source: 'ses',
    diagnostic: { providerType: 'Transient/ContentRejected' },
    expected: 'block',
  },
  {
    label: 'ses:Transient/AttachmentRejected',
    rules: ['ses:Transient/AttachmentRejected'],
    source: 'ses',
    diagnostic: { providerType: 'Transient/AttachmentRejected' },
    expected: 'block',
  },
  { label: 'ses:Undetermined', rules: ['ses:Undetermined'], source: 'ses', diagnostic: { providerType: 'Undetermined' }, expected: 'soft' },
  { label: 'mailgun:permanent', rules: ['mailgun:permanent'], source: 'mailgun', diagnostic: { providerType: 'permanent' }, expected: 'hard' },
  {
    label: 'mailgun:permanent/espblock',
    rules: ['mailgun:permanent/espblock'],
    source: 'mailgun',
    diagnostic: { providerType: 'permanent/espblock' },
    expected: 'block',
  },
  { label: 'mailgun:temporary', rules: ['mailgun:temporary'], source: 'mailgun', diagnostic: { providerType: 'temporary' }, expected: 'soft' },
  { label: 'postmark:HardBounce', rules: ['postmark:HardBounce'], source: 'postmark', diagnostic: { providerType: 'HardBounce' }, expected: 'hard' },
  {
    label: 'postmark:BadEmailAddress',
    rules: ['postmark:BadEmailAddress'],
    source: 'postmark',
    diagnostic: { providerType: 'BadEmailAddress' },
    expected: 'hard',
  },
  {
    label: 'postmark:ManuallyDeactivated',
    rules: ['postmark:ManuallyDeactivated'],
    source: 'postmark',
    diagnostic: { providerType: 'ManuallyDeactivated' },
    expected: 'hard',
  },
  { label: 'postmark:SoftBounce', rules: ['postmark:SoftBounce'], source: 'postmark', diagnostic: { providerType: 'SoftBounce' }, expected: 'soft' },
  { label: 'postmark:Transient', rules: ['postmark:Transient'], source: 'postmark', diagnostic: { providerType: 'Transient' }, expected: 'soft' },
  { label: 'postmark:DnsError', rules: ['postmark:DnsError'], source: 'postmark', diagnostic: { providerType: 'DnsError' }, expected: 'soft' },
  {
    label: 'provider type only without status or reply: postmark:Blocked',
    rules: ['postmark:Blocked'],
    source: 'postmark',
    diagnostic: { providerType: 'Blocked' },
    expected: 'block',
  },
  {
    label: 'postmark:SpamNotification',
    rules: ['postmark:SpamNotification'],
    source: 'postmark',
    diagnostic: { providerType: 'SpamNotification' },
    expected: 'block',
  },
  {
    label: 'postmark:ContentRelated',
    rules: ['postmark:ContentRelated'],
    source: 'postmark',
    diagnostic: { providerType: 'ContentRelated' },
    expected: 'block',
  },
  { label: 'postmark:DMARCPolicy', rules: ['postmark:DMARCPolicy'], source: 'postmark', diagnostic: { providerType: 'DMARCPolicy' }, expected: 'block' },
  {
    label: 'postmark:VirusNotification',
    rules: ['postmark:VirusNotification'],
    source: 'postmark',
    diagnostic: { providerType: 'VirusNotification' },
    expected: 'block',
  },
  { label: 'sendgrid:bounce', rules: ['sendgrid:bounce'], source: 'sendgrid', diagnostic: { providerType: 'bounce' }, expected: 'hard' },
  { label: 'sendgrid:blocked', rules: ['sendgrid:blocked'], source: 'sendgrid', diagnostic: { providerType: 'blocked' }, expected: 'block' },
  { label: 'sendgrid:deferred', rules: ['sendgrid:deferred'], source: 'sendgrid', diagnostic: { providerType: 'deferred' }, expected: 'soft' },
  { label: 'webhook:hard', rules: ['webhook:hard'], source: 'webhook', diagnostic: { providerType: 'hard' }, expected: 'hard' },
  { label: 'webhook:soft', rules: ['webhook:soft'], source: 'webhook', diagnostic: { providerType: 'soft' }, expected: 'soft' },
  { label: 'webhook:block', rules: ['webhook:block'], source: 'webhook', diagnostic: { providerType: 'block' }, expected: 'block' },

  // Nothing decides.
  { label: 'unknown provider type is undefined', rules: [], source: 'ses', diagnostic: { providerType: 'Mystery' }, expected: undefined },
  { label: "another source's type is unknown here", rules: [], source: 'mailgun', diagnostic: { providerType: 'HardBounce' }, expected: undefined },
  { label: 'provider types are case-sensitive', rules: [], source: 'postmark', diagnostic: { providerType: 'hardbounce' }, expected: undefined },
  { label: 'free text alone never classifies', rules: [], source: 'dsn', diagnostic: { text: '550 5.1.1 user unknown' }, expected: undefined },
  { label: 'an empty diagnostic', rules: [], source: 'smtp', diagnostic: {}, expected: undefined },
  { label: 'malformed status 9.9.9 is ignored', rules: [], source: 'dsn', diagnostic: { status: '9.9.9' }, expected: undefined },
  {
    label: 'malformed status 5.1 is ignored, reply 550 decides',
    rules: ['550'],
    source: 'dsn',
    diagnostic: { status: '5.1', replyCode: 550 },
    expected: 'hard',
  },
  {
    label: 'malformed status 9.9.9 is ignored, reply 554 decides',
    rules: ['554'],
    source: 'dsn',
    diagnostic: { status: '9.9.9', replyCode: 554 },
    expected: 'block',
  },
  {
    label: 'malformed status 5.1.1.1 is ignored, provider decides',
    rules: ['sendgrid:blocked'],
    source: 'sendgrid',
    diagnostic: { status: '5.1.1.1', providerType: 'blocked' },
    expected: 'block',
  },
  { label: 'reply code out of range (250) is ignored', rules: [], source: 'smtp', diagnostic: { replyCode: 250 }, expected: undefined },
  {
    label: 'reply code out of range (600) is ignored',
    rules: ['webhook:hard'],
    source: 'webhook',
    diagnostic: { replyCode: 600, providerType: 'hard' },
    expected: 'hard',
  },
];

type Verdict = BounceKind | 'next';

/** Pattern matching as the rule tables document it: `*` is any one number (or digit, for reply codes). */
function patternMatches(pattern: string, value: string): boolean {
  const separator = pattern.includes('.') ? '.' : '';
  const patternParts = pattern.split(separator);
  const valueParts = value.split(separator);
  return patternParts.length === valueParts.length && patternParts.every((part, index) => part === '*' || part === valueParts[index]);
}

function firstRow(rules: readonly (readonly [string, Verdict])[], value: string): readonly [string, Verdict] | undefined {
  return rules.find(([pattern]) => patternMatches(pattern, value));
}

/** The rows a diagnostic runs through, independently of classifyBounce: the oracle for the case labels. */
function rowsConsulted(source: DeliveryEventSource, diagnostic: Diagnostic): string[] {
  const rows: string[] = [];
  const status = diagnostic.status?.trim();
  if (status && /^[245]\.\d{1,3}\.\d{1,3}$/.test(status)) {
    const row = firstRow(ENHANCED_STATUS_RULES, status);
    if (row) {
      rows.push(row[0]);
      if (row[1] !== 'next') return rows;
    }
  }
  const replyCode = diagnostic.replyCode;
  if (replyCode !== undefined && replyCode >= 400 && replyCode < 600) {
    const row = firstRow(REPLY_CODE_RULES, String(replyCode));
    if (row) {
      rows.push(row[0]);
      if (row[1] !== 'next') return rows;
    }
  }
  if (diagnostic.providerType) {
    const full = `${source}:${diagnostic.providerType}`;
    const short = `${source}:${diagnostic.providerType.split('/')[0]}`;
    if (Object.hasOwn(PROVIDER_TYPE_RULES, full)) rows.push(full);
    else if (Object.hasOwn(PROVIDER_TYPE_RULES, short)) rows.push(short);
  }
  return rows;
}

function verdictOf(rule: string): Verdict | undefined {
  return (
    ENHANCED_STATUS_RULES.find(([pattern]) => pattern === rule)?.[1] ??
    REPLY_CODE_RULES.find(([pattern]) => pattern === rule)?.[1] ??
    (Object.hasOwn(PROVIDER_TYPE_RULES, rule) ? PROVIDER_TYPE_RULES[rule] : undefined)
  );
}

const ALL_RULES: readonly string[] = [
  ...ENHANCED_STATUS_RULES.map(([pattern]) => pattern),
  ...REPLY_CODE_RULES.map(([pattern]) => pattern),
  ...Object.keys(PROVIDER_TYPE_RULES),
];

describe('classifyBounce', () => {
  for (const testCase of CLASSIFY_CASES) {
    it(`${testCase.label} → ${String(testCase.expected)}`, () => {
      expect(classifyBounce(testCase.source, testCase.diagnostic)).toBe(testCase.expected);
    });
  }

  it('names every case by the rows it actually runs through', () => {
    const mislabelled = CLASSIFY_CASES.filter((testCase) => rowsConsulted(testCase.source, testCase.diagnostic).join(' > ') !== testCase.rules.join(' > ')).map(
      (testCase) => `${testCase.label}: labelled [${testCase.rules.join(', ')}], runs [${rowsConsulted(testCase.source, testCase.diagnostic).join(', ')}]`,
    );
    expect(mislabelled).toEqual([]);
  });

  it('gives the verdict of the row that decides each case', () => {
    for (const testCase of CLASSIFY_CASES) {
      const last = testCase.rules.at(-1);
      if (last === undefined) continue;
      const verdict = verdictOf(last);
      expect(verdict, testCase.label).toBeDefined();
      if (verdict !== 'next') expect(testCase.expected, testCase.label).toBe(verdict);
    }
  });

  it('rule patterns are unique across the three tables, so a name identifies one row', () => {
    expect(new Set(ALL_RULES).size).toBe(ALL_RULES.length);
  });

  it('covers every row of ENHANCED_STATUS_RULES, REPLY_CODE_RULES and PROVIDER_TYPE_RULES', () => {
    const named = new Set(CLASSIFY_CASES.flatMap((testCase) => testCase.rules));
    expect([...named].toSorted()).toEqual([...ALL_RULES].toSorted());
  });

  it('has every decisive row decide at least one case, and every `next` row defer in at least one', () => {
    const decidedBy = new Set(CLASSIFY_CASES.map((testCase) => testCase.rules.at(-1)).filter((rule) => rule !== undefined));
    const deferredBy = new Set(CLASSIFY_CASES.flatMap((testCase) => testCase.rules.slice(0, -1)));
    const missing = ALL_RULES.filter((rule) => (verdictOf(rule) === 'next' ? !deferredBy.has(rule) : !decidedBy.has(rule)));
    expect(missing).toEqual([]);
  });

  it('ignores a malformed status like 5.1 entirely (no vague-permanent fallback)', () => {
    expect(classifyBounce('dsn', { status: '5.1' })).toBeUndefined();
  });

  it('falls back to soft for a vague permanent status when the provider type is unknown, as without one', () => {
    expect(classifyBounce('dsn', { status: '5.0.0' })).toBe('soft');
    expect(classifyBounce('ses', { status: '5.0.0', providerType: 'Mystery' })).toBe('soft');
  });
});

describe('parseSmtpReply', () => {
  it('reads reply code and status after an smtp; prefix', () => {
    expect(parseSmtpReply('smtp; 550 5.1.1 User unknown')).toEqual({ replyCode: 550, status: '5.1.1' });
  });

  it('reads a multi-line reply with no space after smtp;', () => {
    expect(parseSmtpReply('smtp;550-5.1.1 The email account that you tried to reach does not exist.')).toEqual({ replyCode: 550, status: '5.1.1' });
  });

  it('reads a bare reply code without status', () => {
    expect(parseSmtpReply('550 No such user')).toEqual({ replyCode: 550 });
  });

  it('reads a temporary reply', () => {
    expect(parseSmtpReply('451 4.7.1 Greylisted, try again later')).toEqual({ replyCode: 451, status: '4.7.1' });
  });

  it('returns {} for a non-smtp diagnostic type', () => {
    expect(parseSmtpReply('X-Postfix; host said: 550 5.1.1 User unknown')).toEqual({});
  });

  it('returns {} for undefined and empty text', () => {
    expect(parseSmtpReply(undefined)).toEqual({});
    expect(parseSmtpReply('')).toEqual({});
  });

  it('does not read a status later in the text', () => {
    const parsed = parseSmtpReply('550 Requested action not taken: 5.1.1 mentioned later');
    expect(parsed).toEqual({ replyCode: 550 });
    expect(parsed).not.toHaveProperty('status');
  });

  it('does not read a four-digit number as a reply code', () => {
    expect(parseSmtpReply('5500 something')).toEqual({});
  });
});

describe('verp', () => {
  const secret = 'test-secret-0123456789';
  const ids = { sendId: 'vol-138.weekly.1', subscriberId: '42' };
  const bounceAddress = 'bounces@bounce.example.org';

  it('round-trips a token', () => {
    const token = verpToken(secret, ids);
    expect(token).toMatch(/^vol-138\.weekly\.1-42-[0-9a-f]{12}$/);
    expect(readVerpToken(secret, token)).toEqual(ids);
  });

  it('round-trips an address', () => {
    const address = verpAddress(bounceAddress, secret, ids);
    expect(address).toBe(`bounces+${verpToken(secret, ids)}@bounce.example.org`);
    expect(readVerpAddress(secret, address as string)).toEqual(ids);
    expect(readVerpAddress(secret, `<${address as string}>`)).toEqual(ids);
  });

  it('reads an upper-cased address (MTAs that fold case)', () => {
    const address = verpAddress(bounceAddress, secret, ids) as string;
    expect(readVerpAddress(secret, address.toUpperCase())).toEqual(ids);
  });

  it('rejects an altered MAC', () => {
    const token = verpToken(secret, ids);
    const last = token.at(-1);
    const altered = `${token.slice(0, -1)}${last === '0' ? '1' : '0'}`;
    expect(altered).not.toBe(token);
    expect(readVerpToken(secret, altered)).toBeUndefined();
    expect(readVerpAddress(secret, `bounces+${altered}@bounce.example.org`)).toBeUndefined();
  });

  it('rejects an altered subscriber id', () => {
    const altered = verpToken(secret, ids).replace('-42-', '-43-');
    expect(altered).toContain('-43-');
    expect(readVerpToken(secret, altered)).toBeUndefined();
  });

  it('rejects a token signed with another secret', () => {
    expect(readVerpToken('another-secret', verpToken(secret, ids))).toBeUndefined();
    expect(readVerpAddress('another-secret', verpAddress(bounceAddress, secret, ids) as string)).toBeUndefined();
  });

  it("rejects an address without '+'", () => {
    expect(readVerpAddress(secret, `bounces-${verpToken(secret, ids)}@bounce.example.org`)).toBeUndefined();
    expect(readVerpAddress(secret, bounceAddress)).toBeUndefined();
  });

  it('keeps the local part within 64 octets and gives up past it', () => {
    const address = verpAddress(bounceAddress, secret, ids) as string;
    expect(address.slice(0, address.lastIndexOf('@')).length).toBeLessThanOrEqual(64);

    // Local part: "bounces" + "+" + sendId + "-" + "42" + "-" + 12 hex = 24 + sendId.length.
    const fits = { sendId: `vol-${'a'.repeat(36)}`, subscriberId: '42' };
    const fitting = verpAddress(bounceAddress, secret, fits);
    expect(fitting).toBeDefined();
    expect((fitting as string).slice(0, (fitting as string).lastIndexOf('@'))).toHaveLength(64);
    expect(readVerpAddress(secret, fitting as string)).toEqual(fits);

    expect(verpAddress(bounceAddress, secret, { sendId: `vol-${'a'.repeat(37)}`, subscriberId: '42' })).toBeUndefined();
    expect(verpAddress(bounceAddress, secret, { sendId: 'a-very-long-list-name-for-a-newsletter.weekly.1', subscriberId: '42' })).toBeUndefined();
  });

  it('keeps the envelope id within 100 characters and gives up past it', () => {
    expect(envelopeId(secret, ids)).toBe(verpToken(secret, ids));
    // Token: sendId + "-" + "42" + "-" + 12 hex = sendId.length + 16.
    const fits = { sendId: 'a'.repeat(84), subscriberId: '42' };
    expect(envelopeId(secret, fits)).toHaveLength(100);
    expect(readVerpToken(secret, envelopeId(secret, fits) as string)).toEqual(fits);
    expect(envelopeId(secret, { sendId: 'a'.repeat(85), subscriberId: '42' })).toBeUndefined();
  });

  it('builds the Message-ID local part', () => {
    expect(messageIdLocalPart(ids)).toBe('vol-138.weekly.1.42');
  });

  it('reads our Message-ID with and without angle brackets', () => {
    expect(readMessageId('<vol-138.weekly.1.42@example.org>')).toEqual(ids);
    expect(readMessageId('vol-138.weekly.1.42@example.org')).toEqual(ids);
    expect(readMessageId(` <${messageIdLocalPart({ sendId: 'news.daily.7', subscriberId: '9001' })}@mail.example.org> `)).toEqual({
      sendId: 'news.daily.7',
      subscriberId: '9001',
    });
  });

  it('returns undefined for foreign Message-IDs', () => {
    expect(readMessageId('<CAFE123@mail.gmail.com>')).toBeUndefined();
    expect(readMessageId('<0100018f.abc@email.amazonses.com>')).toBeUndefined();
    expect(readMessageId('vol-138.weekly.1.42')).toBeUndefined();
  });
});

describe('bouncePolicy', () => {
  const policy = bouncePolicy({ softBounceLimit: 3, softBounceWindowDays: 7 });

  it('hard bounces suppress as bounced at once', () => {
    expect(policy.hard).toEqual({ suppress: 'bounced', suppressAfter: undefined, leaveLists: false, sendCounter: 'bounced', reportRank: 3 });
  });

  it('blocks never suppress but count as blocked', () => {
    expect(policy.block).toEqual({ suppress: undefined, suppressAfter: undefined, leaveLists: false, sendCounter: 'blocked', reportRank: 2 });
  });

  it('soft bounces suppress after limit within the window from settings', () => {
    expect(policy.soft).toEqual({
      suppress: undefined,
      suppressAfter: { limit: 3, windowMs: 7 * 86_400_000, as: 'bounced' },
      leaveLists: false,
      sendCounter: 'softBounced',
      reportRank: 1,
    });
    expect(policy.soft.suppressAfter?.windowMs).toBe(604_800_000);
    const other = bouncePolicy({ softBounceLimit: 5, softBounceWindowDays: 30 });
    expect(other.soft.suppressAfter).toEqual({ limit: 5, windowMs: 2_592_000_000, as: 'bounced' });
  });

  it('complaints suppress as complained and leave every list', () => {
    expect(policy.complaint).toEqual({ suppress: 'complained', suppressAfter: undefined, leaveLists: true, sendCounter: 'complained', reportRank: 4 });
  });

  it('unsubscribes suppress as unsubscribed', () => {
    expect(policy.unsubscribe).toEqual({ suppress: 'unsubscribed', suppressAfter: undefined, leaveLists: false, sendCounter: 'unsubscribed', reportRank: 0 });
  });

  it('ranks the failures a recipient is listed under by strength: complaint, hard, block, soft; unsubscribes are not failures', () => {
    const ranked = (['complaint', 'hard', 'block', 'soft', 'unsubscribe', 'accepted'] as const).map((kind) => policy[kind].reportRank);
    expect(ranked).toEqual([4, 3, 2, 1, 0, 0]);
  });

  it('accepted does nothing', () => {
    expect(policy.accepted).toEqual({ suppress: undefined, suppressAfter: undefined, leaveLists: false, sendCounter: undefined, reportRank: 0 });
  });
});

describe('weakerThan', () => {
  it('orders suppressions weakest first', () => {
    expect(SUPPRESSION_STRENGTH).toEqual(['active', 'unsubscribed', 'bounced', 'complained']);
  });

  it('bounced replaces active and unsubscribed', () => {
    expect(weakerThan('bounced')).toEqual(['active', 'unsubscribed']);
  });

  it('complained replaces bounced too', () => {
    expect(weakerThan('complained')).toEqual(['active', 'unsubscribed', 'bounced']);
    expect(weakerThan('complained')).toContain('bounced');
  });

  it('unsubscribed replaces only active', () => {
    expect(weakerThan('unsubscribed')).toEqual(['active']);
  });
});
