import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { sendStatusReport } from '../../src/app/send-report.ts';
import { UNSUBSCRIBE_PURPOSE, verifyToken } from '../../src/core/tokens.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';

const firstAddress = (field: AddressObject | AddressObject[] | undefined) => (Array.isArray(field) ? field[0] : field)?.value[0];

describe('sending vol-138 to 200 subscribers', () => {
  it('delivers exactly one well-formed, personalised message to each subscriber', async () => {
    const harness = await createHarness('send200');
    const { services, config } = harness;
    await seedSubscribers(services, 200);
    await harness.startWorker();

    const { sendId } = await harness.send('vol-138');
    const record = await harness.waitForSend(sendId);

    expect(record).toMatchObject({ state: 'sent', total: 200, accepted: 200, failed: 0, pending: 0 });
    expect(harness.received).toHaveLength(200);

    const parsed: ParsedMail[] = await Promise.all(harness.received.map((message) => simpleParser(message.raw)));
    const byAddress = new Map<string, ParsedMail>();
    for (const [index, mail] of parsed.entries()) {
      const to = firstAddress(mail.to);
      expect(to?.address).toBeDefined();
      expect(harness.received[index]?.recipients).toEqual([to?.address]);
      expect(byAddress.has(to!.address!)).toBe(false);
      byAddress.set(to!.address!, mail);
    }
    expect(byAddress.size).toBe(200);

    const messageIds = new Set(parsed.map((mail) => mail.messageId));
    expect(messageIds.size).toBe(200);

    for (let n = 1; n <= 200; n += 1) {
      const mail = byAddress.get(`reader${n}@example.org`);
      expect(mail, `reader${n} got no message`).toBeDefined();
      expect(firstAddress(mail!.to)?.name).toBe(`Reader ${n}`);
      expect(mail!.headers.get('content-type')).toMatchObject({ value: 'multipart/alternative' });
      expect(mail!.text).toContain(`Hi Reader ${n},`);
      expect(mail!.html).toContain(`Hi Reader ${n},`);
      expect(mail!.subject).toBe(
        'IR Research Weekly Vol.138: Training-Free Text Embeddings from Frozen LLMs, Scalable Relevance Labeling for Enterprise Search, and More!',
      );
      expect(firstAddress(mail!.from)).toMatchObject({ address: 'weekly@example.org', name: 'IR Research Weekly' });
      const headerLine = (key: string) => mail!.headerLines.filter((line) => line.key === key).map((line) => line.line);
      expect(headerLine('list-unsubscribe-post')).toEqual(['List-Unsubscribe-Post: List-Unsubscribe=One-Click']);
      expect(headerLine('list-id')).toEqual(['List-ID: "IR Research Weekly" <weekly.newsletter.example.org>']);
      expect(mail!.headers.get('x-newsletter-send')).toBe(sendId);
      expect(mail!.messageId).toMatch(new RegExp(`^<${sendId.replaceAll('.', '\\.')}\\.\\d+@example\\.org>$`));

      const listUnsubscribe = (mail!.headers.get('list') as { unsubscribe: { url: string } }).unsubscribe;
      expect(listUnsubscribe.url).toMatch(/^https:\/\/newsletter\.example\.org\/unsubscribe\?token=/);
      const token = new URL(listUnsubscribe.url).searchParams.get('token') ?? '';
      const payload = verifyToken(config.appSecret, UNSUBSCRIBE_PURPOSE, token);
      expect(payload).toMatchObject({ s: mail!.headers.get('x-newsletter-subscriber'), l: 'weekly', m: sendId });
      expect(mail!.html).toContain(`href="${listUnsubscribe.url.replaceAll('=', '&#x3D;')}"`);
      expect(mail!.text).toContain(`Unsubscribe: ${listUnsubscribe.url}`);
    }

    const report = await sendStatusReport(services, 'vol-138', 'weekly');
    expect(report).toMatchObject({ sendId, state: 'sent', total: 200, accepted: 200, failed: 0, pending: 0, failures: [] });
  });
});
