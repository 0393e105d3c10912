import { CronExpressionParser } from 'cron-parser';
import { UserFacingError } from './errors.ts';
import { LIST_NAME_SHAPE } from './subscriber.ts';

/**
 * Schedules: "send vol-139 to weekly at 2026-12-01 08:00 UTC", or "every Monday 08:00
 * Europe/Berlin, send the newest finished issue not yet sent to weekly". Pure: what a schedule is,
 * whether one is well formed, and when it next runs. The store keeps them, the app runs them.
 */

/** The days a weekly schedule may run on, as the editor writes them. */
export const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const;
/** One of WEEKDAYS. */
export type Weekday = (typeof WEEKDAYS)[number];

/** What the editor asks for: one issue at one time, or every week the newest issue not yet sent. */
export type ScheduleSpec =
  | {
      readonly kind: 'once';
      /** The issue to send, e.g. vol-138. */
      readonly issue: string;
      readonly list: string;
      /** When, as an ISO 8601 time (stored in UTC, e.g. 2026-12-01T08:00:00.000Z). */
      readonly at: string;
    }
  | {
      readonly kind: 'weekly';
      readonly list: string;
      readonly day: Weekday;
      /** Wall-clock time in `timeZone`, HH:MM on a 24-hour clock. */
      readonly time: string;
      /** An IANA time zone, e.g. Europe/Berlin: the schedule keeps its wall-clock time across DST changes. */
      readonly timeZone: string;
    };

/** How schedules run, as data. */
export interface SchedulePolicy {
  /**
   * How late an occurrence may still run, in ms. After downtime (no server or worker was up at the
   * occurrence's time), an occurrence less late than this runs once on start; a later one is
   * skipped (recorded as `missed`): a Monday-morning issue that arrives on Tuesday evening would
   * surprise readers more than a skipped week surprises the editor.
   * @defaultValue 12 hours
   */
  readonly catchUpWithinMs: number;
  /**
   * How often each process's scheduler looks for due schedules, in ms: an occurrence runs at most
   * this late while a process is up.
   * @defaultValue 15 seconds
   */
  readonly tickIntervalMs: number;
  /**
   * How long the claim on one occurrence holds without renewal, in ms. The process running it
   * renews the claim while it works; one that died lets go after this long, and another process
   * finishes the occurrence (with the same issue).
   * @defaultValue 2 minutes
   */
  readonly claimLeaseMs: number;
}

/** The policy every scheduler runs with unless a test injects another. */
export const SCHEDULE_POLICY: SchedulePolicy = Object.freeze({
  catchUpWithinMs: 12 * 60 * 60_000,
  tickIntervalMs: 15_000,
  claimLeaseMs: 2 * 60_000,
});

/** A schedule the pipeline will not take: a bad time, time zone, day or list name. */
export class InvalidScheduleError extends UserFacingError {
  override readonly name = 'InvalidScheduleError';
}

const TIME_OF_DAY = /^(\d{2}):(\d{2})$/;
const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-](\d{2}):?(\d{2}))?$/i;

/**
 * Checks a schedule as given (a CLI's options, an API body) and returns it normalised: the day in
 * lower case, the time zone as Intl spells it, `at` in UTC. Throws InvalidScheduleError naming
 * what is wrong. `now` decides whether a one-off time is in the past.
 */
export function parseScheduleSpec(input: unknown, now: Date): ScheduleSpec {
  if (typeof input !== 'object' || input === null) throw new InvalidScheduleError('A schedule needs a kind ("once" or "weekly") and a list.');
  const fields = input as Record<string, unknown>;
  const list = text(fields.list);
  if (!list) throw new InvalidScheduleError('A schedule needs a list to send to, e.g. weekly.');
  if (!LIST_NAME_SHAPE.test(list)) throw new InvalidScheduleError(`List "${list}" is not a list name: lower-case letters, digits, - and _ (e.g. weekly).`);
  if (fields.kind === 'once') {
    const issue = text(fields.issue);
    if (!issue) throw new InvalidScheduleError('A one-off schedule needs the issue to send, e.g. vol-138.');
    const at = parseInstant(text(fields.at) ?? '');
    if (at.getTime() <= now.getTime()) {
      throw new InvalidScheduleError(`The time ${at.toISOString()} is in the past (it is now ${now.toISOString()}); give a time in the future.`);
    }
    return { kind: 'once', issue, list, at: at.toISOString() };
  }
  if (fields.kind === 'weekly') {
    const day = text(fields.day)?.toLowerCase();
    if (!day || !isWeekday(day)) throw new InvalidScheduleError(`Day "${text(fields.day) ?? ''}" is not a day of the week: one of ${WEEKDAYS.join(', ')}.`);
    const time = text(fields.time) ?? '';
    const clock = TIME_OF_DAY.exec(time);
    if (!clock || Number(clock[1]) > 23 || Number(clock[2]) > 59) {
      throw new InvalidScheduleError(`Time "${time}" is not a time of day: write HH:MM on a 24-hour clock, e.g. 08:00 or 17:30.`);
    }
    const timeZone = canonicalTimeZone(text(fields.timeZone) ?? '');
    return { kind: 'weekly', list, day, time, timeZone };
  }
  throw new InvalidScheduleError(`Unknown kind of schedule "${String(fields.kind)}": "once" (an issue at a time) or "weekly" (a day and a time).`);
}

/** Whether a text is one of WEEKDAYS. */
export function isWeekday(value: string): value is Weekday {
  return (WEEKDAYS as readonly string[]).includes(value);
}

/**
 * The time zone as Intl spells it (europe/berlin → Europe/Berlin), or InvalidScheduleError when
 * the runtime's time zone database does not know it. An alias (Asia/Calcutta) is kept as written.
 */
export function canonicalTimeZone(timeZone: string): string {
  let resolved: string;
  try {
    if (timeZone.trim() === '') throw new RangeError('empty');
    resolved = new Intl.DateTimeFormat('en-US', { timeZone }).resolvedOptions().timeZone;
  } catch {
    throw new InvalidScheduleError(
      `Unknown time zone "${timeZone}": give an IANA time zone name such as Europe/Berlin, America/New_York or UTC (https://en.wikipedia.org/wiki/List_of_tz_database_time_zones).`,
    );
  }
  return resolved.toLowerCase() === timeZone.toLowerCase() ? resolved : timeZone;
}

/**
 * The first occurrence of a schedule strictly after `after`; undefined when there is none (a
 * one-off schedule whose time has passed).
 *
 * Weekly schedules keep their wall-clock time in their time zone; cron-parser (with luxon) does the
 * DST arithmetic. On the day clocks go forward, a time that does not exist (02:30 in Berlin) runs
 * an hour later (03:30). On the day they go back, a time that happens twice runs at the first
 * (summer-time) instance only: a weekly schedule runs at most once per local day.
 */
export function nextOccurrence(spec: ScheduleSpec, after: Date): Date | undefined {
  if (spec.kind === 'once') {
    const at = new Date(spec.at);
    return at.getTime() > after.getTime() ? at : undefined;
  }
  const expression = weeklyExpression(spec);
  const candidates = CronExpressionParser.parse(expression, { currentDate: after, tz: spec.timeZone });
  const first = candidates.next().toDate();
  // The second instance of a repeated wall-clock time: its previous occurrence is the same local
  // day (weekly occurrences are otherwise 7 days apart), so it would run the schedule twice.
  const previous = CronExpressionParser.parse(expression, { currentDate: first, tz: spec.timeZone }).prev().toDate();
  if (localDate(previous, spec.timeZone) === localDate(first, spec.timeZone)) return candidates.next().toDate();
  return first;
}

/** The last occurrence of a schedule at or before `atOrBefore`; undefined when there is none. */
export function latestOccurrence(spec: ScheduleSpec, atOrBefore: Date): Date | undefined {
  if (spec.kind === 'once') {
    const at = new Date(spec.at);
    return at.getTime() <= atOrBefore.getTime() ? at : undefined;
  }
  // cron-parser's prev() is strictly before its current date: start 1 ms later to include it.
  const expression = weeklyExpression(spec);
  const latest = CronExpressionParser.parse(expression, { currentDate: new Date(atOrBefore.getTime() + 1), tz: spec.timeZone })
    .prev()
    .toDate();
  // A repeated wall-clock time runs at its first instance only (see nextOccurrence).
  const before = CronExpressionParser.parse(expression, { currentDate: latest, tz: spec.timeZone }).prev().toDate();
  return localDate(before, spec.timeZone) === localDate(latest, spec.timeZone) ? before : latest;
}

/** What to do about a schedule whose stored due time has come. */
export type DuePlan =
  /** Run the occurrence at `occurrence`; the next one is due at `next` (none: the schedule is done). */
  | { readonly action: 'run'; readonly occurrence: Date; readonly next: Date | undefined }
  /** The occurrence is too late to run (downtime longer than catchUpWithinMs): skip to `next`. */
  | { readonly action: 'missed'; readonly occurrence: Date; readonly next: Date | undefined };

/**
 * Decides what a due schedule does now. An occurrence less than catchUpWithinMs late runs; a later
 * one is missed, unless a more recent occurrence of the same schedule is itself within the window
 * (a weekly schedule after a week of downtime runs this week's occurrence, once).
 */
export function planDueRun(spec: ScheduleSpec, dueAt: Date, now: Date, policy: Pick<SchedulePolicy, 'catchUpWithinMs'> = SCHEDULE_POLICY): DuePlan {
  const inWindow = (occurrence: Date) => now.getTime() - occurrence.getTime() < policy.catchUpWithinMs;
  if (inWindow(dueAt)) return { action: 'run', occurrence: dueAt, next: nextOccurrence(spec, dueAt) };
  const latest = latestOccurrence(spec, now);
  if (latest && latest.getTime() > dueAt.getTime() && inWindow(latest)) return { action: 'run', occurrence: latest, next: nextOccurrence(spec, latest) };
  return { action: 'missed', occurrence: dueAt, next: nextOccurrence(spec, now) };
}

/** One line about a schedule: "every monday at 08:00 (Europe/Berlin): the newest issue not yet sent to weekly". */
export function describeSchedule(spec: ScheduleSpec): string {
  if (spec.kind === 'once') return `once at ${spec.at}: ${spec.issue} to ${spec.list}`;
  return `every ${spec.day} at ${spec.time} (${spec.timeZone}): the newest finished issue not yet sent to ${spec.list}`;
}

/** The cron expression (minute hour day-of-month month day-of-week) of a weekly schedule. */
function weeklyExpression(spec: Extract<ScheduleSpec, { kind: 'weekly' }>): string {
  const [hour, minute] = spec.time.split(':').map(Number);
  // cron counts days from Sunday = 0; WEEKDAYS starts on Monday.
  const dayOfWeek = (WEEKDAYS.indexOf(spec.day) + 1) % 7;
  return `${minute} ${hour} * * ${dayOfWeek}`;
}

/** The calendar date (YYYY-MM-DD) of an instant in a time zone. */
function localDate(instant: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(instant);
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

/** An ISO 8601 time with an explicit zone; a calendar date that doesn't exist (Feb 31) is refused, not rolled over. */
function parseInstant(value: string): Date {
  const match = ISO_TIME.exec(value);
  if (!match) {
    throw new InvalidScheduleError(`Time "${value}" is not an ISO 8601 time: write it as 2026-12-01T08:00:00Z (UTC) or 2026-12-01T08:00:00+01:00.`);
  }
  const [, year, month, day, hour, minute, second, zone, offsetHours, offsetMinutes] = match;
  if (!zone) {
    throw new InvalidScheduleError(`Time "${value}" has no time zone: add Z for UTC or an offset, e.g. ${value}Z or ${value}+01:00.`);
  }
  const daysInMonth = new Date(Date.UTC(Number(year), Number(month), 0)).getUTCDate();
  const fieldsValid =
    Number(month) >= 1 &&
    Number(month) <= 12 &&
    Number(day) >= 1 &&
    Number(day) <= daysInMonth &&
    Number(hour) <= 23 &&
    Number(minute) <= 59 &&
    Number(second ?? 0) <= 59 &&
    Number(offsetHours ?? 0) <= 23 &&
    Number(offsetMinutes ?? 0) <= 59;
  const at = new Date(value);
  if (!fieldsValid || Number.isNaN(at.getTime())) throw new InvalidScheduleError(`Time "${value}" is not a date and time that exists.`);
  return at;
}
