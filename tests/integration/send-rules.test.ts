import { simpleParser } from 'mailparser';
import { STATUS_CHANGES } from '../../src/core/subscriber.ts';
import { describe, expect, it } from 'vitest';
import { createHarness, seedSubscribers } from '../support/harness.ts';

describe('what send refuses', () => {
  it('refuses a draft issue and queues nothing', async () => {
    const harness = await createHarness('draft');
    const { services } = harness;
    await seedSubscribers(services, 3);
    await expect(harness.send('draft-sample')).rejects.toThrow(/draft-sample" is a draft/);
    expect(await services.queue.count()).toBe(0);
    expect(await services.sends.latestId('draft-sample')).toBeUndefined();
  });

  it('refuses an unknown issue, naming it', async () => {
    const harness = await createHarness('unknown');
    const { services } = harness;
    await seedSubscribers(services, 1);
    await expect(harness.send('vol-999')).rejects.toThrow(/Unknown issue "vol-999"/);
  });

  it('refuses a second send of the same issue to the same list unless --resend', async () => {
    const harness = await createHarness('twice');
    const { services } = harness;
    await seedSubscribers(services, 5);
    await harness.startWorker();
    const first = await harness.send('vol-138');
    await harness.waitForSend(first.sendId);

    await expect(harness.send('vol-138')).rejects.toThrow(/already sent to list "weekly".*--resend/);
    expect(harness.received).toHaveLength(5);

    const second = await harness.send('vol-138', { resend: true });
    expect(second.sendId).not.toBe(first.sendId);
    await harness.waitForSend(second.sendId);
    expect(harness.received).toHaveLength(10);
  });

  it('skips a subscriber who unsubscribed after the send was queued', async () => {
    const harness = await createHarness('skip');
    const { services } = harness;
    const [first] = await seedSubscribers(services, 3);
    const { sendId } = await harness.send('vol-138');
    await services.subscribers.changeStatus(first!.id, STATUS_CHANGES.unsubscribe);
    await harness.startWorker();
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent', total: 3, accepted: 2, skipped: 1 });
    expect(harness.received.map((message) => message.recipients[0] ?? '').sort()).toEqual(['reader2@example.org', 'reader3@example.org']);
  });
});

describe('every worker sends the identical version', () => {
  it("uses the sender and link base recorded with the send, not the worker's own settings", async () => {
    const harness = await createHarness('identity');
    const { services, config } = harness;
    await seedSubscribers(services, 2);
    const { sendId } = await harness.send('vol-138');
    const { startSendWorker } = await import('../../src/workers/send.ts');
    const misconfigured = await startSendWorker({
      ...config,
      publicUrl: 'https://elsewhere.example.net',
      mail: { newsletterName: 'Another Name', from: { name: 'Someone Else', address: 'else@example.net' } },
    });
    try {
      await harness.waitForSend(sendId);
    } finally {
      await misconfigured.close();
    }
    for (const message of harness.received) {
      const mail = await simpleParser(message.raw);
      const from = Array.isArray(mail.from) ? mail.from[0] : mail.from;
      expect(from?.value).toEqual([{ name: 'IR Research Weekly', address: 'weekly@example.org' }]);
      expect((mail.headers.get('list') as { unsubscribe: { url: string } }).unsubscribe.url).toMatch(/^https:\/\/newsletter\.example\.org\/unsubscribe\?/);
      expect(mail.messageId).toMatch(/@example\.org>$/);
    }
    expect(harness.received).toHaveLength(2);
  });
});

describe('subscriber-supplied text', () => {
  it('adds no header and never reaches the HTML unescaped', async () => {
    const harness = await createHarness('hostile');
    const { services } = harness;
    const hostileName = 'Eve\r\nBcc: x@y.z <script>';
    await services.subscribers.upsert({ email: 'eve@example.org', name: hostileName, list: 'weekly' });
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    await harness.waitForSend(sendId);

    expect(harness.received).toHaveLength(1);
    const message = harness.received[0]!;
    expect(message.recipients).toEqual(['eve@example.org']);
    const headerBlock = message.raw.toString('utf8').split('\r\n\r\n')[0] ?? '';
    expect(headerBlock).not.toMatch(/^bcc:/im);
    const mail = await simpleParser(message.raw);
    expect(mail.bcc).toBeUndefined();
    expect(mail.headers.has('bcc')).toBe(false);
    const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
    expect(to?.value).toEqual([{ address: 'eve@example.org', name: 'Eve Bcc: x@y.z <script>' }]);
    expect(mail.html).not.toContain('<script>');
    expect(mail.html).toContain('Hi Eve Bcc: x@y.z &lt;script&gt;,');
  });
});
