import { X509Certificate } from 'node:crypto';
import SnsPayloadValidator from 'sns-payload-validator';
import { z } from 'zod';
import { parseSmtpReply } from '../../core/classify-bounce.ts';
import type { AttributionClues, ReportedEvent } from '../../core/delivery-event.ts';
import { bounceKind, checkFreshness, isoTime, normaliseMessageId, parseJsonBody, parseWith, withoutUndefined, type WebhookInput } from './common.ts';
import { MalformedWebhookError, WebhookAuthError } from './errors.ts';

/**
 * Amazon SES bounce and complaint notifications, delivered by an SNS topic to an HTTPS
 * subscription. The SNS envelope (Type, MessageId, TopicArn, Message, Timestamp,
 * SignatureVersion, Signature, SigningCertURL, and SubscribeURL/Token for a confirmation) is
 * signed by SNS; its Message is the SES notification as JSON text: `notificationType` (or
 * `eventType` from a configuration set's event destination) with `mail` and `bounce` or
 * `complaint`. Documented at docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html
 * and docs.aws.amazon.com/ses/latest/dg/notification-contents.html.
 */

/**
 * What is used of sns-payload-validator's Validator. Tests pass one whose certificate cache
 * already holds a test certificate under its SigningCertURL.
 */
export type SnsValidator = Pick<SnsPayloadValidator, 'validate'>;

/** What sesWebhook needs. */
export interface SesWebhookOptions {
  /** The topics we subscribed; a message from any other topic is refused, however well signed. */
  readonly topicArns: readonly string[];
  readonly now: Date;
  /**
   * How far the message's Timestamp may be from now. SNS keeps the publish time when it retries,
   * so this must cover the topic's delivery retry policy (about a minute by default, up to an hour
   * with a custom policy).
   */
  readonly maxAgeMs: number;
  /** Defaults to one shared validator, which fetches and caches Amazon's signing certificates. */
  readonly validator?: SnsValidator | undefined;
}

/** What an SNS request comes to. */
export type SesWebhookResult =
  | { readonly type: 'notification'; readonly events: ReportedEvent[] }
  /** The route confirms the subscription by fetching subscribeUrl (checked with isSnsHost already). */
  | { readonly type: 'subscription-confirmation'; readonly subscribeUrl: string; readonly topicArn: string }
  | { readonly type: 'ignored'; readonly reason: string };

let sharedValidator: SnsPayloadValidator | undefined;

const envelopeSchema = z.object({
  Type: z.enum(['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation']),
  MessageId: z.string().min(1),
  TopicArn: z.string().min(1),
  Message: z.string(),
  Timestamp: z.string().min(1),
  SubscribeURL: z.string().optional(),
  // Signature, SignatureVersion and SigningCertURL are the validator's to check.
});

/** The validator's messages for a request that fails verification, as opposed to a certificate that could not be fetched. */
const VERIFICATION_FAILURES = new Set(['Invalid Signature', 'Invalid SigningCertURL', 'Invalid SignatureVersion', 'Invalid Type']);

/**
 * Whether a URL is one of SNS's own HTTPS endpoints (`https://sns.<region>.amazonaws.com/…`, or
 * `.amazonaws.com.cn` in the China regions): the only host a SubscribeURL may send us to. No
 * other port and no credentials, so the fetch can't be pointed anywhere else.
 */
export function isSnsHost(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  return (
    parsed.protocol === 'https:' &&
    parsed.port === '' &&
    parsed.username === '' &&
    parsed.password === '' &&
    /^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/.test(parsed.hostname)
  );
}

/** sns-payload-validator's certificate cache (an lru-cache); its .d.ts doesn't declare it. */
interface CertificateCache {
  get(url: string): unknown;
  delete(url: string): unknown;
}

function isCertificateCache(value: unknown): value is CertificateCache {
  return (
    typeof value === 'object' && value !== null && 'get' in value && 'delete' in value && typeof value.get === 'function' && typeof value.delete === 'function'
  );
}

/**
 * sns-payload-validator 2.1.0 caches whatever the certificate URL answered, without looking at
 * the HTTP status: one error page from Amazon (a 5xx, a throttle) would stay cached as the
 * certificate and fail every later message signed with it, until a restart. After a failed
 * verification, an entry that is not a certificate at all is dropped, so the next message fetches
 * it again. A real certificate stays: a forged signature costs no refetch.
 */
function dropUnusableCertificate(validator: SnsValidator, url: unknown): void {
  const cache: unknown = 'certCache' in validator ? validator.certCache : undefined;
  if (typeof url !== 'string' || !isCertificateCache(cache)) return;
  const cached = cache.get(url);
  if (cached === undefined) return;
  try {
    if (typeof cached !== 'string' && !Buffer.isBuffer(cached)) throw new TypeError('not PEM text');
    new X509Certificate(cached);
  } catch {
    cache.delete(url);
  }
}

/**
 * An SNS request for the SES route. Checks, before anything is read: the topic is one of ours,
 * the Timestamp is within maxAgeMs of now (both ways), and the signature (sns-payload-validator:
 * SignatureVersion 1 or 2, the certificate URL on SNS's host pattern, RSA over the signed
 * fields). A verification failure is a WebhookAuthError; a certificate that could not be fetched
 * is rethrown as is (a 5xx: SNS retries). Then: a subscription confirmation gives its
 * SubscribeURL once it is checked to be SNS's own in the topic's region; a notification gives the
 * SES events; an unsubscribe confirmation and other notification types are ignored.
 */
export async function sesWebhook(input: WebhookInput, options: SesWebhookOptions): Promise<SesWebhookResult> {
  const raw = parseJsonBody(input.rawBody);
  const envelope = parseWith(envelopeSchema, raw, 'SNS message');
  // Cheap checks first: a request for another topic or from long ago costs no certificate fetch.
  if (!options.topicArns.includes(envelope.TopicArn)) throw new WebhookAuthError(`SNS topic ${envelope.TopicArn} is not one we subscribed`);
  checkFreshness(Date.parse(envelope.Timestamp), options.now, options.maxAgeMs, 'the SNS Timestamp');
  const validator = options.validator ?? (sharedValidator ??= new SnsPayloadValidator());
  try {
    // The parsed body as received, not the schema's copy: the validator reads the signed fields from it.
    await validator.validate(raw as SnsPayloadValidator.SnsPayload);
  } catch (error) {
    if (error instanceof Error && VERIFICATION_FAILURES.has(error.message)) {
      dropUnusableCertificate(validator, (raw as { SigningCertURL?: unknown }).SigningCertURL);
      throw new WebhookAuthError(`SNS signature: ${error.message}`);
    }
    throw error;
  }
  switch (envelope.Type) {
    case 'SubscriptionConfirmation': {
      const url = envelope.SubscribeURL;
      if (!url) throw new MalformedWebhookError('SNS message: SubscribeURL is missing');
      if (!isSnsHost(url)) throw new WebhookAuthError(`SNS SubscribeURL is not on an SNS host: ${url}`);
      const region = envelope.TopicArn.split(':')[3];
      if (new URL(url).hostname.split('.')[1] !== region) throw new WebhookAuthError(`SNS SubscribeURL is not in the topic's region ${region ?? '?'}: ${url}`);
      return { type: 'subscription-confirmation', subscribeUrl: url, topicArn: envelope.TopicArn };
    }
    case 'UnsubscribeConfirmation':
      return { type: 'ignored', reason: 'unsubscribe confirmation' };
    case 'Notification': {
      let message: unknown;
      try {
        message = JSON.parse(envelope.Message) as unknown;
      } catch {
        throw new MalformedWebhookError('SNS message: Message is not JSON');
      }
      return parseSesNotification(message);
    }
  }
}

const notificationTypeSchema = z.object({ notificationType: z.string().optional(), eventType: z.string().optional() });

const mailSchema = z.object({
  // Present only when the identity's notifications include the original headers.
  headers: z.array(z.object({ name: z.string(), value: z.string() })).optional(),
  commonHeaders: z.object({ messageId: z.string().optional() }).optional(),
});

const bounceNotificationSchema = z.object({
  mail: mailSchema,
  bounce: z.object({
    bounceType: z.string().min(1),
    bounceSubType: z.string().optional(),
    bouncedRecipients: z
      .array(
        z.object({
          emailAddress: z.string().min(1),
          status: z.string().optional(),
          diagnosticCode: z.string().optional(),
        }),
      )
      .min(1),
    timestamp: z.string().min(1),
    feedbackId: z.string().min(1),
  }),
});

const complaintNotificationSchema = z.object({
  mail: mailSchema,
  complaint: z.object({
    complainedRecipients: z.array(z.object({ emailAddress: z.string().min(1) })).min(1),
    timestamp: z.string().min(1),
    feedbackId: z.string().min(1),
    complaintFeedbackType: z.string().optional(),
  }),
});

/**
 * The events of one SES notification (the SNS Message, already authenticated), one per recipient,
 * with id `<feedbackId>:<address>`. A bounce is classified from the recipient's Status, the
 * Diagnostic-Code's reply code and SES's `<bounceType>/<bounceSubType>`, in that order, so a
 * Transient bounce whose status says 5.4.4 (no such domain) is hard. A complaint of feedback type
 * `not-spam` is no complaint and gives none; so do Delivery and other notification types.
 */
export function parseSesNotification(message: unknown): Extract<SesWebhookResult, { type: 'notification' | 'ignored' }> {
  const { notificationType, eventType } = parseWith(notificationTypeSchema, message, 'SES notification');
  const type = notificationType ?? eventType;
  if (type === 'Bounce') {
    const { mail, bounce } = parseWith(bounceNotificationSchema, message, 'SES notification');
    const providerType = bounce.bounceSubType ? `${bounce.bounceType}/${bounce.bounceSubType}` : bounce.bounceType;
    const at = isoTime(bounce.timestamp, 'bounce.timestamp');
    const events = bounce.bouncedRecipients.map((recipient): ReportedEvent => {
      const reply = parseSmtpReply(recipient.diagnosticCode);
      const diagnostic = withoutUndefined({
        status: recipient.status || reply.status,
        replyCode: reply.replyCode,
        providerType,
        text: recipient.diagnosticCode,
      });
      return {
        id: `${bounce.feedbackId}:${recipient.emailAddress}`,
        source: 'ses',
        kind: bounceKind('ses', diagnostic),
        diagnostic,
        at,
        clues: clues(mail, recipient.emailAddress),
      };
    });
    return { type: 'notification', events };
  }
  if (type === 'Complaint') {
    const { mail, complaint } = parseWith(complaintNotificationSchema, message, 'SES notification');
    // RFC 5965's not-spam: the reporter says the message is not spam, the opposite of a complaint.
    if (complaint.complaintFeedbackType === 'not-spam') return { type: 'ignored', reason: 'not-spam feedback' };
    const at = isoTime(complaint.timestamp, 'complaint.timestamp');
    const events = complaint.complainedRecipients.map((recipient): ReportedEvent => ({
      id: `${complaint.feedbackId}:${recipient.emailAddress}`,
      source: 'ses',
      kind: 'complaint',
      diagnostic: withoutUndefined({ providerType: complaint.complaintFeedbackType }),
      at,
      clues: clues(mail, recipient.emailAddress),
    }));
    return { type: 'notification', events };
  }
  return { type: 'ignored', reason: `SES ${type ?? 'untyped'} notification` };
}

/** The clues SES echoes: the original headers we wrote, when the identity is set to include them. */
function clues(mail: z.infer<typeof mailSchema>, recipient: string): AttributionClues {
  const header = (name: string): string | undefined => mail.headers?.find((h) => h.name.toLowerCase() === name.toLowerCase())?.value.trim() || undefined;
  return withoutUndefined({
    recipient,
    // mail.messageId is SES's own id; the one we wrote is in the headers.
    messageId: normaliseMessageId(header('Message-ID') ?? mail.commonHeaders?.messageId),
    sendId: header('X-Newsletter-Send'),
    subscriberId: header('X-Newsletter-Subscriber'),
  });
}
