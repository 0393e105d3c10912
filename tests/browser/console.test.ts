import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { simpleParser } from 'mailparser';
import type { Browser, Locator } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSend } from '../../src/app/start-send.ts';
import { loadIssue } from '../../src/content/load-issue.ts';
import { SESSION_COOKIE } from '../../src/http/auth.ts';
import { waitFor } from '../support/faults.ts';
import { seedSubscribers } from '../support/harness.ts';
import {
  addConsoleUser,
  documentWidth,
  launchChromium,
  logIn,
  openWatchedContext,
  startListeningConsole,
  submitLogin,
  waitForText,
} from '../support/browser.ts';

/**
 * The console in real Chromium, against the one HTTP app of `newsletter serve` listening on a port,
 * with a real SMTP sink and real send workers: what the editor and ops actually click through.
 * Every test asserts that no request left the server and that no page logged an error or warning.
 */

const PHONE = { width: 375, height: 800 };
const DESKTOP = { width: 1280, height: 900 };
/** The README's pictures of the console, taken from the running app on every run. */
const SCREENSHOT_DIR = fileURLToPath(new URL('./screenshots/', import.meta.url));
/** Recipients of the send paused and resumed: at one message at a time, 20 ms each, it runs for seconds. */
const PAUSED_SEND_SIZE = 100;
/** How long a page may take to show a send reaching its end through console.js's polling (every 2 s). */
const LIVE_TIMEOUT_MS = 60_000;

let browser: Browser;

beforeAll(async () => {
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
});

describe('the console in Chromium', () => {
  it('logs in through the form, and refuses a wrong password', async () => {
    const { services, origin } = await startListeningConsole('browser-login');
    const editor = await addConsoleUser(services, 'editor');
    const watched = await openWatchedContext(browser, origin, DESKTOP);
    const { page, context } = watched;

    await page.goto('/admin');
    expect(new URL(page.url()).pathname, 'GET /admin without a session').toBe('/admin/login');
    expect(new URL(page.url()).searchParams.get('next')).toBe('/admin');

    await submitLogin(page, { email: editor.email, password: 'not-the-password-at-all' });
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').innerText()).toBe('Wrong email or password.');
    expect(new URL(page.url()).pathname).toBe('/admin/login');

    await submitLogin(page, editor);
    // /admin sends the editor on to the issues.
    await page.waitForURL((url) => url.pathname === '/admin/issues');
    expect(await page.getByRole('heading', { level: 1 }).innerText()).toBe('Issues');
    expect(await page.locator('nav .who').innerText()).toBe(`${editor.email} (editor)`);

    const session = (await context.cookies()).find((cookie) => cookie.name === SESSION_COOKIE);
    expect(session, 'the session cookie Chromium kept').toMatchObject({ secure: true, httpOnly: true, sameSite: 'Strict' });
    // The cookie rides along: another console page opens without the login form.
    await page.goto('/admin/sends');
    expect(new URL(page.url()).pathname).toBe('/admin/sends');
    expect(await page.getByRole('heading', { level: 1 }).innerText()).toBe('Sends');

    // The refused login answers 401 on purpose (the status says what happened), and Chromium logs
    // every document that arrives with an error status; that one line, of that one POST, is expected.
    watched.expectClean({ allow: [new RegExp(`^console error on ${escapeRegExp(origin)}/admin/login .*status of 401 \\(Unauthorized\\)$`)] });
  });

  it.each([PHONE, DESKTOP])('previews vol-138 at a $width px wide window', async (viewport) => {
    const { services, origin } = await startListeningConsole('browser-preview');
    const issue = await loadIssue(services.config.issuesDir, 'vol-138');
    const editor = await addConsoleUser(services, 'editor');
    const watched = await openWatchedContext(browser, origin, viewport);
    const { page } = watched;

    await logIn(page, editor, '/admin/issues/vol-138');
    expect(new URL(page.url()).pathname).toBe('/admin/issues/vol-138');
    for (const frameClass of ['phone', 'desktop']) {
      const iframe = page.locator(`iframe.${frameClass}`);
      // The frames load lazily: bring each into view, as the editor scrolling down does.
      await iframe.scrollIntoViewIfNeeded();
      await watched.waitVisible(iframe.contentFrame().getByText(issue.title).first(), `the issue's title in the ${frameClass} frame`);
      if (frameClass === 'phone') {
        const width = await documentWidth((await (await iframe.elementHandle())!.contentFrame())!);
        expect(width.scroll, `the email's width in the phone frame (${width.client} px)`).toBeLessThanOrEqual(width.client + 1);
      }
    }
    expect(await page.locator('pre.text-part').innerText()).toContain(issue.title);
    const pageWidth = await documentWidth(page);
    expect(pageWidth.scroll, `the preview page's width in a ${pageWidth.client} px window: it must not scroll sideways`).toBeLessThanOrEqual(
      pageWidth.client + 1,
    );

    watched.expectClean();
  });

  it('makes a test send from the preview page, and the SMTP server gets it', async () => {
    const { harness, services, origin } = await startListeningConsole('browser-test-send');
    const editor = await addConsoleUser(services, 'editor');
    const watched = await openWatchedContext(browser, origin, DESKTOP);
    const { page } = watched;
    const address = 'proofreader@example.org';

    await logIn(page, editor, '/admin/issues/vol-138');
    const subject = await page.locator('dd.subject').innerText();
    await page.getByLabel('To', { exact: true }).fill(address);
    await page.getByRole('button', { name: 'Send a test' }).click();
    await page.waitForURL((url) => url.pathname === '/admin/issues/vol-138/test-send');
    expect(await page.locator('ul.accepted li').allInnerTexts()).toEqual([address]);

    const message = await waitFor(
      () => harness.received.find((received) => received.recipients.includes(address)),
      10_000,
      `the test message for ${address} at the SMTP sink`,
    );
    const parsed = await simpleParser(message.raw);
    expect(parsed.subject).toBe(`[TEST] ${subject}`);
    expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value.map((to) => to.address) : undefined).toEqual([address]);
    // Outside the bulk queue: nothing else went out, and no send was recorded.
    expect(harness.received).toHaveLength(1);
    expect(await services.sends.latestId('vol-138', 'weekly')).toBeUndefined();

    watched.expectClean();
  });

  it('sends vol-138 to 300 subscribers through the confirmation, and the dashboard follows it to sent', async () => {
    const { harness, services, origin } = await startListeningConsole('browser-send');
    await seedSubscribers(services, 300);
    const editor = await addConsoleUser(services, 'editor');
    const watched = await openWatchedContext(browser, origin, DESKTOP);
    const { page } = watched;

    await logIn(page, editor, '/admin/issues/vol-138');
    await page.getByRole('link', { name: 'Send to a list…' }).click();
    await page.waitForURL((url) => url.pathname === '/admin/issues/vol-138/send');
    expect(await page.locator('.active-count').innerText()).toBe('300');
    await page.getByRole('button', { name: 'Send to 300 active subscribers' }).click();
    await page.waitForURL((url) => url.pathname.startsWith('/admin/sends/'));
    const sendId = decodeURIComponent(new URL(page.url()).pathname.slice('/admin/sends/'.length));
    expect(await services.sends.get(sendId)).toMatchObject({ issueId: 'vol-138', list: 'weekly', total: 300 });

    // The dashboard opens while no worker runs yet: the send waits, and the page must follow it live.
    await page.goto('/admin/sends');
    const row = page.locator(`tr[data-send="${sendId}"]`);
    expect(await row.locator('[data-field="state"]').innerText()).toBe('queued');
    const dashboardLoads = watched.requests.filter((request) => request === `GET ${origin}/admin/sends`).length;
    await harness.startWorker();
    await waitForText(page, `tr[data-send="${sendId}"] [data-field="state"]`, 'sent', LIVE_TIMEOUT_MS);
    expect(watched.requests.filter((request) => request === `GET ${origin}/admin/sends`).length, 'the dashboard was not reloaded').toBe(dashboardLoads);
    expect(watched.requests, 'console.js polled the dashboard JSON').toContain(`GET ${origin}/admin/sends.json`);

    const record = (await services.sends.get(sendId))!;
    expect(record).toMatchObject({ state: 'sent', total: 300, accepted: 300, failed: 0, skipped: 0, pending: 0 });
    expect(harness.received).toHaveLength(300);
    expect(new Set(harness.received.flatMap((received) => received.recipients)).size).toBe(300);
    expect(await liveFields(row, ['accepted', 'failed', 'skipped', 'bounced', 'complained', 'pending'])).toEqual({
      accepted: String(record.accepted),
      failed: String(record.failed),
      skipped: String(record.skipped),
      bounced: String(record.bounced),
      complained: String(record.complained),
      pending: String(record.pending),
    });
    expect(await row.locator('[data-field="progressText"]').innerText()).toBe('300 of 300 (100%)');

    watched.expectClean();
  });

  it('pauses a running send from its page with a reason, and resumes it to sent', async () => {
    // One message at a time, each held 20 ms by the SMTP server: the send is still running when ops click.
    const { harness, services, origin } = await startListeningConsole('browser-pause', { acceptDelayMs: 20, config: { WORKER_CONCURRENCY: '1' } });
    await seedSubscribers(services, PAUSED_SEND_SIZE);
    const ops = await addConsoleUser(services, 'ops');
    const { sendId } = await harness.send();
    const watched = await openWatchedContext(browser, origin, DESKTOP);
    const { page } = watched;
    const sendPath = `/admin/sends/${encodeURIComponent(sendId)}`;
    const section = page.locator(`[data-send="${sendId}"]`);
    const reason = 'checking the list before it goes on';

    await logIn(page, ops, sendPath);
    expect(new URL(page.url()).pathname).toBe(sendPath);
    // The worker starts once ops look at the send, and Pause is clicked as soon as messages go out.
    await harness.startWorker();
    await waitFor(async () => ((await services.sends.get(sendId))?.accepted ?? 0) > 0, 10_000, `send ${sendId} to get going`);
    await page.getByRole('link', { name: 'Pause…' }).click();
    await page.waitForURL((url) => url.pathname === `${sendPath}/confirm`);
    await page.getByLabel(/^Reason/).fill(reason);
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    await page.waitForURL((url) => url.pathname === sendPath && url.searchParams.get('done') === 'pause');

    expect(await page.getByRole('status').first().innerText()).toMatch(/^Paused: /);
    const paused = (await services.sends.get(sendId))!;
    expect(paused.state, 'the send was still running when Pause was confirmed').toBe('paused');
    expect(paused.pending).toBeGreaterThan(0);
    expect(paused.stateReason).toMatchObject({ by: 'ops', who: `console:${ops.email}`, reason });
    const shown = await liveFields(section, ['state', 'stateReason']);
    expect(shown.state).toBe('paused');
    expect(shown.stateReason).toMatch(new RegExp(`^Paused by ops \\(console:${escapeRegExp(ops.email)}\\) at .+: ${escapeRegExp(reason)}$`));

    await page.getByRole('link', { name: 'Resume…' }).click();
    await page.waitForURL((url) => url.pathname === `${sendPath}/confirm`);
    // Paused holds while ops read the confirmation: at one message at a time, at most the one already at the SMTP server finishes meanwhile.
    expect((await services.sends.get(sendId))!.accepted).toBeLessThanOrEqual(paused.accepted + 1);
    await page.getByRole('button', { name: 'Resume', exact: true }).click();
    await page.waitForURL((url) => url.pathname === sendPath && url.searchParams.get('done') === 'resume');
    expect(await page.getByRole('status').first().innerText()).toMatch(/^Resumed: /);
    // The rest goes out while the page watches, through console.js's polling.
    await waitForText(page, `[data-send="${sendId}"] [data-field="state"]`, 'sent', LIVE_TIMEOUT_MS);
    const record = (await services.sends.get(sendId))!;
    expect(record).toMatchObject({ state: 'sent', accepted: PAUSED_SEND_SIZE, failed: 0, pending: 0, stateReason: undefined });
    expect(new Set(harness.received.flatMap((received) => received.recipients)).size, 'every subscriber once').toBe(PAUSED_SEND_SIZE);
    expect(harness.received).toHaveLength(PAUSED_SEND_SIZE);
    expect(await liveFields(section, ['accepted', 'pending'])).toEqual({ accepted: String(PAUSED_SEND_SIZE), pending: '0' });
    expect(await section.locator('[data-if="stateReason"]').isHidden(), 'the pause reason is gone once resumed').toBe(true);

    watched.expectClean();
  });

  it('shows the failures table of a send, filters it, and takes the README screenshots', async () => {
    // Every recipient whose number ends in 7 is refused at RCPT TO, as an MTA refuses an unknown user.
    const rejectRecipient = (address: string) => (/^reader\d*7@/.test(address) ? { responseCode: 550, message: '5.1.1 user unknown' } : undefined);
    const { harness, services, origin } = await startListeningConsole('browser-failures', { rejectRecipient });
    await seedSubscribers(services, 120);
    await services.subscribers.upsertMany(
      Array.from({ length: 80 }, (_, index) => ({ email: `member${index + 1}@example.net`, name: `Member ${index + 1}`, list: 'digest' })),
    );
    const ops = await addConsoleUser(services, 'ops');
    const { sendId } = await harness.send();
    const digest = await startSend(services, { issueId: 'vol-138', list: 'digest', resend: false });
    await harness.startWorker();
    await harness.waitForSend(sendId);
    await harness.waitForSend(digest.sendId);
    const failedCount = 12;
    expect(await services.sends.get(sendId)).toMatchObject({ state: 'sent-with-failures', accepted: 120 - failedCount, failed: failedCount });
    expect(harness.received, 'the accepted messages of both sends at the SMTP sink').toHaveLength(120 - failedCount + 80);

    const watched = await openWatchedContext(browser, origin, DESKTOP);
    const { page } = watched;
    const sendPath = `/admin/sends/${encodeURIComponent(sendId)}`;
    await logIn(page, ops, sendPath);
    const failures = page.locator('#failures');
    const rows = failures.locator('table.failures tbody tr');
    expect(await failures.innerText()).toContain(`${failedCount} in all`);
    expect(await rows.count()).toBe(failedCount);
    expect(await rows.locator('td:first-child').allInnerTexts()).toEqual(
      expect.arrayContaining(['reader7@example.org', 'reader17@example.org', 'reader117@example.org']),
    );
    for (const reason of await rows.locator('td:nth-child(2)').allInnerTexts()) expect(reason).toContain('5.1.1');
    await mkdir(SCREENSHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'send-page.png'), fullPage: true });

    // Filtered by recipient: one row.
    await failures.getByLabel('Recipient, reason or id').fill('reader17@');
    await failures.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL((url) => url.searchParams.get('filter') === 'reader17@');
    expect(await rows.locator('td:first-child').allInnerTexts()).toEqual(['reader17@example.org']);
    expect(await failures.innerText()).toContain('1 match');

    // Filtered by kind: the kind every one of them has, then one none has.
    await failures.getByRole('link', { name: 'Clear' }).click();
    await page.waitForURL((url) => url.pathname === sendPath && !url.searchParams.has('filter'));
    const kind = (await rows.first().locator('td:nth-child(4)').innerText()).trim();
    await failures.getByLabel('Kind').selectOption(kind);
    await failures.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL((url) => url.searchParams.get('kind') === kind);
    expect(await rows.count()).toBe(failedCount);
    const otherKind = kind === 'complaint' ? 'soft' : 'complaint';
    await failures.getByLabel('Kind').selectOption(otherKind);
    await failures.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL((url) => url.searchParams.get('kind') === otherKind);
    expect(await rows.count()).toBe(0);
    expect(await failures.innerText()).toContain('No failure matches.');

    // The dashboard with both sends over, at desktop and at phone width.
    await page.goto('/admin/sends');
    expect(await page.locator(`tr[data-send="${sendId}"] [data-field="state"]`).innerText()).toBe('sent-with-failures');
    expect(await page.locator(`tr[data-send="${digest.sendId}"] [data-field="state"]`).innerText()).toBe('sent');
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'dashboard.png'), fullPage: true });
    await page.setViewportSize(PHONE);
    const width = await documentWidth(page);
    // The wide table scrolls inside its own box; the page itself does not scroll sideways on a phone.
    expect(width.scroll, `the dashboard's width at ${PHONE.width} px`).toBeLessThanOrEqual(width.client + 1);
    await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'dashboard-phone.png'), fullPage: true });

    watched.expectClean();
  });

  it('opens bull-board at /admin/queues as ops, loading nothing from outside', async () => {
    const { services, origin } = await startListeningConsole('browser-queues');
    const ops = await addConsoleUser(services, 'ops');
    const watched = await openWatchedContext(browser, origin, DESKTOP);
    const { page } = watched;

    await logIn(page, ops, '/admin/queues');
    expect(new URL(page.url()).pathname).toBe('/admin/queues');
    // bull-board draws itself with its own scripts: the send queue's name shows once they ran and its API answered.
    await watched.waitVisible(page.getByText(services.queue.name).first(), `the send queue "${services.queue.name}" in bull-board`);
    expect(await page.content()).not.toContain('fonts.googleapis.com');
    expect(
      watched.requests.some((request) => request.startsWith(`GET ${origin}/admin/queues/api/`)),
      'bull-board called its API',
    ).toBe(true);

    watched.expectClean();
  });
});

/** The text of a send's data-field elements inside a dashboard row or a send page's section. */
async function liveFields(scope: Locator, names: readonly string[]): Promise<Record<string, string>> {
  const values: Record<string, string> = {};
  for (const name of names) values[name] = (await scope.locator(`[data-field="${name}"]`).first().innerText()).trim();
  return values;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
