import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { Queue } from 'bullmq';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EVENT_WEBHOOK_QUEUE_NAME } from '../../app/event-webhooks.ts';
import type { Services } from '../../services.ts';
import { requirePermission } from '../auth.ts';
import { CONSOLE_CSP } from './layout.ts';

/** The console's CSP with the one change bull-board's page needs: a <base> pointing at our own origin. */
const BOARD_CSP = CONSOLE_CSP.replace("base-uri 'none'", "base-uri 'self'");

/**
 * The queue dashboard's writes that ops may make: retry, promote, clean (remove) jobs, and pause or
 * resume a queue. Everything else it offers is refused, since a job's data is trusted downstream:
 * an added or edited job could forge a signed outgoing webhook or a bounce report, and obliterate
 * or empty would lose recipients' jobs without a record.
 */
const BOARD_WRITES_ALLOWED: ReadonlySet<string> = new Set([
  'PUT /api/queues/:queueName/retry/:queueStatus',
  'PUT /api/queues/:queueName/promote',
  'PUT /api/queues/:queueName/clean/:queueStatus',
  'PUT /api/queues/:queueName/pause',
  'PUT /api/queues/:queueName/resume',
  'PUT /api/queues/pause',
  'PUT /api/queues/resume',
  'PUT /api/queues/:queueName/:jobId/retry',
  'PUT /api/queues/:queueName/:jobId/clean',
  'PUT /api/queues/:queueName/:jobId/promote',
]);

/** Where ops find the queue dashboard. */
export const QUEUES_PATH = '/admin/queues';

/** bull-board's page template links Google Fonts; the console loads nothing from outside. */
const OUTSIDE_FONTS = /^.*fonts\.googleapis\.com.*$\n?/m;

/**
 * A copy of bull-board's views without the web-font link (it falls back to the system fonts), made
 * from the installed version at start-up so an upgrade brings its own template along.
 */
async function viewsWithoutOutsideFonts(): Promise<string> {
  const require = createRequire(import.meta.url);
  const uiPackage = require.resolve('@bull-board/ui/package.json');
  const { version } = JSON.parse(await readFile(uiPackage, 'utf8')) as { version: string };
  const source = path.join(path.dirname(uiPackage), 'dist', 'index.ejs');
  // A fresh private folder (mode 0700): a predictable path could be made first by another local user, who could then swap the template.
  const folder = await mkdtemp(path.join(os.tmpdir(), `newsletter-bull-board-${version}-`));
  const template = await readFile(source, 'utf8');
  if (OUTSIDE_FONTS.test(template)) await writeFile(path.join(folder, 'index.ejs'), template.replace(OUTSIDE_FONTS, ''));
  else await copyFile(source, path.join(folder, 'index.ejs'));
  return folder;
}

/**
 * Whether a request comes from a page of this very server. Browsers resend the session cookie by
 * themselves and bull-board's own calls carry no CSRF token, so its write requests must prove
 * where they come from: Sec-Fetch-Site (every current browser sends it) or else the Origin header.
 */
function fromOurOwnPage(request: FastifyRequest): boolean {
  const site = request.headers['sec-fetch-site'];
  if (typeof site === 'string') return site === 'same-origin';
  const origin = request.headers.origin;
  if (typeof origin !== 'string') return false;
  try {
    return new URL(origin).host === request.headers.host;
  } catch {
    return false;
  }
}

/**
 * bull-board at /admin/queues, behind the console's auth: looking needs queues.read, every write
 * (retry, promote, clean, remove, pause) needs queues.write and a same-origin request, or an API token.
 */
export async function registerQueueDashboard(scope: FastifyInstance, services: Services): Promise<void> {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(QUEUES_PATH);
  // The outgoing webhooks' queue, when they are on: ops see and retry deliveries a receiver refused.
  const webhookQueue = services.config.eventWebhook
    ? new Queue(EVENT_WEBHOOK_QUEUE_NAME, { connection: services.redis, prefix: services.control.keys.bullPrefix })
    : undefined;
  if (webhookQueue) scope.addHook('onClose', async () => webhookQueue.close());
  createBullBoard({
    queues: [new BullMQAdapter(services.queue), new BullMQAdapter(services.reports.queue), ...(webhookQueue ? [new BullMQAdapter(webhookQueue)] : [])],
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Newsletter queues' } },
  });
  const views = await viewsWithoutOutsideFonts();
  scope.addHook('onClose', async () => rm(views, { recursive: true, force: true }));
  serverAdapter.setViewsPath(views);
  const readGuard = requirePermission('queues.read');
  const writeGuard = requirePermission('queues.write');
  await scope.register(async (board) => {
    // bull-board's page sets <base href="/admin/queues/"> for its assets: the console's `base-uri 'none'` would break it.
    board.addHook('onRequest', async (_request, reply) => {
      reply.header('content-security-policy', BOARD_CSP);
    });
    board.addHook('preHandler', async (request, reply) => {
      if (request.method === 'GET' || request.method === 'HEAD') return readGuard.call(board, request, reply);
      await writeGuard.call(board, request, reply);
      if (reply.sent) return reply;
      const route = (request.routeOptions.url ?? '').slice(QUEUES_PATH.length);
      if (!BOARD_WRITES_ALLOWED.has(`${request.method} ${route}`)) {
        return reply.code(403).send({ error: `the queue dashboard does not allow ${request.method} ${route}: only retry, promote, clean and pause/resume` });
      }
      if (request.actor?.kind === 'user' && !fromOurOwnPage(request)) {
        return reply.code(403).send({ error: 'a change to the queues must come from the queue dashboard itself (cross-site request refused)' });
      }
      return undefined;
    });
    await board.register(serverAdapter.registerPlugin(), { prefix: QUEUES_PATH });
  });
}
