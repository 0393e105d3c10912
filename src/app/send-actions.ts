import { UnknownSendError } from './dashboard.ts';
import type { AppServices as Services } from './app-services.ts';
import type { SendRecord } from '../store/send-store.ts';
import { cancelSend, pauseSend, resumeSend, SendControlError, type SendControlResult } from './send-control.ts';
import { retryFailedRecipients, type RetryFailedResult } from './start-send.ts';

export { UnknownSendError };

/** What ops can do to one send from the console or the API. */
export const SEND_ACTIONS = ['pause', 'resume', 'cancel', 'retry-failed'] as const;
/** One of SEND_ACTIONS. */
export type SendAction = (typeof SEND_ACTIONS)[number];

/** Whether a text names a send action (route parameters). */
export function isSendAction(value: string): value is SendAction {
  return (SEND_ACTIONS as readonly string[]).includes(value);
}

/** The send's record, or UnknownSendError naming the id. */
export async function requireSend(services: Pick<Services, 'sends'>, sendId: string): Promise<SendRecord> {
  const record = /^[A-Za-z0-9_-]+\.[a-z0-9_-]+\.\d+$/.test(sendId) ? await services.sends.get(sendId) : undefined;
  if (!record) throw new UnknownSendError(sendId);
  return record;
}

/** What an action on a send did. */
export type SendActionResult =
  | ({ readonly action: 'pause' | 'resume' | 'cancel' } & SendControlResult)
  | ({ readonly action: 'retry-failed' } & RetryFailedResult);

/**
 * Pause, resume, cancel or retry-failed one send by its id: the console's buttons and the API. The
 * use cases act on the latest send of an issue to a list (as the CLI names them), so an older send
 * of the same issue and list is refused rather than the newer one being changed by mistake.
 */
export async function actOnSend(
  services: Services,
  sendId: string,
  action: SendAction,
  request: { readonly who: string; readonly reason?: string | undefined },
): Promise<SendActionResult> {
  const record = await requireSend(services, sendId);
  const latest = await services.sends.latestId(record.issueId, record.list);
  if (latest !== sendId) {
    throw new SendControlError(
      `Send ${sendId} is not the latest send of ${record.issueId} to ${record.list} (that is ${latest ?? 'none'}); only the latest send can be changed.`,
    );
  }
  const target = { issueId: record.issueId, list: record.list, who: request.who, reason: request.reason };
  switch (action) {
    case 'pause':
      return { action, ...(await pauseSend(services, target)) };
    case 'resume':
      return { action, ...(await resumeSend(services, target)) };
    case 'cancel':
      return { action, ...(await cancelSend(services, target)) };
    case 'retry-failed':
      return { action, ...(await retryFailedRecipients(services, { issueId: record.issueId, list: record.list })) };
  }
}
