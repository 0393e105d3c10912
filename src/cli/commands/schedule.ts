import { createSchedule, deleteSchedule, listSchedules, type ScheduleRun, type ScheduleSpec, type ScheduleView } from '../../app/schedules.ts';
import { InvalidScheduleError, describeSchedule, type Weekday } from '../../core/schedule.ts';
import type { CliContext } from '../context.ts';
import { operator, printable } from '../format.ts';

/** The options of `newsletter schedule add`. */
export interface ScheduleAddOptions {
  readonly list: string;
  /** A one-off schedule: the issue to send at `at`. */
  readonly issue?: string;
  /** A weekly schedule: the day; `at` is then the time of day (HH:MM) in `tz`. */
  readonly weekly?: string;
  readonly at?: string;
  readonly tz?: string;
}

/**
 * `newsletter schedule add`: `--issue vol-138 --at 2026-12-01T08:00:00Z` sends one issue at one
 * time; `--weekly monday --at 08:00 --tz Europe/Berlin` sends, every week, the newest finished issue
 * not yet sent to the list.
 */
export async function scheduleAddCommand(cli: CliContext, options: ScheduleAddOptions): Promise<void> {
  const spec = specOf(options);
  const view = await cli.withServices((services) => createSchedule(services, spec, operator()));
  cli.io.out(`schedule ${view.id} created: ${describeSchedule(view.spec)}`);
  cli.io.out(`  next run: ${view.nextRunAt ?? '(none)'}; it runs while a \`newsletter serve\` or \`newsletter worker\` process is up`);
}

/** `newsletter schedule list [--json]`: every schedule with its next run and how its last run ended. */
export async function scheduleListCommand(cli: CliContext, options: { json?: boolean }): Promise<void> {
  const views = await cli.withServices((services) => listSchedules(services));
  if (options.json) {
    cli.io.out(JSON.stringify(views, null, 2));
    return;
  }
  if (views.length === 0) {
    cli.io.out('no schedules; add one with: newsletter schedule add --weekly monday --at 08:00 --tz Europe/Berlin --list weekly');
    return;
  }
  for (const view of views) cli.io.out(describeView(view));
}

/** `newsletter schedule remove <id>`. */
export async function scheduleRemoveCommand(cli: CliContext, id: string): Promise<void> {
  await cli.withServices((services) => deleteSchedule(services, id));
  cli.io.out(`schedule ${id} removed`);
}

/** The spec the options describe; the use case checks the values themselves. */
function specOf(options: ScheduleAddOptions): ScheduleSpec {
  if (options.weekly !== undefined && options.issue !== undefined) {
    throw new InvalidScheduleError(
      'Give either --weekly <day> (every week, the newest finished issue not yet sent) or --issue <id> (one issue, once), not both.',
    );
  }
  if (options.at === undefined) {
    throw new InvalidScheduleError(
      options.weekly === undefined ? 'Give --at <ISO time>, e.g. --at 2026-12-01T08:00:00Z.' : 'Give --at <HH:MM>, the time of day in --tz, e.g. --at 08:00.',
    );
  }
  if (options.weekly !== undefined) {
    if (options.tz === undefined) throw new InvalidScheduleError('A weekly schedule needs --tz <IANA time zone>, e.g. --tz Europe/Berlin or --tz UTC.');
    // Checked (and lower-cased) by parseScheduleSpec, with a message naming the days.
    return { kind: 'weekly', list: options.list, day: options.weekly as Weekday, time: options.at, timeZone: options.tz };
  }
  if (options.issue === undefined) {
    throw new InvalidScheduleError('Give --issue <id> --at <ISO time> (one issue, once) or --weekly <day> --at <HH:MM> --tz <zone> (every week).');
  }
  if (options.tz !== undefined) {
    throw new InvalidScheduleError(
      `--tz is for weekly schedules; give the offset in --at instead, e.g. --at ${options.at.replace(/(Z|[+-]\d{2}:?\d{2})$/i, '')}+01:00.`,
    );
  }
  return { kind: 'once', issue: options.issue, list: options.list, at: options.at };
}

function describeView(view: ScheduleView): string {
  const lines = [`${view.id}  ${describeSchedule(view.spec)}`, `  next run  ${view.nextRunAt ?? '(none: done)'}`];
  if (view.lastRun) lines.push(`  last run  ${describeRun(view.lastRun)}`);
  lines.push(`  created   ${view.createdAt} by ${printable(view.createdBy)}`);
  return lines.join('\n');
}

function describeRun(run: ScheduleRun): string {
  const head = `${run.occurrence} (ran ${run.at}): ${run.outcome}`;
  if (run.outcome === 'sent') return `${head} ${run.issue ?? ''}, send ${run.sendId ?? '?'}`;
  return `${head}${run.issue ? ` ${run.issue}` : ''}${run.message ? `: ${printable(run.message)}` : ''}`;
}
