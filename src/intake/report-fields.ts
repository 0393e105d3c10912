import { Headers } from '@zone-eu/mailsplit';
import { parseSmtpReply } from '../core/classify-bounce.ts';

/**
 * The field syntax of the machine-readable parts of reports, and the few pieces of free text a
 * legacy bounce forces us to read. Nothing here classifies: it only finds fields and reply lines.
 */

/** One block of `Name: value` fields, names lower-cased, every value of a repeated name kept in order. */
export type FieldBlock = ReadonlyMap<string, readonly string[]>;

/**
 * The blocks of a message/delivery-status or message/feedback-report body: RFC 3464 §2.1 puts the
 * per-message fields first and then one block per recipient, each separated by a blank line; RFC
 * 5965 §3 has a single block. Folded lines (leading whitespace) continue the previous field; a line
 * that is neither a field nor a continuation is ignored rather than guessed at.
 */
export function parseFieldBlocks(text: string): FieldBlock[] {
  const blocks: FieldBlock[] = [];
  let block = new Map<string, string[]>();
  let last: { readonly values: string[]; readonly index: number } | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') {
      if (block.size > 0) blocks.push(block);
      block = new Map();
      last = undefined;
    } else if (/^[ \t]/.test(line)) {
      if (last) last.values[last.index] = `${last.values[last.index] ?? ''} ${line.trim()}`;
    } else {
      const colon = line.indexOf(':');
      if (colon <= 0) {
        last = undefined;
        continue;
      }
      const name = line.slice(0, colon).trim().toLowerCase();
      const values = block.get(name) ?? [];
      values.push(line.slice(colon + 1).trim());
      block.set(name, values);
      last = { values, index: values.length - 1 };
    }
  }
  if (block.size > 0) blocks.push(block);
  return blocks;
}

/** The first value of a field, undefined when absent or empty. */
export function field(block: FieldBlock | undefined, name: string): string | undefined {
  const value = block?.get(name.toLowerCase())?.[0]?.trim();
  return value ? value : undefined;
}

/**
 * The address of a typed DSN/ARF address field (`rfc822; user@example.net`, RFC 3464 §2.3.1):
 * the type is dropped, angle brackets too.
 */
export function typedAddress(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const semicolon = value.indexOf(';');
  return bareAddress(semicolon === -1 ? value : value.slice(semicolon + 1));
}

/**
 * The first address of an address header (`IR Weekly <news@example.org>, …`), bare; undefined
 * when it holds no address with an '@' (a redacted `To: redacted`, `undisclosed-recipients:;`).
 */
export function bareAddress(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const open = value.indexOf('<');
  const close = open === -1 ? -1 : value.indexOf('>', open);
  const candidate = open !== -1 && close !== -1 ? value.slice(open + 1, close) : value.split(',')[0];
  const token = candidate?.trim().split(/\s+/)[0] ?? '';
  // Trimmed by hand: a regex anchored at the end would backtrack over a long run of these characters.
  let from = 0;
  let to = token.length;
  while (from < to && '<"\''.includes(token.charAt(from))) from += 1;
  while (to > from && '>"\',;'.includes(token.charAt(to - 1))) to -= 1;
  const address = token.slice(from, to);
  return address.includes('@') && !address.startsWith('@') ? address : undefined;
}

/** A Message-ID without its angle brackets (`vol-138.weekly.1.42@example.org`), the form every clue uses. */
export function bareMessageId(value: string | undefined): string | undefined {
  const id = value?.trim().replace(/^<|>$/g, '').trim();
  return id ? id : undefined;
}

/**
 * The address the report was delivered to, from the delivery headers: Delivered-To, X-Original-To,
 * then To. An MTA that rewrites the recipient (a virtual alias, a dropped +extension) puts the
 * rewritten address in Delivered-To and the one it received in X-Original-To, so the first one that
 * carries a +token (a VERP address) wins over the order.
 */
export function deliveryAddress(headers: Headers | false | undefined): string | undefined {
  const candidates = [...headerValues(headers, 'delivered-to'), ...headerValues(headers, 'x-original-to'), ...headerValues(headers, 'to')]
    .map((value) => bareAddress(value))
    .filter((address) => address !== undefined);
  return candidates.find((address) => address.slice(0, address.lastIndexOf('@')).includes('+')) ?? candidates[0];
}

/** RFC 5965 §3 has one block; a blank line in it (seen in the wild) doesn't start a new report. */
export function mergeBlocks(blocks: readonly FieldBlock[]): FieldBlock {
  const merged = new Map<string, string[]>();
  for (const block of blocks) {
    for (const [name, values] of block) {
      const into = merged.get(name) ?? [];
      into.push(...values);
      merged.set(name, into);
    }
  }
  return merged;
}

/** An RFC 5322 date (comments allowed) as ISO 8601; undefined when it isn't one. */
export function isoDate(value: string | undefined): string | undefined {
  // Date.parse accepts fragments such as "Nov 4" and invents a year; a date without one isn't trusted.
  if (!value || !/\d{4}/.test(value)) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : new Date(time).toISOString();
}

/** A header block (the bytes up to the first blank line; leading blank lines skipped), parsed. */
export function parseHeaderBlock(bytes: Buffer | string): Headers {
  const text = (typeof bytes === 'string' ? bytes : bytes.toString('binary')).replace(/^(?:[ \t]*\r?\n)+/, '');
  const end = /\r?\n\r?\n/.exec(text);
  return new Headers(Buffer.from(end ? text.slice(0, end.index + end[0].length) : text, 'binary'));
}

/** The first value of a header, decoded and trimmed; undefined when absent or empty. */
export function headerValue(headers: Headers | false | undefined, name: string): string | undefined {
  const value = headers
    ? headers
        .getFirst(name)
        .replace(/\r?\n[ \t]*/g, ' ')
        .trim()
    : '';
  return value ? value : undefined;
}

/** Every value of a repeated header, decoded, unfolded. */
export function headerValues(headers: Headers | false | undefined, name: string): string[] {
  return headers ? headers.getDecoded(name).map((header) => header.value.replace(/\r?\n[ \t]*/g, ' ').trim()) : [];
}

/** The line Exim (and other MTAs in their free-form bounces) puts before a copy of the original message. */
const COPY_MARKER = /^-{3,}\s*This is a copy of the message/i;
/** The host Exim names before a reply in older versions: `host mx.example.net [192.0.2.25]: 550 …`. */
const HOST_PREFIX = /^host\s+[^\s[]+\s*\[[^\]]{0,64}\]:?\s*/i;

/** A legacy bounce's text cut at its copy of the original: the explanation, and the quoted headers. */
export function splitAtCopyMarker(text: string): { readonly explanation: string; readonly quotedHeaders: Headers | undefined } {
  const lines = text.split(/\r?\n/);
  const marker = lines.findIndex((line) => COPY_MARKER.test(line));
  if (marker === -1) return { explanation: text, quotedHeaders: undefined };
  return { explanation: lines.slice(0, marker).join('\n'), quotedHeaders: parseHeaderBlock(lines.slice(marker + 1).join('\n')) };
}

/** The SMTP reply a legacy bounce quotes for one recipient, as parseSmtpReply reads its head. */
export interface QuotedReply {
  readonly replyCode: number;
  readonly status: string | undefined;
  /** The reply line and its continuation lines, for ops. */
  readonly text: string;
}

/**
 * The remote server's reply for each failed recipient of a legacy bounce's explanation, by address
 * lower-cased. Exim lists each failed address alone on a line, indented, with the reply a few lines
 * under it; the section of a recipient runs to the line naming the next failed recipient. The reply
 * is the first line of that section whose head is a reply code (after Exim's `host … [ip]:` prefix):
 * the words are never read. With a single failed recipient and no line naming it, the whole
 * explanation is its section. One pass over the lines, whatever the number of recipients.
 */
export function quotedReplies(explanation: string, failedRecipients: readonly string[]): Map<string, QuotedReply> {
  const failed = new Set(failedRecipients.map((address) => address.toLowerCase()));
  const sections = new Map<string, string[]>();
  const all: string[] = [];
  let section: string[] | undefined;
  for (const line of explanation.split(/\r?\n/)) {
    const trimmed = line.trim();
    const named = trimmed.toLowerCase().replace(/^<(.*)>$/, '$1');
    if (failed.has(named)) {
      section = sections.get(named) ?? [];
      sections.set(named, section);
      continue;
    }
    // Exchange writes `#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##` in its diagnostic section.
    const bare = trimmed.replace(HOST_PREFIX, '').replace(/^#(?=\d)/, '');
    section?.push(bare);
    all.push(bare);
  }
  const [only] = failed;
  if (failed.size === 1 && only !== undefined && !sections.has(only)) sections.set(only, all);
  const replies = new Map<string, QuotedReply>();
  for (const [address, lines] of sections) {
    const reply = firstReply(lines);
    if (reply) replies.set(address, reply);
  }
  return replies;
}

/** The first line whose head is an SMTP reply, with the lines that continue it. */
function firstReply(lines: readonly string[]): QuotedReply | undefined {
  const at = lines.findIndex((line) => parseSmtpReply(line).replyCode !== undefined);
  const head = lines[at];
  if (head === undefined) return undefined;
  const { replyCode, status } = parseSmtpReply(head);
  if (replyCode === undefined) return undefined;
  // A multi-line reply repeats its code on every line (RFC 5321 §4.2.1): keep those for ops.
  const replyLines = [head];
  for (const line of lines.slice(at + 1)) {
    if (!line.startsWith(String(replyCode))) break;
    replyLines.push(line);
  }
  return { replyCode, status, text: replyLines.join(' ').slice(0, MAX_REPLY_TEXT) };
}

/** Ops text only; a reply longer than this is cut. */
const MAX_REPLY_TEXT = 1000;
