import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { listIssueIds, loadIssue } from '../content/load-issue.ts';
import type { Issue } from '../content/issue-schema.ts';
import { messageForOthers, UserFacingError } from '../core/errors.ts';
import {
  InvalidScheduleError,
  SCHEDULE_POLICY,
  nextOccurrence,
  parseScheduleSpec,
  planDueRun,
  type SchedulePolicy,
  type ScheduleSpec,
} from '../core/schedule.ts';
import type { Logger } from '../logger.ts';
import type { Lease } from '../store/lease.ts';
import { ScheduleStore, type NextDue, type ScheduleAttempt, type ScheduleRecord, type ScheduleRun, type StoredSchedule } from '../store/schedule-store.ts';
import type { SendControlStore } from '../store/send-control.ts';
import { SendRefusedError } from './send-refused.ts';
import type { SendDeps } from './start-send.ts';

export type { ScheduleSpec, Weekday } from '../core/schedule.ts';
export type { ScheduleRun } from '../store/schedule-store.ts';

/** A schedule as the CLI, the console and the API show it. */
export interface ScheduleView {
  readonly id: string;
  readonly spec: ScheduleSpec;
  /** When it runs next (ISO 8601); undefined once a one-off schedule has run. */
  readonly nextRunAt: string | undefined;
  readonly createdBy: string;
  readonly createdAt: string;
  /** Its last occurrence: sent, nothing-new, refused or missed; undefined before the first. */
  readonly lastRun: ScheduleRun | undefined;
}

/** What one occurrence of a schedule did (runDueSchedules' answer, for tests and logs). */
export interface ScheduleRunOutcome extends ScheduleRun {
  readonly scheduleId: string;
}

/** What the schedule use cases work with: the send's, plus the logger and the send event stream (Services has all of it). */
export interface ScheduleDeps extends SendDeps {
  readonly logger: Logger;
  readonly redis: Redis;
  readonly control: SendControlStore;
}

/** The store of schedules over the services' connection, one per connection. */
const stores = new WeakMap<Redis, ScheduleStore>();
function scheduleStore(services: ScheduleDeps): ScheduleStore {
  let store = stores.get(services.redis);
  if (!store) {
    store = new ScheduleStore(services.redis, services.config.redis.prefix);
    stores.set(services.redis, store);
  }
  return store;
}

/**
 * Makes a schedule (`newsletter schedule add`, the console, the API). Refuses, with a message that
 * says what to change: a bad time, day or time zone, a time in the past, a list without
 * subscribers, and for a one-off schedule an unknown issue, a draft, or an issue already sent or
 * already scheduled to that list.
 */
/** A schedule id that names no schedule: the console and the API answer 404. */
export class UnknownScheduleError extends UserFacingError {
  override readonly name = 'UnknownScheduleError';
}

export async function createSchedule(services: ScheduleDeps, input: ScheduleSpec, createdBy: string, now: Date = new Date()): Promise<ScheduleView> {
  const spec = parseScheduleSpec(input, now);
  const store = scheduleStore(services);
  if (spec.kind === 'once') {
    const issue = await loadIssue(services.config.issuesDir, spec.issue);
    if (issue.status !== 'finished') {
      throw new SendRefusedError(
        `Issue "${issue.id}" is a ${issue.status}; only a finished issue can be scheduled. Set "status: finished" in its file when it is ready, then schedule it.`,
      );
    }
    const sent = await services.sends.latestId(issue.id, spec.list);
    if (sent) throw new SendRefusedError(`Issue "${issue.id}" was already sent to list "${spec.list}" (send ${sent}); a schedule never sends it again.`);
    const twin = (await store.all()).find(
      ({ record, dueMs }) => dueMs !== undefined && record.spec.kind === 'once' && record.spec.issue === issue.id && record.spec.list === spec.list,
    );
    if (twin && twin.record.spec.kind === 'once') {
      throw new SendRefusedError(
        `Issue "${issue.id}" is already scheduled for list "${spec.list}" at ${twin.record.spec.at} (schedule ${twin.record.id}); remove that one first to change the time.`,
      );
    }
  }
  if (!(await services.subscribers.listExists(spec.list))) {
    throw new SendRefusedError(`List "${spec.list}" has no subscribers; import some with: newsletter subscribers import <file.csv> --list ${spec.list}`);
  }
  const due = nextOccurrence(spec, now);
  // parseScheduleSpec refuses a one-off time in the past, and a weekly schedule always has a next occurrence.
  if (!due) throw new InvalidScheduleError(`The schedule never runs after ${now.toISOString()}.`);
  const record: ScheduleRecord = {
    id: `sch-${randomBytes(4).toString('hex')}`,
    spec,
    createdBy,
    createdAt: now.toISOString(),
    lastRun: undefined,
    attempt: undefined,
  };
  await store.create(record, due.getTime());
  services.logger.info({ scheduleId: record.id, list: spec.list, nextRunAt: due.toISOString(), createdBy }, 'schedule created');
  return viewOf({ record, dueMs: due.getTime() }, now);
}

/** Every schedule, the next to run first (finished one-off schedules last, newest first). */
export async function listSchedules(services: ScheduleDeps, now: Date = new Date()): Promise<ScheduleView[]> {
  const views = (await scheduleStore(services).all()).map((stored) => viewOf(stored, now));
  const order = (view: ScheduleView) => (view.nextRunAt === undefined ? Number.POSITIVE_INFINITY : Date.parse(view.nextRunAt));
  return views.sort((a, b) => order(a) - order(b) || b.createdAt.localeCompare(a.createdAt) || a.id.localeCompare(b.id));
}

/** Deletes a schedule; an occurrence running right now finishes its send but is not recorded. */
export async function deleteSchedule(services: ScheduleDeps, id: string): Promise<void> {
  if (!(await scheduleStore(services).remove(id))) throw new UnknownScheduleError(`No schedule "${id}"; see the schedules with: newsletter schedule list`);
  services.logger.info({ scheduleId: id }, 'schedule deleted');
}

/**
 * Runs every occurrence due at `now`, each in one process however many call this at once: an
 * occurrence is claimed first, and only its claimer runs it. A refusal (an issue already sent, a
 * list without subscribers) is an outcome, not an error. Anything else releases the occurrence for
 * the next tick and is thrown after the other due schedules have run.
 */
export async function runDueSchedules(services: ScheduleDeps, now: Date, options: { readonly policy?: SchedulePolicy } = {}): Promise<ScheduleRunOutcome[]> {
  const policy = options.policy ?? SCHEDULE_POLICY;
  const store = scheduleStore(services);
  const outcomes: ScheduleRunOutcome[] = [];
  const failures: unknown[] = [];
  for (const { id, dueMs } of await store.due(now.getTime())) {
    const claim = await store.claim(id, dueMs, policy.claimLeaseMs);
    // Another process runs this occurrence (or just did).
    if (!claim) continue;
    // A fan-out of a large list takes a while: keep the claim, so no other process takes the occurrence over.
    const renewal = setInterval(() => {
      claim.renew().catch((error: unknown) => services.logger.warn({ err: error, scheduleId: id }, 'could not renew the claim on a schedule occurrence'));
    }, policy.claimLeaseMs / 3);
    try {
      const outcome = await runOccurrence(services, store, id, dueMs, claim, now, policy);
      if (outcome) outcomes.push(outcome);
    } catch (error) {
      failures.push(error);
    } finally {
      clearInterval(renewal);
      // Safe to let go: a finished occurrence has moved the schedule's due time, which whoever claims next checks first.
      await claim.release();
    }
  }
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, `${failures.length} schedule occurrences failed; they run again on the next tick`);
  return outcomes;
}

/**
 * Runs due schedules in this process every `intervalMs` (the first tick at once, so an occurrence
 * missed while no process was up runs on start; see SchedulePolicy.catchUpWithinMs). `newsletter
 * serve` and `newsletter worker` each start one; the claims make an occurrence run once among them.
 * `stop()` waits for a running tick.
 */
export function startScheduler(
  services: ScheduleDeps,
  options: { clock?: () => Date; intervalMs?: number; policy?: SchedulePolicy } = {},
): { stop(): Promise<void> } {
  const policy = options.policy ?? SCHEDULE_POLICY;
  const clock = options.clock ?? (() => new Date());
  const intervalMs = options.intervalMs ?? policy.tickIntervalMs;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const tick = async () => {
    try {
      await runDueSchedules(services, clock(), { policy });
    } catch (error) {
      // Handled by retrying: the failed occurrences were released and run again on the next tick.
      services.logger.error({ err: error }, 'running the due schedules failed; trying again on the next tick');
    }
  };
  const loop = () => {
    running = tick().finally(() => {
      running = undefined;
      if (!stopped) timer = setTimeout(loop, intervalMs).unref();
    });
  };
  loop();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

/** Runs one claimed occurrence; undefined when it is no longer due (another process ran it, or it was deleted). */
async function runOccurrence(
  services: ScheduleDeps,
  store: ScheduleStore,
  id: string,
  dueMs: number,
  claim: Lease,
  now: Date,
  policy: SchedulePolicy,
): Promise<ScheduleRunOutcome | undefined> {
  const stored = await store.get(id);
  if (stored?.dueMs !== dueMs) return undefined;
  const { record } = stored;
  const { spec } = record;
  const plan = planDueRun(spec, new Date(dueMs), now, policy);
  const next: NextDue = plan.next ? plan.next.getTime() : 'done';
  const base = { at: now.toISOString(), occurrence: plan.occurrence.toISOString() };
  const finish = async (run: ScheduleRun): Promise<ScheduleRunOutcome> => {
    const saved = await store.save({ ...record, lastRun: run, attempt: undefined }, dueMs, claim, next);
    const fields = { scheduleId: id, list: spec.list, occurrence: run.occurrence, issue: run.issue, sendId: run.sendId, saved };
    if (run.outcome === 'sent') services.logger.info(fields, `schedule ${id} sent ${run.issue ?? ''} to ${spec.list}`);
    else services.logger.warn({ ...fields, outcome: run.outcome }, `schedule ${id}: ${run.outcome}: ${run.message ?? ''}`);
    return { scheduleId: id, ...run };
  };

  if (plan.action === 'missed') {
    const hoursLate = Math.floor((now.getTime() - dueMs) / 3_600_000);
    return finish({
      ...base,
      outcome: 'missed',
      ...(spec.kind === 'once' ? { issue: spec.issue } : {}),
      message:
        `No server or worker was running at ${base.occurrence}; ${hoursLate} hours late is past the ${policy.catchUpWithinMs / 3_600_000}-hour catch-up window, so this occurrence was skipped.` +
        (plan.next ? ` Next run: ${plan.next.toISOString()}.` : ''),
    });
  }

  // A process that died mid-send left its choice behind: send the same issue, whatever is newest now.
  const resumed = record.attempt?.dueMs === dueMs ? record.attempt : undefined;
  let issueId = resumed?.issue ?? (spec.kind === 'once' ? spec.issue : undefined);
  if (issueId === undefined) {
    const choice = await newestIssueNotSent(services, spec.list);
    if (choice.issue === undefined) {
      const outcome = await finish({ ...base, outcome: 'nothing-new', message: choice.reason });
      await services.control.publish({
        type: 'schedule.nothing-new',
        sendId: '',
        scheduleId: id,
        list: spec.list,
        occurrence: base.occurrence,
        newestIssue: choice.newest ?? '',
        message: choice.reason,
      });
      return outcome;
    }
    issueId = choice.issue;
  }
  const attempt: ScheduleAttempt = resumed ?? { dueMs, issue: issueId, startedAt: new Date().toISOString() };
  if (!resumed && !(await store.save({ ...record, attempt }, dueMs, claim, 'keep'))) return undefined;

  try {
    // Loaded when a send is due, not with the scheduler: most ticks find nothing due, and the
    // compiler and MJML (~35 MB) need not sit in the server's memory for them.
    const { startSend } = await import('./start-send.ts');
    const started = await startSend(services, { issueId, list: spec.list, resend: false, requestedBy: `schedule:${record.id}` });
    return await finish({ ...base, outcome: 'sent', issue: issueId, sendId: started.sendId });
  } catch (error) {
    if (!(error instanceof UserFacingError)) throw error;
    // Taking over from a process that died after starting the send: the "already sent" is that send.
    const earlier = resumed ? await sendOfAttempt(services, resumed, spec.list) : undefined;
    if (earlier) return finish({ ...base, outcome: 'sent', issue: issueId, sendId: earlier });
    // The record is shown in the console and the API: no server paths or other issues' ids in it.
    return finish({ ...base, outcome: 'refused', issue: issueId, message: messageForOthers(error) });
  }
}

/** The send an earlier attempt of the occurrence started, if it got that far. */
async function sendOfAttempt(services: ScheduleDeps, attempt: ScheduleAttempt, list: string): Promise<string | undefined> {
  const sendId = await services.sends.latestId(attempt.issue, list);
  const send = sendId === undefined ? undefined : await services.sends.get(sendId);
  return send && send.createdAt >= attempt.startedAt ? send.id : undefined;
}

/**
 * What a weekly schedule sends: the newest finished issue (by its dates, then volume), unless it
 * already went to the list. Only the newest counts: an older issue that was skipped stays skipped,
 * since a week-old issue after a newer one would confuse readers. A file that doesn't load is
 * passed over with a warning (it can't be sent either).
 */
async function newestIssueNotSent(services: ScheduleDeps, list: string): Promise<{ issue?: string; newest?: string; reason: string }> {
  const { issuesDir } = services.config;
  const finished: Issue[] = [];
  const ids = await listIssueIds(issuesDir);
  // No issue files at all is a broken setup (a missing or unmounted folder), not a week without a
  // new issue: an error releases the occurrence for the next tick instead of recording nothing-new.
  if (ids.length === 0) throw new Error(`weekly schedule: ISSUES_DIR (${issuesDir}) holds no issue files; is it missing or not mounted?`);
  for (const id of ids) {
    try {
      const issue = await loadIssue(issuesDir, id);
      if (issue.status === 'finished') finished.push(issue);
    } catch (error) {
      if (!(error instanceof UserFacingError)) throw error;
      services.logger.warn({ issue: id, err: error }, `weekly schedule: passing over issue ${id}, whose file does not load`);
    }
  }
  const newest = finished.sort(
    (a, b) => b.dates.to.localeCompare(a.dates.to) || b.dates.from.localeCompare(a.dates.from) || b.volume - a.volume || b.id.localeCompare(a.id),
  )[0];
  if (!newest) return { reason: `No finished issue in ${issuesDir}; nothing was sent to list "${list}".` };
  const sendId = await services.sends.latestId(newest.id, list);
  if (sendId) {
    return {
      newest: newest.id,
      reason: `No new issue: the newest finished issue, ${newest.id}, was already sent to list "${list}" (send ${sendId}); nothing was sent. Finish the next issue (status: finished) before the next run.`,
    };
  }
  return { issue: newest.id, newest: newest.id, reason: '' };
}

/** A stored schedule as shown: when the scheduler will actually run it next, with downtime accounted for. */
function viewOf(stored: StoredSchedule, now: Date): ScheduleView {
  const { record, dueMs } = stored;
  let nextRun: Date | undefined;
  if (dueMs !== undefined) {
    nextRun = new Date(dueMs);
    // Overdue (no process has been up to run it): show what the scheduler will do when one starts.
    if (dueMs <= now.getTime()) {
      const plan = planDueRun(record.spec, nextRun, now);
      nextRun = plan.action === 'run' ? plan.occurrence : plan.next;
    }
  }
  return {
    id: record.id,
    spec: record.spec,
    nextRunAt: nextRun?.toISOString(),
    createdBy: record.createdBy,
    createdAt: record.createdAt,
    lastRun: record.lastRun,
  };
}
