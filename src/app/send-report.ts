import { loadIssue } from '../content/load-issue.ts';
import { UserFacingError } from '../core/errors.ts';
import type { DeliveryEvent } from '../core/delivery-event.ts';
import type { RecipientFailure, RecipientState } from '../core/send-status.ts';
import type { EventStore } from '../store/event-store.ts';
import type { SendRecord } from '../store/send-store.ts';
import { isStuck } from './send-jobs.ts';
import type { SendDeps } from './start-send.ts';

/** The status of one send, as `newsletter status --json` prints it. */
export interface SendStatusReport extends SendRecord {
  readonly sendId: string;
  /**
   * Recipients are pending but no job is left in the queue to serve them (a worker died in a way
   * that lost a record): `newsletter send <issue> --retry-failed` gives them jobs again.
   */
  readonly stuck: boolean;
  /** Up to 20 failed recipients, with the SMTP reply that failed them. */
  readonly failures: readonly ({ readonly email: string; readonly subscriberId: string } & RecipientFailure)[];
}

const FAILURES_SHOWN = 20;

/** The latest send of an issue (to a list, if given), or a UserFacingError saying why there is none. */
export async function requireLatestSend(services: Pick<SendDeps, 'config' | 'sends'>, issueId: string, list: string | undefined): Promise<string> {
  const sendId = await services.sends.latestId(issueId, list);
  if (sendId) return sendId;
  await loadIssue(services.config.issuesDir, issueId); // an unknown issue says so, rather than "not sent"
  throw new UserFacingError(`Issue "${issueId}" has not been sent${list ? ` to list "${list}"` : ''} yet.`);
}

/** Loads the latest send of an issue (to a list, if given) with who failed and why. */
export async function sendStatusReport(services: SendDeps, issueId: string, list: string | undefined): Promise<SendStatusReport> {
  const sendId = await requireLatestSend(services, issueId, list);
  const record = await services.sends.get(sendId);
  if (!record) throw new Error(`Send ${sendId} is listed but its record is missing`);
  const failures = await services.sends.failures(sendId, FAILURES_SHOWN);
  const withEmails = await Promise.all(
    failures.map(async ({ subscriberId, failure }) => ({
      subscriberId,
      email: (await services.subscribers.emailOf(subscriberId)) ?? '(deleted)',
      ...failure,
    })),
  );
  return { ...record, sendId, stuck: await isStuck(services, record), failures: withEmails };
}

/**
 * One recipient of a send that something went wrong for: the SMTP failure that ended their job,
 * and the latest bounce, block, complaint or unsubscribe reported for them (late reports included).
 */
export interface RecipientProblem {
  readonly subscriberId: string;
  readonly email: string;
  readonly state: RecipientState | undefined;
  readonly failure: RecipientFailure | undefined;
  readonly event: Pick<DeliveryEvent, 'id' | 'kind' | 'source' | 'diagnostic' | 'at'> | undefined;
}

/**
 * Every recipient of the latest send of an issue who failed, bounced, was blocked or complained,
 * with the diagnostic and where it came from (`newsletter status <issue> --failures`); a soft
 * bounce followed by acceptance is left out. Reads only the send's failure and report records,
 * never all its recipients.
 */
export async function sendProblems(
  services: SendDeps & { readonly events: EventStore },
  issueId: string,
  list: string | undefined,
): Promise<{ sendId: string; problems: RecipientProblem[] }> {
  const sendId = await requireLatestSend(services, issueId, list);
  return { sendId, problems: await recipientProblems(services, sendId) };
}

/**
 * The problems of one send (see sendProblems), by subscriber id: what the console's failures table
 * pages through. Reads the send's failure and report records, never all its recipients.
 */
export async function recipientProblems(
  services: Pick<SendDeps, 'sends' | 'subscribers'> & { readonly events: EventStore },
  sendId: string,
): Promise<RecipientProblem[]> {
  const failures = new Map((await services.sends.failures(sendId, Number.POSITIVE_INFINITY)).map(({ subscriberId, failure }) => [subscriberId, failure]));
  const events = new Map<string, DeliveryEvent>();
  let cursor = '0';
  do {
    const page = await services.events.reportedPage(sendId, cursor);
    cursor = page.cursor;
    for (const event of page.events) events.set(event.subscriberId, event);
  } while (cursor !== '0');
  const ids = [...new Set([...failures.keys(), ...events.keys()])].sort((a, b) => Number(a) - Number(b));
  const [emails, states] = await Promise.all([services.subscribers.emailsOf(ids), services.sends.recipientStates(sendId, ids)]);
  const problems = ids.map((subscriberId, index) => {
    const event = events.get(subscriberId);
    return {
      subscriberId,
      email: emails[index] ?? '(deleted)',
      state: states[index],
      failure: failures.get(subscriberId),
      event: event ? { id: event.id, kind: event.kind, source: event.source, diagnostic: event.diagnostic, at: event.at } : undefined,
    };
  });
  return problems.filter((problem) => !overcome(problem));
}

/**
 * A soft bounce the recipient got past: they are accepted now (a --retry-failed round, or a
 * later attempt, got the message through) and nothing else went wrong. Not a problem any more. A
 * hard bounce, block, complaint or unsubscribe reported after acceptance still is one.
 */
function overcome(problem: RecipientProblem): boolean {
  return problem.state === 'accepted' && problem.failure === undefined && problem.event?.kind === 'soft';
}
