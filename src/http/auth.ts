import { hkdfSync, timingSafeEqual } from 'node:crypto';
import csrfProtection from '@fastify/csrf-protection';
import formBody from '@fastify/formbody';
import rateLimit, { normalizeIP } from '@fastify/rate-limit';
import secureSession from '@fastify/secure-session';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler, preHandlerHookHandler } from 'fastify';
import { actorOfSession, authenticateToken, endSessions, logIn, type Actor, type LoginPolicy } from '../app/accounts.ts';
import { messageForOthers, UserFacingError } from '../core/errors.ts';
import { can, type Permission } from '../core/roles.ts';
import type { Services } from '../services.ts';
import { redisKeys } from '../store/keys.ts';
import { escape } from './public/page.ts';
import { sendConsolePage } from './admin/layout.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is asking: a logged-in console user or an API token; undefined when neither. */
    actor: Actor | undefined;
  }
}

declare module '@fastify/secure-session' {
  interface SessionData {
    /** The lower-cased email of the logged-in user. */
    user: string;
    /** When the login happened (ms): a session older than SESSION_MAX_AGE_HOURS is over, whatever the cookie says. */
    loggedInAt: number;
    /** The user's session nonce at login: a logout replaces it, so this cookie (and any copy) is over. */
    nonce: string;
    _csrf: string;
  }
}

/** The window the failed logins are counted in. */
const LOGIN_WINDOW_MS = 15 * 60_000;

/** The console session cookie: readable by nothing but the server, sent only to us, only over HTTPS. */
export const SESSION_COOKIE = 'nl_session';

/**
 * The session cookie's encryption key, derived from APP_SECRET for this one use: no second secret
 * to configure, and a key that unlocks nothing else (unsubscribe tokens use APP_SECRET directly).
 */
function sessionKey(appSecret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', appSecret, 'newsletter-console', 'session-cookie-v1', 32));
}

/** Whether the request is for the JSON API (errors as JSON) rather than a console page (errors as pages). */
function wantsJson(request: FastifyRequest): boolean {
  const path = request.url.split('?')[0] ?? '';
  return path === '/api' || path.startsWith('/api/') || path === '/metrics' || path.startsWith('/admin/queues/api/') || path.endsWith('.json');
}

/** The console path a login may return to: ours, under /admin, and not the login page itself. */
export function safeNextPath(next: unknown): string {
  if (typeof next !== 'string' || !/^\/admin(?:[/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$/.test(next) || next.startsWith('/admin/login')) return '/admin';
  return next;
}

/** 401: JSON for the API (with the scheme to use), a redirect to the login page for a page. */
function unauthenticated(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (wantsJson(request)) {
    return reply
      .code(401)
      .header('www-authenticate', 'Bearer realm="newsletter"')
      .send({ error: 'authentication required: send Authorization: Bearer <token>' });
  }
  if (request.method === 'GET' || request.method === 'HEAD') return reply.redirect(`/admin/login?next=${encodeURIComponent(request.url)}`, 303);
  return sendConsolePage(reply, request, {
    status: 401,
    title: 'Log in first',
    body: '<p>Your session has ended. <a href="/admin/login">Log in</a> and try again.</p>',
  });
}

function forbidden(request: FastifyRequest, reply: FastifyReply, permission: Permission): FastifyReply {
  const role = request.actor?.role ?? 'none';
  const message = `the ${role} role may not do this (it needs ${permission})`;
  if (wantsJson(request)) return reply.code(403).send({ error: message });
  return sendConsolePage(reply, request, { status: 403, title: 'Not allowed', body: `<p>${escape(message)}.</p>` });
}

/**
 * A route's guard: the caller must be logged in (or present an API token) and hold the permission.
 * Routes ask for permissions, never roles (see core/roles.ts).
 */
export function requirePermission(permission: Permission): preHandlerAsyncHookHandler {
  return async function permissionGuard(request, reply) {
    if (!request.actor) return unauthenticated(request, reply);
    if (!can(request.actor.role, permission)) return forbidden(request, reply, permission);
    return undefined;
  };
}

/**
 * The CSRF check of every state-changing request made with the session cookie: the form's `_csrf`
 * field, or the X-CSRF-Token header for the console's own fetch calls. A request with an API token
 * needs none: a browser never attaches a bearer token by itself, so another site cannot forge one.
 * Register after requirePermission, so a caller who is not logged in gets 401 rather than 403.
 */
export function csrfGuard(scope: FastifyInstance): preHandlerHookHandler {
  return function checkCsrf(request, reply, done) {
    if (request.actor?.kind === 'token') {
      done();
      return;
    }
    scope.csrfProtection(request, reply, done);
  };
}

/** A fresh CSRF token for a form or a page's script; the secret behind it lives in the session. */
export function csrfToken(reply: FastifyReply): string {
  return reply.generateCsrf();
}

/** The credentials of an `Authorization: Bearer …` header (the scheme in any case, as RFC 7235 has it), or undefined. */
export function bearerOf(request: FastifyRequest): string | undefined {
  const match = /^bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  return match?.[1];
}

/** Whether a bearer header carries this exact secret (constant time). */
export function bearerEquals(request: FastifyRequest, secret: string): boolean {
  const presented = Buffer.from(bearerOf(request) ?? '');
  const expected = Buffer.from(secret);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/**
 * Everything the console, the API, the queue dashboard and /metrics share: the session cookie, form
 * bodies, CSRF tokens, the actor of each request (session user or API token), and the login and
 * logout routes. Registered inside the console's plugin scope, so the public pages and the provider
 * webhooks keep their own body handling.
 */
export async function registerAuth(scope: FastifyInstance, services: Services): Promise<void> {
  const { config } = services;
  const maxAgeSeconds = config.console.sessionMaxAgeHours * 3600;
  await scope.register(secureSession, {
    key: sessionKey(config.appSecret),
    cookieName: SESSION_COOKIE,
    expiry: maxAgeSeconds,
    // SameSite=Strict: the cookie never rides along with a request another site starts, a second
    // line behind the CSRF tokens. Secure: PUBLIC_URL is https, so the console is too.
    cookie: { path: '/', httpOnly: true, sameSite: 'strict', secure: true, maxAge: maxAgeSeconds },
  });
  await scope.register(csrfProtection, { sessionPlugin: '@fastify/secure-session' });
  await scope.register(formBody);
  // The store of the test-send budget (test-send-limit.ts); the login counts its failures itself (app/accounts.ts logIn).
  await scope.register(rateLimit, {
    global: false,
    redis: services.redis,
    nameSpace: redisKeys(config.redis.prefix).consoleRateLimit,
    // A Redis hiccup must not lock everybody out of the console.
    skipOnError: true,
  });

  scope.decorateRequest('actor', undefined);
  scope.addHook('onRequest', async (request) => {
    if (request.headers.authorization !== undefined) {
      const bearer = bearerOf(request);
      request.actor = bearer === undefined ? undefined : await authenticateToken(services, bearer);
      return;
    }
    const email = request.session.get('user');
    const loggedInAt = request.session.get('loggedInAt');
    const nonce = request.session.get('nonce');
    if (typeof email !== 'string' || typeof loggedInAt !== 'number' || typeof nonce !== 'string') return;
    if (Date.now() - loggedInAt > maxAgeSeconds * 1000) {
      request.session.delete();
      return;
    }
    // Read again on every request: a removed or logged-out user is out at once, a changed role applies at once.
    request.actor = await actorOfSession(services, email, nonce);
  });

  // A forged or missing CSRF token is a 403 that says so, as a page or as JSON.
  scope.setErrorHandler((error: Error & { code?: string; statusCode?: number }, request, reply) => {
    if (error.code === 'FST_CSRF_INVALID_TOKEN' || error.code === 'FST_CSRF_MISSING_SECRET') {
      const message = 'the form is out of date or did not come from this console (CSRF token missing or wrong): reload the page and try again';
      if (wantsJson(request)) return reply.code(403).send({ error: message });
      return sendConsolePage(reply, request, { status: 403, title: 'Form expired', body: `<p>${escape(message)}.</p>` });
    }
    // A user-facing error a route did not map (bad input it passed on to a use case) is the caller's to fix: 400.
    const clientStatus = error instanceof UserFacingError ? 400 : error.statusCode;
    if (typeof clientStatus === 'number' && clientStatus >= 400 && clientStatus < 500) {
      const message = messageForOthers(error);
      if (wantsJson(request)) return reply.code(clientStatus).send({ error: message });
      return sendConsolePage(reply, request, { status: clientStatus, title: 'Request refused', body: `<p>${escape(message)}</p>` });
    }
    request.log.error({ err: error, url: request.url }, 'console request failed');
    if (wantsJson(request)) return reply.code(500).send({ error: 'internal error; see the server log' });
    return sendConsolePage(reply, request, {
      status: 500,
      title: 'Something went wrong',
      body: '<p>The server could not do this; the details are in its log.</p>',
    });
  });

  const loginForm = (reply: FastifyReply, request: FastifyRequest, options: { status: number; next: string; email?: string; problem?: string }) =>
    sendConsolePage(reply, request, {
      status: options.status,
      title: 'Log in',
      body:
        (options.problem ? `<p class="problem" role="alert">${escape(options.problem)}</p>` : '') +
        `<form method="post" action="/admin/login" class="stack">` +
        `<input type="hidden" name="_csrf" value="${escape(csrfToken(reply))}">` +
        `<input type="hidden" name="next" value="${escape(options.next)}">` +
        `<label>Email <input type="email" name="email" autocomplete="username" required value="${escape(options.email ?? '')}"></label>` +
        `<label>Password <input type="password" name="password" autocomplete="current-password" required></label>` +
        `<button type="submit">Log in</button></form>`,
    });

  scope.get('/admin/login', async (request, reply) => {
    const next = safeNextPath((request.query as { next?: unknown }).next);
    if (request.actor?.kind === 'user') return reply.redirect(next, 303);
    return loginForm(reply, request, { status: 200, next });
  });

  const loginPolicy: LoginPolicy = {
    perClient: config.console.loginAttemptsPer15Min,
    perAccount: config.console.loginAttemptsPer15Min * 5,
    windowMs: LOGIN_WINDOW_MS,
  };
  scope.post('/admin/login', { preHandler: csrfGuard(scope) }, async (request, reply) => {
    const body = (request.body ?? {}) as { email?: unknown; password?: unknown; next?: unknown };
    const next = safeNextPath(body.next);
    const email = typeof body.email === 'string' ? body.email.trim() : '';
    const password = typeof body.password === 'string' ? body.password : '';
    if (!email || !password) return loginForm(reply, request, { status: 400, next, email, problem: 'Give your email and password.' });
    // The client as TRUST_PROXY lets fastify see it; an IPv6 client is counted by its /64, as it can pick any address in it.
    const attempt = await logIn(services, { email, password, client: normalizeIP(request.ip, 64) }, loginPolicy);
    if (attempt.outcome === 'throttled') {
      request.log.warn({ email, client: request.ip }, 'console login throttled');
      reply.header('retry-after', String(LOGIN_WINDOW_MS / 1000));
      return loginForm(reply, request, { status: 429, next, email, problem: 'Too many failed logins; try again in 15 minutes.' });
    }
    if (attempt.outcome === 'wrong') {
      request.log.warn({ email, client: request.ip }, 'console login refused');
      return loginForm(reply, request, { status: 401, next, email, problem: 'Wrong email or password.' });
    }
    // A new session for the new login: nothing set before it (the CSRF secret included) carries over.
    request.session.regenerate();
    request.session.set('user', attempt.actor.id);
    request.session.set('loggedInAt', Date.now());
    request.session.set('nonce', attempt.sessionNonce);
    request.log.info({ user: attempt.actor.id, role: attempt.actor.role }, 'console login');
    return reply.redirect(next, 303);
  });

  // Ends every session of the user, not just this cookie: a stateless cookie copied elsewhere would outlive its deletion here.
  scope.post('/admin/logout', { preHandler: csrfGuard(scope) }, async (request, reply) => {
    if (request.actor?.kind === 'user') await endSessions(services, request.actor.id);
    request.session.delete();
    return reply.redirect('/admin/login', 303);
  });
}
