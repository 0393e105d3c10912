import { UnrecoverableError } from 'bullmq';

/**
 * The SMTP server accepted the message but recording that failed, even after retries. The job
 * must not run again (that would send a duplicate); the worker's failed-job handler records the
 * acceptance, retrying for longer.
 */
export class AcceptedButUnrecordedError extends UnrecoverableError {
  override readonly name = 'AcceptedButUnrecordedError';
  constructor(cause: string) {
    super(`${ACCEPTED_BUT_UNRECORDED}: ${cause}`);
  }
}

/** How the failed reason of such a job starts: a repair reads it to record the acceptance instead of sending again. */
export const ACCEPTED_BUT_UNRECORDED = 'accepted by the SMTP server, but recording it failed';

/** A delivery that must not be retried; BullMQ fails the job at once. */
export class PermanentDeliveryError extends UnrecoverableError {
  override readonly name = 'PermanentDeliveryError';
}
