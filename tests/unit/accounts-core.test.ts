import { describe, expect, it } from 'vitest';
import { UserFacingError } from '../../src/core/errors.ts';
import { checkPassword, formatPasswordHash, hashPassword, parsePasswordHash, SCRYPT_COST, verifyPassword } from '../../src/app/accounts.ts';

/** A cheap cost for tests that hash many times; the format and the check are the same at any cost. */
const CHEAP = { N: 2 ** 10, r: 8, p: 1 } as const;

describe('password hashes', () => {
  it('are stored as scrypt$N$r$p$salt$hash at the configured cost, with a fresh salt each time', async () => {
    const first = await hashPassword('correct horse battery staple');
    const second = await hashPassword('correct horse battery staple');
    expect(first).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(first).not.toBe(second);
    expect(parsePasswordHash(first)).toMatchObject({ ...SCRYPT_COST });
    expect(formatPasswordHash(parsePasswordHash(first)!)).toBe(first);
  });

  it('verify the password they were made from, and nothing else', async () => {
    const stored = await hashPassword('correct horse battery staple', CHEAP);
    expect(await verifyPassword('correct horse battery staple', stored)).toBe(true);
    expect(await verifyPassword('correct horse battery stapl', stored)).toBe(false);
    expect(await verifyPassword('Correct horse battery staple', stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
  });

  it('keep their cost, so a hash made at an older cost still verifies after the cost rises', async () => {
    const older = await hashPassword('an older password!', { N: 2 ** 11, r: 4, p: 1 });
    expect(parsePasswordHash(older)).toMatchObject({ N: 2048, r: 4, p: 1 });
    expect(await verifyPassword('an older password!', older)).toBe(true);
  });

  it('compare the same text in either Unicode normal form', async () => {
    const stored = await hashPassword('pâssword-with-accent', CHEAP);
    expect(await verifyPassword('pa\u0302ssword-with-accent', stored)).toBe(true);
  });

  it('parse when well formed (the malformed ones below differ from this in one part each)', () => {
    expect(parsePasswordHash('scrypt$1024$8$1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA')).toEqual({
      N: 1024,
      r: 8,
      p: 1,
      salt: Buffer.from('saltsaltsaltsalt'),
      hash: Buffer.from('hashhashhashhash'),
    });
  });

  it.each([
    ['another scheme', 'bcrypt$10$abc$def'],
    ['too few parts', 'scrypt$1024$8$1$c2FsdHNhbHRzYWx0c2FsdA'],
    ['too many parts', 'scrypt$1024$8$1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA$x'],
    ['N not a power of two', 'scrypt$1000$8$1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA'],
    ['N beyond the bound', `scrypt$${2 ** 21}$8$1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA`],
    ['r beyond the bound', 'scrypt$1024$64$1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA'],
    ['p zero', 'scrypt$1024$8$0$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA'],
    ['a short salt', 'scrypt$1024$8$1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA'],
    ['a salt that is not base64url', 'scrypt$1024$8$1$c2FsdHNhbHRz+WFsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA'],
    ['an empty text', ''],
  ])('that are malformed (%s) parse to nothing and verify nothing', async (_, stored) => {
    expect(parsePasswordHash(stored)).toBeUndefined();
    expect(await verifyPassword('anything at all', stored)).toBe(false);
  });
});

describe('password policy', () => {
  it('takes 12 characters or more, counted as characters rather than bytes', () => {
    expect(checkPassword('twelve chars')).toBe('twelve chars');
    expect(checkPassword('ünïcödé-pass')).toBe('ünïcödé-pass');
  });

  it.each([
    ['eleven char', 'a password needs at least 12 characters; this one has 11'],
    ['', 'a password needs at least 12 characters; this one has 0'],
    ['x'.repeat(1025), 'a password has at most 1024 characters; this one has 1025'],
    ['two\nlines of password', 'a password cannot contain control characters (tabs, line breaks)'],
  ])('refuses %j with a message that says why', (password, message) => {
    expect(() => checkPassword(password)).toThrow(new UserFacingError(message));
  });
});
