import type { FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';
import { addUser } from '../../src/app/accounts.ts';
import type { Services } from '../../src/services.ts';
import { apiToken, csrfOf, injectAs, loginAs, newPassword, sessionCookieOf, startConsoleApp } from '../support/console.ts';

/**
 * The console's sessions, login throttling, the /metrics rule and the queue dashboard's writes,
 * as an attacker would probe them: a copied cookie after logout, someone else's failed logins,
 * a proxied scrape, a forged job.
 */

/** One login attempt through the form, as a browser makes it (from the given client address, through the proxy). */
async function attemptLogin(app: FastifyInstance, email: string, password: string, forwardedFor?: string) {
  const proxied = forwardedFor ? { 'x-forwarded-for': forwardedFor } : {};
  const form = await app.inject({ method: 'GET', url: '/admin/login', headers: proxied });
  const cookie = sessionCookieOf(form) ?? '';
  return app.inject({
    method: 'POST',
    url: '/admin/login',
    headers: { ...proxied, cookie, 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ _csrf: csrfOf(form.body) ?? '', email, password, next: '/admin' }).toString(),
  });
}

async function userWithPassword(services: Services, email: string) {
  const password = newPassword();
  await addUser(services, { email, role: 'ops', password });
  return password;
}

describe('console sessions', () => {
  it('ends every session of a user at logout, a copied cookie included', async () => {
    const { app, services } = await startConsoleApp('sessions-logout');
    const ops = await loginAs(app, services, 'ops');
    const elsewhere = await attemptLogin(app, ops.email, ops.password);
    const secondCookie = sessionCookieOf(elsewhere) ?? '';
    expect((await injectAs(app, ops, { method: 'GET', url: '/admin/sends' })).statusCode).toBe(200);

    const logout = await injectAs(app, ops, { method: 'POST', url: '/admin/logout', payload: { _csrf: ops.csrf } });
    expect(logout.statusCode).toBe(303);
    // The cookie as it was before logout (an attacker's copy), and the user's other browser.
    expect((await injectAs(app, ops, { method: 'GET', url: '/admin/sends' })).statusCode).toBe(303);
    expect((await app.inject({ method: 'GET', url: '/admin/sends', headers: { cookie: secondCookie } })).statusCode).toBe(303);
    // Logging in again works.
    expect((await attemptLogin(app, ops.email, ops.password)).statusCode).toBe(303);
  });

  it("counts only failed logins, per client address and per account, so someone else's failures never lock a user out", async () => {
    const { app, services } = await startConsoleApp('sessions-throttle', { config: { LOGIN_ATTEMPTS_PER_15_MIN: '3', TRUST_PROXY: '127.0.0.1' } });
    const email = 'ada@example.org';
    const password = await userWithPassword(services, email);

    // Successful logins don't count.
    for (let attempt = 0; attempt < 5; attempt += 1) expect((await attemptLogin(app, email, password, '198.51.100.1')).statusCode).toBe(303);
    // A guesser at another address fails three times, then is refused before any password is checked…
    for (let attempt = 0; attempt < 3; attempt += 1) expect((await attemptLogin(app, email, 'wrong-password-123', '203.0.113.7')).statusCode).toBe(401);
    const throttled = await attemptLogin(app, email, password, '203.0.113.7');
    expect(throttled.statusCode).toBe(429);
    expect(throttled.headers['retry-after']).toBe('900');
    expect(throttled.body).toContain('Too many failed logins');
    // …while the user, at their own address, logs in with the right password.
    expect((await attemptLogin(app, email, password, '198.51.100.1')).statusCode).toBe(303);

    // Guessers spread over many addresses: the account's own allowance (5 × 3) runs out, then it waits.
    for (let client = 0; client < 12; client += 1) expect((await attemptLogin(app, email, 'wrong-password-123', `192.0.2.${client}`)).statusCode).toBe(401);
    expect((await attemptLogin(app, email, password, '198.51.100.1')).statusCode).toBe(429);
    // Another account is not held up.
    const other = await userWithPassword(services, 'grace@example.org');
    expect((await attemptLogin(app, 'grace@example.org', other, '198.51.100.1')).statusCode).toBe(303);
  });

  it('ignores X-Forwarded-For from a peer that is not TRUST_PROXY', async () => {
    const { app, services } = await startConsoleApp('sessions-untrusted-proxy', { config: { LOGIN_ATTEMPTS_PER_15_MIN: '2' } });
    const email = 'alan@example.org';
    await userWithPassword(services, email);
    // Without TRUST_PROXY, a made-up X-Forwarded-For does not buy a fresh allowance.
    expect((await attemptLogin(app, email, 'wrong-password-123', '203.0.113.1')).statusCode).toBe(401);
    expect((await attemptLogin(app, email, 'wrong-password-123', '203.0.113.2')).statusCode).toBe(401);
    expect((await attemptLogin(app, email, 'wrong-password-123', '203.0.113.3')).statusCode).toBe(429);
  });

  it('takes the bearer scheme in any case', async () => {
    const { app, services } = await startConsoleApp('sessions-bearer-case');
    const token = (await apiToken(services, 'ops')).slice('Bearer '.length);
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      expect((await app.inject({ method: 'GET', url: '/api/sends', headers: { authorization: `${scheme} ${token}` } })).statusCode, scheme).toBe(200);
    }
    expect((await app.inject({ method: 'GET', url: '/api/sends', headers: { authorization: `Basic ${token}` } })).statusCode).toBe(401);
  });
});

describe('/metrics without METRICS_TOKEN on a loopback server', () => {
  it('answers a scrape from this machine, and asks a proxied request for credentials', async () => {
    const { app, services } = await startConsoleApp('metrics-proxied');
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(200);
    for (const header of ['x-forwarded-for', 'forwarded', 'x-real-ip']) {
      const proxied = await app.inject({ method: 'GET', url: '/metrics', headers: { [header]: header === 'forwarded' ? 'for=203.0.113.9' : '203.0.113.9' } });
      expect(proxied.statusCode, header).toBe(401);
    }
    const ops = await apiToken(services, 'ops');
    expect((await app.inject({ method: 'GET', url: '/metrics', headers: { 'x-forwarded-for': '203.0.113.9', authorization: ops } })).statusCode).toBe(200);
  });
});

describe('the queue dashboard', () => {
  it('lets ops retry, promote, clean and pause, and refuses adding, editing, emptying or obliterating jobs', async () => {
    const { app, services } = await startConsoleApp('queues-writes');
    const ops = await apiToken(services, 'ops');
    const queue = services.queue.name;
    const write = (method: 'PUT' | 'POST' | 'PATCH', url: string, payload?: object) =>
      app.inject({
        method,
        url: `/admin/queues/api/queues/${encodeURIComponent(queue)}${url}`,
        headers: { authorization: ops },
        ...(payload ? { payload } : {}),
      });

    const added = await write('POST', '/add', { name: 'forged', data: { sendId: 'x', subscriberId: '1' } });
    expect(added.statusCode).toBe(403);
    expect(added.json<{ error: string }>().error).toMatch(/does not allow POST/);
    for (const url of ['/empty', '/obliterate', '/concurrency', '/rate-limit']) expect((await write('PUT', url, {})).statusCode, url).toBe(403);
    expect(await services.queue.getJobCounts('waiting')).toEqual({ waiting: 0 });

    expect((await write('PUT', '/pause')).statusCode).toBe(200);
    expect(await services.queue.isPaused()).toBe(true);
    expect((await write('PUT', '/resume')).statusCode).toBe(200);
    expect(await services.queue.isPaused()).toBe(false);
    expect((await write('PUT', '/retry/failed')).statusCode).toBe(200);
  });
});
