import { describe, expect, it } from 'vitest';
import {
  InvalidScheduleError,
  latestOccurrence,
  nextOccurrence,
  parseScheduleSpec,
  planDueRun,
  type ScheduleSpec,
  type Weekday,
} from '../../src/core/schedule.ts';

const NOW = new Date('2026-06-01T12:00:00Z');
const HOUR = 3_600_000;

function weekly(day: Weekday, time: string, timeZone: string): ScheduleSpec {
  return { kind: 'weekly', list: 'weekly', day, time, timeZone };
}

/** The first `count` occurrences after `from`, each found from the one before, as the scheduler does. */
function occurrences(spec: ScheduleSpec, from: string, count: number): string[] {
  const found: string[] = [];
  let after = new Date(from);
  for (let index = 0; index < count; index += 1) {
    const next = nextOccurrence(spec, after);
    if (!next) break;
    found.push(next.toISOString());
    after = next;
  }
  return found;
}

describe('nextOccurrence of a weekly schedule keeps its wall-clock time across DST changes', () => {
  it('Europe/Berlin, Monday 08:00: 07:00 UTC in winter, 06:00 UTC after the clocks go forward (29 March 2026) and back (25 October 2026)', () => {
    const spec = weekly('monday', '08:00', 'Europe/Berlin');
    expect(occurrences(spec, '2026-03-20T00:00:00Z', 3)).toEqual(['2026-03-23T07:00:00.000Z', '2026-03-30T06:00:00.000Z', '2026-04-06T06:00:00.000Z']);
    expect(occurrences(spec, '2026-10-15T00:00:00Z', 2)).toEqual(['2026-10-19T06:00:00.000Z', '2026-10-26T07:00:00.000Z']);
  });

  it('America/New_York, Monday 08:00: 13:00 UTC in winter, 12:00 UTC after 8 March 2026, 13:00 UTC again after 1 November 2026', () => {
    const spec = weekly('monday', '08:00', 'America/New_York');
    expect(occurrences(spec, '2026-03-01T00:00:00Z', 2)).toEqual(['2026-03-02T13:00:00.000Z', '2026-03-09T12:00:00.000Z']);
    expect(occurrences(spec, '2026-10-25T00:00:00Z', 2)).toEqual(['2026-10-26T12:00:00.000Z', '2026-11-02T13:00:00.000Z']);
  });

  it('runs a wall-clock time that does not exist (02:30 when the clocks go forward) an hour later, once', () => {
    expect(occurrences(weekly('sunday', '02:30', 'Europe/Berlin'), '2026-03-27T00:00:00Z', 2)).toEqual([
      // 03:30 CEST: 02:30 never happened that night.
      '2026-03-29T01:30:00.000Z',
      '2026-04-05T00:30:00.000Z',
    ]);
    expect(occurrences(weekly('sunday', '02:30', 'America/New_York'), '2026-03-06T00:00:00Z', 2)).toEqual([
      '2026-03-08T07:30:00.000Z',
      '2026-03-15T06:30:00.000Z',
    ]);
  });

  it('runs a wall-clock time that happens twice (when the clocks go back) once, at its first instance', () => {
    const berlin = weekly('sunday', '02:30', 'Europe/Berlin');
    // 02:30 CEST (00:30 UTC), not again at 02:30 CET (01:30 UTC).
    expect(occurrences(berlin, '2026-10-24T00:00:00Z', 2)).toEqual(['2026-10-25T00:30:00.000Z', '2026-11-01T01:30:00.000Z']);
    // Looked for between the two instances (a schedule made at 02:45 CEST that night): not that day.
    expect(nextOccurrence(berlin, new Date('2026-10-25T00:45:00Z'))?.toISOString()).toBe('2026-11-01T01:30:00.000Z');
    const newYork = weekly('sunday', '01:30', 'America/New_York');
    expect(occurrences(newYork, '2026-10-31T00:00:00Z', 2)).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-08T06:30:00.000Z']);
  });

  it('is strictly after the given time, so an occurrence is never found twice', () => {
    const spec = weekly('monday', '08:00', 'UTC');
    expect(nextOccurrence(spec, new Date('2026-06-01T08:00:00Z'))?.toISOString()).toBe('2026-06-08T08:00:00.000Z');
    expect(nextOccurrence(spec, new Date('2026-06-01T07:59:59.999Z'))?.toISOString()).toBe('2026-06-01T08:00:00.000Z');
  });
});

describe('a one-off schedule', () => {
  const once: ScheduleSpec = { kind: 'once', issue: 'vol-138', list: 'weekly', at: '2026-12-01T08:00:00.000Z' };

  it('occurs at its time, and never after it', () => {
    expect(nextOccurrence(once, NOW)?.toISOString()).toBe('2026-12-01T08:00:00.000Z');
    expect(nextOccurrence(once, new Date('2026-12-01T08:00:00Z'))).toBeUndefined();
    expect(latestOccurrence(once, new Date('2026-12-02T00:00:00Z'))?.toISOString()).toBe('2026-12-01T08:00:00.000Z');
    expect(latestOccurrence(once, NOW)).toBeUndefined();
  });
});

describe('planDueRun: an occurrence after downtime', () => {
  const spec = weekly('monday', '08:00', 'UTC');
  const due = new Date('2026-06-01T08:00:00Z');

  it('runs an occurrence less than 12 hours late, and moves on to the next week', () => {
    const plan = planDueRun(spec, due, new Date(due.getTime() + 11 * HOUR));
    expect(plan).toEqual({ action: 'run', occurrence: due, next: new Date('2026-06-08T08:00:00Z') });
  });

  it('skips an occurrence 12 hours late or more (missed), to the next one after now', () => {
    const plan = planDueRun(spec, due, new Date(due.getTime() + 12 * HOUR));
    expect(plan).toEqual({ action: 'missed', occurrence: due, next: new Date('2026-06-08T08:00:00Z') });
  });

  it('after a week of downtime, runs the latest occurrence once if it is within the window', () => {
    const now = new Date('2026-06-08T10:00:00Z');
    expect(planDueRun(spec, due, now)).toEqual({ action: 'run', occurrence: new Date('2026-06-08T08:00:00Z'), next: new Date('2026-06-15T08:00:00Z') });
  });

  it('a one-off schedule too late is missed for good', () => {
    const once: ScheduleSpec = { kind: 'once', issue: 'vol-138', list: 'weekly', at: due.toISOString() };
    expect(planDueRun(once, due, new Date(due.getTime() + 13 * HOUR))).toEqual({ action: 'missed', occurrence: due, next: undefined });
    expect(planDueRun(once, due, new Date(due.getTime() + HOUR))).toEqual({ action: 'run', occurrence: due, next: undefined });
  });

  it('takes the window from the policy', () => {
    expect(planDueRun(spec, due, new Date(due.getTime() + 2 * HOUR), { catchUpWithinMs: HOUR }).action).toBe('missed');
  });
});

describe('parseScheduleSpec', () => {
  it('normalises the day, the time zone and a one-off time', () => {
    expect(parseScheduleSpec({ kind: 'weekly', list: 'weekly', day: 'Monday', time: '08:00', timeZone: 'europe/berlin' }, NOW)).toEqual({
      kind: 'weekly',
      list: 'weekly',
      day: 'monday',
      time: '08:00',
      timeZone: 'Europe/Berlin',
    });
    expect(parseScheduleSpec({ kind: 'once', issue: 'vol-138', list: 'weekly', at: '2026-12-01T08:00:00+01:00' }, NOW)).toEqual({
      kind: 'once',
      issue: 'vol-138',
      list: 'weekly',
      at: '2026-12-01T07:00:00.000Z',
    });
  });

  it.each([
    [{ kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: 'Mars/Olympus_Mons' }, /Unknown time zone "Mars\/Olympus_Mons"/],
    [{ kind: 'weekly', list: 'weekly', day: 'monday', time: '08:00', timeZone: '' }, /Unknown time zone ""/],
    [{ kind: 'weekly', list: 'weekly', day: 'monday', time: '8am', timeZone: 'UTC' }, /Time "8am" is not a time of day: write HH:MM/],
    [{ kind: 'weekly', list: 'weekly', day: 'monday', time: '24:00', timeZone: 'UTC' }, /Time "24:00" is not a time of day/],
    [{ kind: 'weekly', list: 'weekly', day: 'montag', time: '08:00', timeZone: 'UTC' }, /Day "montag" is not a day of the week: one of monday, tuesday/],
    [{ kind: 'weekly', list: 'Weekly List', day: 'monday', time: '08:00', timeZone: 'UTC' }, /List "Weekly List" is not a list name/],
    [
      { kind: 'once', issue: 'vol-138', list: 'weekly', at: '2026-01-01T08:00:00Z' },
      /The time 2026-01-01T08:00:00.000Z is in the past \(it is now 2026-06-01T12:00:00.000Z\)/,
    ],
    [{ kind: 'once', issue: 'vol-138', list: 'weekly', at: '2026-12-01T08:00' }, /has no time zone: add Z for UTC or an offset/],
    [{ kind: 'once', issue: 'vol-138', list: 'weekly', at: '2026-02-31T08:00:00Z' }, /is not a date and time that exists/],
    [{ kind: 'once', issue: 'vol-138', list: 'weekly', at: 'next tuesday' }, /is not an ISO 8601 time/],
    [{ kind: 'once', list: 'weekly', at: '2026-12-01T08:00:00Z' }, /needs the issue to send/],
    [{ kind: 'daily', list: 'weekly' }, /Unknown kind of schedule "daily"/],
  ])('refuses %j', (input, message) => {
    expect(() => parseScheduleSpec(input, NOW)).toThrow(InvalidScheduleError);
    expect(() => parseScheduleSpec(input, NOW)).toThrow(message);
  });
});
