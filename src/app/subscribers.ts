import { UserFacingError } from '../core/errors.ts';
import { UNSUBSCRIBE_PURPOSE, verifyToken } from '../core/tokens.ts';
import type { Subscriber, SubscriberStatus, SubscriberStore } from '../store/subscriber-store.ts';

/** Why an address is suppressed: every status but active. */
export type SuppressionReason = Exclude<SubscriberStatus, 'active'>;

/** An unsubscribe link whose token does not verify: altered, truncated, or signed with another secret. */
export class InvalidTokenError extends UserFacingError {
  override readonly name = 'InvalidTokenError';
  constructor() {
    super('This unsubscribe link is invalid or incomplete. Use the link from the most recent email, or reply to it and we will remove you by hand.');
  }
}

/**
 * Unsubscribes the subscriber a signed unsubscribe token names. Idempotent, and it never weakens
 * a stronger suppression: a bounced or complained address stays so.
 */
export async function unsubscribeWithToken(store: SubscriberStore, secret: string, token: string): Promise<Subscriber> {
  const subscriber = await subscriberForToken(store, secret, token);
  if (await store.changeStatus(subscriber.id, 'active', 'unsubscribed')) return { ...subscriber, status: 'unsubscribed' };
  return (await store.get(subscriber.id)) ?? subscriber;
}

/** The subscriber a token names, without changing anything (for the confirmation page). */
export async function subscriberForToken(store: SubscriberStore, secret: string, token: string): Promise<Subscriber> {
  const payload = verifyToken(secret, UNSUBSCRIBE_PURPOSE, token);
  const subscriber = payload?.s ? await store.get(payload.s) : undefined;
  if (!subscriber) throw new InvalidTokenError();
  return subscriber;
}

/**
 * Suppresses an active address by hand (ops), with the reason as its status. An address already
 * suppressed keeps its status; to change the reason, lift it first.
 */
export async function suppressByEmail(store: SubscriberStore, email: string, reason: SuppressionReason): Promise<{ subscriber: Subscriber; changed: boolean }> {
  const subscriber = await requireByEmail(store, email);
  if (await store.changeStatus(subscriber.id, 'active', reason)) return { subscriber: { ...subscriber, status: reason }, changed: true };
  return { subscriber: (await store.get(subscriber.id)) ?? subscriber, changed: false };
}

/** Lifts a suppression explicitly: the only way a suppressed address is mailed again. */
export async function liftSuppressionByEmail(store: SubscriberStore, email: string): Promise<{ subscriber: Subscriber; previous: SubscriberStatus }> {
  const subscriber = await requireByEmail(store, email);
  await store.setStatus(subscriber.id, 'active');
  return { subscriber: { ...subscriber, status: 'active' }, previous: subscriber.status };
}

/** The subscriber with this address, or a UserFacingError naming it. */
export async function requireByEmail(store: SubscriberStore, email: string): Promise<Subscriber> {
  const subscriber = await store.getByEmail(email);
  if (!subscriber) throw new UserFacingError(`No subscriber with the address ${email}`);
  return subscriber;
}
