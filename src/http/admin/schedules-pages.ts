import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { listIssueIds, loadIssue } from '../../content/load-issue.ts';
import { createSchedule, deleteSchedule, listSchedules, type ScheduleSpec, type ScheduleView } from '../../app/schedules.ts';
import { UserFacingError } from '../../core/errors.ts';
import { can } from '../../core/roles.ts';
import { canonicalTimeZone, parseScheduleSpec, WEEKDAYS } from '../../core/schedule.ts';
import { DEFAULT_LIST } from '../../core/subscriber.ts';
import type { Services } from '../../services.ts';
import { csrfGuard, requirePermission } from '../auth.ts';
import { httpErrorText } from '../error-text.ts';
import { escape } from '../public/page.ts';
import { actorName, csrfField, formField, notice, problem, refusalStatus, selectOptions, timeTag } from './editor-pages.ts';
import { listNames } from './issues-pages.ts';
import { sendConsolePage } from './layout.ts';

/** What a schedule id looks like (app/schedules.ts makes them): only such an id is echoed back in a notice. */
const SCHEDULE_ID_SHAPE = /^sch-[0-9a-f]{1,32}$/;

/** The time zone the forms start with; the editor types another (an IANA name) where the readers are. */
const DEFAULT_TIME_ZONE = 'UTC';

/** What the editor typed into the create forms, shown again when the schedule is refused. */
interface ScheduleFormValues {
  readonly kind: string;
  readonly issue: string;
  readonly list: string;
  readonly at: string;
  readonly day: string;
  readonly time: string;
  readonly timeZone: string;
}

/** The schedules: the list, the two create forms (a one-off send, a weekly send) and delete. */
export function registerSchedulePages(scope: FastifyInstance, services: Services): void {
  scope.get('/admin/schedules', { preHandler: requirePermission('schedules.read') }, async (request, reply) => {
    const created = formField(request.query, 'created');
    const deleted = formField(request.query, 'deleted');
    const notices =
      (SCHEDULE_ID_SHAPE.test(created) ? notice(`Schedule ${created} created.`) : '') +
      (SCHEDULE_ID_SHAPE.test(deleted) ? notice(`Schedule ${deleted} deleted.`) : '');
    return sendSchedulesPage(reply, request, services, { status: 200, before: notices });
  });

  scope.post('/admin/schedules', { preHandler: [requirePermission('schedules.manage'), csrfGuard(scope)] }, async (request, reply) => {
    const values = formValues(request.body);
    try {
      const now = new Date();
      const view = await createSchedule(services, specOf(values, now), actorName(request), now);
      request.log.info({ scheduleId: view.id, by: actorName(request) }, 'schedule created from the console');
      return reply.redirect(`/admin/schedules?created=${encodeURIComponent(view.id)}`, 303);
    } catch (error) {
      // The form again as typed, with the status the API gives the same refusal: an unknown issue 404, a draft,
      // an issue already sent or scheduled, a list without subscribers 409 (SendRefusedError), a bad time,
      // day or zone 400 (InvalidScheduleError), a broken issue file 422.
      const status = refusalStatus(error);
      if (status === undefined) throw error;
      return sendSchedulesPage(reply, request, services, { status, before: problem(httpErrorText(error as Error)), values });
    }
  });

  scope.post('/admin/schedules/:id/delete', { preHandler: [requirePermission('schedules.manage'), csrfGuard(scope)] }, async (request, reply) => {
    const id = (request.params as { id: string }).id;
    try {
      await deleteSchedule(services, id);
    } catch (error) {
      if (!(error instanceof UserFacingError)) throw error;
      return sendConsolePage(reply, request, {
        status: 404,
        title: 'No such schedule',
        body: problem(error.message) + `<p><a href="/admin/schedules">Back to the schedules</a></p>`,
      });
    }
    request.log.info({ scheduleId: id, by: actorName(request) }, 'schedule deleted from the console');
    return reply.redirect(`/admin/schedules?deleted=${encodeURIComponent(id)}`, 303);
  });
}

async function sendSchedulesPage(
  reply: FastifyReply,
  request: FastifyRequest,
  services: Services,
  options: { readonly status: number; readonly before: string; readonly values?: ScheduleFormValues },
): Promise<FastifyReply> {
  const mayManage = request.actor !== undefined && can(request.actor.role, 'schedules.manage');
  const [schedules, lists, finishedIssues] = await Promise.all([
    listSchedules(services),
    listNames(services),
    mayManage ? finishedIssueIds(services) : Promise.resolve([]),
  ]);
  const table =
    schedules.length === 0
      ? '<p>No schedules yet.</p>'
      : `<div class="table-wrap"><table class="schedules"><thead><tr><th>Schedule</th><th>Sends</th><th>Next run</th><th>Last run</th><th>Created</th>${mayManage ? '<th></th>' : ''}</tr></thead><tbody>` +
        schedules.map((schedule) => scheduleRow(reply, schedule, mayManage)).join('') +
        `</tbody></table></div>`;
  const forms = mayManage ? createForms(reply, { lists, issues: finishedIssues, values: options.values }) : '';
  return sendConsolePage(reply, request, { status: options.status, title: 'Schedules', body: options.before + table + forms });
}

function scheduleRow(reply: FastifyReply, schedule: ScheduleView, mayManage: boolean): string {
  const { spec, lastRun } = schedule;
  const what =
    spec.kind === 'once'
      ? `<b>${escape(spec.issue)}</b> to <b>${escape(spec.list)}</b>, once at ${timeTag(spec.at)}`
      : `Every ${escape(spec.day)} at ${escape(spec.time)} (${escape(spec.timeZone)}): the newest finished issue not yet sent to <b>${escape(spec.list)}</b>`;
  const last = lastRun
    ? `<span class="outcome outcome-${escape(lastRun.outcome)}">${escape(lastRun.outcome)}</span> ${timeTag(lastRun.at)}` +
      (lastRun.issue ? ` ${escape(lastRun.issue)}` : '') +
      (lastRun.sendId ? ` <a href="/admin/sends/${encodeURIComponent(lastRun.sendId)}">${escape(lastRun.sendId)}</a>` : '') +
      (lastRun.message ? `<br><small>${escape(lastRun.message)}</small>` : '')
    : '—';
  const remove = mayManage
    ? `<td><form method="post" action="/admin/schedules/${encodeURIComponent(schedule.id)}/delete" class="inline">${csrfField(reply)}<button type="submit" class="danger">Delete</button></form></td>`
    : '';
  return (
    `<tr><td>${escape(schedule.id)}</td><td>${what}</td><td>${schedule.nextRunAt ? timeTag(schedule.nextRunAt) : 'done'}</td><td>${last}</td>` +
    `<td>${escape(schedule.createdBy)}<br><small>${timeTag(schedule.createdAt)}</small></td>${remove}</tr>`
  );
}

function createForms(
  reply: FastifyReply,
  options: { readonly lists: readonly string[]; readonly issues: readonly string[]; readonly values: ScheduleFormValues | undefined },
): string {
  const typed = options.values;
  const once = typed?.kind === 'once' ? typed : undefined;
  const weekly = typed?.kind === 'weekly' ? typed : undefined;
  const defaultList = options.lists.includes(DEFAULT_LIST) ? DEFAULT_LIST : options.lists[0];
  const listSelect = (selected: string | undefined) =>
    options.lists.length === 0
      ? `<input type="text" name="list" required value="${escape(selected ?? DEFAULT_LIST)}">`
      : `<select name="list" required>${selectOptions(options.lists, selected ?? defaultList)}</select>`;
  const timeZoneInput = (value: string | undefined) =>
    `<label>Time zone <input type="text" name="timeZone" required value="${escape(value || DEFAULT_TIME_ZONE)}" placeholder="Europe/Berlin" autocomplete="off"></label>`;
  return (
    `<h2>Send one issue at a set time</h2>` +
    `<form method="post" action="/admin/schedules" class="stack">${csrfField(reply)}<input type="hidden" name="kind" value="once">` +
    `<label>Issue <select name="issue" required>${selectOptions(options.issues, once?.issue)}</select></label>` +
    `<label>List ${listSelect(once?.list)}</label>` +
    `<label>At <input type="datetime-local" name="at" required value="${escape(once?.at ?? '')}"></label>` +
    timeZoneInput(once?.timeZone) +
    `<button type="submit">Schedule</button></form>` +
    `<h2>Send every week</h2>` +
    `<p class="hint">Each week the newest finished issue not yet sent to the list goes out; when there is none, nothing is sent and the run says so here.</p>` +
    `<form method="post" action="/admin/schedules" class="stack">${csrfField(reply)}<input type="hidden" name="kind" value="weekly">` +
    `<label>List ${listSelect(weekly?.list)}</label>` +
    `<label>Day <select name="day" required>${selectOptions(WEEKDAYS, weekly?.day ?? 'monday')}</select></label>` +
    `<label>Time <input type="time" name="time" required value="${escape(weekly?.time ?? '08:00')}"></label>` +
    timeZoneInput(weekly?.timeZone) +
    `<button type="submit">Schedule weekly</button></form>`
  );
}

/** The finished issues: the only ones a one-off schedule takes (a broken file is left out; the issues page shows it). */
async function finishedIssueIds(services: Services): Promise<string[]> {
  const ids = await listIssueIds(services.config.issuesDir);
  const statuses = await Promise.all(
    ids.map((id) =>
      loadIssue(services.config.issuesDir, id).then(
        (issue) => issue.status,
        () => undefined,
      ),
    ),
  );
  return ids.filter((_, index) => statuses[index] === 'finished');
}

function formValues(body: unknown): ScheduleFormValues {
  return {
    kind: formField(body, 'kind'),
    issue: formField(body, 'issue'),
    list: formField(body, 'list'),
    at: formField(body, 'at'),
    day: formField(body, 'day'),
    time: formField(body, 'time'),
    timeZone: formField(body, 'timeZone'),
  };
}

/**
 * The schedule the form asks for. A one-off time comes from a datetime-local field (a wall-clock
 * time without a zone) and the time zone field, and becomes the instant createSchedule checks.
 */
function specOf(values: ScheduleFormValues, now: Date): ScheduleSpec {
  const at = values.kind === 'once' ? zonedTimeToInstant(values.at, canonicalTimeZone(values.timeZone)).toISOString() : undefined;
  // The core's check of a schedule as given: it names the bad kind, day, time or zone.
  return parseScheduleSpec(
    { kind: values.kind, issue: values.issue, list: values.list, at, day: values.day, time: values.time, timeZone: values.timeZone },
    now,
  );
}

const LOCAL_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/;

/**
 * The instant at which the clocks of a time zone show a wall-clock time (2026-12-01T08:00 in
 * Europe/Berlin → 07:00Z). A time the clocks skip (in the hour a DST change jumps) lands after
 * the jump, as the weekly schedules do.
 */
export function zonedTimeToInstant(local: string, timeZone: string): Date {
  const match = LOCAL_DATE_TIME.exec(local);
  if (!match) throw new UserFacingError(`"${local}" is not a date and time: pick one, e.g. 2026-12-01 08:00.`);
  const [year, month, day, hour, minute, second] = match.slice(1).map((part) => Number(part ?? 0)) as [number, number, number, number, number, number];
  const wallClockMs = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(wallClockMs);
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day || hour > 23 || minute > 59) {
    throw new UserFacingError(`"${local}" is not a date and time that exists.`);
  }
  // The zone's offset at a first guess, then at the instant that guess gives: right on both sides of a DST change.
  const firstGuess = wallClockMs - zoneOffsetMs(wallClockMs, timeZone);
  return new Date(wallClockMs - zoneOffsetMs(firstGuess, timeZone));
}

/** How far a time zone's clocks are ahead of UTC at an instant, in ms. */
function zoneOffsetMs(instantMs: number, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(new Date(instantMs));
  const part = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((candidate) => candidate.type === type)?.value ?? 0);
  const shownMs = Date.UTC(part('year'), part('month') - 1, part('day'), part('hour'), part('minute'), part('second'));
  return shownMs - (instantMs - (((instantMs % 1000) + 1000) % 1000));
}
