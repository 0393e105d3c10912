import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { createIssueArchive } from '../app/issue-archive.ts';
import type { WebhookOptions } from '../app/webhook-intake.ts';
import type { Services } from '../services.ts';
import { registerIssueRoutes } from './public/issues.ts';
import { sendPage } from './public/page.ts';
import { registerUnsubscribeRoutes } from './public/unsubscribe.ts';
import { registerWebhookRoutes } from './webhooks/routes.ts';
import { registerConsole } from './console.ts';

/**
 * The one HTTP app of `newsletter serve`: every link of every email (unsubscribe, view in browser),
 * the archive of sent issues, the providers' bounce and complaint webhooks, and, behind a login or
 * an API token, the console (/admin), the API (/api), the queue dashboard (/admin/queues) and /metrics.
 * Each part is a plugin scope of its own, with its own body parsing.
 */
export async function buildHttpApp(services: Services, options: { readonly webhooks?: WebhookOptions } = {}): Promise<FastifyInstance> {
  const { config, subscribers, sends } = services;
  // The one logger; a line per request would drown the rest, errors are logged with their request.
  const loggerInstance: FastifyBaseLogger = services.logger;
  const app = Fastify({
    loggerInstance,
    logController: new LogController({ disableRequestLogging: true }),
    // Behind the reverse proxies TRUST_PROXY names, X-Forwarded-For names the client (the login limit
    // and the /metrics rule go by it); from anyone else the header is ignored.
    trustProxy: config.console.trustProxy.length > 0 ? [...config.console.trustProxy] : false,
  });
  await app.register(async (publicPages) => {
    // The unsubscribe POST is decided by the token in the URL alone; its body (form-encoded or
    // multipart, as RFC 8058 allows, or empty) is never read, so any content type is accepted as is.
    publicPages.removeAllContentTypeParsers();
    publicPages.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
    registerUnsubscribeRoutes(publicPages, { config, subscribers });
    registerIssueRoutes(publicPages, { config, archive: createIssueArchive({ sends, publicUrl: config.publicUrl }) });
    publicPages.get('/healthz', async () => ({ ok: true }));
  });
  await registerWebhookRoutes(app, services, options.webhooks);
  await app.register(async (consoleScope) => registerConsole(consoleScope, services));
  // People reach these URLs from email links: a mistyped one gets a page, not JSON.
  app.setNotFoundHandler((_request, reply) => sendPage(reply, 404, 'Page not found', `<p>There is no page at this address.</p>`));
  return app;
}
