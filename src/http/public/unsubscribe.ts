import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Config } from '../../../config/index.ts';
import { InvalidTokenError, subscriberForToken, unsubscribeWithToken } from '../../app/subscribers.ts';
import type { SubscriberStore } from '../../store/subscriber-store.ts';
import { escape, sendPage } from './page.ts';

/**
 * The unsubscribe links of every email. They need no login: the signed token in the link is the
 * authorisation, and it names one subscriber only.
 *
 * GET shows a confirmation page and changes nothing, because mail scanners and link previews fetch
 * links on their own. POST unsubscribes: the page's button, and the mail client's one-click
 * request of RFC 8058 (body "List-Unsubscribe=One-Click").
 */
export function registerUnsubscribeRoutes(app: FastifyInstance, deps: { readonly config: Config; readonly subscribers: SubscriberStore }): void {
  const { config, subscribers } = deps;
  const unsubscribed = (reply: FastifyReply, email: string) =>
    sendPage(reply, 200, 'You are unsubscribed', `<p>${escape(email)} gets no more email from ${escape(config.mail.newsletterName)}.</p>`);
  const invalid = (reply: FastifyReply) => sendPage(reply, 400, 'Invalid unsubscribe link', `<p>${escape(new InvalidTokenError().message)}</p>`);
  const tokenOf = (query: unknown): string | undefined => {
    const token = (query as { token?: unknown }).token;
    if (token === undefined) return undefined;
    return typeof token === 'string' ? token : '';
  };

  app.get('/unsubscribe', async (request, reply) => {
    const token = tokenOf(request.query);
    // The web version's link carries no token, since it has no reader: explain rather than refuse.
    if (token === undefined) {
      return sendPage(
        reply,
        200,
        `Unsubscribe from ${config.mail.newsletterName}`,
        `<p>Every email from ${escape(config.mail.newsletterName)} ends with its own unsubscribe link. That link unsubscribes the address the email was sent to, in one click.</p>` +
          '<p>This page has no such link, so it cannot tell who you are: open the most recent email you got from us and use the link at its bottom, or reply to that email and we will remove you by hand.</p>',
      );
    }
    try {
      const subscriber = await subscriberForToken(subscribers, config.appSecret, token);
      if (subscriber.status !== 'active') return unsubscribed(reply, subscriber.email);
      return sendPage(
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
      const subscriber = await unsubscribeWithToken(subscribers, config.appSecret, tokenOf(request.query) ?? '');
      return unsubscribed(reply, subscriber.email);
    } catch (error) {
      if (error instanceof InvalidTokenError) return invalid(reply);
      throw error;
    }
  });
}
