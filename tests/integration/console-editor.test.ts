import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { simpleParser } from 'mailparser';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { authenticateToken, verifyLogin } from '../../src/app/accounts.ts';
import { listSchedules } from '../../src/app/schedules.ts';
import { suppressByEmail } from '../../src/app/subscribers.ts';
import { loadIssue } from '../../src/content/load-issue.ts';
import { PREVIEW_CSP } from '../../src/http/admin/issues-pages.ts';
import { zonedTimeToInstant } from '../../src/http/admin/schedules-pages.ts';
import { GMAIL_CLIP_BYTES, issueSubject } from '../../src/render/compile-issue.ts';
import { csrfOf, loginAs, startConsoleApp, type ConsoleLogin } from '../support/console.ts';
import { seedSubscribers } from '../support/harness.ts';

const ISSUES_DIR = path.join(PROJECT_ROOT, 'emails', 'issues');

/** What Handlebars' escape makes of a text, to find it in a page. */
function escaped(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#x27;')
    .replace(/`/g, '&#x60;')
    .replace(/=/g, '&#x3D;');
}

/** A page as the logged-in user opens it. */
function get(app: FastifyInstance, login: ConsoleLogin | undefined, url: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'GET', url, headers: login ? { cookie: login.cookie } : {} });
}

/**
 * A console form posted as a browser posts it: form-encoded, the CSRF token in its `_csrf` field
 * (the login's, unless `fields` carries the form's own).
 */
function postForm(app: FastifyInstance, login: ConsoleLogin, url: string, fields: Record<string, string>, csrf = login.csrf): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url,
    headers: { cookie: login.cookie, 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ _csrf: csrf, ...fields }).toString(),
  });
}

/** The action and fields of the form on a page that posts to `action`, as the browser would submit them. */
function formOf(html: string, action: string): Record<string, string> | undefined {
  const form = new RegExp(`<form method="post" action="${action.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"[^>]*>(.*?)</form>`, 's').exec(html)?.[1];
  if (form === undefined) return undefined;
  return Object.fromEntries([...form.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((match) => [match[1]!, match[2]!]));
}

/**
 * An issues folder of its own: vol-138 as shipped, a draft whose title carries markup, an issue
 * whose HTML is past Gmail's clipping size, and a file that does not parse.
 */
async function issuesFolder(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'console-editor-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const vol138 = await readFile(path.join(ISSUES_DIR, 'vol-138.yaml'), 'utf8');
  await writeFile(path.join(dir, 'vol-138.yaml'), vol138);
  const draft = vol138
    .replace(/^id: .*$/m, 'id: vol-139')
    .replace(/^status: .*$/m, 'status: draft')
    .replace(/^volume: .*$/m, 'volume: 139')
    .replace(/^title: .*$/m, `title: "<b>Bold</b> claims & <script>alert(1)</script>"`);
  await writeFile(path.join(dir, 'vol-139.yaml'), draft);
  const long = vol138
    .replace(/^id: .*$/m, 'id: vol-140')
    .replace(/^volume: .*$/m, 'volume: 140')
    .replace(
      /^closing: \|$/m,
      `closing: |\n${Array.from({ length: 400 }, (_, index) => `  Paragraph ${index} of a closing far too long for one email, made to push the HTML past the size at which Gmail clips it.\n`).join('\n')}`,
    );
  await writeFile(path.join(dir, 'vol-140.yaml'), long);
  await writeFile(path.join(dir, 'broken.yaml'), 'id: broken\nstatus: finished\ntitle: [unclosed\n');
  return dir;
}

describe('the editor console', () => {
  it('lists the issues with their status and sends, and shows the preview: both widths, the text part, subject and preheader, the size against Gmail', async () => {
    const { app, services } = await startConsoleApp('console-editor-issues');
    const editor = await loginAs(app, services, 'editor');
    const issue = await loadIssue(ISSUES_DIR, 'vol-138');
    const subject = issueSubject(issue, services.config.mail.newsletterName);

    const anonymous = await get(app, undefined, '/admin/issues');
    expect(anonymous.statusCode).toBe(303);
    expect(anonymous.headers.location).toBe('/admin/login?next=%2Fadmin%2Fissues');

    const list = await get(app, editor, '/admin/issues');
    expect(list.statusCode).toBe(200);
    const vol138Row = /<tr><td><a href="\/admin\/issues\/vol-138">vol-138<\/a>.*?<\/tr>/s.exec(list.body)?.[0] ?? '';
    expect(vol138Row).toContain(escaped(issue.title));
    expect(vol138Row).toContain('<span class="state state-finished">finished</span>');
    expect(vol138Row).toContain('not sent');
    expect(list.body).toMatch(/<a href="\/admin\/issues\/draft-sample">draft-sample<\/a>.*?<span class="state state-draft">draft<\/span>/s);

    const page = await get(app, editor, '/admin/issues/vol-138');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toContain("frame-src 'self'");
    const frameSrc = '/admin/issues/vol-138/preview.html?list&#x3D;weekly';
    expect(page.body).toContain(`<iframe class="phone" src="${frameSrc}"`);
    expect(page.body).toContain(`<iframe class="desktop" src="${frameSrc}"`);
    expect(page.body).toContain(`<dd class="subject">${escaped(subject)}</dd>`);
    expect(page.body).toContain(`<dd class="preheader">${escaped(issue.preheader)}</dd>`);
    const textPart = /<pre class="text-part">(.*?)<\/pre>/s.exec(page.body)?.[1] ?? '';
    expect(textPart).toContain(escaped(issue.title));
    expect(textPart).toContain('Ada Lovelace');
    // 62.6 KB of HTML, under the 102 KB: the size is shown, and no clipping warning.
    expect(page.body).toMatch(
      new RegExp(`<span class="html-size">\\d+\\.\\d KB</span> of the ${(GMAIL_CLIP_BYTES / 1024).toFixed(1)} KB at which Gmail clips`),
    );
    expect(page.body).not.toContain('View entire message');
    expect(page.body).toContain('href="/admin/issues/vol-138/send?list=weekly"');

    const frame = await get(app, editor, '/admin/issues/vol-138/preview.html?list=weekly');
    expect(frame.statusCode).toBe(200);
    expect(frame.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(frame.headers['content-security-policy']).toBe(PREVIEW_CSP);
    expect(frame.headers['content-security-policy']).toContain('sandbox');
    expect(frame.headers['content-security-policy']).not.toContain('allow-scripts');
    expect(frame.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(frame.body).toMatch(/^<!doctype html>/i);
    expect(frame.body).toContain('Ada Lovelace');

    // ops read the issues but do not preview them: no link, and the preview answers 403.
    const ops = await loginAs(app, services, 'ops');
    const opsList = await get(app, ops, '/admin/issues');
    expect(opsList.body).toContain('<td>vol-138<br>');
    expect((await get(app, ops, '/admin/issues/vol-138')).statusCode).toBe(403);
    expect((await get(app, ops, '/admin/issues/vol-138/preview.html')).statusCode).toBe(403);

    const unknown = await get(app, editor, '/admin/issues/vol-999');
    expect(unknown.statusCode).toBe(404);
    // The id asked for, not the server's folder nor the other issues (drafts among them).
    expect(unknown.body).toContain('There is no issue &quot;vol-999&quot;.');
    expect(unknown.body).not.toContain(services.config.issuesDir);
    expect(unknown.body).not.toContain('draft-sample');
  });

  it('makes a test send from the preview page: to the addresses typed, or to the editor; it arrives at the SMTP server marked [TEST]', async () => {
    const { app, services, harness } = await startConsoleApp('console-editor-test-send');
    const editor = await loginAs(app, services, 'editor', { email: 'Editor.Ada@example.org' });
    const page = await get(app, editor, '/admin/issues/vol-138');
    const fields = formOf(page.body, '/admin/issues/vol-138/test-send');
    expect(fields).toMatchObject({ list: 'weekly' });
    expect(fields?._csrf).toBeTruthy();

    const typed = await postForm(app, editor, '/admin/issues/vol-138/test-send', { ...fields, to: 'one@example.org, two@example.org' });
    expect(typed.statusCode).toBe(200);
    expect(typed.body).toContain('<ul class="accepted"><li>one@example.org</li><li>two@example.org</li></ul>');
    expect(harness.received.map((message) => message.recipients)).toEqual([['one@example.org'], ['two@example.org']]);

    const own = await postForm(app, editor, '/admin/issues/vol-138/test-send', { ...fields, to: '' });
    expect(own.statusCode).toBe(200);
    expect(harness.received.at(-1)?.recipients).toEqual(['Editor.Ada@example.org']);

    const issue = await loadIssue(ISSUES_DIR, 'vol-138');
    for (const message of harness.received) {
      const parsed = await simpleParser(message.raw);
      expect(parsed.subject?.startsWith('[TEST] ')).toBe(true);
      expect(parsed.subject).toBe(`[TEST] ${issueSubject(issue, services.config.mail.newsletterName)}`);
    }
    // Outside the bulk queue: no send, no job.
    expect(await services.sends.latestId('vol-138')).toBeUndefined();

    const tooMany = await postForm(app, editor, '/admin/issues/vol-138/test-send', {
      ...fields,
      to: Array.from({ length: 11 }, (_, index) => `r${index}@example.org`).join(' '),
    });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.body).toContain('at most 10 addresses');
    expect(tooMany.body).toContain('r10@example.org');
    expect(harness.received).toHaveLength(3);

    const forged = await postForm(app, editor, '/admin/issues/vol-138/test-send', { to: 'x@example.org' }, 'forged-token');
    expect(forged.statusCode).toBe(403);
    expect(harness.received).toHaveLength(3);
  });

  it('sends with a confirmation that shows the list, the active recipients and the subject; a second send is refused up front and on POST', async () => {
    const { app, services } = await startConsoleApp('console-editor-send');
    await seedSubscribers(services, 5);
    await seedSubscribers(services, 2, 'monthly');
    await suppressByEmail(services.subscribers, 'reader5@example.org', 'unsubscribed');
    const editor = await loginAs(app, services, 'editor');
    const issue = await loadIssue(ISSUES_DIR, 'vol-138');

    const confirm = await get(app, editor, '/admin/issues/vol-138/send?list=weekly');
    expect(confirm.statusCode).toBe(200);
    expect(confirm.body).toContain('<b class="active-count">4</b>');
    expect(confirm.body).toContain('(5 on the list; 1 suppressed');
    expect(confirm.body).toContain(`<dd class="subject">${escaped(issueSubject(issue, services.config.mail.newsletterName))}</dd>`);
    expect(confirm.body).toContain('<select name="list"><option value="monthly">monthly</option><option value="weekly" selected>weekly</option></select>');
    expect(confirm.body).toContain('Send to 4 active subscribers');
    const fields = formOf(confirm.body, '/admin/issues/vol-138/send');
    expect(fields).toMatchObject({ list: 'weekly', confirm: 'yes' });

    const monthly = await get(app, editor, '/admin/issues/vol-138/send?list=monthly');
    expect(monthly.body).toContain('<b class="active-count">2</b>');

    // Not confirmed, or a forged CSRF token: nothing is sent.
    expect((await postForm(app, editor, '/admin/issues/vol-138/send', { list: 'weekly' })).statusCode).toBe(400);
    expect((await postForm(app, editor, '/admin/issues/vol-138/send', { list: 'weekly', confirm: 'yes' }, 'forged')).statusCode).toBe(403);
    expect(await services.sends.latestId('vol-138')).toBeUndefined();

    const sent = await postForm(app, editor, '/admin/issues/vol-138/send', { ...fields });
    expect(sent.statusCode).toBe(303);
    const sendId = await services.sends.latestId('vol-138', 'weekly');
    expect(sendId).toBe('vol-138.weekly.1');
    expect(sent.headers.location).toBe(`/admin/sends/${sendId}`);
    expect((await services.sends.get(sendId!))?.total).toBe(4);

    const again = await postForm(app, editor, '/admin/issues/vol-138/send', { ...fields });
    expect(again.statusCode).toBe(409);
    expect(again.body).toContain(`Issue &quot;vol-138&quot; was already sent to list &quot;weekly&quot; (send ${sendId}`);
    expect(await services.sends.latestId('vol-138', 'weekly')).toBe(sendId);

    const refusedUpFront = await get(app, editor, '/admin/issues/vol-138/send?list=weekly');
    expect(refusedUpFront.statusCode).toBe(409);
    expect(refusedUpFront.body).toContain('was already sent to list &quot;weekly&quot;');
    expect(refusedUpFront.body).toContain(`<a href="/admin/sends/${sendId}">${sendId}</a>`);
    expect(formOf(refusedUpFront.body, '/admin/issues/vol-138/send')).toBeUndefined();

    // The issues page shows the send: when, to which list, where it stands, linked to its page.
    const list = await get(app, editor, '/admin/issues');
    expect(list.body).toMatch(
      new RegExp(`to <b>weekly</b>: <a href="/admin/sends/${sendId!.replace(/\./g, '\\.')}"><span class="state state-queued">queued</span></a>`),
    );
    expect(list.body).toContain('0 accepted · 0 failed · 0 skipped · 4 pending');

    // A list without subscribers is refused up front too.
    const empty = await get(app, editor, '/admin/issues/vol-138/send?list=nobody');
    expect(empty.statusCode).toBe(409);
    expect(empty.body).toContain('List &quot;nobody&quot; has no subscribers');
  });

  it('refuses a draft up front and on POST, shows a broken issue file as a row, warns of Gmail clipping, and escapes the text of an issue everywhere', async () => {
    const { app, services } = await startConsoleApp('console-editor-draft', { config: { ISSUES_DIR: await issuesFolder() } });
    await seedSubscribers(services, 3);
    const editor = await loginAs(app, services, 'editor');
    const title = '<b>Bold</b> claims & <script>alert(1)</script>';

    const list = await get(app, editor, '/admin/issues');
    expect(list.statusCode).toBe(200);
    // The broken file by its name, not by its path on the server.
    expect(list.body).toContain('<a href="/admin/issues/broken">broken</a></td><td colspan="3" class="problem pre-line">Invalid issue file broken.yaml:');
    expect(list.body).not.toContain(services.config.issuesDir);
    expect(list.body).toContain(escaped(title));
    expect(list.body).toMatch(/vol-139<\/a>.*?<span class="state state-draft">draft<\/span>/s);

    const preview = await get(app, editor, '/admin/issues/vol-139');
    expect(preview.statusCode).toBe(200);
    expect(preview.body).toContain(escaped(title));
    for (const body of [list.body, preview.body]) {
      expect(body).not.toContain('<script>alert(1)');
      expect(body).not.toContain('<b>Bold</b>');
      expect(body).not.toMatch(/<script/i);
    }
    expect(preview.body).toContain('it can be previewed and test-sent, not sent');
    expect(preview.body).not.toContain('/admin/issues/vol-139/send');

    const confirm = await get(app, editor, '/admin/issues/vol-139/send?list=weekly');
    expect(confirm.statusCode).toBe(409);
    expect(confirm.body).toContain('Issue &quot;vol-139&quot; is a draft; only a finished issue can be sent.');
    expect(formOf(confirm.body, '/admin/issues/vol-139/send')).toBeUndefined();

    const posted = await postForm(app, editor, '/admin/issues/vol-139/send', { list: 'weekly', confirm: 'yes' });
    expect(posted.statusCode).toBe(409);
    expect(posted.body).toContain('is a draft; only a finished issue can be sent');
    expect(await services.sends.latestId('vol-139')).toBeUndefined();

    const clipped = await get(app, editor, '/admin/issues/vol-140');
    expect(clipped.statusCode).toBe(200);
    expect(clipped.body).toMatch(/<span class="html-size over">\d+\.\d KB<\/span>/);
    expect(clipped.body).toContain('over Gmail&#x27;s 102.0 KB: Gmail will cut the message');

    const broken = await get(app, editor, '/admin/issues/broken');
    expect(broken.statusCode).toBe(422);
    expect(broken.body).toContain('Invalid issue file');
  });

  it('creates, lists and deletes schedules: one issue at a wall-clock time in a time zone, and weekly', async () => {
    const { app, services } = await startConsoleApp('console-editor-schedules');
    await seedSubscribers(services, 2);
    const editor = await loginAs(app, services, 'editor');

    const empty = await get(app, editor, '/admin/schedules');
    expect(empty.statusCode).toBe(200);
    expect(empty.body).toContain('No schedules yet.');
    const onceFields = formOf(empty.body, '/admin/schedules');
    expect(onceFields).toMatchObject({ kind: 'once' });
    // Only finished issues can be scheduled: the draft is not offered.
    expect(empty.body).toContain('<option value="vol-138">vol-138</option>');
    expect(empty.body).not.toContain('<option value="draft-sample">');

    const once = await postForm(app, editor, '/admin/schedules', {
      kind: 'once',
      issue: 'vol-138',
      list: 'weekly',
      at: '2031-07-01T08:00',
      timeZone: 'Europe/Berlin',
    });
    expect(once.statusCode).toBe(303);
    const onceId = /^\/admin\/schedules\?created=(sch-[0-9a-f]+)$/.exec(once.headers.location as string)?.[1];
    expect(onceId).toBeDefined();

    const weekly = await postForm(app, editor, '/admin/schedules', { kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'europe/berlin' });
    expect(weekly.statusCode).toBe(303);

    const schedules = await listSchedules(services);
    expect(schedules.map((schedule) => schedule.spec)).toEqual(
      expect.arrayContaining([
        // 08:00 in Berlin in July is 06:00 UTC (summer time).
        { kind: 'once', issue: 'vol-138', list: 'weekly', at: '2031-07-01T06:00:00.000Z' },
        { kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'Europe/Berlin' },
      ]),
    );
    expect(schedules.every((schedule) => schedule.createdBy === `console:${editor.email}`)).toBe(true);

    const page = await get(app, editor, `/admin/schedules?created=${onceId}`);
    expect(page.body).toContain(`Schedule ${onceId} created.`);
    expect(page.body).toContain('<b>vol-138</b> to <b>weekly</b>, once at <time datetime="2031-07-01T06:00:00.000Z">2031-07-01 06:00 UTC</time>');
    expect(page.body).toContain('Every monday at 08:00 (Europe/Berlin): the newest finished issue not yet sent to <b>weekly</b>');

    const badZone = await postForm(app, editor, '/admin/schedules', { kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'Mars/Olympus' });
    expect(badZone.statusCode).toBe(400);
    expect(badZone.body).toContain('Unknown time zone &quot;Mars/Olympus&quot;');
    // The refused form comes back as typed.
    expect(badZone.body).toContain('value="Mars/Olympus"');
    // What the state refuses is 409, an unknown issue 404, as the API answers them; the form comes back as typed.
    const draft = await postForm(app, editor, '/admin/schedules', {
      kind: 'once',
      issue: 'draft-sample',
      list: 'weekly',
      at: '2031-07-01T08:00',
      timeZone: 'UTC',
    });
    expect(draft.statusCode).toBe(409);
    expect(draft.body).toContain('only a finished issue can be scheduled');
    expect(draft.body).toContain('value="2031-07-01T08:00"');
    const twice = await postForm(app, editor, '/admin/schedules', { kind: 'once', issue: 'vol-138', list: 'weekly', at: '2031-08-01T08:00', timeZone: 'UTC' });
    expect(twice.statusCode).toBe(409);
    expect(twice.body).toContain('is already scheduled for list &quot;weekly&quot;');
    expect(twice.body).toContain('value="2031-08-01T08:00"');
    const unknownIssue = await postForm(app, editor, '/admin/schedules', {
      kind: 'once',
      issue: 'vol-999',
      list: 'weekly',
      at: '2031-08-01T08:00',
      timeZone: 'UTC',
    });
    expect(unknownIssue.statusCode).toBe(404);
    expect(unknownIssue.body).toContain('There is no issue &quot;vol-999&quot;.');
    expect(unknownIssue.body).not.toContain(services.config.issuesDir);
    expect(unknownIssue.body).toContain('value="2031-08-01T08:00"');
    const emptyList = await postForm(app, editor, '/admin/schedules', { kind: 'weekly', list: 'nobody', day: 'friday', time: '09:30', timeZone: 'UTC' });
    expect(emptyList.statusCode).toBe(409);
    expect(emptyList.body).toContain('List &quot;nobody&quot; has no subscribers');
    expect(emptyList.body).toContain('value="09:30"');
    expect(await listSchedules(services)).toHaveLength(2);

    const deleted = await postForm(app, editor, `/admin/schedules/${onceId}/delete`, {});
    expect(deleted.statusCode).toBe(303);
    expect(deleted.headers.location).toBe(`/admin/schedules?deleted=${onceId}`);
    expect((await listSchedules(services)).map((schedule) => schedule.id)).not.toContain(onceId);
    expect((await postForm(app, editor, `/admin/schedules/${onceId}/delete`, {})).statusCode).toBe(404);

    // ops see the schedules; deleting needs the CSRF token like every form.
    const ops = await loginAs(app, services, 'ops');
    expect((await get(app, ops, '/admin/schedules')).body).toContain('Every monday at 08:00');
    const [left] = await listSchedules(services);
    expect((await postForm(app, ops, `/admin/schedules/${left!.id}/delete`, {}, 'forged')).statusCode).toBe(403);
    expect(await listSchedules(services)).toHaveLength(1);
  });

  it('turns a wall-clock time in a time zone into the instant, on both sides of a DST change', () => {
    expect(zonedTimeToInstant('2031-01-15T08:00', 'Europe/Berlin').toISOString()).toBe('2031-01-15T07:00:00.000Z');
    expect(zonedTimeToInstant('2031-07-01T08:00', 'Europe/Berlin').toISOString()).toBe('2031-07-01T06:00:00.000Z');
    expect(zonedTimeToInstant('2031-03-09T01:30', 'America/New_York').toISOString()).toBe('2031-03-09T06:30:00.000Z');
    expect(zonedTimeToInstant('2031-03-09T03:30', 'America/New_York').toISOString()).toBe('2031-03-09T07:30:00.000Z');
    expect(zonedTimeToInstant('2031-12-01T23:59', 'UTC').toISOString()).toBe('2031-12-01T23:59:00.000Z');
    expect(() => zonedTimeToInstant('2031-02-30T08:00', 'UTC')).toThrow('not a date and time that exists');
    expect(() => zonedTimeToInstant('', 'UTC')).toThrow('is not a date and time');
  });

  it('lets only an admin manage users and tokens; a generated password and a new token are shown once', async () => {
    const { app, services } = await startConsoleApp('console-editor-users');
    const editor = await loginAs(app, services, 'editor');
    expect((await get(app, editor, '/admin/users')).statusCode).toBe(403);
    expect((await postForm(app, editor, '/admin/users', { email: 'sneaky@example.org', role: 'admin' })).statusCode).toBe(403);
    expect((await postForm(app, editor, '/admin/tokens', { name: 'sneaky', role: 'admin' })).statusCode).toBe(403);
    expect(await verifyLogin(services, 'sneaky@example.org', 'whatever-password')).toBeUndefined();

    const admin = await loginAs(app, services, 'admin');
    const page = await get(app, admin, '/admin/users');
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(`${admin.email} <small>(you)</small>`);
    expect(page.body).toContain(editor.email);

    const added = await postForm(app, admin, '/admin/users', { email: 'New.Ops@example.org', role: 'ops' });
    expect(added.statusCode).toBe(201);
    expect(added.headers['cache-control']).toBe('no-store');
    const password = /<code class="secret">([^<]+)<\/code>/.exec(added.body)?.[1];
    expect(password).toBeDefined();
    expect(await verifyLogin(services, 'new.ops@example.org', password!)).toMatchObject({ kind: 'user', role: 'ops' });
    const after = await get(app, admin, '/admin/users');
    expect(after.body).toContain('New.Ops@example.org');
    expect(after.body).not.toContain(password!);

    // An address that has a user (in any case) is 409, as the API answers a state that refuses; a malformed one 400.
    const duplicate = await postForm(app, admin, '/admin/users', { email: 'new.ops@example.org', role: 'editor' });
    expect(duplicate.statusCode).toBe(409);
    expect(duplicate.body).toContain('already exists');
    expect(duplicate.body).toContain('value="new.ops@example.org"');
    const malformed = await postForm(app, admin, '/admin/users', { email: 'not-an-address', role: 'editor' });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.body).toContain('is not a valid email address');

    const created = await postForm(app, admin, '/admin/tokens', { name: 'ci-deploy', role: 'editor' });
    expect(created.statusCode).toBe(201);
    const token = /<code class="secret">([^<]+)<\/code>/.exec(created.body)?.[1];
    const actor = await authenticateToken(services, token!);
    expect(actor).toMatchObject({ kind: 'token', name: 'ci-deploy', role: 'editor' });
    const withToken = await get(app, admin, '/admin/users');
    expect(withToken.body).toContain('<td>ci-deploy</td>');
    expect(withToken.body).not.toContain(token!);

    const revoke = formOf(withToken.body, `/admin/tokens/${actor!.id}/revoke`);
    expect(revoke).toBeDefined();
    const revoked = await postForm(app, admin, `/admin/tokens/${actor!.id}/revoke`, { ...revoke });
    expect(revoked.statusCode).toBe(303);
    expect(revoked.headers.location).toBe('/admin/users?done=token-revoked');
    expect(await authenticateToken(services, token!)).toBeUndefined();

    const removed = await postForm(app, admin, '/admin/users/delete', { email: 'new.ops@example.org' });
    expect(removed.statusCode).toBe(303);
    expect(await verifyLogin(services, 'new.ops@example.org', password!)).toBeUndefined();
    // Removing nobody is 404; removing the last admin is refused by the state: 409.
    const nobody = await postForm(app, admin, '/admin/users/delete', { email: 'new.ops@example.org' });
    expect(nobody.statusCode).toBe(404);
    expect(nobody.body).toContain('no user with the address new.ops@example.org');
    const last = await postForm(app, admin, '/admin/users/delete', { email: admin.email });
    expect(last.statusCode).toBe(409);
    expect(last.body).toContain('is the last admin');
  });

  it('needs no script on any editor page, and every form on them carries a CSRF token', async () => {
    const { app, services } = await startConsoleApp('console-editor-forms');
    await seedSubscribers(services, 1);
    const admin = await loginAs(app, services, 'admin');
    for (const url of ['/admin/issues/vol-138', '/admin/issues/vol-138/send', '/admin/schedules', '/admin/users']) {
      const page = await get(app, admin, url);
      expect(page.statusCode, url).toBe(200);
      expect(page.body, url).not.toMatch(/<script/i);
      const forms = [...page.body.matchAll(/<form method="post"[^>]*>.*?<\/form>/gs)].map((match) => match[0]);
      expect(forms.length, url).toBeGreaterThan(0);
      for (const form of forms) expect(csrfOf(form), `${url}: ${form.slice(0, 80)}`).toBeTruthy();
    }
  });
});
