import Handlebars from 'handlebars';
import MailComposer from 'nodemailer/lib/mail-composer';
import { encodeWords, foldLines, isPlainText } from 'nodemailer/lib/mime-funcs';
import type { Mailbox } from '../../config/index.ts';
import type { CompiledIssue } from '../render/compile-issue.ts';
import { unsubscribeUrl } from '../security/tokens.ts';
import { cleanDisplayName } from '../subscribers/address.ts';

/** Who a message goes to: the fields the per-subscriber placeholders and headers need. */
export interface Recipient {
  readonly id: string;
  readonly email: string;
  readonly name: string;
}

/** The per-send facts every message of a send shares. */
export interface SendIdentity {
  readonly sendId: string;
  readonly list: string;
  readonly from: Mailbox;
  readonly newsletterName: string;
  readonly publicUrl: string;
  readonly appSecret: string;
}

/** A message ready for SMTP: the envelope and the whole RFC 5322 message. */
export interface ComposedMessage {
  readonly envelope: { readonly from: string; readonly to: string };
  readonly messageId: string;
  readonly raw: string;
}

/** Fills the per-subscriber fields of one send's messages. */
export interface MessageComposer {
  /** The two parts with this recipient's fields filled in. */
  renderParts(recipient: Recipient): { readonly html: string; readonly text: string };
  compose(recipient: Recipient): ComposedMessage;
}

/** Names the send and the subscriber in every message, so a bounce or complaint can be matched back. */
export const SEND_ID_HEADER = 'X-Newsletter-Send';
export const SUBSCRIBER_ID_HEADER = 'X-Newsletter-Subscriber';

const TOKEN_MESSAGE_ID = 'nlslotmessageid';
const TOKEN_DATE = 'nlslotdate';
const TOKEN_TEXT = 'nlslottextbody';
const TOKEN_HTML = 'nlslothtmlbody';
const SLOT_PATTERN = new RegExp(`(${TOKEN_MESSAGE_ID}|${TOKEN_DATE}|${TOKEN_TEXT}|${TOKEN_HTML})`);

type Slot = typeof TOKEN_MESSAGE_ID | typeof TOKEN_DATE | typeof TOKEN_TEXT | typeof TOKEN_HTML;

/**
 * Prepares the messages of one send. Everything per issue happens here, once: nodemailer's
 * MailComposer builds the MIME skeleton (From, Subject, List-Id, the multipart structure and
 * boundary) around slot tokens, and Handlebars compiles both parts. Per subscriber, compose() only
 * renders the two templates, base64-encodes them (native, no per-character quoted-printable pass)
 * and joins strings: no MIME tree is built per message.
 */
export async function prepareMessageComposer(compiled: CompiledIssue, identity: SendIdentity): Promise<MessageComposer> {
  const handlebars = Handlebars.create();
  const renderHtml = handlebars.compile(compiled.htmlTemplate, { strict: true, knownHelpersOnly: true });
  // Text parts travel in canonical form, CRLF line ends (RFC 2045 §6.8 encodes after canonicalising).
  const renderText = handlebars.compile(compiled.textTemplate.replace(/\r?\n/g, '\r\n'), { strict: true, knownHelpersOnly: true, noEscape: true });
  const domain = identity.from.address.slice(identity.from.address.lastIndexOf('@') + 1);
  const listId = `${identity.list}.${new URL(identity.publicUrl).hostname}`;

  const skeleton = await buildSkeleton({
    // A copy: MailComposer rewrites address objects in place, and config objects are frozen.
    from: { name: identity.from.name, address: identity.from.address },
    subject: compiled.subject,
    messageId: `<${TOKEN_MESSAGE_ID}@${domain}>`,
    date: TOKEN_DATE,
    headers: {
      'List-Id': { prepared: true, value: `${encodeWords(identity.newsletterName, 'Q', 52)} <${listId}>` },
      // RFC 8058: with List-Unsubscribe (https), this makes the mail client's button a one-click POST.
      'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
      [SEND_ID_HEADER]: identity.sendId,
    },
    text: { raw: `Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n${TOKEN_TEXT}` },
    html: { raw: `Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n${TOKEN_HTML}` },
  });
  const pieces = skeleton.split(SLOT_PATTERN);

  const fieldsOf = (recipient: Recipient) => ({
    name: cleanDisplayName(recipient.name),
    email: recipient.email,
    unsubscribeUrl: unsubscribeUrl(identity.publicUrl, identity.appSecret, recipient.id, identity.list, identity.sendId),
  });

  return {
    renderParts(recipient) {
      const fields = fieldsOf(recipient);
      return { html: renderHtml(fields), text: renderText(fields) };
    },
    compose(recipient) {
      const fields = fieldsOf(recipient);
      const { name, unsubscribeUrl: unsubscribe } = fields;
      const messageId = `${identity.sendId}.${recipient.id}`;
      const slots: Record<Slot, string> = {
        [TOKEN_MESSAGE_ID]: messageId,
        [TOKEN_DATE]: rfc5322Date(new Date()),
        [TOKEN_TEXT]: base64Lines(renderText(fields)),
        [TOKEN_HTML]: base64Lines(renderHtml(fields)),
      };
      const perRecipientHeaders =
        `${foldLines(`To: ${formatMailbox(name, recipient.email)}`, 76)}\r\n` +
        `List-Unsubscribe: <${unsubscribe}>\r\n` +
        `${SUBSCRIBER_ID_HEADER}: ${recipient.id}\r\n`;
      let raw = perRecipientHeaders;
      for (let index = 0; index < pieces.length; index += 1) {
        const piece = pieces[index] ?? '';
        // split() with a capturing group puts the captured slot names at the odd indexes.
        raw += index % 2 === 1 ? slots[piece as Slot] : piece;
      }
      return { envelope: { from: identity.from.address, to: recipient.email }, messageId: `<${messageId}@${domain}>`, raw };
    },
  };
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
export function base64Lines(text: string): string {
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
