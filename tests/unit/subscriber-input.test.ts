import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { formatMailbox } from '../../src/delivery/compose-message.ts';
import { signToken, UNSUBSCRIBE_PURPOSE, verifyToken } from '../../src/core/tokens.ts';
import { cleanDisplayName, normaliseEmail } from '../../src/core/address.ts';

describe('normaliseEmail', () => {
  it.each([
    ['  Ada@Example.ORG ', 'Ada@example.org'],
    ['ada.lovelace+news@sub.example.co.uk', 'ada.lovelace+news@sub.example.co.uk'],
    ["o'connor_j-x.y@example.org", "o'connor_j-x.y@example.org"],
  ])('%s → %s', (input, expected) => {
    expect(normaliseEmail(input)).toBe(expected);
  });

  it.each([
    '',
    'ada',
    'ada@',
    '@example.org',
    'ada@example',
    'a b@example.org',
    'ada@exa mple.org',
    'ada@example.org\r\nBcc: x@y.z',
    '<ada@example.org>',
    `${'a'.repeat(250)}@example.org`,
    'zoë@example.org',
    'a,b@example.org',
  ])('rejects %j', (input) => {
    expect(normaliseEmail(input)).toBeUndefined();
  });
});

describe('display names in headers', () => {
  it('turns control characters into spaces so a name can never end a header line', () => {
    expect(cleanDisplayName('Eve\r\nBcc: x@y.z\t<script>')).toBe('Eve Bcc: x@y.z <script>');
    expect(cleanDisplayName(undefined)).toBe('');
  });

  it.each(['Ada Lovelace', 'Renée "the Professor" O\'Connor', 'Eve Bcc: x@y.z <script>', '李小龙', 'Dr. Strange, PhD', 'back\\slash'])(
    'round-trips %j through a To header',
    async (name) => {
      const mail = await simpleParser(`To: ${formatMailbox(name, 'reader@example.org')}\r\nSubject: x\r\n\r\nbody`);
      const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
      expect(to?.value).toEqual([{ address: 'reader@example.org', name }]);
    },
  );
});

describe('signed tokens', () => {
  const secret = 'token-test-secret-0123456789abcdef0123456789';

  it('verifies its own tokens and returns the payload', () => {
    const token = signToken(secret, UNSUBSCRIBE_PURPOSE, { s: '42', l: 'weekly' });
    expect(token).toMatch(/^[\w-]+\.[\w-]+$/);
    expect(verifyToken(secret, UNSUBSCRIBE_PURPOSE, token)).toEqual({ s: '42', l: 'weekly' });
  });

  it('rejects altered, foreign-purpose and wrong-secret tokens', () => {
    const token = signToken(secret, UNSUBSCRIBE_PURPOSE, { s: '42', l: 'weekly' });
    const [body, signature] = token.split('.') as [string, string];
    const forgedBody = Buffer.from(JSON.stringify({ s: '43', l: 'weekly' })).toString('base64url');
    expect(verifyToken(secret, UNSUBSCRIBE_PURPOSE, `${forgedBody}.${signature}`)).toBeUndefined();
    expect(verifyToken(secret, 'confirm', token)).toBeUndefined();
    expect(verifyToken(`${secret}x`, UNSUBSCRIBE_PURPOSE, token)).toBeUndefined();
    expect(verifyToken(secret, UNSUBSCRIBE_PURPOSE, body)).toBeUndefined();
    expect(verifyToken(secret, UNSUBSCRIBE_PURPOSE, `${token}.x`)).toBeUndefined();
  });
});
