import type { ReportedEvent } from '../core/delivery-event.ts';
import type { WebhookInput } from '../intake/webhooks/common.ts';
import { WebhookAuthError } from '../intake/webhooks/errors.ts';

export { MalformedWebhookError, WebhookAuthError } from '../intake/webhooks/errors.ts';
import { genericWebhook } from '../intake/webhooks/generic.ts';
import { mailgunWebhook } from '../intake/webhooks/mailgun.ts';
import { postmarkWebhook } from '../intake/webhooks/postmark.ts';
import { sendgridWebhook } from '../intake/webhooks/sendgrid.ts';
import { sesWebhook, type SnsValidator } from '../intake/webhooks/ses.ts';
import { UNMATCHED_RAW_BYTES } from '../store/event-store.ts';
import { takeInReport, type EventDeps, type EventOutcome } from './delivery-events.ts';

/** The providers whose webhooks `newsletter serve` takes, by route name (`POST /webhooks/<provider>`). */
export const WEBHOOK_PROVIDERS = ['ses', 'mailgun', 'postmark', 'sendgrid', 'generic'] as const;
/** One of WEBHOOK_PROVIDERS. */
export type WebhookProvider = (typeof WEBHOOK_PROVIDERS)[number];

/** What tests replace: SNS's certificate fetching and the subscription confirmation GET. */
export interface WebhookOptions {
  readonly snsValidator?: SnsValidator;
  /** Confirms an SNS subscription by fetching its SubscribeURL (already checked to be SNS's own host). */
  readonly confirmSubscription?: (url: string) => Promise<void>;
  readonly retryDelayMs?: number;
}

/** What became of one webhook request. Refusals are thrown: WebhookAuthError (401) and MalformedWebhookError (400). */
export type WebhookResult =
  /** The provider's credential is not configured: the route does not exist. */
  | { readonly outcome: 'not-configured' }
  | { readonly outcome: 'subscription-confirmed'; readonly topicArn: string }
  | { readonly outcome: 'ignored'; readonly reason: string }
  | { readonly outcome: 'taken'; readonly outcomes: readonly EventOutcome[]; readonly deferred: boolean };

/**
 * Takes one webhook request in: verifies it (signature, secret, age, replayed token), reads its
 * events, records them durably and applies them. Resolves only once they are recorded, so the
 * route answers 2xx only then; a forged, stale or malformed request changes nothing.
 */
export async function takeInWebhook(deps: EventDeps, provider: WebhookProvider, input: WebhookInput, options: WebhookOptions = {}): Promise<WebhookResult> {
  const { webhooks } = deps.config;
  const now = deps.now?.() ?? new Date();
  const maxAgeMs = webhooks.maxAgeSeconds * 1000;
  let events: readonly ReportedEvent[];
  let replayToken: string | undefined;
  switch (provider) {
    case 'ses': {
      if (webhooks.sesTopicArns.length === 0) return { outcome: 'not-configured' };
      const result = await sesWebhook(input, {
        topicArns: webhooks.sesTopicArns,
        now,
        maxAgeMs: webhooks.sesMaxAgeSeconds * 1000,
        validator: options.snsValidator,
      });
      if (result.type === 'subscription-confirmation') {
        await (options.confirmSubscription ?? fetchSubscribeUrl)(result.subscribeUrl);
        deps.logger.info({ topicArn: result.topicArn }, 'SNS subscription confirmed');
        return { outcome: 'subscription-confirmed', topicArn: result.topicArn };
      }
      if (result.type === 'ignored') return { outcome: 'ignored', reason: result.reason };
      events = result.events;
      break;
    }
    case 'mailgun': {
      if (!webhooks.mailgunSigningKey) return { outcome: 'not-configured' };
      ({ events, replayToken } = mailgunWebhook(input, { signingKey: webhooks.mailgunSigningKey, now, maxAgeMs }));
      break;
    }
    case 'postmark': {
      if (!webhooks.postmark) return { outcome: 'not-configured' };
      ({ events } = postmarkWebhook(input, webhooks.postmark));
      break;
    }
    case 'sendgrid': {
      if (!webhooks.sendgridPublicKey) return { outcome: 'not-configured' };
      ({ events, replayToken } = sendgridWebhook(input, { publicKey: webhooks.sendgridPublicKey, now, maxAgeMs }));
      break;
    }
    case 'generic': {
      if (!webhooks.genericSecret) return { outcome: 'not-configured' };
      ({ events } = genericWebhook(input, { secret: webhooks.genericSecret }));
      break;
    }
  }
  // A signed request may be replayed by whoever saw it (Mailgun signs the timestamp and token, not
  // the body): its token is good once. Providers sign each retry anew. Claimed before recording,
  // and given back if recording fails, so the same request sent again still gets in.
  if (replayToken !== undefined && !(await deps.events.claimWebhookToken(provider, replayToken, maxAgeMs * 2))) {
    throw new WebhookAuthError(`the ${provider} signature token was used before: a replayed request`);
  }
  if (events.length === 0) return { outcome: 'ignored', reason: 'no bounce, complaint or unsubscribe in the request' };
  try {
    const { outcomes, deferred } = await takeInReport(
      deps,
      {
        channel: provider === 'generic' ? 'webhook' : provider,
        receivedAt: now.toISOString(),
        events,
        raw: input.rawBody.subarray(0, UNMATCHED_RAW_BYTES).toString('utf8'),
      },
      options.retryDelayMs === undefined ? {} : { retryDelayMs: options.retryDelayMs },
    );
    return { outcome: 'taken', outcomes, deferred };
  } catch (error) {
    if (replayToken !== undefined) await deps.events.releaseWebhookToken(provider, replayToken).catch(() => undefined);
    throw error;
  }
}

/** GETs an SNS SubscribeURL, which confirms the subscription; anything but 2xx is an error (the route answers 5xx, SNS retries). */
async function fetchSubscribeUrl(url: string): Promise<void> {
  const response = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`confirming the SNS subscription failed: HTTP ${response.status}`);
}
