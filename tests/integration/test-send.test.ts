import { simpleParser, type ParsedMail } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { subscriberForToken, InvalidTokenError } from '../../src/app/subscribers.ts';
import { MAX_TEST_SEND_ADDRESSES, TEST_RECIPIENT_ID, TEST_SUBJECT_PREFIX, testSend } from '../../src/app/test-send.ts';
import { loadIssue } from '../../src/content/load-issue.ts';
import { UnknownIssueError, UserFacingError } from '../../src/core/errors.ts';
import { UNSUBSCRIBE_PURPOSE, verifyToken } from '../../src/core/tokens.ts';
import { issueSubject } from '../../src/render/compile-issue.ts';
import { runCliInProcess } from '../support/cli.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';

/** What the queue holds, by state: a test send must leave it as it was. */
async function queueCounts(harness: Harness) {
  return harness.services.queue.getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed', 'prioritized');
}

/** One header of a parsed message, as its raw lines. */
function headerLines(parsed: ParsedMail, key: string): string[] {
  return parsed.headerLines.filter((line) => line.key === key).map((line) => line.line);
}

/** The token of a message's List-Unsubscribe link. */
function unsubscribeToken(parsed: ParsedMail): string {
  const header = headerLines(parsed, 'list-unsubscribe').join(' ');
  const url = /<([^>]+)>/.exec(header)?.[1];
  const token = url ? new URL(url).searchParams.get('token') : null;
  if (!token) throw new Error(`no unsubscribe token in ${header}`);
  return token;
}

describe('test send', () => {
  it('sends the issue to each address outside the send queue, marked [TEST], unsubscribing nobody', async () => {
    const harness = await createHarness('test-send');
    await seedSubscribers(harness.services, 3);
    const queueBefore = await queueCounts(harness);

    const result = await testSend(harness.services, { issueId: 'vol-138', to: ['editor@example.org', ' Colleague@Example.ORG '] });

    expect(result).toEqual({ accepted: ['editor@example.org', 'Colleague@example.org'], rejected: [] });
    expect(harness.received.map((message) => message.recipients)).toEqual([['editor@example.org'], ['Colleague@example.org']]);
    // Outside the bulk queue: no job, no send, no issue marked as sent.
    expect(await queueCounts(harness)).toEqual(queueBefore);
    expect(await harness.services.sends.latestId('vol-138')).toBeUndefined();
    expect(await harness.services.sends.sentIssues()).toEqual([]);

    const issue = await loadIssue(harness.config.issuesDir, 'vol-138');
    const subject = issueSubject(issue, harness.config.mail.newsletterName);
    for (const [index, message] of harness.received.entries()) {
      const parsed = await simpleParser(message.raw);
      expect(parsed.subject).toBe(`${TEST_SUBJECT_PREFIX}${subject}`);
      expect(parsed.subject?.startsWith('[TEST] ')).toBe(true);
      expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value[0]?.address : undefined).toBe(result.accepted[index]);
      expect(parsed.html).toEqual(expect.stringContaining(issue.title.split(',')[0]!));
      expect(parsed.text).toEqual(expect.stringContaining(issue.title.split(',')[0]!));
      // Filled for the address alone: no sample name, no placeholder left.
      expect(parsed.text).toContain('Hi there,');
      expect(parsed.html).not.toContain('{{');
      // The link is signed like a real one, but names a subscriber id no subscriber has.
      const token = unsubscribeToken(parsed);
      expect(verifyToken(harness.config.appSecret, UNSUBSCRIBE_PURPOSE, token)).toMatchObject({ s: TEST_RECIPIENT_ID, l: 'weekly' });
      await expect(subscriberForToken(harness.services.subscribers, harness.config.appSecret, token)).rejects.toThrow(InvalidTokenError);
    }
  });

  it('sends a draft too, naming the list given in its footer', async () => {
    const harness = await createHarness('test-send-draft');
    const result = await testSend(harness.services, { issueId: 'draft-sample', to: ['editor@example.org'], list: 'monthly' });
    expect(result.accepted).toEqual(['editor@example.org']);
    const parsed = await simpleParser(harness.received[0]!.raw);
    expect(parsed.subject).toMatch(/^\[TEST\] .*Sparse Retrieval Tricks/);
    expect(headerLines(parsed, 'list-id')).toEqual(['List-ID: "IR Research Weekly" <monthly.newsletter.example.org>']);
  });

  it('reports an address the SMTP server refuses as rejected, with its reply, and still sends to the others', async () => {
    const harness = await createHarness('test-send-reject', {
      rejectRecipient: (address) => (address === 'gone@example.org' ? { responseCode: 550, message: '5.1.1 gone@example.org: user unknown' } : undefined),
    });
    const result = await testSend(harness.services, { issueId: 'vol-138', to: ['gone@example.org', 'editor@example.org'] });
    expect(result.accepted).toEqual(['editor@example.org']);
    expect(result.rejected).toEqual([{ address: 'gone@example.org', reason: expect.stringMatching(/^550 5\.1\.1 gone@example\.org: user unknown/) }]);
    expect(harness.received.map((message) => message.recipients)).toEqual([['editor@example.org']]);
  });

  it('refuses no addresses, too many, a malformed one and an unknown issue, before sending anything', async () => {
    const harness = await createHarness('test-send-refusals');
    const attempt = (to: string[], issueId = 'vol-138') => testSend(harness.services, { issueId, to });

    await expect(attempt([])).rejects.toThrow(new UserFacingError('A test send needs at least one address to send to.'));
    const eleven = Array.from({ length: MAX_TEST_SEND_ADDRESSES + 1 }, (_, index) => `editor${index}@example.org`);
    await expect(attempt(eleven)).rejects.toThrow(/at most 10 addresses; 11 were given/);
    // The same address in another case counts once, so ten distinct addresses are allowed.
    const tenAndARepeat = [...eleven.slice(0, MAX_TEST_SEND_ADDRESSES), 'EDITOR0@example.org'];
    await expect(attempt(['not-an-address', 'editor@example.org'])).rejects.toThrow(new UserFacingError('"not-an-address" is not a valid email address.'));
    await expect(attempt(['a@b', 'x@example.org\r\nBcc: victim@example.org'])).rejects.toThrow(
      'These are not valid email addresses: "a@b", "x@example.org\\r\\nBcc: victim@example.org".',
    );
    await expect(attempt(['editor@example.org'], 'vol-999')).rejects.toThrow(UnknownIssueError);
    await expect(testSend(harness.services, { issueId: 'vol-138', to: ['editor@example.org'], list: 'Not A List' })).rejects.toThrow(/is not a list name/);
    expect(harness.received).toEqual([]);

    expect(await attempt(tenAndARepeat)).toMatchObject({ accepted: eleven.slice(0, MAX_TEST_SEND_ADDRESSES), rejected: [] });
    expect(harness.received).toHaveLength(MAX_TEST_SEND_ADDRESSES);
  });

  it('runs from the CLI: newsletter test-send <issue> --to a,b [--list]', async () => {
    const harness = await createHarness('test-send-cli', {
      rejectRecipient: (address) => (address === 'gone@example.org' ? { responseCode: 550, message: '5.1.1 user unknown' } : undefined),
    });
    const run = (...argv: string[]) => runCliInProcess(argv, harness.config);

    const sent = await run('test-send', 'vol-138', '--to', 'editor@example.org, colleague@example.org', '--list', 'weekly');
    expect(sent).toMatchObject({ code: 0, err: '' });
    expect(sent.out.split('\n')).toEqual([
      'test send of vol-138 (subject marked [TEST], outside the send queue): 2 accepted, 0 rejected',
      '  accepted  editor@example.org',
      '  accepted  colleague@example.org',
    ]);
    expect(harness.received).toHaveLength(2);

    const partly = await run('test-send', 'vol-138', '--to', 'gone@example.org', '--to', 'editor@example.org');
    expect(partly.code).toBe(1);
    expect(partly.out).toContain('  rejected  gone@example.org: 550 5.1.1 user unknown');
    expect(partly.err).toBe('error: 1 of 2 test messages was not accepted by the SMTP server.');

    const malformed = await run('test-send', 'vol-138', '--to', 'nobody');
    expect(malformed).toMatchObject({ code: 1, err: 'error: "nobody" is not a valid email address.' });
    const missing = await run('test-send', 'vol-138');
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("required option '--to <addresses>' not specified");
    const unknown = await run('test-send', 'vol-999', '--to', 'editor@example.org');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/^error: Unknown issue "vol-999"/);
    expect(harness.received).toHaveLength(3);
  });
});
