import type Handlebars from 'handlebars';
import MailComposer from 'nodemailer/lib/mail-composer';
import { encodeWords, foldLines, isPlainText } from 'nodemailer/lib/mime-funcs';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import type { CompiledIssue } from '../render/compile-issue.ts';
import { compileStageTwo, toCrlf, type SubscriberFieldName } from '../render/stage-two-fields.ts';
import { unsubscribeUrl } from '../core/tokens.ts';
import { cleanDisplayName } from '../core/address.ts';
import { envelopeId, messageIdLocalPart, verpAddress } from '../core/verp.ts';

/** Who a message goes to: the fields the per-subscriber placeholders and headers need. */
export interface Recipient {
  readonly id: string;
  readonly email: string;
  readonly name: string;
}

/**
 * What a send adds to its compiled issue: its id, the secret that signs its links and VERP
 * tokens (never stored), and the bounce mailbox (BOUNCE_ADDRESS), if one is set.
 */
export interface SendIdentity {
  readonly sendId: string;
  readonly appSecret: string;
  readonly bounceAddress?: string | undefined;
}

/** A message ready for SMTP: the envelope and the whole RFC 5322 message. */
export interface ComposedMessage {
  /** `from` is the VERP address when a bounce mailbox is set, so a bounce names its message. */
  readonly envelope: { readonly from: string; readonly to: string };
  /** The DSN envelope id (RFC 3461 ENVID) to request reports under; undefined without a bounce mailbox. */
  readonly envelopeId: string | undefined;
  readonly messageId: string;
  readonly raw: Buffer;
}

/** Fills the per-subscriber fields of one send's messages. */
export interface MessageComposer {
  /** The two parts with this recipient's fields filled in. */
  renderParts(recipient: Recipient): { readonly html: string; readonly text: string };
  compose(recipient: Recipient): ComposedMessage;
}

/** Names the send and the subscriber in every message, so a bounce or complaint can be matched back. */
export const SEND_ID_HEADER = 'X-Newsletter-Send';
/** Names the subscriber, beside SEND_ID_HEADER. */
export const SUBSCRIBER_ID_HEADER = 'X-Newsletter-Subscriber';

const TOKEN_MESSAGE_ID = 'nlslotmessageid';
const TOKEN_DATE = 'nlslotdate';
const TOKEN_TEXT = 'nlslottextpart';
const TOKEN_HTML = 'nlslothtmlpart';
const SKELETON_SLOTS = new RegExp(`(${TOKEN_MESSAGE_ID}|${TOKEN_DATE}|${TOKEN_TEXT}|${TOKEN_HTML})`);
type SkeletonSlot = typeof TOKEN_MESSAGE_ID | typeof TOKEN_DATE | typeof TOKEN_TEXT | typeof TOKEN_HTML;

/** The per-subscriber fields of the templates, by name. */
type TemplateFields = Readonly<Record<SubscriberFieldName, string>>;
type FieldName = SubscriberFieldName;

/**
 * Stand-ins rendered in place of each field, to find where the fields land in a template's output.
 * Plain letters, so HTML escaping leaves them as they are.
 */
const FIELD_SENTINELS: Readonly<Record<FieldName, string>> = { name: 'nlfieldxname', email: 'nlfieldxemail', unsubscribeUrl: 'nlfieldxunsubscribeurl' };
const SENTINEL_PATTERN = new RegExp(`(${Object.values(FIELD_SENTINELS).join('|')})`);
const FIELD_BY_SENTINEL = new Map(Object.entries(FIELD_SENTINELS).map(([field, sentinel]) => [sentinel, field as FieldName]));

/** One MIME body part of a send, ready to be filled per subscriber without re-encoding the issue. */
interface PreparedPart {
  readonly headers: string;
  encodeBody(fields: TemplateFields): Buffer[];
}

/**
 * Prepares the messages of one send. Everything per issue happens here, once: nodemailer's
 * MailComposer builds the MIME skeleton (From, Subject, List-Id, the multipart structure and
 * boundary) around slot tokens, Handlebars compiles both parts, and the parts' fixed text is
 * quoted-printable encoded. Per subscriber, compose() only encodes the few field values and joins
 * buffers: the 80 KB of issue HTML is never rendered, encoded or copied into a string again.
 */
export async function prepareMessageComposer(compiled: CompiledIssue, identity: SendIdentity): Promise<MessageComposer> {
  const { html: renderHtml, text: renderText, escape } = compileStageTwo(compiled);
  const domain = compiled.from.address.slice(compiled.from.address.lastIndexOf('@') + 1);
  const listId = `${compiled.listName}.${new URL(compiled.publicUrl).hostname}`;
  const textPart = preparePart('text/plain', renderText, (value) => value);
  const htmlPart = preparePart('text/html', renderHtml, escape);

  const skeleton = await buildSkeleton({
    // A copy: MailComposer rewrites address objects in place, and config objects are frozen.
    from: { name: compiled.from.name, address: compiled.from.address },
    subject: compiled.subject,
    messageId: `<${TOKEN_MESSAGE_ID}@${domain}>`,
    date: TOKEN_DATE,
    headers: {
      // List-Id is "phrase <id>" (RFC 2919), the shape of a mailbox: quoted or encoded the same way.
      'List-Id': { prepared: true, value: formatMailbox(compiled.newsletterName, listId) },
      // RFC 8058: with List-Unsubscribe (https), this makes the mail client's button a one-click POST.
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
      [SEND_ID_HEADER]: identity.sendId,
    },
    text: { raw: `${textPart.headers}\r\n\r\n${TOKEN_TEXT}` },
    html: { raw: `${htmlPart.headers}\r\n\r\n${TOKEN_HTML}` },
  });
  const skeletonPieces = skeleton.split(SKELETON_SLOTS).map((piece, index) => (index % 2 === 1 ? (piece as SkeletonSlot) : Buffer.from(piece, 'utf8')));

  const fieldsOf = (recipient: Recipient): TemplateFields => ({
    name: cleanDisplayName(recipient.name),
    email: recipient.email,
    unsubscribeUrl: unsubscribeUrl(compiled.publicUrl, identity.appSecret, recipient.id, compiled.listName, identity.sendId),
  });

  return {
    renderParts(recipient) {
      const fields = fieldsOf(recipient);
      return { html: renderHtml(fields), text: renderText(fields) };
    },
    compose(recipient) {
      const fields = fieldsOf(recipient);
      const ids = { sendId: identity.sendId, subscriberId: recipient.id };
      const messageId = messageIdLocalPart(ids);
      const chunks: Buffer[] = [
        Buffer.from(
          `${foldLines(`To: ${formatMailbox(fields.name, recipient.email)}`, 76)}\r\n` +
            `List-Unsubscribe: <${fields.unsubscribeUrl}>\r\n` +
            `${SUBSCRIBER_ID_HEADER}: ${recipient.id}\r\n`,
          'utf8',
        ),
      ];
      for (const piece of skeletonPieces) {
        if (Buffer.isBuffer(piece)) chunks.push(piece);
        else if (piece === TOKEN_TEXT) chunks.push(...textPart.encodeBody(fields));
        else if (piece === TOKEN_HTML) chunks.push(...htmlPart.encodeBody(fields));
        else chunks.push(Buffer.from(piece === TOKEN_MESSAGE_ID ? messageId : rfc5322Date(new Date()), 'utf8'));
      }
      const bounceAddress = identity.bounceAddress;
      return {
        envelope: {
          from: bounceAddress ? (verpAddress(bounceAddress, identity.appSecret, ids) ?? bounceAddress) : compiled.from.address,
          to: recipient.email,
        },
        envelopeId: bounceAddress ? envelopeId(identity.appSecret, ids) : undefined,
        messageId: `<${messageId}@${domain}>`,
        raw: Buffer.concat(chunks),
      };
    },
  };
}

/**
 * Splits a part's rendered output at the fields, once per send, and encodes the fixed pieces as
 * quoted-printable, each closed by a soft line break so that pieces and field values can be
 * joined in any lengths and still decode to exactly what Handlebars would have rendered. The
 * template is rendered twice (with and without a name) because it branches on {{#if name}}.
 * Before use, the splice is checked against a real render; a template that does something else
 * with its fields falls back to rendering and base64-encoding each message whole.
 */
function preparePart(contentType: string, render: Handlebars.TemplateDelegate<TemplateFields>, escapeValue: (value: string) => string): PreparedPart {
  const splice = (withName: boolean) => {
    const output = render({ ...FIELD_SENTINELS, name: withName ? FIELD_SENTINELS.name : '' });
    const segments = output.split(SENTINEL_PATTERN);
    return {
      fixed: segments.filter((_, index) => index % 2 === 0),
      fields: segments.filter((_, index) => index % 2 === 1).map((sentinel) => FIELD_BY_SENTINEL.get(sentinel) as FieldName),
    };
  };
  const named = splice(true);
  const anonymous = splice(false);
  const join = (layout: typeof named, fields: TemplateFields) =>
    layout.fixed.map((piece, index) => piece + (index < layout.fields.length ? escapeValue(fields[layout.fields[index]!]) : '')).join('');
  const samples: TemplateFields[] = [
    { name: 'Zoë <b>&amp;</b> "Q"', email: 'z@example.org', unsubscribeUrl: 'https://example.org/u?token=a.b=' },
    { name: '', email: 'y@example.org', unsubscribeUrl: 'https://example.org/u?token=c.d' },
  ];
  const spliceIsFaithful = samples.every((sample) => join(sample.name ? named : anonymous, sample) === render(sample));

  if (!spliceIsFaithful) {
    return {
      headers: `Content-Type: ${contentType}; charset=utf-8\r\nContent-Transfer-Encoding: base64`,
      encodeBody: (fields) => [Buffer.from(base64Lines(render(fields)), 'ascii')],
    };
  }
  const encodeLayout = (layout: typeof named) => ({
    fields: layout.fields,
    fixed: layout.fixed.map((piece) => Buffer.from(quotedPrintablePiece(piece), 'ascii')),
  });
  const encodedNamed = encodeLayout(named);
  const encodedAnonymous = encodeLayout(anonymous);
  return {
    headers: `Content-Type: ${contentType}; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable`,
    encodeBody(fields) {
      const layout = fields.name ? encodedNamed : encodedAnonymous;
      const chunks: Buffer[] = [];
      layout.fixed.forEach((piece, index) => {
        chunks.push(piece);
        const field = layout.fields[index];
        if (field) chunks.push(Buffer.from(quotedPrintablePiece(escapeValue(fields[field])), 'ascii'));
      });
      return chunks;
    },
  };
}

/**
 * Quoted-printable (nodemailer's encoder), ending in a soft line break ("=" CRLF). Wrapped at 75
 * so that the closing "=" still fits the 76-character limit of RFC 2045 §6.7.
 */
function quotedPrintablePiece(text: string): string {
  return `${qpWrap(qpEncode(toCrlf(text)), 75)}=\r\n`;
}

/**
 * A display name and address as a header value. The name was cleaned of control characters
 * already; here it is quoted, or RFC 2047-encoded when it is not plain ASCII, so nothing in it
 * can end the header or add an address.
 */
export function formatMailbox(name: string, address: string): string {
  if (!name) return `<${address}>`;
  const display = isPlainText(name) ? `"${name.replace(/["\\]/g, '\\$&')}"` : encodeWords(name, 'Q', 52, true);
  return `${display} <${address}>`;
}

/** Base64 in lines of 76 characters, as RFC 2045 requires. */
function base64Lines(text: string): string {
  const encoded = Buffer.from(text, 'utf8').toString('base64');
  const lines: string[] = [];
  for (let offset = 0; offset < encoded.length; offset += 76) lines.push(encoded.slice(offset, offset + 76));
  return lines.join('\r\n');
}

function rfc5322Date(date: Date): string {
  return date.toUTCString().replace(/GMT$/, '+0000');
}

async function buildSkeleton(mail: ConstructorParameters<typeof MailComposer>[0]): Promise<string> {
  const node = new MailComposer(mail).compile();
  const built = await new Promise<Buffer>((resolve, reject) => {
    node.build((error: Error | null, message: Buffer) => (error ? reject(error) : resolve(message)));
  });
  return built.toString('utf8');
}
