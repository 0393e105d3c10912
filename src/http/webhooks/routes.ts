import type { FastifyInstance } from 'fastify';
import type { EventDeps } from '../../app/delivery-events.ts';
import { MalformedWebhookError, takeInWebhook, WEBHOOK_PROVIDERS, WebhookAuthError, type WebhookOptions } from '../../app/webhook-intake.ts';

/** Webhook bodies larger than this are refused (413): a provider's batch is tens of KB. */
const WEBHOOK_BODY_LIMIT_BYTES = 1024 * 1024;

/**
 * `POST /webhooks/<provider>`: bounce, complaint and unsubscribe events from SES (via SNS),
 * Mailgun, Postmark, SendGrid and the generic JSON webhook. The body is kept as raw bytes, since
 * signatures cover the exact bytes. 401: the request does not prove where it comes from; 400: the
 * body is not what the provider sends (the message names the field); 404: the provider's
 * credential is not configured; 2xx only once the events are recorded.
 */
export async function registerWebhookRoutes(app: FastifyInstance, deps: EventDeps, options: WebhookOptions = {}): Promise<void> {
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT_BYTES }, (_request, body, done) => done(null, body));
    for (const provider of WEBHOOK_PROVIDERS) {
      scope.post(`/webhooks/${provider}`, async (request, reply) => {
        const rawBody = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
        try {
          const result = await takeInWebhook(deps, provider, { rawBody, headers: request.headers }, options);
          if (result.outcome === 'not-configured') return reply.code(404).send({ error: `the ${provider} webhook is not configured on this server` });
          if (result.outcome === 'taken') {
            const count = (outcome: string) => result.outcomes.filter((each) => each.outcome === outcome).length;
            return reply.code(200).send({
              received: result.deferred ? 'recorded' : 'applied',
              applied: count('applied'),
              duplicates: count('duplicate'),
              unmatched: count('unmatched'),
            });
          }
          return reply.code(200).send(result);
        } catch (error) {
          if (error instanceof WebhookAuthError) {
            // The reason is for our log; the caller learns only that it was refused.
            request.log.warn({ provider, reason: error.message }, 'webhook refused');
            return reply.code(401).send({ error: 'the request could not be authenticated' });
          }
          if (error instanceof MalformedWebhookError) return reply.code(400).send({ error: error.message });
          throw error;
        }
      });
    }
  });
}
