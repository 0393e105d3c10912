/** Every subscriber status; all but `active` are suppressed. */
export const SUBSCRIBER_STATUSES = ['active', 'unsubscribed', 'bounced', 'complained'] as const;
/** Only `active` subscribers are mailed; the others are suppressed until someone lifts it. */
export type SubscriberStatus = (typeof SUBSCRIBER_STATUSES)[number];
/** Why an address is suppressed: every status but active. */
export type SuppressionReason = Exclude<SubscriberStatus, 'active'>;
/** The suppression reasons, for CLI choices and checks. */
export const SUPPRESSION_REASONS: readonly SuppressionReason[] = SUBSCRIBER_STATUSES.filter((status): status is SuppressionReason => status !== 'active');

/** The default list a subscriber joins and a send goes to. */
export const DEFAULT_LIST = 'weekly';

/** What a list name may look like: it becomes part of Redis keys and send ids. */
export const LIST_NAME_SHAPE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** One subscriber as stored. `email` is the address as first given, for delivery. */
export interface Subscriber {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly status: SubscriberStatus;
  readonly attributes: Readonly<Record<string, string>>;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/** A subscriber to add or merge; the address must already be normalised (normaliseEmail). */
export interface SubscriberInput {
  readonly email: string;
  readonly name?: string | undefined;
  readonly attributes?: Readonly<Record<string, string>> | undefined;
  readonly list: string;
}

/**
 * The status changes made by hand or by an unsubscribe link, as data: which statuses each may start
 * from. They only ever change an active address, so a suppression is never weakened or relabelled;
 * lifting is the one way back to active. Delivery events (bounces, complaints) move a subscriber by
 * the bounce policy instead (core/bounce-policy.ts: only ever to a stronger suppression).
 */
export const STATUS_CHANGES = {
  unsubscribe: { from: ['active'], to: 'unsubscribed' },
  lift: { from: ['unsubscribed', 'bounced', 'complained'], to: 'active' },
} as const satisfies Record<string, { from: readonly SubscriberStatus[]; to: SubscriberStatus }>;

/** One of STATUS_CHANGES. */
export interface StatusChange {
  readonly from: readonly SubscriberStatus[];
  readonly to: SubscriberStatus;
}

/** A hand-made suppression: from active to the given reason. */
export function suppressionTo(reason: SuppressionReason): StatusChange {
  return { from: ['active'], to: reason };
}
