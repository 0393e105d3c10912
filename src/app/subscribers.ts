import { cleanDisplayName, normaliseEmail } from '../core/address.ts';
import { UserFacingError } from '../core/errors.ts';
import { STATUS_CHANGES, suppressionTo, type Subscriber, type SubscriberStatus, type SuppressionReason } from '../core/subscriber.ts';
import { UNSUBSCRIBE_PURPOSE, verifyToken } from '../core/tokens.ts';
import type { DeliveryEvent } from '../core/delivery-event.ts';
import type { EventStore } from '../store/event-store.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';

/** An unsubscribe link whose token does not verify: altered, truncated, or signed with another secret. */
export class InvalidTokenError extends UserFacingError {
  override readonly name = 'InvalidTokenError';
  constructor() {
    super('This unsubscribe link is invalid or incomplete. Use the link from the most recent email, or reply to it and we will remove you by hand.');
  }
}

/** An address as typed: cleaned for delivery, or a UserFacingError naming it. */
export function requireEmail(rawEmail: string): string {
  const email = normaliseEmail(rawEmail);
  if (!email) throw new UserFacingError(`"${rawEmail}" is not a valid email address`);
  return email;
}

/** Adds one subscriber, or merges into the one with the same address in any case. */
export async function addSubscriber(store: SubscriberStore, input: { email: string; name?: string | undefined; list: string }) {
  const email = requireEmail(input.email);
  const result = await store.upsert({ email, name: cleanDisplayName(input.name), list: input.list });
  return { ...result, email };
}

/** Delivery events shown per subscriber. */
const RECENT_EVENTS_SHOWN = 20;

/** One subscriber with the lists they are on and their recent delivery events (bounces, complaints…), for `subscribers show`. */
export async function showSubscriber(
  stores: { readonly subscribers: SubscriberStore; readonly events: EventStore },
  rawEmail: string,
): Promise<Subscriber & { lists: string[]; events: DeliveryEvent[] }> {
  const subscriber = await requireByEmail(stores.subscribers, rawEmail);
  const [lists, events] = await Promise.all([stores.subscribers.listsOf(subscriber.id), stores.events.recentEvents(subscriber.id, RECENT_EVENTS_SHOWN)]);
  return { ...subscriber, lists, events };
}

/**
 * Unsubscribes the subscriber a signed unsubscribe token names. Idempotent, and it never weakens
 * a stronger suppression: a bounced or complained address stays so.
 */
export async function unsubscribeWithToken(store: SubscriberStore, secret: string, token: string): Promise<Subscriber> {
  const subscriber = await subscriberForToken(store, secret, token);
  if ((await store.changeStatus(subscriber.id, STATUS_CHANGES.unsubscribe)).changed) return { ...subscriber, status: 'unsubscribed' };
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
export async function suppressByEmail(
  store: SubscriberStore,
  rawEmail: string,
  reason: SuppressionReason,
): Promise<{ subscriber: Subscriber; changed: boolean }> {
  const subscriber = await requireByEmail(store, rawEmail);
  const { changed, previous } = await store.changeStatus(subscriber.id, suppressionTo(reason));
  return { subscriber: { ...subscriber, status: changed ? reason : (previous ?? subscriber.status) }, changed };
}

/** Lifts a suppression explicitly: the only way a suppressed address is mailed again. */
export async function liftSuppressionByEmail(store: SubscriberStore, rawEmail: string): Promise<{ subscriber: Subscriber; previous: SubscriberStatus }> {
  const subscriber = await requireByEmail(store, rawEmail);
  const { previous } = await store.changeStatus(subscriber.id, STATUS_CHANGES.lift);
  return { subscriber: { ...subscriber, status: 'active' }, previous: previous ?? subscriber.status };
}

/** The subscriber with this address (in any case), or a UserFacingError naming it. */
export async function requireByEmail(store: SubscriberStore, rawEmail: string): Promise<Subscriber> {
  const email = requireEmail(rawEmail);
  const subscriber = await store.getByEmail(email);
  if (!subscriber) throw new UserFacingError(`No subscriber with the address ${email}`);
  return subscriber;
}

/** A list's members by status, or a UserFacingError when there is no such list. */
/** The lists a send can go to: those that have (or had) subscribers. */
export async function listNames(store: SubscriberStore): Promise<string[]> {
  return store.listNames();
}

export async function countSubscribers(store: SubscriberStore, list: string) {
  if (!(await store.listExists(list))) throw new UserFacingError(`There is no list "${list}"`);
  return store.countList(list);
}
