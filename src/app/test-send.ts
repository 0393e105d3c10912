import type { Config } from '../../config/index.ts';
import { loadIssue } from '../content/load-issue.ts';
import { emailKey, normaliseEmail } from '../core/address.ts';
import { UserFacingError } from '../core/errors.ts';
import { DEFAULT_LIST, LIST_NAME_SHAPE } from '../core/subscriber.ts';
import { prepareMessageComposer, type Recipient } from '../delivery/compose-message.ts';
import { createSmtpTransport } from '../delivery/smtp-transport.ts';
import type { Logger } from '../logger.ts';
import { compileContextFor, compileIssue } from '../render/compile-issue.ts';

/** Addresses one test send may go to: a test send is for the editor's own inbox or a few colleagues, not a list. */
export const MAX_TEST_SEND_ADDRESSES = 10;

/** Put in front of the subject of every test message, so nobody takes it for the issue itself. */
export const TEST_SUBJECT_PREFIX = '[TEST] ';

/**
 * The subscriber id a test message is filled for. Subscriber ids are decimal numbers from a counter,
 * so this one names no subscriber: the unsubscribe link of a test message (and its List-Unsubscribe
 * header) is signed like a real one but unsubscribes nobody; our server answers it as an invalid link.
 */
export const TEST_RECIPIENT_ID = 'test';

/** What a test send works with (a Services object is one). */
export interface TestSendDeps {
  readonly config: Config;
  readonly logger: Logger;
}

/** The editor's request: an issue, the addresses to try it on, and the list whose footer it shows. */
export interface TestSendRequest {
  readonly issueId: string;
  readonly to: readonly string[];
  /** The list the footer and List-Id name, as a send to that list would; weekly by default. */
  readonly list?: string | undefined;
}

/** What the SMTP server answered for each address. */
export interface TestSendResult {
  /** Addresses the SMTP server answered 250 for: accepted, which is not proof of delivery. */
  readonly accepted: string[];
  /** Addresses the SMTP server refused, or that could not be sent to, with the reply or the error. */
  readonly rejected: { readonly address: string; readonly reason: string }[];
}

/**
 * A test send: compiles the issue exactly as a send would, fills it for each address as a sample
 * recipient without a name, marks the subject with TEST_SUBJECT_PREFIX, and hands each message to
 * SMTP_URL directly. It goes outside the bulk queue and records nothing: no send, no recipient
 * record, no pacing budget, no breaker count. Drafts may be test-sent; that is what a test send is for.
 */
export async function testSend(deps: TestSendDeps, request: TestSendRequest): Promise<TestSendResult> {
  const addresses = testAddresses(request.to);
  const list = request.list ?? DEFAULT_LIST;
  if (!LIST_NAME_SHAPE.test(list)) throw new UserFacingError(`"${list}" is not a list name: lower-case letters, digits, - and _ (e.g. weekly).`);
  const { config } = deps;
  const issue = await loadIssue(config.issuesDir, request.issueId);
  const compiled = await compileIssue(issue, compileContextFor(config, list));
  // The prefix goes into the subject the composer encodes (RFC 2047 where needed), like any subject:
  // never spliced into a header by hand.
  const composer = await prepareMessageComposer(
    { ...compiled, subject: `${TEST_SUBJECT_PREFIX}${compiled.subject}` },
    {
      // Ends in "test" where a send id ends in its number, so a header or report naming it matches no send.
      sendId: `${issue.id}.${list}.test`,
      appSecret: config.appSecret,
      // No bounce mailbox: a bounce of a test message goes back to the From address, where the editor
      // sees it, instead of into the bounce intake, which would keep it as an unmatched report.
    },
  );

  const result: TestSendResult = { accepted: [], rejected: [] };
  // A transport of its own, closed below: the workers' pool and its pacing are not involved.
  const transport = createSmtpTransport(config.smtp);
  try {
    for (const address of addresses) {
      const recipient: Recipient = { id: TEST_RECIPIENT_ID, email: address, name: '' };
      const message = composer.compose(recipient);
      try {
        await transport.sendMail({ envelope: message.envelope, raw: message.raw });
        result.accepted.push(address);
      } catch (error) {
        result.rejected.push({ address, reason: failureReason(error) });
      }
    }
  } finally {
    transport.close();
  }
  deps.logger.info(
    { issueId: issue.id, list, accepted: result.accepted.length, rejected: result.rejected.length },
    `test send of ${issue.id}: ${result.accepted.length} accepted, ${result.rejected.length} rejected`,
  );
  return result;
}

/** Malformed addresses named in the error; a long pasted list gets a count for the rest. */
const MALFORMED_SHOWN = 5;

/**
 * The addresses as given, checked and cleaned: each a plain address (trimmed, domain lower-cased),
 * the same address in another case once, and at most MAX_TEST_SEND_ADDRESSES of them.
 */
function testAddresses(given: readonly string[]): string[] {
  if (given.length === 0) throw new UserFacingError('A test send needs at least one address to send to.');
  const cleaned = given.map((raw) => ({ raw, address: normaliseEmail(raw) }));
  const malformed = cleaned.filter(({ address }) => address === undefined).map(({ raw }) => raw);
  if (malformed.length > 0) {
    // JSON quoting, so control characters in what was typed or posted show as escapes.
    const shown =
      malformed
        .slice(0, MALFORMED_SHOWN)
        .map((raw) => JSON.stringify(raw.length > 100 ? `${raw.slice(0, 100)}…` : raw))
        .join(', ') + (malformed.length > MALFORMED_SHOWN ? ` and ${malformed.length - MALFORMED_SHOWN} more` : '');
    throw new UserFacingError(`${malformed.length === 1 ? `${shown} is not a valid email address` : `These are not valid email addresses: ${shown}`}.`);
  }
  const byKey = new Map<string, string>();
  for (const { address } of cleaned) {
    if (address !== undefined && !byKey.has(emailKey(address))) byKey.set(emailKey(address), address);
  }
  if (byKey.size > MAX_TEST_SEND_ADDRESSES) {
    throw new UserFacingError(`A test send goes to at most ${MAX_TEST_SEND_ADDRESSES} addresses; ${byKey.size} were given. To reach a list, send the issue.`);
  }
  return [...byKey.values()];
}

/** The SMTP reply when the server gave one ("550 5.1.1 …"), else nodemailer's code and message. */
function failureReason(error: unknown): string {
  const fields = error as { readonly response?: unknown; readonly code?: unknown; readonly message?: unknown };
  if (typeof fields.response === 'string' && fields.response !== '') return fields.response;
  const message = typeof fields.message === 'string' ? fields.message : String(error);
  return typeof fields.code === 'string' ? `${fields.code}: ${message}` : message;
}
