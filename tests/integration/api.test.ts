import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { createToken, revokeToken } from '../../src/app/accounts.ts';
import { ROLES, can, type Permission } from '../../src/core/roles.ts';
import { API_DOCUMENT, type HttpMethod, type Operation } from '../../src/http/api/openapi.ts';
import { apiToken, injectAs, loginAs, startConsoleApp, type Caller, type ConsoleApp } from '../support/console.ts';
import { waitFor } from '../support/faults.ts';
import { seedSubscribers } from '../support/harness.ts';

/**
 * The JSON API under /api, through the one HTTP app of `newsletter serve` (app.inject), over a real
 * Redis, a real SMTP server and real workers: every route, and every error status it answers.
 */

const ISSUES_DIR = path.join(PROJECT_ROOT, 'emails', 'issues');

/** An issues folder of its own: vol-138 as shipped, and vol-139, the same issue as a draft. */
async function issuesWithDraft(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'api-issues-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const finished = await readFile(path.join(ISSUES_DIR, 'vol-138.yaml'), 'utf8');
  expect(finished).toMatch(/^id: vol-138\nstatus: finished\n/);
  await writeFile(path.join(dir, 'vol-138.yaml'), finished);
  await writeFile(path.join(dir, 'vol-139.yaml'), finished.replace(/^id: vol-138\nstatus: finished\n/, 'id: vol-139\nstatus: draft\n'));
  return dir;
}

/** The documented operation a request lands on, as `METHOD /api/path/{id}`; undefined when the document has none (an unknown route). */
function documentedRoute(method: string, url: string): string | undefined {
  const requested = url.split('?')[0]!;
  for (const [template, item] of Object.entries(API_DOCUMENT.paths)) {
    const pattern = new RegExp(`^${template.replace(/\./g, '\\.').replace(/\{\w+\}/g, '[^/]+')}$`);
    if (pattern.test(requested) && item[method.toLowerCase() as HttpMethod]) return `${method.toUpperCase()} ${template}`;
  }
  return undefined;
}

/**
 * Every status the tests of this file saw on a documented route, as `METHOD /api/path/{id} status`:
 * the last test checks the document lists each one for its operation.
 */
const observed = new Set<string>();

/** Notes the status a request answered with (see `observed`). */
function observe(method: string, url: string, status: number): void {
  const route = documentedRoute(method, url);
  if (route) observed.add(`${route} ${status}`);
}

/** app.inject as a caller, its status noted (see `observed`). */
async function injectObserved(site: ConsoleApp, caller: Caller, request: Parameters<typeof injectAs>[2] & { method: 'GET' | 'POST' | 'DELETE'; url: string }) {
  const response = await injectAs(site.app, caller, request);
  observe(request.method, request.url, response.statusCode);
  return response;
}

/** A JSON request as a caller; the parsed body comes along. */
async function call(site: ConsoleApp, caller: Caller, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown) {
  const response = await injectObserved(site, caller, { method, url, ...(payload === undefined ? {} : { payload: payload as object }) });
  const body: unknown = String(response.headers['content-type'] ?? '').startsWith('application/json') ? response.json() : response.body;
  return { status: response.statusCode, body: body as Record<string, unknown> & { error?: string }, headers: response.headers };
}

/** Whether the document lists a status for an operation (`METHOD /api/path/{id}`). */
function documents(route: string, status: string): boolean {
  const [method, template] = route.split(' ') as [string, string];
  const operation = API_DOCUMENT.paths[template]?.[method.toLowerCase() as HttpMethod];
  return operation !== undefined && Object.hasOwn(operation.responses, status);
}

/** The send's state as the API reports it. */
async function stateOf(site: ConsoleApp, caller: Caller, sendId: string) {
  const { status, body } = await call(site, caller, 'GET', `/api/sends/${sendId}`);
  expect(status).toBe(200);
  return body.summary as { state: string; accepted: number; pending: number; skipped: number; failed: number; total: number };
}

describe('the API', () => {
  it('documents every route it serves in /api/openapi.json, and no route it does not serve', async () => {
    const site = await startConsoleApp('api-doc');
    const token = await apiToken(site.services, 'editor');
    const served = site.routes
      .filter((route) => route.url.startsWith('/api/') && route.method !== 'HEAD')
      .map((route) => `${route.method} ${route.url.replace(/:(\w+)/g, '{$1}')}`)
      .sort();
    const documented = Object.entries(API_DOCUMENT.paths)
      .flatMap(([url, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${url}`))
      .sort();
    expect(served.length).toBeGreaterThan(10);
    expect(documented).toEqual(served);

    const { status, body } = await call(site, token, 'GET', '/api/openapi.json');
    expect(status).toBe(200);
    expect(body).toEqual(JSON.parse(JSON.stringify(API_DOCUMENT)));
    // Every $ref points at something the document has.
    const refs = [...JSON.stringify(API_DOCUMENT).matchAll(/"\$ref":"#\/components\/(\w+)\/(\w+)"/g)];
    expect(refs.length).toBeGreaterThan(10);
    for (const [, section, name] of refs)
      expect((API_DOCUMENT.components as Record<string, Record<string, unknown>>)[section!]?.[name!], `${section}/${name}`).toBeDefined();
    // Nobody reads it without credentials.
    expect((await call(site, undefined, 'GET', '/api/openapi.json')).status).toBe(401);
  });

  it('guards each route with the permission its document names: 403 for every role without it, and the message names it', async () => {
    const site = await startConsoleApp('api-doc-permissions');
    const tokens = Object.fromEntries(await Promise.all(ROLES.map(async (role) => [role, await apiToken(site.services, role)] as const)));
    let checked = 0;
    for (const [url, item] of Object.entries(API_DOCUMENT.paths)) {
      for (const [method, operation] of Object.entries(item) as [HttpMethod, Operation][]) {
        const permission = operation['x-permission'] as Permission;
        const concrete = url.replace('{id}', url.startsWith('/api/issues') ? 'vol-138' : 'x');
        for (const role of ROLES.filter((candidate) => !can(candidate, permission))) {
          const { status, body } = await call(
            site,
            tokens[role],
            method.toUpperCase() as 'GET' | 'POST' | 'DELETE',
            concrete,
            method === 'get' ? undefined : {},
          );
          expect(status, `${role} on ${method} ${url}`).toBe(403);
          expect(body.error).toContain(permission);
          checked += 1;
        }
      }
    }
    // The editor may not pause, resume, cancel or retry; ops may not preview or test-send.
    expect(checked).toBeGreaterThanOrEqual(6);
  });

  it('starts a send: 201 with the send, 409 for a double send and for a draft, 404 for an unknown issue or send, 400 for a malformed body', async () => {
    const site = await startConsoleApp('api-send', { config: { ISSUES_DIR: await issuesWithDraft() } });
    const { services } = site;
    await seedSubscribers(services, 3);
    const editor = await apiToken(services, 'editor');

    const started = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly' });
    expect(started.status, JSON.stringify(started.body)).toBe(201);
    const send = started.body.send as { sendId: string; issueId: string; list: string; state: string; total: number };
    expect(send).toMatchObject({ issueId: 'vol-138', list: 'weekly', total: 3 });
    expect(started.headers.location).toBe(`/api/sends/${send.sendId}`);
    expect(await services.sends.latestId('vol-138', 'weekly')).toBe(send.sendId);

    const again = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly' });
    expect(again.status).toBe(409);
    expect(again.body.error).toMatch(/already sent to list "weekly"/);
    // The hint names the API's field, not the CLI's flag.
    expect(again.body.error).toContain('"resend": true');
    expect(again.body.error).not.toContain('--resend');
    const draft = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-139', list: 'weekly' });
    expect(draft.status).toBe(409);
    expect(draft.body.error).toMatch(/vol-139" is a draft/);
    expect(await services.sends.latestId('vol-139', 'weekly')).toBeUndefined();
    const emptyList = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'nobody-here' });
    expect(emptyList.status).toBe(409);
    expect(emptyList.body.error).toMatch(/no subscribers/);

    const unknownIssue = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-999', list: 'weekly' });
    expect(unknownIssue.status).toBe(404);
    expect(unknownIssue.body.error).toBe('There is no issue "vol-999".');
    const admin = await apiToken(services, 'admin');
    for (const [method, url] of [
      ['GET', '/api/sends/vol-138.weekly.99'],
      ['GET', '/api/sends/not-a-send-id'],
      ['GET', '/api/sends/vol-138.weekly.99/failures'],
      ['GET', '/api/sends/vol-138.weekly.99/failures.csv'],
      ['POST', '/api/sends/vol-138.weekly.99/pause'],
      ['GET', '/api/no-such-route'],
      ['DELETE', '/api/sends'],
    ] as const) {
      const answer = await call(site, admin, method, url, method === 'POST' ? {} : undefined);
      expect(answer.status, `${method} ${url}`).toBe(404);
      expect(typeof answer.body.error, `${method} ${url}`).toBe('string');
    }

    const malformed: readonly [unknown, RegExp][] = [
      [{ issue: 'vol-138' }, /^list: is required$/],
      [{ list: 'weekly' }, /^issue: is required$/],
      [{ issue: 'Vol 138!', list: 'weekly' }, /^issue: must be an issue id/],
      [{ issue: 'vol-138', list: 'Weekly List' }, /^list: must be a list name/],
      [{ issue: 138, list: 'weekly' }, /^issue: must be an issue id/],
      [{ issue: 'vol-138', list: 'weekly', resend: 'yes' }, /^resend: must be true or false$/],
      [{ issue: 'vol-138', list: 'weekly', colour: 'blue' }, /^colour: is not a field of this body$/],
      [{ issue: 'vol-138', list: 'weekly', at: '2099-01-01T08:00:00Z', resend: true }, /^resend: a scheduled send never sends an issue twice/],
      [['vol-138'], /^body: /],
    ];
    for (const [payload, message] of malformed) {
      const answer = await call(site, editor, 'POST', '/api/sends', payload);
      expect(answer.status, JSON.stringify(payload)).toBe(400);
      expect(answer.body.error, JSON.stringify(payload)).toMatch(message);
    }
    const notJson = await injectObserved(site, editor, {
      method: 'POST',
      url: '/api/sends',
      headers: { 'content-type': 'application/json' },
      payload: '{"issue":',
    });
    expect(notJson.statusCode).toBe(400);
    expect(notJson.json()).toEqual({ error: expect.stringMatching(/JSON/) });
    // Still the one send.
    expect((await call(site, editor, 'GET', '/api/sends')).body.sends).toHaveLength(1);

    // A resend is refused without `resend`, and makes a second send with it.
    const resent = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly', resend: true });
    expect(resent.status).toBe(201);
    const second = (resent.body.send as { sendId: string }).sendId;
    expect(second).not.toBe(send.sendId);
    // Ops can't act on the older send of the same issue and list any more: 409 naming the latest.
    const ops = await apiToken(services, 'ops');
    const stale = await call(site, ops, 'POST', `/api/sends/${send.sendId}/pause`, {});
    expect(stale.status).toBe(409);
    expect(stale.body.error).toContain(`that is ${second}`);
  });

  it('answers 401 without a token, with an unknown token and with a revoked one, and 403 to a role without the permission', async () => {
    const site = await startConsoleApp('api-auth', { config: { HTTP_HOST: '0.0.0.0' } });
    const { services } = site;
    const { token, view } = await createToken(services, { name: 'ci-editor', role: 'editor' });
    const editor = `Bearer ${token}`;
    expect((await call(site, editor, 'GET', '/api/sends')).status).toBe(200);

    for (const caller of [undefined, 'Bearer not-a-token', `Bearer ${token}x`, `Basic ${Buffer.from('a:b').toString('base64')}`]) {
      const response = await injectObserved(site, caller, { method: 'GET', url: '/api/sends' });
      expect(response.statusCode, String(caller)).toBe(401);
      expect(response.headers['www-authenticate']).toMatch(/^Bearer /);
      expect(response.json()).toEqual({ error: expect.stringContaining('Authorization: Bearer') });
    }

    // 403: the editor may not pause a send nor read the metrics (this server listens beyond loopback).
    const pause = await call(site, editor, 'POST', '/api/sends/vol-138.weekly.1/pause', {});
    expect(pause).toMatchObject({ status: 403, body: { error: 'the editor role may not do this (it needs sends.control)' } });
    const metrics = await call(site, editor, 'GET', '/metrics');
    expect(metrics.status).toBe(403);
    expect(metrics.body.error).toMatch(/may not read metrics/);
    expect((await call(site, await apiToken(services, 'ops'), 'GET', '/metrics')).status).toBe(200);

    await revokeToken(services, view.id);
    const revoked = await call(site, editor, 'GET', '/api/sends');
    expect(revoked.status).toBe(401);
  });

  it('lists and shows sends with their progress and domains, pages their failures and exports them as CSV', async () => {
    const site = await startConsoleApp('api-sends', {
      config: { SEND_MAX_ATTEMPTS: '1' },
      rejectRecipient: (address) => (address === 'reader2@example.org' ? { responseCode: 550, message: '5.1.1 User unknown' } : undefined),
    });
    const { services, harness } = site;
    await seedSubscribers(services, 4);
    await harness.startWorker();
    const ops = await apiToken(services, 'ops');
    const started = await call(site, ops, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly' });
    expect(started.status).toBe(201);
    const { sendId } = started.body.send as { sendId: string };
    await harness.waitForSend(sendId);

    const list = await call(site, ops, 'GET', '/api/sends?limit=5');
    expect(list.status).toBe(200);
    expect(list.body.sends).toEqual([expect.objectContaining({ sendId, state: 'sent-with-failures', accepted: 3, failed: 1, bounced: 1, pending: 0 })]);
    for (const query of ['limit=0', 'limit=abc', 'limit=1.5', `limit=100000`]) {
      const refused = await call(site, ops, 'GET', `/api/sends?${query}`);
      expect(refused.status, query).toBe(400);
      expect(refused.body.error, query).toMatch(/^limit: /);
    }

    const detail = await call(site, ops, 'GET', `/api/sends/${sendId}`);
    expect(detail.status).toBe(200);
    expect(detail.body.summary).toMatchObject({ sendId, accepted: 3, failed: 1 });
    expect(detail.body.series).toEqual(expect.arrayContaining([expect.objectContaining({ accepted: 3, failed: 1 })]));
    expect(detail.body.domains).toEqual([expect.objectContaining({ domain: 'example.org', accepted: 3, failed: 1 })]);

    const failures = await call(site, ops, 'GET', `/api/sends/${sendId}/failures?pageSize=10&kind=hard`);
    expect(failures.status).toBe(200);
    expect(failures.body).toMatchObject({
      total: 1,
      page: 1,
      pageSize: 10,
      rows: [{ email: 'reader2@example.org', kind: 'hard', source: 'smtp', attempts: 1 }],
    });
    expect((failures.body.rows as { reason: string }[])[0]?.reason).toMatch(/User unknown/);
    expect((await call(site, ops, 'GET', `/api/sends/${sendId}/failures?filter=nobody`)).body).toMatchObject({ total: 0, rows: [] });
    for (const query of ['page=0', 'pageSize=501', 'page=x']) {
      expect((await call(site, ops, 'GET', `/api/sends/${sendId}/failures?${query}`)).status, query).toBe(400);
    }

    const csv = await injectObserved(site, ops, { method: 'GET', url: `/api/sends/${sendId}/failures.csv` });
    expect(csv.statusCode).toBe(200);
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(csv.headers['content-disposition']).toBe(`attachment; filename="${sendId}-failures.csv"`);
    const lines = csv.body.trimEnd().split('\r\n');
    expect(lines[0]).toBe('subscriber_id,email,kind,source,reason,attempts,at');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain('reader2@example.org,hard,smtp,');

    // The editor sees the send and its counts, not who failed: the failures name subscribers' addresses.
    const editor = await apiToken(services, 'editor');
    expect((await call(site, editor, 'GET', `/api/sends/${sendId}`)).body.summary).toMatchObject({ sendId, failed: 1 });
    for (const url of [`/api/sends/${sendId}/failures`, `/api/sends/${sendId}/failures.csv`]) {
      const refused = await call(site, editor, 'GET', url);
      expect(refused.status, url).toBe(403);
      expect(refused.body, url).toEqual({ error: 'the editor role may not do this (it needs sends.failures)' });
    }
  });

  it('lists issues with their sends, and previews one with its subject, preheader and sizes', async () => {
    const site = await startConsoleApp('api-issues', { config: { ISSUES_DIR: await issuesWithDraft() } });
    const { services } = site;
    await seedSubscribers(services, 2);
    const editor = await apiToken(services, 'editor');
    const started = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly' });
    expect(started.status).toBe(201);

    const issues = await call(site, editor, 'GET', '/api/issues');
    expect(issues.status).toBe(200);
    expect(issues.body.issues).toEqual([
      expect.objectContaining({ id: 'vol-138', status: 'finished', sends: [expect.objectContaining({ list: 'weekly', total: 2 })] }),
      expect.objectContaining({ id: 'vol-139', status: 'draft', sends: [] }),
    ]);

    const preview = await call(site, editor, 'GET', '/api/issues/vol-138?list=weekly');
    expect(preview.status).toBe(200);
    expect(preview.body).toMatchObject({ id: 'vol-138', status: 'finished', list: 'weekly', gmailClipBytes: 102 * 1024, clippedByGmail: false });
    expect(preview.body.subject).toMatch(/Vol\.?\s*138|Training-Free/);
    expect(typeof preview.body.preheader).toBe('string');
    expect(preview.body.htmlBytes).toBeGreaterThan(1000);
    expect(preview.body.text).toContain('Ada');
    // An unknown issue: 404 naming only the id asked for, not the server's folder nor the other issues (a draft among them).
    const unknown = await call(site, editor, 'GET', '/api/issues/nope');
    expect(unknown).toMatchObject({ status: 404, body: { error: 'There is no issue "nope".' } });
    for (const leak of ['/', site.harness.config.issuesDir, 'vol-138', 'vol-139', '.yaml']) expect(JSON.stringify(unknown.body), leak).not.toContain(leak);
    expect((await call(site, editor, 'GET', '/api/issues/vol-138?list=Not%20A%20List')).status).toBe(400);

    // A broken issue file: listed with its problem, and 422 (nothing in the request to change) where it is used.
    await writeFile(path.join(site.harness.config.issuesDir, 'vol-140.yaml'), 'id: vol-140\nstatus: finished\nvolume: 140\n');
    const listed = await call(site, editor, 'GET', '/api/issues');
    expect(listed.body.issues).toContainEqual({ id: 'vol-140', problem: expect.stringMatching(/Invalid issue file .*vol-140\.yaml[\s\S]*title/), sends: [] });
    for (const [method, url, payload] of [
      ['GET', '/api/issues/vol-140', undefined],
      ['POST', '/api/issues/vol-140/test-send', { to: ['proof@example.org'] }],
      ['POST', '/api/sends', { issue: 'vol-140', list: 'weekly' }],
    ] as const) {
      const broken = await call(site, editor, method, url, payload);
      expect(broken.status, `${method} ${url}`).toBe(422);
      // The file by its name, not by its path on the server.
      expect(broken.body.error, `${method} ${url}`).toMatch(/^Invalid issue file vol-140\.yaml:\n/);
      expect(broken.body.error, `${method} ${url}`).not.toContain(site.harness.config.issuesDir);
    }
    expect(JSON.stringify(listed.body)).not.toContain(site.harness.config.issuesDir);
  });

  it('makes a test send that arrives at the SMTP server with [TEST] in the subject, and refuses bad addresses', async () => {
    const site = await startConsoleApp('api-test-send');
    const { services, harness } = site;
    const editor = await loginAs(site.app, services, 'editor');

    const sent = await call(site, editor, 'POST', '/api/issues/vol-138/test-send', { to: ['proof@example.org'] });
    expect(sent.status, JSON.stringify(sent.body)).toBe(200);
    expect(sent.body).toEqual({ accepted: ['proof@example.org'], rejected: [] });
    await waitFor(() => harness.received.length === 1, 5_000, 'the test message at the SMTP server');
    const [message] = harness.received;
    expect(message?.recipients).toEqual(['proof@example.org']);
    const mail = await simpleParser(message!.raw);
    expect(mail.subject).toMatch(/^\[TEST\] /);
    // Outside the bulk queue: no send, no job.
    expect(await services.sends.latestId('vol-138', 'weekly')).toBeUndefined();
    expect(await services.queue.count()).toBe(0);

    const refusals: readonly [unknown, number, RegExp][] = [
      [{ to: [] }, 400, /^to: must name at least one address$/],
      [{}, 400, /^to: is required$/],
      [{ to: 'proof@example.org' }, 400, /^to: must be a list of addresses/],
      [{ to: Array.from({ length: 11 }, (_, n) => `p${n}@example.org`) }, 400, /^to: may name at most 10 addresses/],
      [{ to: ['not an address'] }, 400, /not a valid email address/],
    ];
    for (const [payload, status, message] of refusals) {
      const answer = await call(site, editor, 'POST', '/api/issues/vol-138/test-send', payload);
      expect(answer.status, JSON.stringify(payload)).toBe(status);
      expect(answer.body.error, JSON.stringify(payload)).toMatch(message);
    }
    expect((await call(site, editor, 'POST', '/api/issues/vol-999/test-send', { to: ['proof@example.org'] })).status).toBe(404);
    expect(harness.received).toHaveLength(1);
  });

  it('creates, lists and deletes schedules, and schedules a send when given `at`', async () => {
    const site = await startConsoleApp('api-schedules', { config: { ISSUES_DIR: await issuesWithDraft() } });
    const { services } = site;
    await seedSubscribers(services, 2);
    const editor = await apiToken(services, 'editor');

    const weekly = await call(site, editor, 'POST', '/api/schedules', {
      kind: 'weekly',
      list: 'weekly',
      day: 'monday',
      time: '08:00',
      timeZone: 'Europe/Berlin',
    });
    expect(weekly.status, JSON.stringify(weekly.body)).toBe(201);
    const schedule = weekly.body.schedule as { id: string; createdBy: string; nextRunAt: string; spec: unknown };
    expect(schedule.spec).toEqual({ kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'Europe/Berlin' });
    expect(schedule.createdBy).toMatch(/^api:editor-/);
    expect(weekly.headers.location).toBe(`/api/schedules/${schedule.id}`);
    expect(Date.parse(schedule.nextRunAt)).toBeGreaterThan(Date.now());

    const at = new Date(Date.now() + 3_600_000).toISOString();
    const later = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly', at });
    expect(later.status, JSON.stringify(later.body)).toBe(201);
    const once = later.body.schedule as { id: string; spec: unknown; nextRunAt: string };
    expect(once.spec).toEqual({ kind: 'once', issue: 'vol-138', list: 'weekly', at });
    expect(once.nextRunAt).toBe(at);
    // Scheduled, not sent.
    expect(await services.sends.latestId('vol-138', 'weekly')).toBeUndefined();
    // With `at`, what the state refuses is 409, as for a send now: a draft, an issue already scheduled for the list.
    const laterDraft = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-139', list: 'weekly', at });
    expect(laterDraft.status).toBe(409);
    expect(laterDraft.body.error).toMatch(/vol-139" is a draft/);
    const laterAgain = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly', at });
    expect(laterAgain.status).toBe(409);
    expect(laterAgain.body.error).toMatch(/already scheduled/);
    const laterInThePast = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly', at: '2001-01-01T00:00:00Z' });
    expect(laterInThePast.status).toBe(400);

    const listed = await call(site, editor, 'GET', '/api/schedules');
    expect(listed.status).toBe(200);
    expect((listed.body.schedules as { id: string }[]).map(({ id }) => id).sort()).toEqual([schedule.id, once.id].sort());

    // Malformed input is 400; a schedule the state refuses (a draft, an issue already scheduled) is 409, as for a send.
    const refused: readonly [unknown, RegExp, number][] = [
      [{ kind: 'weekly', list: 'weekly', day: 'someday', time: '08:00', timeZone: 'UTC' }, /^day: must be a day of the week/, 400],
      [{ kind: 'weekly', list: 'weekly', day: 'monday', time: '8 o’clock', timeZone: 'UTC' }, /^time: /, 400],
      [{ kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'Mars/Olympus' }, /Mars\/Olympus/, 400],
      [{ kind: 'hourly', list: 'weekly' }, /^kind: must be "once" or "weekly"$/, 400],
      [{ kind: 'once', issue: 'vol-138', list: 'weekly', at: '2001-01-01T00:00:00Z' }, /in the past/, 400],
      [{ kind: 'once', issue: 'vol-139', list: 'weekly', at }, /vol-139" is a draft/, 409],
      [{ kind: 'once', issue: 'vol-138', list: 'weekly', at }, /already scheduled/, 409],
    ];
    for (const [payload, message, status] of refused) {
      const answer = await call(site, editor, 'POST', '/api/schedules', payload);
      expect(answer.status, JSON.stringify(payload)).toBe(status);
      expect(answer.body.error, JSON.stringify(payload)).toMatch(message);
    }
    expect((await call(site, editor, 'POST', '/api/schedules', { kind: 'once', issue: 'vol-999', list: 'weekly', at })).status).toBe(404);

    const deleted = await injectObserved(site, editor, { method: 'DELETE', url: `/api/schedules/${schedule.id}` });
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');
    const again = await call(site, editor, 'DELETE', `/api/schedules/${schedule.id}`);
    expect(again.status).toBe(404);
    expect(again.body.error).toContain(schedule.id);
    expect((await call(site, editor, 'GET', '/api/schedules')).body.schedules).toEqual([expect.objectContaining({ id: once.id })]);
  });

  it('pauses, resumes and cancels a send while a worker runs it; a cancelled send refuses resume and retry-failed with 409', async () => {
    const site = await startConsoleApp('api-control', { acceptDelayMs: 10, config: { WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '2' } });
    const { services, harness } = site;
    await seedSubscribers(services, 300);
    const editor = await apiToken(services, 'editor');
    const ops = await loginAs(site.app, services, 'ops');
    const started = await call(site, editor, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly' });
    expect(started.status).toBe(201);
    const { sendId } = started.body.send as { sendId: string };
    await harness.startWorker();
    await waitFor(async () => (await stateOf(site, ops, sendId)).accepted >= 10, 20_000, 'the send to be under way');

    const paused = await call(site, ops, 'POST', `/api/sends/${sendId}/pause`, { reason: 'wrong link in the intro' });
    expect(paused.status, JSON.stringify(paused.body)).toBe(200);
    expect(paused.body.result).toMatchObject({ action: 'pause', sendId, changed: true });
    expect(paused.body.send).toMatchObject({ state: 'paused', stateReason: { by: 'ops', who: `console:${ops.email}`, reason: 'wrong link in the intro' } });
    // Pausing again changes nothing, and says so.
    const pausedAgain = await call(site, ops, 'POST', `/api/sends/${sendId}/pause`);
    expect(pausedAgain.status).toBe(200);
    expect(pausedAgain.body.result).toMatchObject({ changed: false });
    const drained = await waitFor(
      async () => {
        const record = await services.sends.get(sendId);
        return record?.sending === 0 ? record : undefined;
      },
      10_000,
      'the messages in flight to finish',
    );
    expect(drained.accepted).toBeLessThan(300);

    const resumed = await call(site, ops, 'POST', `/api/sends/${sendId}/resume`, {});
    expect(resumed.status).toBe(200);
    expect(resumed.body.result).toMatchObject({ action: 'resume', changed: true });
    expect(['sending', 'queued']).toContain((resumed.body.send as { state: string }).state);
    await waitFor(async () => (await stateOf(site, ops, sendId)).accepted > drained.accepted, 10_000, 'the send to go on after the resume');

    const cancelled = await call(site, ops, 'POST', `/api/sends/${sendId}/cancel`, { reason: 'sent by mistake' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.result).toMatchObject({ action: 'cancel', changed: true });
    expect((await harness.waitForSend(sendId)).state).toBe('cancelled');
    // Messages already at the SMTP server when the cancel came finish and are recorded; the rest are skipped.
    const final = await waitFor(
      async () => {
        const record = await services.sends.get(sendId);
        return record && record.sending === 0 && record.accepted + record.skipped === 300 ? record : undefined;
      },
      10_000,
      'every recipient to be accepted or skipped',
    );
    expect(final.skipped).toBeGreaterThan(0);

    for (const action of ['resume', 'retry-failed', 'pause']) {
      const refused = await call(site, ops, 'POST', `/api/sends/${sendId}/${action}`, {});
      expect(refused.status, action).toBe(409);
      expect(refused.body.error, action).toMatch(/cancelled/);
    }
    const tooLong = await call(site, ops, 'POST', `/api/sends/${sendId}/pause`, { reason: 'x'.repeat(501) });
    expect(tooLong).toMatchObject({ status: 400, body: { error: 'reason: must be at most 500 characters' } });
  });

  it('retries the failed recipients of a send: they are requeued and accepted', async () => {
    let busy = true;
    const site = await startConsoleApp('api-retry', {
      config: { SEND_MAX_ATTEMPTS: '1', SEND_BACKOFF_MS: '10' },
      rejectRecipient: (address) => (busy && /^reader[12]@/.test(address) ? { responseCode: 451, message: '4.2.1 Mailbox busy' } : undefined),
    });
    const { services, harness } = site;
    await seedSubscribers(services, 5);
    await harness.startWorker();
    const ops = await apiToken(services, 'ops');
    const started = await call(site, ops, 'POST', '/api/sends', { issue: 'vol-138', list: 'weekly' });
    const { sendId } = started.body.send as { sendId: string };
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent-with-failures', accepted: 3, failed: 2 });

    busy = false;
    const retried = await call(site, ops, 'POST', `/api/sends/${sendId}/retry-failed`);
    expect(retried.status, JSON.stringify(retried.body)).toBe(200);
    expect(retried.body.result).toMatchObject({ action: 'retry-failed', sendId, requeued: 2 });
    const done = await waitFor(
      async () => {
        const record = await services.sends.get(sendId);
        return record?.state === 'sent' ? record : undefined;
      },
      20_000,
      'the retried recipients to be accepted',
    );
    expect(done).toMatchObject({ accepted: 5, failed: 0 });
    expect(harness.received.flatMap((message) => message.recipients).sort()).toEqual([1, 2, 3, 4, 5].map((n) => `reader${n}@example.org`));
  });

  it('allows each user or token TEST_SENDS_PER_HOUR test sends an hour, the console’s and the API’s together; the next is 429 and nothing goes out', async () => {
    const site = await startConsoleApp('api-test-send-limit', { config: { TEST_SENDS_PER_HOUR: '2' } });
    const { services, harness } = site;
    const editor = await loginAs(site.app, services, 'editor');
    const recipients = () => harness.received.flatMap((message) => message.recipients);

    // One from the console's preview page, one through the API: both spend the editor's budget.
    const fromPage = await injectAs(site.app, editor, {
      method: 'POST',
      url: '/admin/issues/vol-138/test-send',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ _csrf: editor.csrf, list: 'weekly', to: 'first@example.org' }).toString(),
    });
    expect(fromPage.statusCode, fromPage.body).toBe(200);
    const second = await call(site, editor, 'POST', '/api/issues/vol-138/test-send', { to: ['second@example.org'] });
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    await waitFor(() => recipients().length === 2, 5_000, 'the two test messages at the SMTP server');

    // The third within the hour: 429, as JSON from the API and as a page (with the form as typed) from the console.
    const third = await call(site, editor, 'POST', '/api/issues/vol-138/test-send', { to: ['third@example.org'] });
    expect(third.status).toBe(429);
    expect(third.body).toEqual({ error: expect.stringMatching(/^Too many test sends: each user or API token may make 2 an hour \(TEST_SENDS_PER_HOUR\)/) });
    const retryAfter = Number(third.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    const thirdFromPage = await injectAs(site.app, editor, {
      method: 'POST',
      url: '/admin/issues/vol-138/test-send',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ _csrf: editor.csrf, list: 'weekly', to: 'fourth@example.org' }).toString(),
    });
    expect(thirdFromPage.statusCode).toBe(429);
    expect(thirdFromPage.headers['content-type']).toMatch(/^text\/html/);
    expect(thirdFromPage.headers['retry-after']).toMatch(/^\d+$/);
    expect(thirdFromPage.body).toContain('Too many test sends');
    expect(thirdFromPage.body).toContain('value="fourth@example.org"');

    // Another user's budget is their own: their test send goes out. It arrives after the refused
    // ones would have, and neither of those is at the SMTP server.
    const other = await apiToken(services, 'editor');
    const othersSend = await call(site, other, 'POST', '/api/issues/vol-138/test-send', { to: ['other@example.org'] });
    expect(othersSend.status, JSON.stringify(othersSend.body)).toBe(200);
    await waitFor(() => recipients().includes('other@example.org'), 5_000, 'the other user’s test message at the SMTP server');
    expect(recipients()).toEqual(['first@example.org', 'second@example.org', 'other@example.org']);
  });

  it('lists, for every status the tests above saw on a route, that status in the route’s operation of /api/openapi.json', () => {
    // What this file's tests observed (all of them, when the whole file runs).
    const undocumented = [...observed].filter((entry) => {
      const status = entry.slice(entry.lastIndexOf(' ') + 1);
      return !documents(entry.slice(0, entry.lastIndexOf(' ')), status);
    });
    expect(undocumented).toEqual([]);
    // The statuses the document got wrong once, whether or not the tests above ran.
    expect(documents('POST /api/sends', '409')).toBe(true);
    expect(documents('GET /api/issues/{id}', '422')).toBe(true);
    expect(documents('GET /api/issues/{id}', '409')).toBe(false);
    expect(documents('POST /api/issues/{id}/test-send', '429')).toBe(true);
    expect(API_DOCUMENT.paths['/api/sends']?.post?.description).not.toMatch(/schedule checks answer 400/);
  });
});
