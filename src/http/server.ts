import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import Handlebars from 'handlebars';
import type { Config } from '../../config/index.ts';
import { InvalidTokenError, subscriberForToken, unsubscribeWithToken } from '../app/subscribers.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';

const escape = Handlebars.escapeExpression;

/**
 * The public HTTP endpoints behind PUBLIC_URL: the unsubscribe links of every email. They need no
 * login: the signed token in the link is the authorisation, and it names one subscriber only.
 *
 * GET shows a confirmation page and changes nothing, because mail scanners and link previews fetch
 * links on their own. POST unsubscribes: the page's button, and the mail client's one-click
 * request of RFC 8058 (body "List-Unsubscribe=One-Click").
 */
export async function buildHttpApp(deps: { readonly config: Config; readonly subscribers: SubscriberStore }): Promise<FastifyInstance> {
  const { config, subscribers } = deps;
  const app = Fastify({ logger: false });
  // The unsubscribe POST is decided by the token in the URL alone; its body (form-encoded or
  // multipart, as RFC 8058 allows, or empty) is never read, so any content type is accepted as is.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  const page = (reply: FastifyReply, status: number, title: string, body: string) =>
    reply
      .code(status)
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
      .send(
        `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
          `<title>${escape(title)}</title><style>body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1f2933}button{font-size:1rem;padding:.6rem 1.2rem}</style>` +
          `</head><body><h1>${escape(title)}</h1>${body}</body></html>`,
      );
  const unsubscribed = (reply: FastifyReply, email: string) =>
    page(reply, 200, 'You are unsubscribed', `<p>${escape(email)} gets no more email from ${escape(config.mail.newsletterName)}.</p>`);
  const invalid = (reply: FastifyReply) => page(reply, 400, 'Invalid unsubscribe link', `<p>${escape(new InvalidTokenError().message)}</p>`);
  const tokenOf = (query: unknown) => (typeof (query as { token?: unknown }).token === 'string' ? (query as { token: string }).token : '');

  app.get('/unsubscribe', async (request, reply) => {
    try {
      const subscriber = await subscriberForToken(subscribers, config.appSecret, tokenOf(request.query));
      if (subscriber.status !== 'active') return unsubscribed(reply, subscriber.email);
      return page(
        reply,
        200,
        `Unsubscribe from ${config.mail.newsletterName}?`,
        `<p>${escape(subscriber.email)} will get no more issues.</p>` +
          // An empty action posts back to this very URL, token and any path prefix behind the proxy included.
          `<form method="post" action=""><button type="submit">Unsubscribe</button></form>`,
      );
    } catch (error) {
      if (error instanceof InvalidTokenError) return invalid(reply);
      throw error;
    }
  });

  app.post('/unsubscribe', async (request, reply) => {
    try {
      const subscriber = await unsubscribeWithToken(subscribers, config.appSecret, tokenOf(request.query));
      return unsubscribed(reply, subscriber.email);
    } catch (error) {
      if (error instanceof InvalidTokenError) return invalid(reply);
      throw error;
    }
  });

  app.get('/healthz', async () => ({ ok: true }));
  return app;
}
