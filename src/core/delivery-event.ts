/**
 * What comes back about a message after it left: one model for every source. The SMTP answer
 * during the session, a DSN mailed back later, an ARF complaint from a feedback loop and a
 * provider's webhook all become DeliveryEvents, applied by one policy (core/bounce-policy.ts).
 */

/**
 * What happened. `accepted`: the SMTP server answered 250 (not "delivered"). `hard`: the address
 * is bad. `soft`: a temporary failure. `block`: refused for policy or reputation, which says
 * nothing about the address. `complaint`: a spam report. `unsubscribe`: the subscriber left
 * through a provider's or mail client's mechanism.
 */
export const DELIVERY_EVENT_KINDS = ['accepted', 'hard', 'soft', 'block', 'complaint', 'unsubscribe'] as const;
/** One of DELIVERY_EVENT_KINDS. */
export type DeliveryEventKind = (typeof DELIVERY_EVENT_KINDS)[number];

/** The kinds that are bounces: a message that did not reach the mailbox. */
export const BOUNCE_KINDS = ['hard', 'soft', 'block'] as const satisfies readonly DeliveryEventKind[];

/**
 * Where an event came from. `smtp`: our own SMTP session's reply; `dsn`: a delivery status
 * notification (RFC 3464, or an MTA's older free-form bounce); `arf`: a feedback report (RFC
 * 5965); the providers' webhooks by name; `webhook`: the generic JSON webhook.
 */
export const DELIVERY_EVENT_SOURCES = ['smtp', 'dsn', 'arf', 'ses', 'mailgun', 'postmark', 'sendgrid', 'webhook'] as const;
/** One of DELIVERY_EVENT_SOURCES. */
export type DeliveryEventSource = (typeof DELIVERY_EVENT_SOURCES)[number];

/** The structured reason of an event, as the reporting server or provider gave it. */
export interface Diagnostic {
  /** RFC 3463 enhanced status code, e.g. "5.1.1". */
  readonly status?: string | undefined;
  /** RFC 5321 reply code, e.g. 550. */
  readonly replyCode?: number | undefined;
  /** A provider's own type and subtype, e.g. SES "Permanent"/"General", Postmark "HardBounce". */
  readonly providerType?: string | undefined;
  /** The human-readable text, for ops only: never read to classify. */
  readonly text?: string | undefined;
}

/** One event, attributed to a subscriber (and to a send where that is known). */
export interface DeliveryEvent {
  /**
   * Unique within its source: the provider's event id, a DSN's Message-ID with the recipient, or
   * the send and subscriber for our own SMTP outcomes. Applying an event whose id was seen before
   * changes nothing.
   */
  readonly id: string;
  readonly source: DeliveryEventSource;
  readonly kind: DeliveryEventKind;
  readonly subscriberId: string;
  /** The send it is about; undefined when neither the report nor the subscriber's history names one. */
  readonly sendId: string | undefined;
  readonly diagnostic: Diagnostic;
  /** When the event happened (ISO 8601), as the source tells; else when it was received. */
  readonly at: string;
}

/**
 * What a report says about the message it concerns, to find the subscriber and send: tried in
 * this order, strongest first (app/delivery-events.ts).
 */
export interface AttributionClues {
  /** The envelope recipient the report was mailed to: our VERP address, signed. */
  readonly verpAddress?: string | undefined;
  /** RFC 3461 ENVID echoed back as Original-Envelope-Id: the same signed token. */
  readonly envelopeId?: string | undefined;
  /** The Message-ID of the original message, from a quoted copy or a provider's record. */
  readonly messageId?: string | undefined;
  /**
   * The quoted original's List-Unsubscribe header: its URL carries the unsubscribe token, signed
   * with APP_SECRET, that names the subscriber and the send.
   */
  readonly listUnsubscribe?: string | undefined;
  /** X-Newsletter-Send and X-Newsletter-Subscriber, from a quoted copy or a provider's custom variables. */
  readonly sendId?: string | undefined;
  readonly subscriberId?: string | undefined;
  /** The address the event is about (Final-Recipient, a provider's recipient field). */
  readonly recipient?: string | undefined;
}

/** An event as a source reports it, before it is attributed to a subscriber. */
export interface ReportedEvent {
  /** Unique within the source; see DeliveryEvent.id. */
  readonly id: string;
  readonly source: DeliveryEventSource;
  readonly kind: DeliveryEventKind;
  readonly diagnostic: Diagnostic;
  /** ISO 8601; undefined when the report doesn't say (the time it was received is used). */
  readonly at?: string | undefined;
  readonly clues: AttributionClues;
}
