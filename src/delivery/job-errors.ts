import { UnrecoverableError } from 'bullmq';

/**
 * The SMTP server accepted the message but recording that failed, even after retries. The job
 * must not run again (that would send a duplicate); the worker's failed-job handler records the
 * acceptance, retrying for longer.
 */
export class AcceptedButUnrecordedError extends UnrecoverableError {
  override readonly name = 'AcceptedButUnrecordedError';
}

/** A delivery that must not be retried; BullMQ fails the job at once. */
export class PermanentDeliveryError extends UnrecoverableError {
  override readonly name = 'PermanentDeliveryError';
}
