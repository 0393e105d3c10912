import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SendRefusedError } from '../../app/start-send.ts';
import { IssueContentError, TemplateError, UnknownIssueError, UserFacingError } from '../../core/errors.ts';
import type { Services } from '../../services.ts';
import { csrfToken } from '../auth.ts';
import { httpErrorText } from '../error-text.ts';
import { escape } from '../public/page.ts';
import { TestSendLimitError } from '../test-send-limit.ts';
import { sendConsolePage } from './layout.ts';
import { registerIssuePages } from './issues-pages.ts';
import { registerSchedulePages } from './schedules-pages.ts';
import { registerUserPages } from './users-pages.ts';

/**
 * The editor's pages of the console: issues (list, preview, test send, send with confirmation),
 * schedules, and users with their API tokens (admin). Server-rendered and plain HTML forms: every
 * action works without JavaScript, a POST that changes something answers 303 to the page showing
 * the result, except where the result is a secret shown once (a generated password, a new token)
 * or a report of what just happened that nothing stores (a test send).
 */
export async function registerEditorPages(scope: FastifyInstance, services: Services): Promise<void> {
  registerIssuePages(scope, services);
  registerSchedulePages(scope, services);
  registerUserPages(scope, services);
}

// ---------------------------------------------------------------------------------------------
// What the editor's page modules share. Nothing here runs at import time: the page modules import
// it back from this file, which imports them.

/** The hidden form field every console form posts, for the CSRF check (auth.ts csrfGuard). */
export function csrfField(reply: FastifyReply): string {
  return `<input type="hidden" name="_csrf" value="${escape(csrfToken(reply))}">`;
}

/**
 * One text field of a form body or a query string (@fastify/formbody gives a string, or an array
 * when the field repeats: the first counts), trimmed; '' when absent.
 */
export function formField(source: unknown, name: string): string {
  if (typeof source !== 'object' || source === null) return '';
  const value = (source as Record<string, unknown>)[name];
  const first = Array.isArray(value) ? (value[0] as unknown) : value;
  return typeof first === 'string' ? first.trim() : '';
}

/**
 * The HTTP status of a refusal the editor can act on, from its class: an unknown issue is 404, a
 * refused send or schedule 409 (the issue's state forbids it: a draft, a double send, an empty
 * list), a broken issue file or template 422, a test send over TEST_SENDS_PER_HOUR 429, any other
 * UserFacingError (bad input: an invalid schedule, too many addresses) 400. Undefined for anything
 * else: a bug, left to the console's error handler (500, logged).
 */
export function refusalStatus(error: unknown): number | undefined {
  if (error instanceof UnknownIssueError) return 404;
  if (error instanceof SendRefusedError) return 409;
  if (error instanceof TestSendLimitError) return 429;
  if (error instanceof IssueContentError || error instanceof TemplateError) return 422;
  if (error instanceof UserFacingError) return 400;
  return undefined;
}

/**
 * Answers a refusal as a console page with its message as the console words it (httpErrorText: no
 * server paths) and what to do next, or rethrows an error that is not one.
 */
export function sendRefusalPage(
  reply: FastifyReply,
  request: FastifyRequest,
  error: unknown,
  page: { readonly title: string; readonly back?: { readonly href: string; readonly label: string }; readonly after?: string },
): FastifyReply {
  const status = refusalStatus(error);
  if (status === undefined) throw error;
  if (error instanceof TestSendLimitError) reply.header('retry-after', String(error.retryAfterSeconds));
  return sendConsolePage(reply, request, {
    status,
    title: page.title,
    body:
      problem(httpErrorText(error as Error)) +
      (page.back ? `<p><a href="${escape(page.back.href)}">${escape(page.back.label)}</a></p>` : '') +
      (page.after ?? ''),
  });
}

/** A refusal or a problem, announced to screen readers; multi-line messages keep their lines. */
export function problem(message: string): string {
  return `<p class="problem pre-line" role="alert">${escape(message)}</p>`;
}

/** A short confirmation of what was just done. */
export function notice(message: string): string {
  return `<p class="notice" role="status">${escape(message)}</p>`;
}

/** An instant as people read it in the console, in UTC (the server's and the logs' zone), in a <time> element. */
export function timeTag(iso: string | undefined): string {
  if (!iso) return '—';
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return escape(iso);
  return `<time datetime="${escape(at.toISOString())}">${escape(formatUtc(at))}</time>`;
}

/** "2026-01-12 08:00 UTC". */
export function formatUtc(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/** A `<select>` of values (each its own label), the current one selected. */
export function selectOptions(values: readonly string[], selected: string | undefined): string {
  return values.map((value) => `<option value="${escape(value)}"${value === selected ? ' selected' : ''}>${escape(value)}</option>`).join('');
}

/**
 * Who did it, as records and logs name them (the ops pages and the API say the same):
 * "console:<email>" for a logged-in user, "api:<token name>" for an API token.
 */
export function actorName(request: FastifyRequest): string {
  const actor = request.actor;
  if (!actor) return 'console';
  return `${actor.kind === 'token' ? 'api' : 'console'}:${actor.name}`;
}
