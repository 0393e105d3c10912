import { randomBytes } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { expect, onTestFinished } from 'vitest';
import { addUser, createToken } from '../../src/app/accounts.ts';
import type { Role } from '../../src/core/roles.ts';
import { SESSION_COOKIE } from '../../src/http/auth.ts';
import { buildHttpApp } from '../../src/http/server.ts';
import type { Services } from '../../src/services.ts';
import { createHarness, type Harness } from './harness.ts';

/**
 * The console and the API for a test: a harness (its own key prefix, a real SMTP sink, workers on
 * demand) and the one HTTP app of `newsletter serve` over its services, driven with app.inject
 * (no port). Everything closes when the test finishes.
 */
export interface ConsoleApp {
  readonly harness: Harness;
  readonly services: Services;
  readonly app: FastifyInstance;
  /** Every route the app registered (HEAD ones included), as its onRoute hook saw them. */
  readonly routes: readonly RegisteredRoute[];
}

/** One route of the app: its method and its URL pattern (`/api/sends/:id`). */
export interface RegisteredRoute {
  readonly method: string;
  readonly url: string;
}

/**
 * Fastify announces every new instance on this diagnostics channel before anything is registered on
 * it (a documented hook, for tracing tools): the way to see the routes buildHttpApp registers.
 */
const FASTIFY_INITIALIZATION = diagnostics.channel('fastify.initialization');

/** Builds the console app on a fresh harness; `options` go to createHarness (config overrides, SMTP rejections…). */
export async function startConsoleApp(label: string, options: Parameters<typeof createHarness>[1] = {}): Promise<ConsoleApp> {
  const harness = await createHarness(label, options);
  const routes: RegisteredRoute[] = [];
  const watchRoutes = (message: unknown) => {
    const { fastify } = message as { fastify: FastifyInstance };
    fastify.addHook('onRoute', (route) => {
      for (const method of [route.method].flat()) routes.push({ method, url: route.url });
    });
  };
  FASTIFY_INITIALIZATION.subscribe(watchRoutes);
  let app: FastifyInstance;
  try {
    app = await buildHttpApp(harness.services);
  } finally {
    FASTIFY_INITIALIZATION.unsubscribe(watchRoutes);
  }
  // Registered after the harness's own close, so it runs first: the app lets go before the services close.
  onTestFinished(() => app.close());
  await app.ready();
  return { harness, services: harness.services, app, routes };
}

/** A logged-in console user: the session cookie to send, and a CSRF token of that session. */
export interface ConsoleLogin {
  /** The Cookie header value: `nl_session=…`. */
  readonly cookie: string;
  /** For the form field `_csrf` or the X-CSRF-Token header of the session's POSTs. */
  readonly csrf: string;
  readonly email: string;
  readonly password: string;
}

/**
 * The session cookie a response sets, as the Cookie header sends it back: `nl_session=<value>`,
 * the value still URL-encoded as Set-Cookie has it (decoded, it holds a ";").
 */
export function sessionCookieOf(response: LightMyRequestResponse): string | undefined {
  const header = response.headers['set-cookie'];
  const lines = header === undefined ? [] : Array.isArray(header) ? header : [header];
  const line = lines.find((candidate) => candidate.startsWith(`${SESSION_COOKIE}=`));
  return line?.split(';')[0];
}

/** The `_csrf` hidden field of a console form, or the page's <meta name="csrf-token">. */
export function csrfOf(html: string): string | undefined {
  const field = /name="_csrf" value="([^"]+)"/.exec(html) ?? /<meta name="csrf-token" content="([^"]+)">/.exec(html);
  return field?.[1];
}

/** A password good enough for addUser (12 characters and more). */
export function newPassword(): string {
  return randomBytes(18).toString('base64url');
}

/**
 * Adds a user with the role and logs in through the login form, as a browser would: GET
 * /admin/login for the form's CSRF token and the cookie carrying its secret, POST the form, keep
 * the new session cookie, then open a console page for a CSRF token of the new session (a login
 * starts a new session, so the login form's token is void).
 */
export async function loginAs(app: FastifyInstance, services: Services, role: Role, options: { email?: string } = {}): Promise<ConsoleLogin> {
  const email = options.email ?? `${role}-${randomBytes(3).toString('hex')}@example.org`;
  const password = newPassword();
  await addUser(services, { email, role, password });
  const form = await app.inject({ method: 'GET', url: '/admin/login' });
  expect(form.statusCode, 'GET /admin/login').toBe(200);
  const formCsrf = csrfOf(form.body);
  const formCookie = sessionCookieOf(form);
  if (!formCsrf || !formCookie) throw new Error('the login form has no CSRF token or sets no session cookie');

  const login = await app.inject({
    method: 'POST',
    url: '/admin/login',
    headers: { cookie: formCookie, 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ _csrf: formCsrf, email, password, next: '/admin' }).toString(),
  });
  expect(login.statusCode, `POST /admin/login as ${email}: ${login.body}`).toBe(303);
  let cookie = sessionCookieOf(login);
  if (!cookie) throw new Error('the login set no session cookie');

  // Every console page carries <meta name="csrf-token">; /admin/issues is open to every role.
  const page = await app.inject({ method: 'GET', url: '/admin/issues', headers: { cookie } });
  expect(page.statusCode, `GET /admin/issues after logging in as ${role}`).toBe(200);
  const csrf = csrfOf(page.body);
  if (!csrf) throw new Error('the console page carries no CSRF token');
  // Making the token stored its secret in the session: the cookie changed with it.
  cookie = sessionCookieOf(page) ?? cookie;
  return { cookie, csrf, email, password };
}

/** An API token with the role: the Authorization header value, `Bearer <token>`. */
export async function apiToken(services: Services, role: Role, name = `${role}-${randomBytes(3).toString('hex')}`): Promise<string> {
  const { token } = await createToken(services, { name, role });
  return `Bearer ${token}`;
}

/** Who makes a request: nobody, a bearer token (the Authorization value), or a logged-in session. */
export type Caller = undefined | string | ConsoleLogin;

/**
 * app.inject as a caller: a bearer token as Authorization; a session as its cookie, and for a
 * request that changes something its CSRF token as X-CSRF-Token (unless `csrf` overrides it).
 */
export function injectAs(app: FastifyInstance, caller: Caller, request: InjectOptions & { csrf?: string }): Promise<LightMyRequestResponse> {
  const { csrf, headers = {}, ...rest } = request;
  const auth: Record<string, string> = {};
  if (typeof caller === 'string') auth.authorization = caller;
  else if (caller) {
    auth.cookie = caller.cookie;
    const method = (request.method ?? 'GET').toUpperCase();
    if (method !== 'GET' && method !== 'HEAD') auth['x-csrf-token'] = csrf ?? caller.csrf;
  }
  return app.inject({ ...rest, headers: { ...auth, ...headers } });
}
