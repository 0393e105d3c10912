import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  listSendSummaries,
  sendDomainBreakdown,
  sendFailuresCsv,
  sendFailuresPage,
  sendProgressSeries,
  sendSummary,
  type SendSummary,
} from '../../app/dashboard.ts';
import { actOnSend, isSendAction, UnknownSendError, type SendAction, type SendActionResult } from '../../app/send-actions.ts';
import { UserFacingError } from '../../core/errors.ts';
import { can } from '../../core/roles.ts';
import type { Services } from '../../services.ts';
import { csrfGuard, csrfToken, requirePermission } from '../auth.ts';
import { escape } from '../public/page.ts';
import { sendConsolePage } from './layout.ts';
import { progressChart } from './progress-chart.ts';
import { applicableActions, domainRowViews, liveSendView } from './send-views.ts';
import {
  ACTION_WORDS,
  confirmBody,
  dashboardBody,
  DEFAULT_FAILURES_PAGE_SIZE,
  FAILURE_KINDS,
  MAX_REASON_LENGTH,
  sendPageBody,
  type DoneNotice,
  type FailuresQuery,
} from './sends-pages.ts';

/**
 * Ops' pages: the sends dashboard, one send's page with its failures (and their CSV), the JSON the
 * pages poll, and the confirmation and POST of pause, resume, cancel and retry-failed. Thin: each
 * route checks its input, calls the dashboard queries or actOnSend, and renders (sends-pages.ts).
 * The failures name subscribers' addresses: only a viewer with sends.failures gets them, on the
 * page and as CSV; anyone with sends.read sees the counts, the chart and the per-domain breakdown.
 */

/** The sends the dashboard lists unless the URL asks for another number. */
const DEFAULT_DASHBOARD_LIMIT = 50;
const MAX_DASHBOARD_LIMIT = 500;
/** The largest failures page the console asks for (the dashboard query allows more, for the API). */
const MAX_FAILURES_PAGE_SIZE = 200;
/** The script that keeps the pages live; they work without it. */
const CONSOLE_SCRIPT = '/admin/assets/console.js';

/** A number from the URL, or the fallback when it is missing or not a whole number in range: a hand-edited URL still gets a page. */
const wholeNumber = (fallback: number, max: number) => z.coerce.number().int().min(1).max(max).catch(fallback);
const text = (maxLength: number) => z.string().trim().max(maxLength).catch('');

const dashboardQuerySchema = z.object({ limit: wholeNumber(DEFAULT_DASHBOARD_LIMIT, MAX_DASHBOARD_LIMIT) });

const failuresQuerySchema = z.object({
  filter: text(200),
  kind: z
    .string()
    .refine((kind) => kind === '' || FAILURE_KINDS.some((known) => known.kind === kind))
    .catch(''),
  page: wholeNumber(1, Number.MAX_SAFE_INTEGER),
  pageSize: wholeNumber(DEFAULT_FAILURES_PAGE_SIZE, MAX_FAILURES_PAGE_SIZE),
});

const doneQuerySchema = z.object({
  done: z.string().optional(),
  changed: z.enum(['0', '1']).optional(),
  count: z.coerce.number().int().min(0).optional().catch(undefined),
});

const actionBodySchema = z.object({
  reason: z.string().trim().max(MAX_REASON_LENGTH, `The reason is too long: keep it to ${MAX_REASON_LENGTH} characters.`).optional(),
});

/** Who did it, as the send's state reason records it: "console:<email>" or "api:<token name>". */
function whoOf(request: FastifyRequest): string {
  const actor = request.actor;
  if (!actor) return 'console';
  return `${actor.kind === 'token' ? 'api' : 'console'}:${actor.name}`;
}

function notFound(reply: FastifyReply, request: FastifyRequest, sendId: string): FastifyReply {
  return sendConsolePage(reply, request, {
    status: 404,
    title: 'No such send',
    body: `<p>There is no send "${escape(sendId)}". <a href="/admin/sends">All sends</a></p>`,
  });
}

function refusedPage(reply: FastifyReply, request: FastifyRequest, status: number, sendId: string, message: string): FastifyReply {
  return sendConsolePage(reply, request, {
    status,
    title: 'Not done',
    body: `<p class="problem" role="alert">${escape(message)}</p><p><a href="/admin/sends/${escape(encodeURIComponent(sendId))}">Back to the send</a></p>`,
  });
}

function isUnknownSend(error: unknown): boolean {
  return error instanceof UnknownSendError;
}

/** The count the notice after an action shows: recipients skipped by a cancel, requeued by a retry. */
function countOf(result: SendActionResult): number | undefined {
  if (result.action === 'cancel') return result.skipped;
  if (result.action === 'retry-failed') return result.requeued + result.repaired;
  return undefined;
}

/** Registers the ops pages in the console's scope (after registerAuth). */
export async function registerOpsPages(scope: FastifyInstance, services: Services): Promise<void> {
  const read = { preHandler: requirePermission('sends.read') };

  scope.get('/admin/sends', read, async (request, reply) => {
    const { limit } = dashboardQuerySchema.parse(request.query ?? {});
    const summaries = await listSendSummaries(services, { limit });
    return sendConsolePage(reply, request, { title: 'Sends', body: dashboardBody(summaries, { limit }), scripts: [CONSOLE_SCRIPT] });
  });

  scope.get('/admin/sends.json', read, async (request, reply) => {
    const { limit } = dashboardQuerySchema.parse(request.query ?? {});
    const sends = await listSendSummaries(services, { limit });
    return reply.header('cache-control', 'no-store').send({ sends, views: sends.map(liveSendView) });
  });

  // One route for the page and its JSON: send ids contain dots, so "<id>.json" is told apart here
  // rather than by the router.
  scope.get<{ Params: { id: string } }>('/admin/sends/:id', read, async (request, reply) => {
    const asJson = request.params.id.endsWith('.json');
    const sendId = asJson ? request.params.id.slice(0, -'.json'.length) : request.params.id;
    const summary = await sendSummary(services, sendId);
    if (!summary) {
      if (asJson)
        return reply
          .code(404)
          .header('cache-control', 'no-store')
          .send({ error: `There is no send "${sendId}".` });
      return notFound(reply, request, sendId);
    }
    const [series, domains] = await Promise.all([sendProgressSeries(services, sendId), sendDomainBreakdown(services, sendId)]);
    if (asJson) {
      return reply.header('cache-control', 'no-store').send({
        summary,
        series,
        domains,
        // What console.js draws: the same text and chart shapes the page was rendered with.
        view: liveSendView(summary),
        domainRows: domainRowViews(domains),
        chart: progressChart(series, { createdAt: summary.createdAt, total: summary.total }),
      });
    }
    const query: FailuresQuery = failuresQuerySchema.parse(request.query ?? {});
    const mayReadFailures = request.actor !== undefined && can(request.actor.role, 'sends.failures');
    const failures = mayReadFailures ? await sendFailuresPage(services, sendId, query) : undefined;
    return sendConsolePage(reply, request, {
      title: `Send ${sendId}`,
      body: sendPageBody({
        summary,
        series,
        domains,
        failures,
        query,
        canControl: request.actor !== undefined && can(request.actor.role, 'sends.control'),
        done: doneNotice(request.query),
      }),
      scripts: [CONSOLE_SCRIPT],
    });
  });

  scope.get<{ Params: { id: string } }>('/admin/sends/:id/failures.csv', { preHandler: requirePermission('sends.failures') }, async (request, reply) => {
    const { filter, kind } = failuresQuerySchema.parse(request.query ?? {});
    const sendId = request.params.id;
    if (!(await services.sends.exists(sendId))) return notFound(reply, request, sendId);
    const lines = sendFailuresCsv(services, sendId, { filter, kind });
    // The id is checked to exist, and send ids are letters, digits, dots, dashes and underscores.
    const fileName = `failures-${sendId.replace(/[^A-Za-z0-9._-]/g, '_')}.csv`;
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${fileName}"`)
      .header('cache-control', 'no-store')
      .send(Readable.from(lines));
  });

  scope.get<{ Params: { id: string }; Querystring: { action?: string } }>(
    '/admin/sends/:id/confirm',
    { preHandler: requirePermission('sends.control') },
    async (request, reply) => {
      const sendId = request.params.id;
      const action = request.query.action ?? '';
      if (!isSendAction(action)) {
        return refusedPage(reply, request, 400, sendId, `Unknown action "${action}": choose one of ${Object.keys(ACTION_WORDS).join(', ')}.`);
      }
      const summary = await sendSummary(services, sendId);
      if (!summary) return notFound(reply, request, sendId);
      if (!applicableActions(summary).includes(action)) return refusedPage(reply, request, 409, sendId, notApplicable(summary, action));
      return sendConsolePage(reply, request, { title: ACTION_WORDS[action].question, body: confirmBody(summary, action, csrfToken(reply)) });
    },
  );

  scope.post<{ Params: { id: string; action: string } }>(
    '/admin/sends/:id/:action',
    { preHandler: [requirePermission('sends.control'), csrfGuard(scope)] },
    async (request, reply) => {
      const { id: sendId, action } = request.params;
      if (!isSendAction(action)) return refusedPage(reply, request, 404, sendId, `There is no action "${action}" on a send.`);
      const body = actionBodySchema.safeParse(request.body ?? {});
      if (!body.success) return refusedPage(reply, request, 400, sendId, body.error.issues[0]?.message ?? 'The form is not valid.');
      let result: SendActionResult;
      try {
        result = await actOnSend(services, sendId, action, { who: whoOf(request), reason: body.data.reason || undefined });
      } catch (error) {
        if (isUnknownSend(error)) return notFound(reply, request, sendId);
        // A refusal (a cancelled send can't be resumed, another retry is running…) says why.
        if (error instanceof UserFacingError) return refusedPage(reply, request, 409, sendId, error.message);
        throw error;
      }
      request.log.info({ sendId, action, who: whoOf(request) }, 'send action from the console');
      const params = new URLSearchParams({ done: action, changed: 'changed' in result && !result.changed ? '0' : '1' });
      const count = countOf(result);
      if (count !== undefined) params.set('count', String(count));
      return reply.redirect(`/admin/sends/${encodeURIComponent(sendId)}?${params.toString()}`, 303);
    },
  );
}

/** The notice of the action just done, from the redirect's query; nothing of the URL is shown as given. */
function doneNotice(query: unknown): DoneNotice | undefined {
  const parsed = doneQuerySchema.safeParse(query ?? {});
  if (!parsed.success || parsed.data.done === undefined || !isSendAction(parsed.data.done)) return undefined;
  return { action: parsed.data.done, changed: parsed.data.changed !== '0', count: parsed.data.count };
}

function notApplicable(summary: SendSummary, action: SendAction): string {
  if (action === 'retry-failed' && summary.state === 'cancelled') return `Send ${summary.sendId} was cancelled; there is nothing to retry.`;
  if (action === 'retry-failed') return `Send ${summary.sendId} has no failed recipients to retry (it is ${summary.state}).`;
  return `Send ${summary.sendId} is ${summary.state}; it can't be ${action === 'cancel' ? 'cancelled' : `${action}d`} now.`;
}
