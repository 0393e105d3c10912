import { loadIssue } from '../content/load-issue.ts';
import { UserFacingError } from '../core/errors.ts';
import type { RecipientFailure } from '../core/send-status.ts';
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

/** Loads the latest send of an issue (to a list, if given) with who failed and why. */
export async function sendStatusReport(services: SendDeps, issueId: string, list: string | undefined): Promise<SendStatusReport> {
  const { config } = services;
  const sendId = await services.sends.latestId(issueId, list);
  if (!sendId) {
    await loadIssue(config.issuesDir, issueId); // an unknown issue says so, rather than "not sent"
    throw new UserFacingError(`Issue "${issueId}" has not been sent${list ? ` to list "${list}"` : ''} yet.`);
  }
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
