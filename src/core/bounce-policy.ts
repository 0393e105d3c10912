import type { DeliveryEventKind } from './delivery-event.ts';
import type { SubscriberStatus, SuppressionReason } from './subscriber.ts';

/**
 * How strong each subscriber status is as a suppression, weakest first. An event may only move a
 * subscriber up this order, so a later, weaker event (a soft bounce after a complaint, an
 * unsubscribe after a hard bounce) never downgrades or relabels a suppression. Only `lift` goes back.
 */
export const SUPPRESSION_STRENGTH: readonly SubscriberStatus[] = ['active', 'unsubscribed', 'bounced', 'complained'];

/** The settings of the bounce policy (config: SOFT_BOUNCE_LIMIT, SOFT_BOUNCE_WINDOW_DAYS). */
export interface BouncePolicySettings {
  readonly softBounceLimit: number;
  readonly softBounceWindowDays: number;
}

/** What one kind of event does, as data. */
export interface EventEffect {
  /** The suppression it sets at once, if any. */
  readonly suppress: SuppressionReason | undefined;
  /**
   * Soft bounces suppress (as `bounced`) once `limit` of them fall within `windowMs`; older ones
   * expire and no longer count. They are counted per message (send), so a provider reporting each
   * retry of one message counts once.
   */
  readonly suppressAfter: { readonly limit: number; readonly windowMs: number; readonly as: SuppressionReason } | undefined;
  /** A complaint takes the subscriber off every list, not only the one that was mailed. */
  readonly leaveLists: boolean;
  /**
   * The counter on the send record that this kind adds to, once per recipient: what `status`
   * shows, and what the breakers of work item #5 read.
   */
  readonly sendCounter: 'bounced' | 'softBounced' | 'blocked' | 'complained' | 'unsubscribed' | undefined;
  /**
   * How strongly it marks a recipient in `status --failures`, which shows each recipient's
   * strongest event: a later, weaker one doesn't hide it. 0: not a failure, never listed.
   */
  readonly reportRank: number;
}

const DAY_MS = 86_400_000;

/**
 * The bounce policy: each kind of event and what it does. A hard bounce suppresses at once; a
 * block never suppresses (the address is fine, the receiver refuses us) but counts toward the
 * send's block rate; soft bounces suppress only when they pile up within the window; a complaint
 * suppresses and removes the subscriber from every list.
 */
export function bouncePolicy(settings: BouncePolicySettings): Readonly<Record<DeliveryEventKind, EventEffect>> {
  const none = { suppress: undefined, suppressAfter: undefined, leaveLists: false, reportRank: 0 } as const;
  return {
    accepted: { ...none, sendCounter: undefined },
    hard: { ...none, suppress: 'bounced', sendCounter: 'bounced', reportRank: 3 },
    soft: {
      ...none,
      suppressAfter: { limit: settings.softBounceLimit, windowMs: settings.softBounceWindowDays * DAY_MS, as: 'bounced' },
      sendCounter: 'softBounced',
      reportRank: 1,
    },
    block: { ...none, sendCounter: 'blocked', reportRank: 2 },
    complaint: { ...none, suppress: 'complained', leaveLists: true, sendCounter: 'complained', reportRank: 4 },
    unsubscribe: { ...none, suppress: 'unsubscribed', sendCounter: 'unsubscribed' },
  };
}

/** The statuses a suppression to `reason` may replace: the weaker ones (see SUPPRESSION_STRENGTH). */
export function weakerThan(reason: SuppressionReason): SubscriberStatus[] {
  return SUPPRESSION_STRENGTH.slice(0, SUPPRESSION_STRENGTH.indexOf(reason));
}
