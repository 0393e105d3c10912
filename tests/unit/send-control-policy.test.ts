import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../config/index.ts';
import { breakerMinutes, describeTrip, judgeBreakers, type BreakerSettings } from '../../src/core/breaker-policy.ts';
import { domainOf, intervalMs, isSlowDown } from '../../src/core/pacing-policy.ts';
import { formatClaim, parseClaim } from '../../src/store/send-control.ts';

const settings: BreakerSettings = { bounceRate: 0.05, complaintRate: 0.003, blockRate: 0.05, minSample: 200, windowMinutes: 15 };

describe('judgeBreakers', () => {
  it.each([
    // Below the minimum sample nothing is judged, however bad it looks.
    [{ sample: 199, hard: 199, complaint: 0, block: 0 }, undefined],
    [{ sample: 200, hard: 10, complaint: 0, block: 0 }, undefined],
    [{ sample: 200, hard: 11, complaint: 0, block: 0 }, 'hard'],
    [{ sample: 1000, hard: 0, complaint: 3, block: 0 }, undefined],
    [{ sample: 1000, hard: 0, complaint: 4, block: 0 }, 'complaint'],
    [{ sample: 400, hard: 0, complaint: 0, block: 21 }, 'block'],
    // Complaints are judged first: they cost the most reputation.
    [{ sample: 400, hard: 100, complaint: 2, block: 100 }, 'complaint'],
  ] as const)('%j trips %s', (counts, kind) => {
    expect(judgeBreakers(counts, settings)?.kind).toBe(kind);
  });

  it('says the rate, the counts, the window and the setting to change', () => {
    const trip = judgeBreakers({ sample: 250, hard: 15, complaint: 0, block: 0 }, settings);
    expect(trip && describeTrip(trip)).toBe('hard-bounce rate 6.0% (15 of 250 messages answered in the last 15 min) is over BREAKER_BOUNCE_RATE 5.0%');
    const domain = judgeBreakers({ sample: 300, hard: 0, complaint: 0, block: 300 }, settings, 'gmail.com');
    expect(domain && describeTrip(domain)).toBe(
      'block rate for gmail.com 100.0% (300 of 300 messages answered in the last 15 min) is over BREAKER_BLOCK_RATE 5.0%',
    );
    const complaint = judgeBreakers({ sample: 1000, hard: 0, complaint: 4, block: 0 }, settings);
    expect(complaint && describeTrip(complaint)).toMatch(/^complaint rate 0\.40% .* is over BREAKER_COMPLAINT_RATE 0\.30%$/);
  });

  it('looks at the minute buckets of its window, the current one first', () => {
    expect(breakerMinutes(10 * 60_000 + 59_999, 3)).toEqual([10, 9, 8]);
  });
});

describe('pacing policy', () => {
  it.each([
    // nodemailer reports a 421 after the greeting as ECONNECTION ("Server closed the connection").
    [{ code: 'ECONNECTION', responseCode: 421, response: '421 4.7.0 Try again later, closing connection', command: 'CONN' }, true],
    [{ code: 'ECONNECTION', responseCode: 421, response: '421 Too many messages', command: 'CONN' }, true],
    [{ responseCode: 450, response: '450 4.7.28 Rate limited: too many messages from your IP', command: 'RCPT TO' }, true],
    [{ responseCode: 451, response: '451 4.7.1 Please try again later', command: 'DATA' }, true],
    // A mailbox that is busy or full is that recipient's, not a "slow down" for the domain.
    [{ responseCode: 452, response: '452 4.2.2 Mailbox full', command: 'RCPT TO' }, false],
    [{ responseCode: 450, response: '450 4.2.1 Mailbox busy', command: 'RCPT TO' }, false],
    // 421 instead of the greeting (EPROTOCOL) is the SMTP service down: every worker holds, not one domain.
    [{ code: 'EPROTOCOL', responseCode: 421, response: '421 4.3.2 Service not available', command: 'CONN' }, false],
    // A 5.7.x is a refusal (a block), never a "slow down"; text alone never decides.
    [{ responseCode: 550, response: '550 5.7.1 rate limited', command: 'RCPT TO' }, false],
    [{ responseCode: 451, response: '451 temporary: please slow down (4.7.0)', command: 'DATA' }, false],
  ])('%j → %s', (fields, expected) => {
    expect(isSlowDown(fields)).toBe(expected);
  });

  it('paces by the lower-cased domain after the last @', () => {
    expect(domainOf('"odd@name"@GMail.COM')).toBe('gmail.com');
    expect(intervalMs(20)).toBe(50);
    expect(intervalMs(undefined)).toBe(0);
  });

  it('reads DOMAIN_RATE_LIMITS, and refuses a malformed one with a message naming the key', () => {
    const base = {
      REDIS_URL: 'redis://127.0.0.1:1',
      SMTP_URL: 'smtp://127.0.0.1:1',
      MAIL_FROM: 'a@example.org',
      PUBLIC_URL: 'https://x.example',
      APP_SECRET: 'x'.repeat(32),
    };
    expect(parseConfig({ ...base, DOMAIN_RATE_LIMITS: 'gmail.com=20, Outlook.com=10,slow.example=0.5' }).pacing.domainRates).toEqual({
      'gmail.com': 20,
      'outlook.com': 10,
      'slow.example': 0.5,
    });
    expect(() => parseConfig({ ...base, DOMAIN_RATE_LIMITS: 'gmail.com:20' })).toThrow(/DOMAIN_RATE_LIMITS: "gmail\.com:20" is not domain=messages-per-second/);
    expect(() => parseConfig({ ...base, DOMAIN_RATE_LIMITS: 'gmail.com=0' })).toThrow(/DOMAIN_RATE_LIMITS/);
    expect(() => parseConfig({ ...base, DOMAIN_RATE_LIMITS: 'gmail.com=5,GMAIL.com=6' })).toThrow(/DOMAIN_RATE_LIMITS names gmail\.com twice/);
    expect(() => parseConfig({ ...base, SEND_RATE_PER_SEC: 'fast' })).toThrow(/SEND_RATE_PER_SEC must be a number of messages per second/);
    expect(() => parseConfig({ ...base, BREAKER_BOUNCE_RATE: '5' })).toThrow(/BREAKER_BOUNCE_RATE must be a number between 0 and 1/);
    expect(parseConfig(base).breakers).toEqual({ bounceRate: 0.05, complaintRate: 0.003, blockRate: 0.05, minSample: 200, windowMinutes: 15 });
  });
});

describe('sending claims', () => {
  it('round-trip, and a value that is not a claim is refused', () => {
    const claim = { workerId: 'host-12-ab12cd34', at: 1_764_000_000_000, jobId: 'vol-138.weekly.1.42' };
    expect(parseClaim(formatClaim(claim))).toEqual(claim);
    expect(parseClaim('garbage')).toBeUndefined();
  });
});
