import type { FastifyInstance, FastifyRequest } from 'fastify';
import { UserFacingError } from '../core/errors.ts';
import type { Services } from '../services.ts';

/**
 * The budget of test sends: TEST_SENDS_PER_HOUR per console user or API token, over the console and
 * the API together. A test send goes straight to the SMTP server, outside the queue's pacing and
 * the suppression list, so without a budget one login could mail anyone, as often as it likes.
 *
 * Counted with @fastify/rate-limit's limiter (registered in auth.ts with the Redis store), so every
 * server process shares the count. Not a route's `config.rateLimit`: the plugin keys a route's
 * counter by its URL, which would give the console's route and the API's one a budget each.
 */

/** The window TEST_SENDS_PER_HOUR counts in: an hour from the first test send of the window. */
export const TEST_SEND_WINDOW_MS = 3_600_000;

/** A test send over the budget: 429, with Retry-After. */
export class TestSendLimitError extends UserFacingError {
  override readonly name = 'TestSendLimitError';
  constructor(
    readonly perHour: number,
    readonly retryAfterSeconds: number,
  ) {
    super(
      `Too many test sends: each user or API token may make ${perHour} an hour (TEST_SENDS_PER_HOUR). ` +
        `Try again in ${waitText(retryAfterSeconds)}; to reach a list, send the issue.`,
    );
  }
}

/** "12 minutes", "1 minute", "40 seconds". */
function waitText(seconds: number): string {
  if (seconds >= 60) {
    const minutes = Math.ceil(seconds / 60);
    return `${minutes} minute${minutes === 1 ? '' : 's'}`;
  }
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

/** Whose budget a request spends: the user or the token (the routes' guards have made sure there is one). */
function budgetKey(request: FastifyRequest): string {
  return request.actor ? `test-send:${request.actor.kind}:${request.actor.id}` : `test-send:ip:${request.ip}`;
}

/**
 * Counts one test send of the request's user or token, and throws TestSendLimitError when it is
 * over the budget. Call it after the route's permission and CSRF checks (a refused request spends
 * nothing) and before the message goes out. `scope` is the console's (or a child of it), where
 * auth.ts registered the plugin; when Redis fails the plugin lets the test send through
 * (skipOnError), as it does for the login.
 */
export function testSendLimiter(scope: FastifyInstance, services: Services): (request: FastifyRequest) => Promise<void> {
  const perHour = services.config.console.testSendsPerHour;
  const limit = scope.createRateLimit({ max: perHour, timeWindow: TEST_SEND_WINDOW_MS, keyGenerator: budgetKey });
  return async function spendTestSend(request) {
    const outcome = await limit(request);
    if (!outcome.isAllowed && outcome.isExceeded) throw new TestSendLimitError(perHour, Math.max(1, outcome.ttlInSeconds));
  };
}
