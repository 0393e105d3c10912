import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { finished } from 'node:stream/promises';
import { type Headers, Splitter, type SplitterChunk } from '@zone-eu/mailsplit';
import libmime from 'libmime';
import { classifyBounce, parseSmtpReply } from '../core/classify-bounce.ts';
import type { AttributionClues, Diagnostic, ReportedEvent } from '../core/delivery-event.ts';
import {
  bareAddress,
  bareMessageId,
  deliveryAddress,
  field,
  type FieldBlock,
  headerValue,
  headerValues,
  isoDate,
  mergeBlocks,
  parseFieldBlocks,
  parseHeaderBlock,
  quotedReplies,
  splitAtCopyMarker,
  typedAddress,
} from './report-fields.ts';

/**
 * One inbound email (a bounce, a complaint, or anything else that reached the bounce mailbox)
 * turned into ReportedEvents. The MIME tree is walked with mailsplit; the report fields (RFC 3464,
 * RFC 5965) are read by report-fields.ts; classifying is core's classifyBounce, from structured
 * fields only. Attributing the events to a subscriber is not done here: only the clues are.
 */

/** A message that claims to be a report but can't be read as one; the message says what is missing. */
export class GarbledReportError extends Error {
  override readonly name = 'GarbledReportError';
}

/**
 * What one inbound email says. `report`: a DSN (RFC 3464), an ARF complaint (RFC 5965) or an MTA's
 * free-form bounce (`legacy-bounce`), with one event per recipient it reports a failure or complaint
 * for (none for a DSN that only reports deliveries). `reportMessageId` is the report's own
 * Message-ID without angle brackets. `not-a-report`: anything else, with the reason for ops.
 */
export type MailReport =
  | {
      readonly kind: 'report';
      readonly format: 'dsn' | 'arf' | 'legacy-bounce';
      readonly reportMessageId: string | undefined;
      readonly events: readonly ReportedEvent[];
    }
  | { readonly kind: 'not-a-report'; readonly reason: string };

/** A header block can't run away with memory (mailsplit counts every line as at least 64 bytes). */
const MAX_HEAD_BYTES = 256 * 1024;
/** Real reports have fewer than 10 parts; a message with more than this isn't split further. */
const MAX_PARTS = 200;
/**
 * What is kept of one part's body. The status and feedback fields come first, and of a returned
 * message only the headers are read; the caller caps the size of the whole message.
 */
const MAX_PART_BYTES = 256 * 1024;

const DELIVERY_STATUS_TYPES = new Set(['message/delivery-status', 'message/global-delivery-status']);
const FEEDBACK_TYPE = 'message/feedback-report';
/** Where a report returns the original message or its headers (RFC 6522, RFC 6533 for the global ones). */
const ORIGINAL_TYPES = new Set(['text/rfc822-headers', 'message/rfc822', 'message/global', 'message/global-headers']);
const KEPT_TYPES = new Set([...DELIVERY_STATUS_TYPES, FEEDBACK_TYPE, ...ORIGINAL_TYPES, 'text/plain']);

/** RFC 3464 §2.3.3. Only failed and delayed say something went wrong. */
const DSN_ACTIONS = new Set(['failed', 'delayed', 'delivered', 'relayed', 'expanded']);
/** The registered feedback types that are complaints; not-spam (RFC 6430) and auth-failure (RFC 6591) are not. */
const COMPLAINT_TYPES = new Set(['abuse', 'fraud', 'virus', 'other']);
const NOT_COMPLAINT_TYPES = new Set(['not-spam', 'auth-failure']);

/**
 * Reads one raw inbound email (at most the size the caller allows). `envelopeRecipient` is the
 * address it was delivered to, which for a bounce is our VERP address; without it Delivered-To,
 * X-Original-To and To stand in. A complaint is mailed to the feedback-loop address instead, so its
 * VERP address is the Original-Mail-From the report names. Event ids are `<report Message-ID, no
 * angle brackets, or sha256:<hex of the bytes>>:<recipient, lower-cased>`. Throws
 * GarbledReportError for a message that claims to be a report but lacks the parts or fields that
 * would say what it reports.
 */
export async function parseMailReport(raw: Buffer, options?: { readonly envelopeRecipient?: string | undefined }): Promise<MailReport> {
  const { parts, error } = await splitParts(raw);
  const root = parts[0];
  const rootHeaders = root?.node.headers;
  if (error || !root) {
    // A split that failed inside the top header block parsed nothing: the raw head says what it claims.
    const claims =
      parts.some((part) => part.contentType === 'multipart/report') ||
      headerValues(rootHeaders, 'x-failed-recipients').length > 0 ||
      /^(?:x-failed-recipients:|content-type:[ \t]*multipart\/report)/im.test(raw.subarray(0, MAX_HEAD_BYTES).toString('latin1'));
    const why = error ? error.message : 'empty message';
    if (claims) throw new GarbledReportError(`report could not be split into MIME parts: ${why}`);
    return { kind: 'not-a-report', reason: `not a MIME message: ${why}` };
  }
  const reportMessageId = bareMessageId(headerValue(rootHeaders, 'message-id'));
  const context: ReportContext = {
    idBase: reportMessageId ?? `sha256:${createHash('sha256').update(raw).digest('hex')}`,
    reportDate: isoDate(headerValue(rootHeaders, 'date')),
    verpAddress: bareAddress(options?.envelopeRecipient) ?? deliveryAddress(rootHeaders),
  };
  const report = (format: 'dsn' | 'arf' | 'legacy-bounce', events: readonly ReportedEvent[]): MailReport => ({
    kind: 'report',
    format,
    reportMessageId,
    events,
  });

  const reportPart = parts.find((part) => part.contentType === 'multipart/report');
  const reportType = reportPart
    ? libmime
        .parseHeaderValue(headerValue(reportPart.node.headers, 'content-type') ?? '')
        .params['report-type']?.trim()
        .toLowerCase()
    : undefined;
  const statusPart = parts.find((part) => DELIVERY_STATUS_TYPES.has(part.contentType));
  const feedbackPart = parts.find((part) => part.contentType === FEEDBACK_TYPE);
  const originalPart = parts.find((part) => ORIGINAL_TYPES.has(part.contentType));
  const original = originalPart ? parseHeaderBlock(await decodeBody(originalPart)) : undefined;

  if (reportType === 'feedback-report' || (feedbackPart && reportType !== 'delivery-status')) {
    if (!feedbackPart) throw new GarbledReportError('multipart/report; report-type=feedback-report has no message/feedback-report part (RFC 5965 §2)');
    const fields = mergeBlocks(parseFieldBlocks((await decodeBody(feedbackPart)).toString('utf8')));
    const complaint = complaintEvents(fields, original, context);
    return typeof complaint === 'string' ? { kind: 'not-a-report', reason: complaint } : report('arf', complaint);
  }
  if (reportType === 'delivery-status' || statusPart) {
    if (!statusPart) throw new GarbledReportError('multipart/report; report-type=delivery-status has no message/delivery-status part (RFC 3464 §2)');
    return report('dsn', deliveryStatusEvents(parseFieldBlocks((await decodeBody(statusPart)).toString('utf8')), original, context));
  }
  const failedRecipients = headerValues(rootHeaders, 'x-failed-recipients');
  if (failedRecipients.length > 0) {
    const textPart = parts.find((part) => part.contentType === 'text/plain');
    const text = textPart ? (await decodeBody(textPart)).toString('utf8') : '';
    return report('legacy-bounce', legacyBounceEvents(failedRecipients, text, original, context));
  }
  if (reportType) return { kind: 'not-a-report', reason: `a multipart/report of type ${reportType}, not a delivery status or feedback report` };
  const autoSubmitted = headerValue(rootHeaders, 'auto-submitted');
  if (autoSubmitted && autoSubmitted.toLowerCase() !== 'no') {
    return {
      kind: 'not-a-report',
      reason: `an automatic message (Auto-Submitted: ${autoSubmitted}) with no delivery status, feedback report or X-Failed-Recipients`,
    };
  }
  return { kind: 'not-a-report', reason: 'no delivery status (RFC 3464), feedback report (RFC 5965) or X-Failed-Recipients header' };
}

/** What every event of one report shares. */
interface ReportContext {
  /** The report's Message-ID, or a hash of its bytes: the same report read twice gives the same ids. */
  readonly idBase: string;
  readonly reportDate: string | undefined;
  readonly verpAddress: string | undefined;
}

/** One MIME part as mailsplit splits it; the body is kept only for the types read. */
interface Part {
  readonly node: Extract<SplitterChunk, { type: 'node' }>;
  readonly contentType: string;
  readonly body: Buffer[];
  bodyBytes: number;
}

/**
 * The MIME parts of the message, root first. An attached message (message/rfc822) stays one leaf
 * part: a forwarded bounce inside a message is not a report to us, and of a returned original only
 * the headers are read.
 */
async function splitParts(raw: Buffer): Promise<{ readonly parts: Part[]; readonly error: Error | undefined }> {
  const splitter = new Splitter({ ignoreEmbedded: true, maxHeadSize: MAX_HEAD_BYTES, maxChildNodes: MAX_PARTS });
  const parts: Part[] = [];
  let current: Part | undefined;
  splitter.on('data', (chunk) => {
    if (chunk.type === 'node') {
      current = { node: chunk, contentType: (chunk.contentType || '').toLowerCase(), body: [], bodyBytes: 0 };
      parts.push(current);
    } else if (chunk.type === 'body' && current && chunk.node === current.node && KEPT_TYPES.has(current.contentType) && current.bodyBytes < MAX_PART_BYTES) {
      const kept = chunk.value.subarray(0, MAX_PART_BYTES - current.bodyBytes);
      current.body.push(kept);
      current.bodyBytes += kept.length;
    }
  });
  splitter.end(raw);
  try {
    await finished(splitter);
    return { parts, error: undefined };
  } catch (error) {
    return { parts, error: error instanceof Error ? error : new Error(String(error)) };
  }
}

/** A part's body with its Content-Transfer-Encoding undone. */
async function decodeBody(part: Part): Promise<Buffer> {
  const decoder = part.node.getDecoder();
  const decoded = buffer(decoder);
  decoder.end(Buffer.concat(part.body));
  return await decoded;
}

/**
 * RFC 3464: one event per per-recipient block whose Action is failed. A `delayed` block is a
 * warning that the MTA is still trying: the message may yet be delivered, so it is no bounce (we
 * ask for NOTIFY=FAILURE only; an MTA that warns anyway is not counted against the address).
 */
function deliveryStatusEvents(blocks: readonly FieldBlock[], original: Headers | undefined, context: ReportContext): ReportedEvent[] {
  // §2.1: the per-message block comes first. An MTA that leaves it out starts with a recipient.
  const [first, ...rest] = blocks;
  const perMessage = first && !first.has('final-recipient') ? first : undefined;
  const perRecipient = perMessage ? rest : blocks;
  if (perRecipient.length === 0) throw new GarbledReportError('delivery report has no per-recipient fields (RFC 3464 §2.3): no Final-Recipient');
  const failures = perRecipient.flatMap((block, index) => {
    const finalRecipient = field(block, 'final-recipient');
    const where = `delivery report's per-recipient block ${index + 1}`;
    if (!finalRecipient) throw new GarbledReportError(`${where} has no Final-Recipient (RFC 3464 §2.3.2)`);
    const actionField = field(block, 'action');
    if (!actionField) throw new GarbledReportError(`${where} (${finalRecipient}) has no Action (RFC 3464 §2.3.3)`);
    const action = actionField.toLowerCase().split(/[\s(;]/)[0] ?? '';
    if (!DSN_ACTIONS.has(action))
      throw new GarbledReportError(`${where} (${finalRecipient}) has Action "${actionField}", not one of ${[...DSN_ACTIONS].join(', ')} (RFC 3464 §2.3.3)`);
    const statusField = field(block, 'status');
    if (!statusField) throw new GarbledReportError(`${where} (${finalRecipient}) has no Status (RFC 3464 §2.3.4)`);
    return action === 'failed' ? [{ block, finalRecipient, statusField }] : [];
  });
  const ids = eventIds(
    context.idBase,
    failures.map(({ finalRecipient }) => typedAddress(finalRecipient) ?? finalRecipient),
  );
  return failures.map(({ block, finalRecipient, statusField }, index): ReportedEvent => {
    const diagnosticCode = field(block, 'diagnostic-code');
    const reply = parseSmtpReply(diagnosticCode);
    const diagnostic: Diagnostic = {
      // The Status field is the reporting MTA's verdict; the code quoted from the remote server only fills in.
      status: /^([245]\.\d{1,3}\.\d{1,3})(?!\d)/.exec(statusField)?.[1] ?? reply.status,
      replyCode: reply.replyCode,
      // The text without its type ("smtp; "), for ops.
      text: diagnosticCode?.replace(/^[a-z][\w-]*\s*;\s*/i, ''),
    };
    return {
      id: ids[index] ?? context.idBase,
      source: 'dsn',
      kind: classifyBounce('dsn', diagnostic) ?? 'soft',
      diagnostic,
      at: isoDate(field(block, 'last-attempt-date')) ?? isoDate(field(perMessage, 'arrival-date')) ?? context.reportDate,
      clues: {
        verpAddress: context.verpAddress,
        envelopeId: field(perMessage, 'original-envelope-id'),
        // Original-Recipient is the address as we sent it (§2.3.1); Final-Recipient may be where it was forwarded to.
        recipient: typedAddress(field(block, 'original-recipient')) ?? typedAddress(finalRecipient),
        ...originalClues(original),
      },
    };
  });
}

/**
 * RFC 5965: one complaint per Original-Rcpt-To (one without a recipient when the report redacts
 * it, RFC 6590), or the reason the report isn't a complaint.
 */
function complaintEvents(fields: FieldBlock, original: Headers | undefined, context: ReportContext): ReportedEvent[] | string {
  const typeField = field(fields, 'feedback-type');
  if (!typeField) throw new GarbledReportError('feedback report has no Feedback-Type field (RFC 5965 §3.1)');
  const type = typeField.toLowerCase().split(/[\s(;]/)[0] ?? '';
  if (NOT_COMPLAINT_TYPES.has(type)) return `a feedback report of type ${type}, which is not a complaint`;
  if (!COMPLAINT_TYPES.has(type)) return `a feedback report of unregistered type "${typeField}", not read as a complaint`;
  const reported = (fields.get('original-rcpt-to') ?? []).map((value) => bareAddress(value)).filter((address) => address !== undefined);
  const quotedTo = bareAddress(headerValue(original, 'to'));
  // A redacted recipient (RFC 6590) names no one; the quoted X-Newsletter headers still do.
  const recipients = reported.length > 0 ? reported : [quotedTo && !/^redacted@/i.test(quotedTo) ? quotedTo : undefined];
  const ids = eventIds(context.idBase, recipients);
  return recipients.map((recipient, index): ReportedEvent => ({
    id: ids[index] ?? context.idBase,
    source: 'arf',
    kind: 'complaint',
    diagnostic: { providerType: type },
    at: isoDate(field(fields, 'arrival-date')) ?? isoDate(field(fields, 'received-date')) ?? context.reportDate,
    clues: {
      // A feedback loop mails its reports to a fixed address; the VERP address it complains about is
      // the original envelope sender, which Original-Mail-From (or the quoted Return-Path) gives.
      verpAddress: bareAddress(field(fields, 'original-mail-from')) ?? bareAddress(headerValue(original, 'return-path')) ?? context.verpAddress,
      envelopeId: field(fields, 'original-envelope-id'),
      recipient,
      ...originalClues(original),
    },
  }));
}

/** An MTA's free-form bounce: one event per X-Failed-Recipients address, from the reply its text quotes. */
function legacyBounceEvents(headerLines: readonly string[], text: string, attached: Headers | undefined, context: ReportContext): ReportedEvent[] {
  const recipients = [...new Set(headerLines.flatMap((line) => line.split(',')).map((value) => bareAddress(value)))].filter((address) => address !== undefined);
  if (recipients.length === 0) throw new GarbledReportError(`X-Failed-Recipients names no address: "${headerLines.join(', ').slice(0, 200)}"`);
  const { explanation, quotedHeaders } = splitAtCopyMarker(text);
  const original = attached ?? quotedHeaders;
  const replies = quotedReplies(explanation, recipients);
  const ids = eventIds(context.idBase, recipients);
  return recipients.map((recipient, index): ReportedEvent => {
    const reply = replies.get(recipient.toLowerCase());
    const diagnostic: Diagnostic = { status: reply?.status, replyCode: reply?.replyCode, text: reply?.text };
    return {
      id: ids[index] ?? context.idBase,
      source: 'dsn',
      kind: classifyBounce('dsn', diagnostic) ?? 'soft',
      diagnostic,
      at: context.reportDate,
      clues: { verpAddress: context.verpAddress, recipient, ...originalClues(original) },
    };
  });
}

/**
 * The clues a returned or quoted original message carries: its Message-ID (no angle brackets), our
 * headers, and its List-Unsubscribe, whose URL carries a token signed with APP_SECRET.
 */
function originalClues(original: Headers | undefined): Pick<AttributionClues, 'messageId' | 'sendId' | 'subscriberId' | 'listUnsubscribe'> {
  return {
    messageId: bareMessageId(headerValue(original, 'message-id')),
    listUnsubscribe: headerValue(original, 'list-unsubscribe'),
    sendId: headerValue(original, 'x-newsletter-send'),
    subscriberId: headerValue(original, 'x-newsletter-subscriber'),
  };
}

/**
 * `<report>:<recipient, lower-cased>` for each event; a recipient named twice in one report gets
 * `#2`, `#3`… so that ids stay distinct and still come out the same on every read.
 */
function eventIds(idBase: string, recipients: readonly (string | undefined)[]): string[] {
  const seen = new Map<string, number>();
  return recipients.map((recipient) => {
    const key = recipient?.toLowerCase() ?? 'unknown-recipient';
    const count = (seen.get(key) ?? 0) + 1;
    seen.set(key, count);
    return `${idBase}:${key}${count > 1 ? `#${count}` : ''}`;
  });
}
