import { UserFacingError } from '../core/errors.ts';

/**
 * A send the pipeline will not start: a draft, a repeat without --resend, an empty list. Kept apart
 * from start-send.ts so that what only needs the error (the scheduler in a worker process) does not
 * load the compiler and MJML with it.
 */
export class SendRefusedError extends UserFacingError {
  override readonly name = 'SendRefusedError';
}
