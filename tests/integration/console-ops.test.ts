import { parse } from 'csv-parse/sync';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { describe, expect, it } from 'vitest';
import { sendSummary, type SendSummary } from '../../src/app/dashboard.ts';
import type { Role } from '../../src/core/roles.ts';
import type { Services } from '../../src/services.ts';
import { csrfOf, loginAs, sessionCookieOf, startConsoleApp } from '../support/console.ts';
import { waitFor } from '../support/faults.ts';
import { sorted } from '../support/sorted.ts';

/** 30 readers at example.org (three of them unknown there), 20 at example.net (two of them blocked). */
const HARD = new Set(['gone1@example.org', 'gone2@example.org', 'gone3@example.org']);
const BLOCKED = new Set(['blocked1@example.net', 'blocked2@example.net']);

function rejectRecipient(address: string) {
  if (HARD.has(address)) return { responseCode: 550, message: '5.1.1 User unknown' };
  if (BLOCKED.has(address)) return { responseCode: 550, message: '5.7.1 Message refused by policy' };
  return undefined;
}

async function seedTwoDomains(services: Services): Promise<void> {
  const org = Array.from({ length: 27 }, (_, index) => `org${index + 1}@example.org`).concat([...HARD]);
  const net = Array.from({ length: 18 }, (_, index) => `net${index + 1}@example.net`).concat([...BLOCKED]);
  await services.subscribers.upsertMany([...org, ...net].map((email, index) => ({ email, name: `Reader ${index + 1}`, list: 'weekly' })));
}

/** A logged-in browser of the console: keeps the session cookie as responses change it. */
async function browserAs(app: FastifyInstance, services: Services, role: Role) {
  const login = await loginAs(app, services, role);
  let cookie = login.cookie;
  const remember = (response: LightMyRequestResponse) => {
    cookie = sessionCookieOf(response) ?? cookie;
    return response;
  };
  return {
    csrf: login.csrf,
    email: login.email,
    get: async (url: string) => remember(await app.inject({ method: 'GET', url, headers: { cookie } })),
    post: async (url: string, form: Record<string, string>) =>
      remember(
        await app.inject({
          method: 'POST',
          url,
          headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
          payload: new URLSearchParams(form).toString(),
        }),
      ),
  };
}

/** The HTML of one send's live element (a dashboard row or the send page's section). */
function sendBlock(html: string, sendId: string): string {
  const start = html.indexOf(`data-send="${sendId}"`);
  expect(start, `data-send="${sendId}" on the page`).toBeGreaterThan(-1);
  const ends = ['</tr>', '</section>'].map((end) => html.indexOf(end, start)).filter((index) => index > -1);
  return html.slice(start, Math.min(...ends));
}

/** The text of every data-field of a block, and the fields marked over their threshold. */
function fieldsOf(block: string): { text: Record<string, string>; over: string[] } {
  const text: Record<string, string> = {};
  const over: string[] = [];
  for (const match of block.matchAll(/<[a-z]+(?: class="([^"]*)")? data-field="([A-Za-z]+)"[^>]*>([^<]*)</g)) {
    text[match[2]!] = match[3]!;
    if (match[1]?.split(' ').includes('over')) over.push(match[2]!);
  }
  return { text, over };
}

/** The recipients of the failures table on a send page. */
function failureRecipients(html: string): string[] {
  const table = /<table class="failures">[\s\S]*?<\/table>/.exec(html)?.[0] ?? '';
  return [...table.matchAll(/<tr><td>([^<]+)<\/td>/g)].map((match) => match[1]!).sort();
}

/** The confirmation form of an action (not the menu's logout form): its action URL and CSRF field. */
function confirmForm(html: string): { action: string; csrf: string } {
  const form = /<form method="post" action="(\/admin\/sends\/[^"]+)"[\s\S]*?<\/form>/.exec(html);
  const csrf = csrfOf(form?.[0] ?? '');
  if (!form?.[1] || !csrf) throw new Error(`no confirmation form on the page: ${html}`);
  return { action: form[1], csrf };
}

describe('the ops pages', () => {
  it('show a finished send: dashboard row, cards, chart, domains, failures (filtered, paged, CSV) and its JSON', async () => {
    // A low block threshold, so the two blocks (4% of 50) show as over it; the breakers judge no
    // sample under BREAKER_MIN_SAMPLE (200), so the send is not paused by them.
    const { app, services, harness } = await startConsoleApp('console-ops-view', { rejectRecipient, config: { BREAKER_BLOCK_RATE: '0.01' } });
    await seedTwoDomains(services);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    await harness.waitForSend(sendId);
    // The hard bounces and blocks are applied a moment after the recipients' records finish the send.
    const summary = await waitFor(
      async () => {
        const current = await sendSummary(services, sendId);
        return current && current.bounced === 3 && current.rates.block > 0 ? current : undefined;
      },
      5_000,
      'the bounces and blocks of the send to be counted',
    );
    expect(summary).toMatchObject({ state: 'sent-with-failures', total: 50, accepted: 45, failed: 5, skipped: 0, pending: 0, bounced: 3 });

    const ops = await browserAs(app, services, 'ops');
    const dashboard = await ops.get('/admin/sends');
    expect(dashboard.statusCode).toBe(200);
    expect(dashboard.body).toContain('<script src="/admin/assets/console.js" defer>');
    const row = fieldsOf(sendBlock(dashboard.body, sendId));
    expect(row.text).toMatchObject({
      state: 'sent-with-failures',
      accepted: '45',
      failed: '5',
      skipped: '0',
      bounced: '3',
      complained: '0',
      pending: '0',
      progressText: '50 of 50 (100%)',
      bounceRate: '6.0%',
      blockRate: '4.0%',
      eta: '—',
    });
    // 3 hard bounces of 50 answered is over the default 5%; 2 blocks over the 1% set above.
    expect(row.over.sort()).toEqual(['blockRate', 'bounceRate']);
    expect(sendBlock(dashboard.body, sendId)).toContain('data-final="true"');

    const page = await ops.get(`/admin/sends/${sendId}`);
    expect(page.statusCode).toBe(200);
    const section = sendBlock(page.body, sendId);
    expect(fieldsOf(section).text).toMatchObject({ state: 'sent-with-failures', total: '50', accepted: '45', failed: '5', pending: '0' });
    // The chart: a line per outcome, axes labelled, no empty-state text.
    const chart = /<svg class="chart" data-chart[\s\S]*?<\/svg>/.exec(page.body)?.[0] ?? '';
    for (const outcome of ['accepted', 'failed', 'skipped']) expect(chart).toMatch(new RegExp(`<polyline class="line line-${outcome}" points="[\\d., ]+"`));
    expect(chart).toContain('>recipients</text>');
    expect(chart).toContain('>time (UTC)</text>');
    expect(chart).not.toContain('chart-empty');
    // The per-domain breakdown.
    const domains = /<tbody data-domains>([\s\S]*?)<\/tbody>/.exec(page.body)?.[1] ?? '';
    expect(domains).toContain(
      '<tr><td>example.org</td><td class="num">27</td><td class="num">3</td><td class="num">0</td><td class="num">3</td><td class="num">0</td></tr>',
    );
    expect(domains).toContain(
      '<tr><td>example.net</td><td class="num">18</td><td class="num">2</td><td class="num">0</td><td class="num">0</td><td class="num">0</td></tr>',
    );
    // The failures table: every rejected address, with its reason, source and kind.
    expect(failureRecipients(page.body)).toEqual([...BLOCKED, ...HARD].sort());
    expect(page.body).toMatch(/<tr><td>gone1@example\.org<\/td><td>[^<]*5\.1\.1 User unknown[^<]*<\/td><td>smtp<\/td><td>hard<\/td><td class="num">1<\/td>/);
    expect(page.body).toMatch(/<tr><td>blocked1@example\.net<\/td><td>[^<]*5\.7\.1 Message refused by policy[^<]*<\/td><td>smtp<\/td><td>block<\/td>/);
    // Ops see the buttons that apply to a finished send with failures: retry-failed only.
    expect(section).toMatch(/data-action="retry-failed">/);
    expect(section).toMatch(/data-action="pause" hidden>/);
    expect(section).toMatch(/data-action="cancel" hidden>/);

    // Filtered by kind, by text, and both.
    expect(failureRecipients((await ops.get(`/admin/sends/${sendId}?kind=block`)).body)).toEqual([...BLOCKED].sort());
    expect(failureRecipients((await ops.get(`/admin/sends/${sendId}?filter=GONE2`)).body)).toEqual(['gone2@example.org']);
    expect(failureRecipients((await ops.get(`/admin/sends/${sendId}?filter=refused&kind=block`)).body)).toEqual([...BLOCKED].sort());
    const none = await ops.get(`/admin/sends/${sendId}?filter=nobody-like-this`);
    expect(failureRecipients(none.body)).toEqual([]);
    expect(none.body).toContain('No failure matches.');

    // Paged: two to a page, with links that keep the page size.
    const first = await ops.get(`/admin/sends/${sendId}?pageSize=2`);
    expect(failureRecipients(first.body)).toHaveLength(2);
    expect(first.body).toContain('Page 1 of 3');
    const next = /<a rel="next" href="([^"]+)"/.exec(first.body)?.[1]?.replaceAll('&amp;', '&').replaceAll('&#x3D;', '=').replaceAll('&#x2F;', '/');
    expect(next).toBe(`/admin/sends/${sendId}?page=2&pageSize=2#failures`);
    const last = await ops.get(`/admin/sends/${sendId}?pageSize=2&page=3`);
    expect(failureRecipients(last.body)).toHaveLength(1);
    expect(last.body).toContain('Page 3 of 3');
    expect(last.body).not.toContain('rel="next"');
    const pagedTogether = [first, await ops.get(`/admin/sends/${sendId}?pageSize=2&page=2`), last].flatMap((response) => failureRecipients(response.body));
    expect(pagedTogether.sort()).toEqual([...BLOCKED, ...HARD].sort());

    // The CSV export, filtered like the table.
    const csv = await ops.get(`/admin/sends/${sendId}/failures.csv?kind=hard`);
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(csv.headers['content-disposition']).toBe(`attachment; filename="failures-${sendId}.csv"`);
    const records = parse(csv.body, { columns: true }) as Record<string, string>[];
    expect(sorted(records.map((record) => record.email))).toEqual(sorted([...HARD]));
    expect(records[0]).toMatchObject({ kind: 'hard', source: 'smtp', attempts: '1', reason: expect.stringContaining('5.1.1') });
    expect(parse((await ops.get(`/admin/sends/${sendId}/failures.csv`)).body, { columns: true })).toHaveLength(5);

    // The JSON the page polls.
    const list = (await ops.get('/admin/sends.json')).json<{ sends: SendSummary[]; views: { sendId: string; final: boolean }[] }>();
    expect(list.sends).toEqual([expect.objectContaining({ sendId, state: 'sent-with-failures', accepted: 45, failed: 5, bounced: 3, pending: 0 })]);
    expect(list.views).toEqual([expect.objectContaining({ sendId, final: true })]);
    const one = await ops.get(`/admin/sends/${sendId}.json`);
    expect(one.headers['content-type']).toMatch(/^application\/json/);
    const detail = one.json<{
      summary: SendSummary;
      series: { accepted: number; failed: number }[];
      domains: { domain: string }[];
      chart: { shapes: unknown[] };
    }>();
    expect(detail.summary).toMatchObject({ sendId, accepted: 45, failed: 5, total: 50 });
    expect(detail.series.at(-1)).toMatchObject({ accepted: 45, failed: 5, skipped: 0 });
    expect(detail.domains.map((domain) => domain.domain).sort()).toEqual(['example.net', 'example.org']);
    expect(detail.chart.shapes.length).toBeGreaterThan(10);
    expect((await ops.get('/admin/sends/vol-138.weekly.99.json')).statusCode).toBe(404);
    expect((await ops.get('/admin/sends/vol-138.weekly.99')).statusCode).toBe(404);
    expect((await ops.get('/admin/sends/vol-138.weekly.99/failures.csv')).statusCode).toBe(404);

    // The editor sees every send, but no buttons, and may not act.
    const editor = await browserAs(app, services, 'editor');
    const editorPage = await editor.get(`/admin/sends/${sendId}`);
    expect(editorPage.statusCode).toBe(200);
    expect(editorPage.body).not.toContain('data-action=');
    // How the send ended, yes; who failed, no: no failures table, no CSV link, no address, even when the URL asks for them.
    expect(fieldsOf(sendBlock(editorPage.body, sendId)).text).toMatchObject({ state: 'sent-with-failures', failed: '5', bounced: '3' });
    expect(editorPage.body).toContain('Failures: visible to the admin and ops roles.');
    for (const page of [editorPage, await editor.get(`/admin/sends/${sendId}?kind=hard&filter=gone`), await editor.get(`/admin/sends/${sendId}.json`)]) {
      expect(page.statusCode).toBe(200);
      expect(page.body).not.toContain('class="failures"');
      expect(page.body).not.toContain('failures.csv');
      for (const address of [...HARD, ...BLOCKED]) expect(page.body).not.toContain(address);
    }
    const editorCsv = await editor.get(`/admin/sends/${sendId}/failures.csv`);
    expect(editorCsv.statusCode).toBe(403);
    expect(editorCsv.body).toContain('sends.failures');
    for (const address of HARD) expect(editorCsv.body).not.toContain(address);
    expect((await editor.get(`/admin/sends/${sendId}/confirm?action=retry-failed`)).statusCode).toBe(403);
    expect((await editor.post(`/admin/sends/${sendId}/retry-failed`, { _csrf: editor.csrf })).statusCode).toBe(403);
  });

  it('pauses, resumes and cancels a send through the confirmation pages, and refuses to retry a cancelled one', async () => {
    // No worker: the send stays queued while ops act on it.
    const { app, services, harness } = await startConsoleApp('console-ops-actions');
    await seedTwoDomains(services);
    const { sendId } = await harness.send('vol-138');
    const ops = await browserAs(app, services, 'ops');

    const before = await ops.get(`/admin/sends/${sendId}`);
    const section = sendBlock(before.body, sendId);
    expect(fieldsOf(section).text).toMatchObject({ state: 'queued', pending: '50', eta: '—' });
    expect(section).toContain('data-final="false"');
    expect(section).toMatch(/data-action="pause">/);
    expect(section).toMatch(/data-action="resume" hidden>/);
    // Nothing finished yet: the chart says so.
    expect(before.body).toContain('class="chart-empty"');

    // Pause: the confirmation page, then its form.
    const confirmPause = await ops.get(`/admin/sends/${sendId}/confirm?action=pause`);
    expect(confirmPause.statusCode).toBe(200);
    expect(confirmPause.body).toContain('name="reason"');
    const pauseForm = confirmForm(confirmPause.body);
    expect(pauseForm.action).toBe(`/admin/sends/${sendId}/pause`);
    // A forged token is refused, and changes nothing.
    expect((await ops.post(pauseForm.action, { _csrf: 'forged', reason: 'x' })).statusCode).toBe(403);
    expect((await sendSummary(services, sendId))?.state).toBe('queued');
    const paused = await ops.post(pauseForm.action, { _csrf: pauseForm.csrf, reason: 'wrong <list>' });
    expect(paused.statusCode, paused.body).toBe(303);
    expect(paused.headers.location).toBe(`/admin/sends/${sendId}?done=pause&changed=1`);
    const pausedPage = await ops.get(paused.headers.location as string);
    expect(pausedPage.body).toContain('Paused: no new message of this send starts until it is resumed.');
    const pausedFields = fieldsOf(sendBlock(pausedPage.body, sendId)).text;
    expect(pausedFields.state).toBe('paused');
    expect(pausedFields.stateReason).toContain(`Paused by ops (console:${ops.email})`);
    expect(pausedFields.stateReason).toContain('wrong &lt;list&gt;');
    expect(sendBlock(pausedPage.body, sendId)).toMatch(/data-action="resume">/);
    expect((await ops.get('/admin/sends.json')).json<{ sends: SendSummary[] }>().sends[0]).toMatchObject({
      state: 'paused',
      stateReason: { by: 'ops', who: `console:${ops.email}`, reason: 'wrong <list>' },
    });
    // The dashboard shows the reason too.
    expect(fieldsOf(sendBlock((await ops.get('/admin/sends')).body, sendId)).text.stateReason).toContain('wrong &lt;list&gt;');

    // Resume.
    const resumeForm = confirmForm((await ops.get(`/admin/sends/${sendId}/confirm?action=resume`)).body);
    const resumed = await ops.post(resumeForm.action, { _csrf: resumeForm.csrf });
    expect(resumed.statusCode, resumed.body).toBe(303);
    expect((await sendSummary(services, sendId))?.state).toBe('queued');

    // Cancel: every recipient not yet sent ends as skipped.
    const cancelForm = confirmForm((await ops.get(`/admin/sends/${sendId}/confirm?action=cancel`)).body);
    const cancelled = await ops.post(cancelForm.action, { _csrf: cancelForm.csrf, reason: 'not this week' });
    expect(cancelled.statusCode, cancelled.body).toBe(303);
    expect(cancelled.headers.location).toBe(`/admin/sends/${sendId}?done=cancel&changed=1&count=50`);
    const cancelledPage = await ops.get(cancelled.headers.location as string);
    expect(cancelledPage.body).toContain('Cancelled: 50 recipients not yet sent end as skipped.');
    expect(fieldsOf(sendBlock(cancelledPage.body, sendId)).text).toMatchObject({ state: 'cancelled', skipped: '50', pending: '0' });
    expect(fieldsOf(sendBlock(cancelledPage.body, sendId)).text.stateReason).toContain('Cancelled by ops');
    expect(sendBlock(cancelledPage.body, sendId)).not.toMatch(/data-action="[a-z-]+">/);

    // Retry-failed does not apply to a cancelled send: neither its confirmation nor its POST.
    const confirmRetry = await ops.get(`/admin/sends/${sendId}/confirm?action=retry-failed`);
    expect(confirmRetry.statusCode).toBe(409);
    expect(confirmRetry.body).toContain('was cancelled');
    const retry = await ops.post(`/admin/sends/${sendId}/retry-failed`, { _csrf: ops.csrf });
    expect(retry.statusCode).toBe(409);
    expect(retry.body).toContain('was cancelled; there is nothing to retry');
    // Nor does resuming it.
    expect((await ops.post(`/admin/sends/${sendId}/resume`, { _csrf: ops.csrf })).statusCode).toBe(409);

    // Wrong addresses get pages that say so.
    expect((await ops.get(`/admin/sends/${sendId}/confirm?action=explode`)).statusCode).toBe(400);
    expect((await ops.post(`/admin/sends/${sendId}/explode`, { _csrf: ops.csrf })).statusCode).toBe(404);
    expect((await ops.get('/admin/sends/vol-138.weekly.99/confirm?action=pause')).statusCode).toBe(404);
    expect((await ops.post('/admin/sends/vol-138.weekly.99/pause', { _csrf: ops.csrf })).statusCode).toBe(404);
    expect((await ops.post(`/admin/sends/${sendId}/pause`, { _csrf: ops.csrf, reason: 'x'.repeat(301) })).statusCode).toBe(400);
  });

  it('lists no sends with an empty state, and asks for a login without a session', async () => {
    const { app, services } = await startConsoleApp('console-ops-empty');
    expect((await app.inject({ method: 'GET', url: '/admin/sends' })).statusCode).toBe(303);
    expect((await app.inject({ method: 'GET', url: '/admin/sends.json' })).statusCode).toBe(401);
    const ops = await browserAs(app, services, 'ops');
    const empty = await ops.get('/admin/sends');
    expect(empty.statusCode).toBe(200);
    expect(empty.body).toContain('No sends yet.');
    expect((await ops.get('/admin/sends.json')).json()).toEqual({ sends: [], views: [] });
    const script = await app.inject({ method: 'GET', url: '/admin/assets/console.js' });
    expect(script.statusCode).toBe(200);
    expect(script.headers['content-type']).toMatch(/javascript/);
  });
});
