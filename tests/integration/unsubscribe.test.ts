import { simpleParser } from 'mailparser';
import { suppressionTo } from '../../src/core/subscriber.ts';
import { describe, expect, it } from 'vitest';
import { buildHttpApp } from '../../src/http/server.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';

/** The List-Unsubscribe URL of the message a subscriber received, as a mail client would read it. */
async function unsubscribeUrlFor(harness: Harness, email: string): Promise<URL> {
  const message = harness.received.find((received) => received.recipients[0] === email);
  if (!message) throw new Error(`${email} got no message`);
  const mail = await simpleParser(message.raw);
  return new URL((mail.headers.get('list') as { unsubscribe: { url: string } }).unsubscribe.url);
}

async function sentHarness(label: string) {
  const harness = await createHarness(label);
  await seedSubscribers(harness.services, 3);
  await harness.startWorker();
  const { sendId } = await harness.send('vol-138');
  await harness.waitForSend(sendId);
  const app = await buildHttpApp(harness.services);
  return { harness, app };
}

describe('the unsubscribe link of a sent email', () => {
  it('unsubscribes with the one-click POST of RFC 8058, once and for good', async () => {
    const { harness, app } = await sentHarness('one-click');
    const url = await unsubscribeUrlFor(harness, 'reader2@example.org');
    expect(url.origin).toBe('https://newsletter.example.org');

    const response = await app.inject({
      method: 'POST',
      url: `${url.pathname}${url.search}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'List-Unsubscribe=One-Click',
    });
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain('reader2@example.org gets no more email');
    expect((await harness.services.subscribers.get('2'))?.status).toBe('unsubscribed');

    // Mail clients may send the one-click body as multipart (RFC 8058 §3.2) or with no body at all.
    const boundary = 'nl-test-boundary';
    const multipart = await app.inject({
      method: 'POST',
      url: `${url.pathname}${url.search}`,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      payload: `--${boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--${boundary}--\r\n`,
    });
    expect(multipart.statusCode).toBe(200);

    // Repeating it is harmless, and the next send skips them.
    expect((await app.inject({ method: 'POST', url: `${url.pathname}${url.search}` })).statusCode).toBe(200);
    const again = await harness.send('vol-138', { resend: true });
    expect(await harness.waitForSend(again.sendId)).toMatchObject({ total: 2, accepted: 2 });
    await app.close();
  });

  it('only asks for confirmation on GET, because link scanners fetch links by themselves', async () => {
    const { harness, app } = await sentHarness('confirm');
    const url = await unsubscribeUrlFor(harness, 'reader1@example.org');
    const response = await app.inject({ method: 'GET', url: `${url.pathname}${url.search}` });
    expect(response.statusCode).toBe(200);
    // The form posts back to the very URL it came from, whatever path the proxy mounts it under.
    expect(response.body).toContain('<form method="post" action="">');
    expect(response.body).toContain('reader1@example.org will get no more issues');
    expect((await harness.services.subscribers.get('1'))?.status).toBe('active');
    const jsonClient = await app.inject({ method: 'POST', url: `${url.pathname}${url.search}`, headers: { 'content-type': 'application/json' }, payload: '{' });
    expect(jsonClient.statusCode).toBe(200);
    expect((await harness.services.subscribers.get('1'))?.status).toBe('unsubscribed');
    await app.close();
  });

  it('refuses an altered or missing token and changes nothing', async () => {
    const { harness, app } = await sentHarness('forged');
    const url = await unsubscribeUrlFor(harness, 'reader1@example.org');
    const [body, signature] = (url.searchParams.get('token') ?? '').split('.');
    const forged = `${Buffer.from(JSON.stringify({ s: '3', l: 'weekly', m: 'x' })).toString('base64url')}.${signature}`;
    for (const token of [forged, `${body}.`, '', 'garbage']) {
      const response = await app.inject({ method: 'POST', url: `/unsubscribe?token=${encodeURIComponent(token)}` });
      expect(response.statusCode).toBe(400);
      expect(response.body).toContain('invalid or incomplete');
    }
    expect(await harness.services.subscribers.countList('weekly')).toMatchObject({ byStatus: { active: 3 } });
    await app.close();
  });

  it('never turns a bounced address back into a merely unsubscribed one', async () => {
    const { harness, app } = await sentHarness('bounced');
    const url = await unsubscribeUrlFor(harness, 'reader3@example.org');
    await harness.services.subscribers.changeStatus('3', suppressionTo('bounced'));
    expect((await app.inject({ method: 'POST', url: `${url.pathname}${url.search}` })).statusCode).toBe(200);
    expect((await harness.services.subscribers.get('3'))?.status).toBe('bounced');
    await app.close();
  });
});
