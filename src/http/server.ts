import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from '../../config/index.ts';
import type { Logger } from '../logger.ts';
import type { EventDeps } from '../app/delivery-events.ts';
import { createIssueArchive } from '../app/issue-archive.ts';
import type { WebhookOptions } from '../app/webhook-intake.ts';
import type { SendStore } from '../store/send-store.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';
import { registerIssueRoutes } from './public/issues.ts';
import { sendPage } from './public/page.ts';
import { registerUnsubscribeRoutes } from './public/unsubscribe.ts';
import { registerWebhookRoutes } from './webhooks/routes.ts';

/**
 * The HTTP endpoints behind PUBLIC_URL: every link of every email (unsubscribe, view in browser),
 * the archive of sent issues, and the providers' bounce and complaint webhooks.
 */
export async function buildHttpApp(
  deps: EventDeps & {
    readonly config: Config;
    readonly subscribers: SubscriberStore;
    readonly sends: SendStore;
    readonly logger: Logger;
  },
  options: { readonly webhooks?: WebhookOptions } = {},
): Promise<FastifyInstance> {
  const { config, subscribers, sends } = deps;
  // The one logger; a line per request would drown the rest, errors are logged with their request.
  const loggerInstance: FastifyBaseLogger = deps.logger;
  const app = Fastify({ loggerInstance, logController: new LogController({ disableRequestLogging: true }) });
  // The unsubscribe POST is decided by the token in the URL alone; its body (form-encoded or
  // multipart, as RFC 8058 allows, or empty) is never read, so any content type is accepted as is.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  registerUnsubscribeRoutes(app, { config, subscribers });
  registerIssueRoutes(app, { config, archive: createIssueArchive({ sends, publicUrl: config.publicUrl }) });
  await registerWebhookRoutes(app, deps, options.webhooks);
  app.get('/healthz', async () => ({ ok: true }));
  // People reach these URLs from email links: a mistyped one gets a page, not JSON.
  app.setNotFoundHandler((_request, reply) => sendPage(reply, 404, 'Page not found', `<p>There is no page at this address.</p>`));
  return app;
}
