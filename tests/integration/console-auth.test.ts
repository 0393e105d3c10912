import { describe, expect, it } from 'vitest';
import { addUser, listTokens, listUsers, removeUser } from '../../src/app/accounts.ts';
import { listSendSummaries } from '../../src/app/dashboard.ts';
import { createSchedule, listSchedules } from '../../src/app/schedules.ts';
import { startSend } from '../../src/app/start-send.ts';
import { ROLES, ROLE_PERMISSIONS, can, type Permission, type Role } from '../../src/core/roles.ts';
import {
  apiToken,
  csrfOf,
  injectAs,
  loginAs,
  newPassword,
  sessionCookieOf,
  startConsoleApp,
  type Caller,
  type ConsoleApp,
  type ConsoleLogin,
  type RegisteredRoute,
} from '../support/console.ts';
import { seedSubscribers } from '../support/harness.ts';

/**
 * Nothing of the console, the API, the queue dashboard or /metrics answers without auth; each route
 * refuses a role without its permission; no session POST goes through without the session's CSRF
 * token. Every route the app registers is visited, so a new route that forgets its guard fails here.
 */

/** Routes anyone may use, and why. */
type OpenAccess =
  /** Public pages and endpoints: the links of every email, the archive, the health check. */
  | 'public'
  /** Provider webhooks: each verifies its provider's signature instead (tests/integration/webhooks.test.ts). */
  | 'signed'
  /** The login form and its POST (CSRF-checked and rate-limited; see below). */
  | 'login'
  /** Logging out ends only the caller's own session: CSRF-checked, no permission needed. */
  | 'logout'
  /** The console's stylesheet and script: no data. */
  | 'asset'
  /** /metrics: open on a loopback-only server without METRICS_TOKEN, else a token or the metrics.read permission (tested below). */
  | 'metrics';

/**
 * Every route of the app and what it asks for. A route missing here fails the test: add it with
 * the permission it needs (or, if it really is open to anyone, with the reason).
 */
const ROUTE_ACCESS: Readonly<Record<string, Permission | OpenAccess>> = {
  'GET /unsubscribe': 'public',
  'POST /unsubscribe': 'public',
  'GET /issues': 'public',
  'GET /issues/:id': 'public',
  'GET /healthz': 'public',
  'POST /webhooks/ses': 'signed',
  'POST /webhooks/mailgun': 'signed',
  'POST /webhooks/postmark': 'signed',
  'POST /webhooks/sendgrid': 'signed',
  'POST /webhooks/generic': 'signed',
  'GET /admin/login': 'login',
  'POST /admin/login': 'login',
  'POST /admin/logout': 'logout',
  'GET /admin/assets/*': 'asset',
  'GET /metrics': 'metrics',

  'GET /admin': 'issues.read',
  'GET /admin/issues': 'issues.read',
  'GET /admin/issues/:id': 'issues.preview',
  'GET /admin/issues/:id/preview.html': 'issues.preview',
  'POST /admin/issues/:id/test-send': 'issues.preview',
  'GET /admin/issues/:id/send': 'sends.start',
  'POST /admin/issues/:id/send': 'sends.start',
  'GET /admin/schedules': 'schedules.read',
  'POST /admin/schedules': 'schedules.manage',
  'POST /admin/schedules/:id/delete': 'schedules.manage',
  'GET /admin/users': 'users.manage',
  'POST /admin/users': 'users.manage',
  'POST /admin/users/delete': 'users.manage',
  'POST /admin/tokens': 'users.manage',
  'POST /admin/tokens/:id/revoke': 'users.manage',
  'GET /admin/sends': 'sends.read',
  'GET /admin/sends.json': 'sends.read',
  'GET /admin/sends/:id': 'sends.read',
  'GET /admin/sends/:id/failures.csv': 'sends.failures',
  'GET /admin/sends/:id/confirm': 'sends.control',
  'POST /admin/sends/:id/:action': 'sends.control',

  'GET /api/openapi.json': 'issues.read',
  'GET /api/issues': 'issues.read',
  'GET /api/issues/:id': 'issues.preview',
  'POST /api/issues/:id/test-send': 'issues.preview',
  'GET /api/sends': 'sends.read',
  'POST /api/sends': 'sends.start',
  'GET /api/sends/:id': 'sends.read',
  'GET /api/sends/:id/failures': 'sends.failures',
  'GET /api/sends/:id/failures.csv': 'sends.failures',
  'POST /api/sends/:id/pause': 'sends.control',
  'POST /api/sends/:id/resume': 'sends.control',
  'POST /api/sends/:id/cancel': 'sends.control',
  'POST /api/sends/:id/retry-failed': 'sends.control',
  'GET /api/schedules': 'schedules.read',
  'POST /api/schedules': 'schedules.manage',
  'DELETE /api/schedules/:id': 'schedules.manage',
};

/** bull-board's routes (dozens, and they change with its version): looking needs queues.read, any change queues.write. */
const QUEUES_PREFIX = '/admin/queues';

/** What a route asks for; HEAD is its GET. Undefined for a route nobody listed. */
function accessOf(route: RegisteredRoute): Permission | OpenAccess | undefined {
  const method = route.method === 'HEAD' ? 'GET' : route.method;
  if (route.url === QUEUES_PREFIX || route.url.startsWith(`${QUEUES_PREFIX}/`)) return method === 'GET' ? 'queues.read' : 'queues.write';
  return ROUTE_ACCESS[`${method} ${route.url}`];
}

/** Whether a path answers as JSON (the API, /metrics, bull-board's API, the pages' .json feeds) rather than as a page. */
function isJsonPath(url: string): boolean {
  return url.startsWith('/api/') || url === '/metrics' || url.startsWith(`${QUEUES_PREFIX}/api/`) || url.endsWith('.json');
}

const isChange = (method: string) => method !== 'GET' && method !== 'HEAD';

/** The ids a route's parameters are filled with: real ones, so a request that got through would show. */
interface Fixtures {
  readonly sendId: string;
  readonly scheduleId: string;
  readonly tokenId: string;
  readonly queueName: string;
}

/** The route's URL with its parameters filled in. */
function concrete(url: string, fixtures: Fixtures): string {
  return url
    .replace(/\/sends\/:id/, `/sends/${fixtures.sendId}`)
    .replace(/\/issues\/:id/, '/issues/vol-138')
    .replace(/\/schedules\/:id/, `/schedules/${fixtures.scheduleId}`)
    .replace(/\/tokens\/:id/, `/tokens/${fixtures.tokenId}`)
    .replace(':action', 'pause')
    .replace(':queueName', fixtures.queueName)
    .replace(/:\w+/g, 'x')
    .replace('*', 'x');
}

/**
 * A body that would do something if the request got through: the API's own JSON for its routes, a
 * form with every field the console's forms take for the pages, JSON for bull-board.
 */
function payloadFor(method: string, url: string): { payload?: string; headers?: Record<string, string> } {
  if (!isChange(method)) return {};
  const api: Readonly<Record<string, unknown>> = {
    '/api/sends': { issue: 'vol-138', list: 'weekly' },
    '/api/schedules': { kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'UTC' },
    '/api/issues/:id/test-send': { to: ['forged@example.org'] },
  };
  if (url.startsWith('/api/')) return { payload: JSON.stringify(api[url] ?? { reason: 'forged' }), headers: { 'content-type': 'application/json' } };
  if (url.startsWith(QUEUES_PREFIX)) return { payload: '{}', headers: { 'content-type': 'application/json' } };
  const form = new URLSearchParams({
    _csrf: 'forged-token',
    list: 'weekly',
    confirm: 'yes',
    to: 'forged@example.org',
    email: 'forged-user@example.org',
    role: 'admin',
    name: 'forged-token',
    reason: 'forged',
    kind: 'weekly',
    day: 'monday',
    time: '08:00',
    timeZone: 'UTC',
    password: newPassword(),
  });
  return { payload: form.toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' } };
}

/** The role that lacks a permission, if any role does (the first in ROLES order). */
function roleWithout(permission: Permission): Role | undefined {
  return ROLES.find((role) => !can(role, permission));
}

/** An app with something to protect: subscribers, a send in progress (no worker), a schedule, a token. */
async function consoleWithState(label: string, config: Record<string, string> = {}) {
  const site = await startConsoleApp(label, { config });
  const { services } = site;
  await seedSubscribers(services, 3, 'weekly');
  await seedSubscribers(services, 3, 'monthly');
  const { sendId } = await startSend(services, { issueId: 'vol-138', list: 'monthly', resend: false });
  const schedule = await createSchedule(services, { kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'UTC' }, 'test');
  await apiToken(services, 'admin', 'existing-token');
  const [token] = await listTokens(services);
  const fixtures: Fixtures = { sendId, scheduleId: schedule.id, tokenId: token!.id, queueName: services.queue.name };
  return { ...site, fixtures };
}

/** What a forged request could change: sends and their states, schedules, users, tokens, the queues, the mail sent. */
async function stateOf(site: ConsoleApp) {
  const { services, harness } = site;
  return {
    sends: (await listSendSummaries(services)).map((send) => `${send.sendId} ${send.state}`),
    schedules: (await listSchedules(services)).map((schedule) => schedule.id),
    users: (await listUsers(services)).map((user) => `${user.email} ${user.role}`),
    tokens: (await listTokens(services)).map((token) => `${token.id} ${token.role}`),
    queuePaused: await services.queue.isPaused(),
    jobs: await services.queue.getJobCounts(),
    mailed: harness.received.length,
  };
}

describe('console and API auth', () => {
  it('knows what every registered route asks for', async () => {
    const { routes } = await startConsoleApp('auth-table');
    const unlisted = routes.filter((route) => accessOf(route) === undefined).map((route) => `${route.method} ${route.url}`);
    expect(unlisted, 'routes missing from ROUTE_ACCESS').toEqual([]);
    const registered = new Set(routes.map((route) => `${route.method} ${route.url}`));
    const stale = Object.keys(ROUTE_ACCESS).filter((key) => !registered.has(key));
    expect(stale, 'ROUTE_ACCESS entries no route matches').toEqual([]);
    expect(
      routes.some((route) => route.url.startsWith(`${QUEUES_PREFIX}/api/`) && route.method === 'PUT'),
      'bull-board write routes',
    ).toBe(true);
  });

  it('answers every route without credentials with 401 (JSON) or a redirect to the login page, except the open ones', async () => {
    // Beyond loopback, so /metrics is closed too.
    const site = await consoleWithState('auth-anonymous', { HTTP_HOST: '0.0.0.0' });
    const { app, routes, fixtures } = site;
    const before = await stateOf(site);
    let guarded = 0;
    for (const route of routes) {
      const access = accessOf(route);
      if (access === 'public' || access === 'signed' || access === 'login' || access === 'asset') continue;
      const url = concrete(route.url, fixtures);
      const label = `${route.method} ${route.url}`;
      const response = await app.inject({ method: route.method as 'GET', url, ...payloadFor(route.method, route.url) });
      if (access === 'logout') {
        // No session to end: the CSRF check refuses it (there is no token without a session).
        expect(response.statusCode, label).toBe(403);
        continue;
      }
      guarded += 1;
      if (isJsonPath(route.url)) {
        expect(response.statusCode, label).toBe(401);
        expect(response.headers['www-authenticate'], label).toMatch(/^Bearer realm=/);
        if (route.method !== 'HEAD') expect(response.json(), label).toEqual({ error: expect.any(String) });
      } else if (isChange(route.method)) {
        expect(response.statusCode, label).toBe(401);
        expect(response.headers['content-type'], label).toMatch(/^text\/html/);
      } else {
        expect(response.statusCode, label).toBe(303);
        expect(response.headers.location, label).toBe(`/admin/login?next=${encodeURIComponent(url)}`);
      }
    }
    expect(guarded).toBeGreaterThan(60);
    // An unknown API path says no more than a known one.
    expect((await app.inject({ method: 'GET', url: '/api/nothing-here' })).statusCode).toBe(401);
    expect(await stateOf(site)).toEqual(before);
  });

  it('answers 403 to a logged-in user and to a token whose role lacks the route’s permission, naming the permission', async () => {
    const site = await consoleWithState('auth-roles', { HTTP_HOST: '0.0.0.0' });
    const { app, routes, services, fixtures } = site;
    const sessions = new Map<Role, ConsoleLogin>();
    const tokens = new Map<Role, string>();
    for (const role of ROLES) {
      sessions.set(role, await loginAs(app, services, role));
      tokens.set(role, await apiToken(services, role));
    }
    const before = await stateOf(site);
    const refusedFor = new Set<Permission>();
    for (const route of routes) {
      const access = accessOf(route);
      if (access === undefined || !(ROLE_PERMISSIONS.admin as readonly string[]).includes(access)) continue;
      const permission = access as Permission;
      const role = roleWithout(permission);
      if (!role) continue;
      const url = concrete(route.url, fixtures);
      const callers: [string, Caller][] = [[`${role} session`, sessions.get(role)]];
      if (isJsonPath(route.url)) callers.push([`${role} token`, tokens.get(role)]);
      for (const [who, caller] of callers) {
        const label = `${route.method} ${route.url} as ${who}`;
        const response = await injectAs(app, caller, { method: route.method as 'GET', url, ...payloadFor(route.method, route.url) });
        expect(response.statusCode, label).toBe(403);
        if (route.method !== 'HEAD') expect(response.body, label).toContain(permission);
      }
      refusedFor.add(permission);
    }
    // Every permission some role lacks was refused somewhere.
    const lacking = (ROLE_PERMISSIONS.admin as readonly Permission[]).filter((permission) => roleWithout(permission) !== undefined);
    expect([...refusedFor].sort()).toEqual(lacking.filter((permission) => permission !== 'metrics.read').sort());
    expect(await stateOf(site)).toEqual(before);

    // A role holding the permission gets past the guard on every page and API read.
    for (const route of routes.filter((candidate) => candidate.method === 'GET')) {
      const access = accessOf(route);
      if (access === undefined || !(ROLE_PERMISSIONS.admin as readonly string[]).includes(access)) continue;
      const role = ROLES.find((candidate) => can(candidate, access as Permission) && candidate !== 'admin') ?? 'admin';
      const response = await injectAs(app, sessions.get(role), { method: 'GET', url: concrete(route.url, fixtures) });
      expect([401, 403], `${route.method} ${route.url} as ${role}`).not.toContain(response.statusCode);
    }
  });

  it('refuses every session request that changes something with a forged CSRF token (403), and nothing changes', async () => {
    const site = await consoleWithState('auth-csrf');
    const { app, routes, services, fixtures } = site;
    const admin = await loginAs(app, services, 'admin');
    const before = await stateOf(site);
    let forged = 0;
    for (const route of routes.filter((candidate) => isChange(candidate.method))) {
      const access = accessOf(route);
      if (access === 'public' || access === 'signed') continue;
      const { payload, headers = {} } = payloadFor(route.method, route.url);
      const response = await app.inject({
        method: route.method as 'POST',
        url: concrete(route.url, fixtures),
        headers: { ...headers, cookie: admin.cookie, 'x-csrf-token': 'forged-token' },
        ...(payload === undefined ? {} : { payload }),
      });
      expect(response.statusCode, `${route.method} ${route.url}`).toBe(403);
      forged += 1;
    }
    expect(forged).toBeGreaterThan(40);
    expect(await stateOf(site)).toEqual(before);
    // The session itself still works: the forged requests logged nobody out.
    expect((await injectAs(app, admin, { method: 'GET', url: '/api/sends' })).statusCode).toBe(200);

    // Without any token the session POST is refused just the same; with the session's token it goes through.
    const pause = `/api/sends/${fixtures.sendId}/pause`;
    expect((await app.inject({ method: 'POST', url: pause, headers: { cookie: admin.cookie } })).statusCode).toBe(403);
    expect((await services.sends.get(fixtures.sendId))?.state).not.toBe('paused');
    const withToken = await injectAs(app, admin, { method: 'POST', url: pause });
    expect(withToken.statusCode, withToken.body).toBe(200);
    expect((await services.sends.get(fixtures.sendId))?.state).toBe('paused');

    // A bearer token needs no CSRF token: a browser never sends one by itself.
    const ops = await apiToken(services, 'ops');
    const resumed = await injectAs(app, ops, { method: 'POST', url: `/api/sends/${fixtures.sendId}/resume` });
    expect(resumed.statusCode, resumed.body).toBe(200);
    expect((await services.sends.get(fixtures.sendId))?.state).not.toBe('paused');
  });

  it('sets the session cookie HttpOnly, Secure and SameSite=Strict, and ends a removed user’s session at once', async () => {
    const { app, services } = await startConsoleApp('auth-session');
    const password = newPassword();
    await addUser(services, { email: 'flags@example.org', role: 'editor', password });
    const form = await app.inject({ method: 'GET', url: '/admin/login' });
    const login = await app.inject({
      method: 'POST',
      url: '/admin/login',
      headers: { cookie: sessionCookieOf(form)!, 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ _csrf: csrfOf(form.body)!, email: 'flags@example.org', password }).toString(),
    });
    expect(login.statusCode).toBe(303);
    for (const [step, response] of [
      ['login form', form],
      ['login', login],
    ] as const) {
      const cookie = [response.headers['set-cookie']].flat().find((line) => line?.startsWith('nl_session='));
      expect(cookie, step).toMatch(/; HttpOnly(;|$)/i);
      expect(cookie, step).toMatch(/; Secure(;|$)/i);
      expect(cookie, step).toMatch(/; SameSite=Strict(;|$)/i);
    }

    const editor = await loginAs(app, services, 'editor');
    expect((await injectAs(app, editor, { method: 'GET', url: '/admin/issues' })).statusCode).toBe(200);
    expect((await injectAs(app, editor, { method: 'GET', url: '/api/sends' })).statusCode).toBe(200);
    await removeUser(services, editor.email);
    const page = await injectAs(app, editor, { method: 'GET', url: '/admin/issues' });
    expect(page.statusCode).toBe(303);
    expect(page.headers.location).toBe('/admin/login?next=%2Fadmin%2Fissues');
    expect((await injectAs(app, editor, { method: 'GET', url: '/api/sends' })).statusCode).toBe(401);
    expect((await injectAs(app, editor, { method: 'POST', url: '/api/sends', payload: { issue: 'vol-138', list: 'weekly' } })).statusCode).toBe(401);
  });

  it('rate-limits the login: the attempt after LOGIN_ATTEMPTS_PER_15_MIN answers 429, even with the right password', async () => {
    const { app, services } = await startConsoleApp('auth-rate-limit', { config: { LOGIN_ATTEMPTS_PER_15_MIN: '3' } });
    const password = newPassword();
    await addUser(services, { email: 'slow@example.org', role: 'editor', password });
    const attempt = async (tryPassword: string) => {
      const form = await app.inject({ method: 'GET', url: '/admin/login' });
      return app.inject({
        method: 'POST',
        url: '/admin/login',
        headers: { cookie: sessionCookieOf(form)!, 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ _csrf: csrfOf(form.body)!, email: 'slow@example.org', password: tryPassword }).toString(),
      });
    };
    for (let n = 1; n <= 3; n += 1) expect((await attempt(`wrong-password-${n}`)).statusCode, `attempt ${n}`).toBe(401);
    const fourth = await attempt(password);
    expect(fourth.statusCode).toBe(429);
    expect(sessionCookieOf(fourth)).toBeUndefined();
  });

  it('never redirects a login off the site, whatever `next` says', async () => {
    const { app, services } = await startConsoleApp('auth-next');
    const password = newPassword();
    await addUser(services, { email: 'next@example.org', role: 'editor', password });
    const site = 'https://newsletter.example.org';
    const evil = [
      '//evil.example',
      'https://evil.example',
      '/\\evil.example',
      '\\\\evil.example',
      'javascript:alert(1)',
      '/admin@evil.example',
      '//evil.example/admin',
      '/%2F%2Fevil.example',
    ];
    for (const next of [...evil, '/admin/sends?x=1']) {
      const form = await app.inject({ method: 'GET', url: `/admin/login?next=${encodeURIComponent(next)}` });
      expect(form.statusCode).toBe(200);
      const login = await app.inject({
        method: 'POST',
        url: '/admin/login',
        headers: { cookie: sessionCookieOf(form)!, 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ _csrf: csrfOf(form.body)!, email: 'next@example.org', password, next }).toString(),
      });
      expect(login.statusCode, next).toBe(303);
      const location = String(login.headers.location);
      expect(new URL(location, site).origin, `${next} → ${location}`).toBe(site);
      expect(location, next).toMatch(/^\/admin(?:[/?]|$)/);
      if (next === '/admin/sends?x=1') expect(location).toBe(next);
      else expect(location, next).toBe('/admin');

      // A logged-in user opening the login page with `next` goes there, and only there.
      const again = await app.inject({ method: 'GET', url: `/admin/login?next=${encodeURIComponent(next)}`, headers: { cookie: sessionCookieOf(login)! } });
      expect(again.statusCode).toBe(303);
      expect(new URL(String(again.headers.location), site).origin, next).toBe(site);
    }
  });

  it('opens /metrics only on a loopback server without METRICS_TOKEN', async () => {
    const loopback = await startConsoleApp('auth-metrics-loopback', { config: { HTTP_HOST: '127.0.0.1' } });
    const open = await loopback.app.inject({ method: 'GET', url: '/metrics' });
    expect(open.statusCode).toBe(200);
    expect(open.headers['content-type']).toMatch(/^text\/plain/);

    const exposed = await startConsoleApp('auth-metrics-exposed', { config: { HTTP_HOST: '0.0.0.0' } });
    expect((await exposed.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    expect((await injectAs(exposed.app, await apiToken(exposed.services, 'editor'), { method: 'GET', url: '/metrics' })).statusCode).toBe(403);
    expect((await injectAs(exposed.app, await apiToken(exposed.services, 'ops'), { method: 'GET', url: '/metrics' })).statusCode).toBe(200);

    const metricsToken = 'metrics-token-0123456789abcdef0123456789';
    const tokened = await startConsoleApp('auth-metrics-token', { config: { HTTP_HOST: '127.0.0.1', METRICS_TOKEN: metricsToken } });
    const without = await tokened.app.inject({ method: 'GET', url: '/metrics' });
    expect(without.statusCode).toBe(401);
    expect(without.headers['www-authenticate']).toMatch(/^Bearer/);
    expect((await injectAs(tokened.app, `Bearer ${metricsToken}x`, { method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    const withToken = await injectAs(tokened.app, `Bearer ${metricsToken}`, { method: 'GET', url: '/metrics' });
    expect(withToken.statusCode).toBe(200);
    expect(withToken.body).toMatch(/^# (HELP|TYPE) /m);
  });
});
