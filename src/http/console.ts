import path from 'node:path';
import { fileURLToPath } from 'node:url';
import helmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { renderMetrics } from '../app/metrics.ts';
import { can } from '../core/roles.ts';
import type { Services } from '../services.ts';
import { registerAdminRoutes } from './admin/routes.ts';
import { CONSOLE_CSP } from './admin/layout.ts';
import { registerQueueDashboard } from './admin/queues.ts';
import { registerApiRoutes } from './api/routes.ts';
import { bearerEquals, registerAuth } from './auth.ts';

/** Where the console's stylesheet and script are: plain files, no data, so they need no login. */
const ASSETS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'admin', 'assets');

/** Loopback hosts: a server bound only to one of these is reachable from this machine alone. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Headers a reverse proxy adds: a request that carries one came through a proxy, from who knows where. */
const FORWARDING_HEADERS = ['forwarded', 'x-forwarded-for', 'x-real-ip'] as const;

/**
 * Whether a request was made on this machine, not relayed by a proxy: a server bound to loopback
 * behind PUBLIC_URL's proxy still gets the internet's requests, with the proxy's forwarding headers.
 */
function cameFromThisMachine(request: FastifyRequest): boolean {
  const peer = request.socket.remoteAddress ?? '';
  return isLoopbackHost(peer.replace(/^::ffff:/, '')) && FORWARDING_HEADERS.every((header) => request.headers[header] === undefined);
}

/**
 * Everything behind auth, in one plugin scope: the login, the console pages, the API, the queue
 * dashboard and /metrics. Nothing here answers without a session or an API token, except the login
 * page, the stylesheet and script, and /metrics on a loopback-only server without METRICS_TOKEN.
 */
export async function registerConsole(scope: FastifyInstance, services: Services): Promise<void> {
  const { config } = services;
  // helmet's headers on everything here (nosniff, frame and referrer policy, HSTS); the CSP is the
  // console's own, and bull-board's page runs under it too.
  await scope.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: cspDirectives(CONSOLE_CSP) },
    crossOriginEmbedderPolicy: false,
    referrerPolicy: { policy: 'no-referrer' },
    // HSTS for this host only: PUBLIC_URL's host may be an apex whose other subdomains are not ours to pin to https.
    strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: false },
  });
  await registerAuth(scope, services);
  await scope.register(fastifyStatic, { root: ASSETS_DIR, prefix: '/admin/assets/', decorateReply: false, index: false, cacheControl: true, maxAge: '1h' });

  scope.get('/metrics', async (request, reply) => {
    const token = config.console.metricsToken;
    const actorMay = request.actor !== undefined && can(request.actor.role, 'metrics.read');
    const open = token === undefined && isLoopbackHost(config.http.host) && cameFromThisMachine(request);
    if (!open && !actorMay && !(token !== undefined && bearerEquals(request, token))) {
      if (request.actor) return reply.code(403).send({ error: `the ${request.actor.role} role may not read metrics` });
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="metrics"')
        .send({ error: 'metrics need Authorization: Bearer <METRICS_TOKEN or an API token with the ops or admin role>' });
    }
    const { contentType, body } = await renderMetrics(services);
    return reply.header('content-type', contentType).header('cache-control', 'no-store').send(body);
  });

  await registerQueueDashboard(scope, services);
  await registerAdminRoutes(scope, services);
  await scope.register(async (api) => registerApiRoutes(api, services), { prefix: '/api' });
}

/** helmet wants the CSP as directives; the console keeps it as one header string (layout.ts). */
function cspDirectives(csp: string): Record<string, string[]> {
  return Object.fromEntries(
    csp
      .split(';')
      .map((part) => part.trim().split(/\s+/))
      .filter((words) => words[0])
      .map(([name, ...values]) => [name!, values]),
  );
}
