import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser, type ListHeaders } from 'mailparser';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { buildHttpApp } from '../../src/http/server.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';

const ISSUES_DIR = path.join(PROJECT_ROOT, 'emails', 'issues');

/** The HTTP app on a loopback port, closed when the test finishes. */
async function serve(harness: Harness) {
  const app = await buildHttpApp(harness.services);
  onTestFinished(() => app.close());
  const origin = await app.listen({ host: '127.0.0.1', port: 0 });
  const publicUrl = harness.config.publicUrl;
  const isOurs = (link: string) => link === publicUrl || link.startsWith(`${publicUrl}/`) || link.startsWith(`${publicUrl}?`);
  /** Fetches a PUBLIC_URL link (or a path) from the server under test, as a browser would, redirects not followed. */
  const get = (linkOrPath: string, headers: Record<string, string> = {}) => {
    if (!linkOrPath.startsWith('/') && !isOurs(linkOrPath)) throw new Error(`${linkOrPath} is not under PUBLIC_URL`);
    const url = linkOrPath.startsWith('/') ? `${origin}${linkOrPath}` : `${origin}${linkOrPath.slice(publicUrl.length)}`;
    return fetch(url, { headers, redirect: 'manual' });
  };
  return { app, get, isOurs, publicUrl };
}

/** A harness that has sent vol-138 to three subscribers. */
async function sentHarness(label: string, config: Record<string, string> = {}) {
  const harness = await createHarness(label, { config });
  await seedSubscribers(harness.services, 3);
  await harness.startWorker();
  const { sendId } = await harness.send('vol-138');
  const send = await harness.waitForSend(sendId);
  return { harness, send };
}

const ENTITIES: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
function decodeHtml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, entity: string) => {
    if (entity.startsWith('#x') || entity.startsWith('#X')) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number(entity.slice(1)));
    return ENTITIES[entity.toLowerCase()] ?? whole;
  });
}

/** Every link a reader or a mail client can follow in one received message: HTML hrefs, text URLs, List-Unsubscribe. */
async function linksOf(raw: Buffer): Promise<string[]> {
  const mail = await simpleParser(raw);
  const html = typeof mail.html === 'string' ? mail.html : '';
  const hrefs = [...html.matchAll(/\shref\s*=\s*"([^"]*)"/gi)].map((match) => decodeHtml(match[1] ?? ''));
  const textUrls = [...(mail.text ?? '').matchAll(/https?:\/\/[^\s<>"]+/g)].map((match) => match[0].replace(/[.,;:!?)]+$/, ''));
  const listUnsubscribe = (mail.headers.get('list') as ListHeaders | undefined)?.unsubscribe?.url;
  expect(hrefs.length, 'the HTML part has links').toBeGreaterThan(0);
  expect(textUrls.length, 'the text part has links').toBeGreaterThan(0);
  expect(listUnsubscribe, 'List-Unsubscribe').toBeDefined();
  return [...new Set([...hrefs, ...textUrls, ...(listUnsubscribe ? [listUnsubscribe] : [])])];
}

describe('the web version of sent issues', () => {
  it('answers every link of a sent email that points under PUBLIC_URL with a page', async () => {
    const { harness } = await sentHarness('web-links');
    const { get, isOurs, publicUrl } = await serve(harness);
    expect(harness.received).toHaveLength(3);

    const followed = new Set<string>();
    for (const message of harness.received) {
      for (const link of (await linksOf(message.raw)).filter(isOurs)) {
        const response = await get(link);
        expect(response.status, `${link} (for ${message.recipients.join(', ')})`).toBeGreaterThanOrEqual(200);
        expect(response.status, `${link} (for ${message.recipients.join(', ')})`).toBeLessThan(300);
        expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
        expect((await response.text()).length).toBeGreaterThan(0);
        followed.add(link.startsWith(`${publicUrl}/unsubscribe?token=`) ? 'unsubscribe with a token' : link);
      }
    }
    expect(followed).toContain(`${publicUrl}/issues/vol-138`);
    expect(followed).toContain('unsubscribe with a token');
    // Following links is what scanners do: it must have unsubscribed nobody.
    expect(await harness.services.subscribers.countList('weekly')).toMatchObject({ byStatus: { active: 3 } });
  });

  it('fills the compiled issue for a neutral reader, with cache headers and 304 on a matching ETag', async () => {
    const { harness, send } = await sentHarness('web-version');
    const { get, publicUrl } = await serve(harness);

    const response = await get(`${publicUrl}/issues/vol-138`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('public, max-age=300');
    expect(response.headers.get('etag')).toBe(`"${send.contentHash}"`);
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("style-src 'unsafe-inline'");
    expect(csp).toContain('img-src https:');
    expect(csp).not.toContain('script-src');

    const page = await response.text();
    expect(page).toContain('Training-Free Text Embeddings from Frozen LLMs, Scalable Relevance Labeling for Enterprise Search, and More!');
    expect(page).not.toContain('{{');
    expect(page).not.toMatch(/Reader \d|reader\d@example\.org/);
    expect(page).toContain('Hi there,');
    expect(page).toContain('This is the web version of an issue of the weekly list');
    expect(page).not.toContain('token=');
    const unsubscribeLinks = [...page.matchAll(/href="([^"]*unsubscribe[^"]*)"/g)].map((match) => decodeHtml(match[1] ?? ''));
    expect(unsubscribeLinks).toEqual([`${publicUrl}/unsubscribe`]);
    const explanation = await get(unsubscribeLinks[0]!);
    expect(explanation.status).toBe(200);
    expect(await explanation.text()).toContain('unsubscribes the address the email was sent to');

    const etag = response.headers.get('etag') ?? '';
    const revalidated = await get(`${publicUrl}/issues/vol-138`, { 'if-none-match': etag });
    expect(revalidated.status).toBe(304);
    expect(revalidated.headers.get('etag')).toBe(etag);
    expect(await revalidated.text()).toBe('');
    // Proxies that compress may weaken the tag; a list of tags matches on any.
    expect((await get('/issues/vol-138', { 'if-none-match': `"other", W/${etag}` })).status).toBe(304);
    expect((await get('/issues/vol-138', { 'if-none-match': '"other"' })).status).toBe(200);
  });

  it('lists sent issues newest first with their title and date, escaped, and no unsent ones', async () => {
    // Issues of our own: vol-139 with markup in its title, vol-140 finished but never sent.
    const dir = await mkdtemp(path.join(tmpdir(), 'nl-web-issues-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const vol138 = await readFile(path.join(ISSUES_DIR, 'vol-138.yaml'), 'utf8');
    const variant = (id: string, volume: number, title: string) =>
      vol138
        .replace(/^id: .*$/m, `id: ${id}`)
        .replace(/^volume: .*$/m, `volume: ${volume}`)
        .replace(/^title: .*$/m, `title: ${JSON.stringify(title)}`);
    await writeFile(path.join(dir, 'vol-138.yaml'), vol138);
    await writeFile(path.join(dir, 'vol-139.yaml'), variant('vol-139', 139, 'Rankers & <b>Retrievers</b>'));
    await writeFile(path.join(dir, 'vol-140.yaml'), variant('vol-140', 140, 'Not sent yet'));

    const harness = await createHarness('web-index', { config: { ISSUES_DIR: dir } });
    await seedSubscribers(harness.services, 2);
    await harness.startWorker();
    const { get, publicUrl } = await serve(harness);

    const empty = await get(`${publicUrl}/issues`);
    expect(empty.status).toBe(200);
    expect(await empty.text()).toContain('No issues have been sent yet');
    // A finished issue file that was never sent is not published.
    expect((await get(`${publicUrl}/issues/vol-138`)).status).toBe(404);

    await harness.waitForSend((await harness.send('vol-138')).sendId);
    await harness.waitForSend((await harness.send('vol-139')).sendId);

    const response = await get(`${publicUrl}/issues`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
    const index = await response.text();
    expect(index).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(index).toMatch(/<a href="https:\/\/newsletter\.example\.org\/issues\/vol-138">IR Research Weekly Vol\.138: Training-Free Text Embeddings/);
    expect(index).toContain('Vol.139: Rankers &amp; &lt;b&gt;Retrievers&lt;/b&gt;</a>');
    expect(index).not.toContain('<b>Retrievers');
    expect(index).not.toContain('vol-140');
    expect(index.indexOf('/issues/vol-139')).toBeLessThan(index.indexOf('/issues/vol-138'));
    const today = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' }).format(new Date());
    expect(index).toContain(today);

    const links = [...index.matchAll(/<a href="([^"]*)"/g)].map((match) => decodeHtml(match[1] ?? ''));
    expect(links).toEqual([`${publicUrl}/issues/vol-139`, `${publicUrl}/issues/vol-138`]);
    for (const link of links) expect((await get(link)).status, link).toBe(200);
    expect((await get(`${publicUrl}/issues/vol-140`)).status).toBe(404);
  });

  it('gives a 404 page for a draft, an unknown issue and an id that is not an issue id', async () => {
    const { harness } = await sentHarness('web-404');
    const { get } = await serve(harness);
    for (const pathname of [
      '/issues/draft-sample',
      '/issues/vol-999',
      '/issues/..%2Fetc',
      '/issues/..%2F..%2Fpackage.json',
      '/issues/VOL-138',
      '/issues/vol-138%3Asends',
      '/issues/',
    ]) {
      const response = await get(pathname);
      expect(response.status, pathname).toBe(404);
      expect(response.headers.get('content-type'), pathname).toBe('text/html; charset=utf-8');
      expect(await response.text(), pathname).toContain('not found');
    }
    // The same server does publish what was sent.
    expect((await get('/issues/vol-138')).status).toBe(200);
  });

  it('explains the unsubscribe page without a token, and still refuses an altered one', async () => {
    const harness = await createHarness('web-unsubscribe');
    await seedSubscribers(harness.services, 1);
    const { get } = await serve(harness);

    const response = await get('/unsubscribe');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const page = await response.text();
    expect(page).toContain('ends with its own unsubscribe link');
    expect(page).not.toContain('<form');

    for (const query of ['?token=', '?token=garbage', '?token=e30.forged']) {
      const refused = await get(`/unsubscribe${query}`);
      expect(refused.status, query).toBe(400);
      expect(await refused.text(), query).toContain('invalid or incomplete');
    }
    expect(await harness.services.subscribers.countList('weekly')).toMatchObject({ byStatus: { active: 1 } });
  });
});
