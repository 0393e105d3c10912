import { Readable } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Actor } from '../../app/accounts.ts';
import {
  listSendSummaries,
  sendDomainBreakdown,
  sendFailuresCsv,
  sendFailuresPage,
  sendProgressSeries,
  sendSummary,
  type SendSummary,
} from '../../app/dashboard.ts';
import { buildIssuePreview } from '../../app/preview.ts';
import { createSchedule, deleteSchedule, listSchedules, UnknownScheduleError } from '../../app/schedules.ts';
import { actOnSend, requireSend, SEND_ACTIONS, UnknownSendError, type SendActionResult } from '../../app/send-actions.ts';
import { SendControlError } from '../../app/send-control.ts';
import { SendRefusedError, startSend } from '../../app/start-send.ts';
import { testSend } from '../../app/test-send.ts';
import { listIssueIds, loadIssue } from '../../content/load-issue.ts';
import { IssueContentError, TemplateError, UnknownIssueError, UserFacingError } from '../../core/errors.ts';
import { can } from '../../core/roles.ts';
import { InvalidScheduleError } from '../../core/schedule.ts';
import { DEFAULT_LIST } from '../../core/subscriber.ts';
import { GMAIL_CLIP_BYTES } from '../../render/compile-issue.ts';
import type { Services } from '../../services.ts';
import { csrfGuard, requirePermission } from '../auth.ts';
import { httpErrorText } from '../error-text.ts';
import { TestSendLimitError, testSendLimiter } from '../test-send-limit.ts';
import { API_DOCUMENT, failuresQuery, issueQuery, scheduleBody, sendActionBody, sendsQuery, startSendBody, testSendBody } from './openapi.ts';

/**
 * The JSON API under /api: the same use cases as the console and the CLI, for scripts. Registered
 * inside the console's scope (src/http/console.ts), so the auth hook has set `request.actor` from
 * the bearer token or the session cookie. Every route asks for a permission; every POST and
 * DELETE also passes the CSRF check, which a bearer-token request skips (a browser never attaches
 * a bearer token by itself). What each route takes and answers is in ./openapi.ts.
 */
export async function registerApiRoutes(api: FastifyInstance, services: Services): Promise<void> {
  const csrf = csrfGuard(api);
  const spendTestSend = testSendLimiter(api, services);

  api.setErrorHandler(answerRefusal);
  // Behind the same guard as the routes: without credentials an unknown path answers 401, so
  // nobody learns which paths exist without logging in.
  api.setNotFoundHandler({ preHandler: requirePermission('issues.read') }, async (request, reply) =>
    reply.code(404).send({ error: `There is no API route ${request.method} ${request.url.split('?')[0]}; see GET /api/openapi.json.` }),
  );

  // The document is public knowledge, but the API answers nobody it doesn't know; every role holds issues.read.
  api.get('/openapi.json', { preHandler: requirePermission('issues.read') }, async () => API_DOCUMENT);

  // ---- issues

  api.get('/issues', { preHandler: requirePermission('issues.read') }, async () => ({ issues: await listIssues(services) }));

  api.get<{ Params: { id: string } }>('/issues/:id', { preHandler: requirePermission('issues.preview') }, async (request) => {
    const { list = DEFAULT_LIST } = parseInput(issueQuery, request.query, 'query');
    const { issue, compiled, html, text } = await buildIssuePreview(services.config, request.params.id, list);
    const htmlBytes = Buffer.byteLength(html, 'utf8');
    return {
      id: issue.id,
      title: issue.title,
      status: issue.status,
      list,
      subject: compiled.subject,
      preheader: issue.preheader,
      htmlBytes,
      textBytes: Buffer.byteLength(text, 'utf8'),
      gmailClipBytes: GMAIL_CLIP_BYTES,
      clippedByGmail: htmlBytes > GMAIL_CLIP_BYTES,
      warnings: compiled.warnings,
      text,
    };
  });

  api.post<{ Params: { id: string } }>('/issues/:id/test-send', { preHandler: [requirePermission('issues.preview'), csrf] }, async (request) => {
    const body = parseInput(testSendBody, request.body, 'body');
    // Counted once the body is readable, before anything goes out (the console's test sends spend the same budget).
    await spendTestSend(request);
    const result = await testSend(services, { issueId: request.params.id, to: body.to, list: body.list });
    request.log.info({ issueId: request.params.id, who: whoOf(request), accepted: result.accepted.length }, 'test send through the API');
    return result;
  });

  // ---- sends

  api.get('/sends', { preHandler: requirePermission('sends.read') }, async (request) => {
    const { limit } = parseInput(sendsQuery, request.query, 'query');
    return { sends: await listSendSummaries(services, limit === undefined ? {} : { limit }) };
  });

  api.post('/sends', { preHandler: [requirePermission('sends.start'), csrf] }, async (request, reply) => {
    const body = parseInput(startSendBody, request.body ?? {}, 'body');
    const who = whoOf(request);
    if (body.at !== undefined) {
      if (body.resend) throw new BadInputError('resend: a scheduled send never sends an issue twice; leave out "at" to send again now');
      // Starting a send later is making a schedule: it takes that permission too.
      const role = request.actor?.role;
      if (role === undefined || !can(role, 'schedules.manage'))
        throw new ForbiddenError(`at: the ${role ?? 'none'} role may not schedule sends (it needs schedules.manage)`);
      const schedule = await createSchedule(services, { kind: 'once', issue: body.issue, list: body.list, at: body.at }, who);
      return reply.code(201).header('location', `/api/schedules/${schedule.id}`).send({ schedule });
    }
    const started = await startSend(services, { issueId: body.issue, list: body.list, resend: body.resend ?? false, requestedBy: who });
    request.log.info({ sendId: started.sendId, who, resumed: started.resumed }, 'send started through the API');
    const send = await requireSummary(services, started.sendId);
    return reply.code(201).header('location', `/api/sends/${started.sendId}`).send({ send, resumed: started.resumed, warnings: started.warnings });
  });

  api.get<{ Params: { id: string } }>('/sends/:id', { preHandler: requirePermission('sends.read') }, async (request) => {
    // The id is checked (shape, then existence) before it names any key.
    const { id } = await requireSend(services, request.params.id);
    const [summary, series, domains] = await Promise.all([requireSummary(services, id), sendProgressSeries(services, id), sendDomainBreakdown(services, id)]);
    return { summary, series, domains };
  });

  // Who failed names subscribers' addresses: sends.failures, which the editor does not hold.
  api.get<{ Params: { id: string } }>('/sends/:id/failures', { preHandler: requirePermission('sends.failures') }, async (request) => {
    const query = parseInput(failuresQuery, request.query, 'query');
    const { id } = await requireSend(services, request.params.id);
    return sendFailuresPage(services, id, withoutUndefined(query));
  });

  api.get<{ Params: { id: string } }>('/sends/:id/failures.csv', { preHandler: requirePermission('sends.failures') }, async (request, reply) => {
    const { filter, kind } = parseInput(failuresQuery, request.query, 'query');
    // Checked before the first byte: once the CSV streams, the status can't change any more.
    const send = await requireSend(services, request.params.id);
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${send.id}-failures.csv"`)
      .header('cache-control', 'no-store')
      .send(Readable.from(sendFailuresCsv(services, send.id, withoutUndefined({ filter, kind }))));
  });

  for (const action of SEND_ACTIONS) {
    api.post<{ Params: { id: string } }>(`/sends/:id/${action}`, { preHandler: [requirePermission('sends.control'), csrf] }, async (request) => {
      const { reason } = parseInput(sendActionBody, request.body ?? {}, 'body');
      const result: SendActionResult = await actOnSend(services, request.params.id, action, { who: whoOf(request), reason });
      return { result, send: await requireSummary(services, result.sendId) };
    });
  }

  // ---- schedules

  api.get('/schedules', { preHandler: requirePermission('schedules.read') }, async () => ({ schedules: await listSchedules(services) }));

  api.post('/schedules', { preHandler: [requirePermission('schedules.manage'), csrf] }, async (request, reply) => {
    const spec = parseInput(scheduleBody, request.body ?? {}, 'body');
    const schedule = await createSchedule(services, spec, whoOf(request));
    return reply.code(201).header('location', `/api/schedules/${schedule.id}`).send({ schedule });
  });

  api.delete<{ Params: { id: string } }>('/schedules/:id', { preHandler: [requirePermission('schedules.manage'), csrf] }, async (request, reply) => {
    await deleteSchedule(services, request.params.id);
    request.log.info({ scheduleId: request.params.id, who: whoOf(request) }, 'schedule deleted through the API');
    return reply.code(204).send();
  });
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A request the API can't read: a body or query that doesn't match its schema. 400. */
class BadInputError extends UserFacingError {
  override readonly name = 'BadInputError';
}

/** Something the request names that doesn't exist (a schedule id). 404. */
class NotFoundError extends UserFacingError {
  override readonly name = 'NotFoundError';
}

/** A permission a route checks beyond its guard (POST /api/sends with `at` makes a schedule). 403. */
class ForbiddenError extends UserFacingError {
  override readonly name = 'ForbiddenError';
}

/**
 * The status of each refusal, by its class:
 * - 404: the request names an issue, send or schedule that doesn't exist.
 * - 409: the request is well formed but the state refuses it: a draft, a double send, a list
 *   without subscribers (SendRefusedError); pausing a cancelled or finished send, acting on a send
 *   that is not the latest of its issue and list (SendControlError).
 * - 422: the issue file or a template is broken: nothing the caller can change in the request
 *   (the same status as the console's pages).
 * - 429: a test send over TEST_SENDS_PER_HOUR (TestSendLimitError), with Retry-After.
 * - 400: malformed input (BadInputError from zod; InvalidScheduleError; any other UserFacingError,
 *   which the use cases throw for input they refuse, e.g. too many test-send addresses).
 * Order matters: the specific classes first, UserFacingError (their base) last.
 */
const REFUSAL_STATUS: readonly (readonly [new (...args: never[]) => Error, number])[] = [
  [UnknownIssueError, 404],
  [UnknownSendError, 404],
  [NotFoundError, 404],
  [UnknownScheduleError, 404],
  [ForbiddenError, 403],
  [SendRefusedError, 409],
  [SendControlError, 409],
  [IssueContentError, 422],
  [TemplateError, 422],
  [TestSendLimitError, 429],
  [InvalidScheduleError, 400],
  [BadInputError, 400],
  [UserFacingError, 400],
];

/** The API's error handler: a refusal as JSON with its status; anything else to the console's handler (CSRF 403, fastify's 4xx, 500 logged). */
function answerRefusal(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const status = REFUSAL_STATUS.find(([errorClass]) => error instanceof errorClass)?.[1];
  if (status === undefined) throw error;
  if (error instanceof TestSendLimitError) reply.header('retry-after', String(error.retryAfterSeconds));
  return reply.code(status).send({ error: apiWording(httpErrorText(error)) });
}

/**
 * A refusal's message in the API's words. The use cases word their hints for the CLI: a double
 * send, or a cancelled send to mail again, says "--resend"; over the API that is the body's field.
 */
function apiWording(message: string): string {
  return message.replaceAll('--resend', '"resend": true');
}

/**
 * Parses a body or query with its schema, or throws BadInputError naming each field and what is
 * wrong with it: "list: must be a list name, e.g. "weekly"".
 */
function parseInput<T extends z.ZodType>(schema: T, input: unknown, what: 'body' | 'query'): z.output<T> {
  const result = schema.safeParse(input, { error: (issue) => (issue.input === undefined && issue.code === 'invalid_type' ? 'is required' : undefined) });
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') return `${issue.keys.join(', ')}: ${issue.keys.length === 1 ? 'is not a field' : 'are not fields'} of this ${what}`;
    return `${issue.path.length > 0 ? fieldPath(issue.path) : what}: ${issue.message}`;
  });
  throw new BadInputError(problems.join('; '));
}

function fieldPath(segments: readonly PropertyKey[]): string {
  return segments.map((segment, index) => (typeof segment === 'number' ? `[${segment}]` : `${index === 0 ? '' : '.'}${String(segment)}`)).join('');
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Sends GET /api/issues reads to list each issue's sends: far more than a newsletter makes in years. */
const SENDS_READ_FOR_ISSUES = 1000;

/** One issue as GET /api/issues lists it; a file that doesn't load has its problem instead of a title and status. */
interface IssueEntry {
  readonly id: string;
  readonly title?: string;
  readonly status?: 'draft' | 'finished';
  readonly problem?: string;
  readonly sends: readonly SendSummary[];
}

/**
 * Every issue file with its status and its sends, newest send first. A broken file is listed with
 * what is wrong with it, as the console's issues page shows it, rather than failing the whole list.
 */
async function listIssues(services: Services): Promise<IssueEntry[]> {
  const { issuesDir } = services.config;
  const [issues, sends] = await Promise.all([
    listIssueIds(issuesDir).then((ids) =>
      Promise.all(
        ids.map((id) =>
          loadIssue(issuesDir, id).then(
            (issue) => ({ id, title: issue.title, status: issue.status }),
            (error: unknown) => {
              if (error instanceof UserFacingError) return { id, problem: httpErrorText(error) };
              throw error;
            },
          ),
        ),
      ),
    ),
    listSendSummaries(services, { limit: SENDS_READ_FOR_ISSUES }),
  ]);
  const sendsByIssue = new Map<string, SendSummary[]>();
  for (const send of sends) sendsByIssue.set(send.issueId, [...(sendsByIssue.get(send.issueId) ?? []), send]);
  return issues.map((issue) => ({ ...issue, sends: sendsByIssue.get(issue.id) ?? [] }));
}

/** Who did it, as send records, logs and schedules name them: `console:<email>` or `api:<token name>`. */
function whoOf(request: FastifyRequest): string {
  const actor: Actor | undefined = request.actor;
  if (!actor) return 'api:unknown';
  return actor.kind === 'user' ? `console:${actor.name}` : `api:${actor.name}`;
}

/** The send's summary, or UnknownSendError (404). */
async function requireSummary(services: Services, sendId: string): Promise<SendSummary> {
  const summary = await sendSummary(services, sendId);
  if (!summary) throw new UnknownSendError(sendId);
  return summary;
}

/** The fields that are set (exactOptionalPropertyTypes: an absent field is not one set to undefined). */
function withoutUndefined<T extends Record<string, unknown>>(fields: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
