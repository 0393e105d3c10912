import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { createSchedule, listSchedules, runDueSchedules, startScheduler, type ScheduleView } from '../../src/app/schedules.ts';
import { startSend } from '../../src/app/start-send.ts';
import { SCHEDULE_POLICY, type ScheduleSpec } from '../../src/core/schedule.ts';
import { openServices, type Services } from '../../src/services.ts';
import { ScheduleStore } from '../../src/store/schedule-store.ts';
import { runCliInProcess } from '../support/cli.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';

/**
 * Schedules with an injected clock, against the private Redis: a weekly schedule sends the newest
 * finished issue not yet sent to its list, never an issue twice, tells ops when there is nothing
 * new, survives a restart, and runs once however many schedulers tick.
 */

interface IssueFile {
  readonly id: string;
  readonly volume: number;
  readonly from: string;
  readonly to: string;
  readonly status?: 'finished' | 'draft';
}

/** vol-138 rewritten under another id, volume and dates. */
async function writeIssue(dir: string, issue: IssueFile): Promise<void> {
  const source = (await readFile(path.join(PROJECT_ROOT, 'emails/issues/vol-138.yaml'), 'utf8'))
    .replace(/^id: .*$/m, `id: ${issue.id}`)
    .replace(/^status: .*$/m, `status: ${issue.status ?? 'finished'}`)
    .replace(/^volume: .*$/m, `volume: ${issue.volume}`)
    .replace(/^ {2}from: .*$/m, `  from: ${issue.from}`)
    .replace(/^ {2}to: .*$/m, `  to: ${issue.to}`);
  await writeFile(path.join(dir, `${issue.id}.yaml`), source);
}

/** A temporary issues folder, removed when the test finishes. */
async function issuesFolder(issues: readonly IssueFile[]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-schedules-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  for (const issue of issues) await writeIssue(dir, issue);
  return dir;
}

/** Two finished issues, and a newer draft that no schedule may send. */
const ISSUES: readonly IssueFile[] = [
  { id: 'vol-201', volume: 201, from: '2026-05-11', to: '2026-05-17' },
  { id: 'vol-202', volume: 202, from: '2026-05-18', to: '2026-05-24' },
  { id: 'vol-203', volume: 203, from: '2026-05-25', to: '2026-05-31', status: 'draft' },
];

/** Monday 1 June 2026, 08:00 in Berlin (summer time). */
const FIRST_RUN = new Date('2026-06-01T06:00:00.000Z');
const WEEK = 7 * 24 * 3_600_000;
const at = (base: Date, offsetMs: number) => new Date(base.getTime() + offsetMs);
const mondayInBerlin = (list = 'weekly'): ScheduleSpec => ({ kind: 'weekly', list, day: 'monday', time: '08:00', timeZone: 'Europe/Berlin' });

/** A harness (private prefix, cleaned up afterwards) whose issues are `issues`, with three subscribers on `lists`. */
async function setUp(label: string, issues: readonly IssueFile[] = ISSUES, lists: readonly string[] = ['weekly']) {
  const harness = await createHarness(label, { config: { ISSUES_DIR: await issuesFolder(issues) } });
  for (const list of lists) await seedSubscribers(harness.services, 3, list);
  return harness;
}

/** Another process's services over the same Redis prefix, closed when the test finishes (or earlier, by a restart). */
async function anotherProcess(services: Services): Promise<Services> {
  const other = await openServices(services.config);
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= other.close());
  onTestFinished(close);
  return { ...other, close };
}

/** How many sends of an issue went to a list. */
async function sendCount(services: Services, issueId: string, list = 'weekly'): Promise<number> {
  return services.redis.llen(services.sends.keys.listSends(issueId, list));
}

async function scheduleView(services: Services, id: string, now: Date): Promise<ScheduleView> {
  const view = (await listSchedules(services, now)).find((candidate) => candidate.id === id);
  if (!view) throw new Error(`schedule ${id} is missing`);
  return view;
}

describe('a weekly schedule', () => {
  it('sends the newest finished issue not yet sent, then nothing (ops told) until a newer one is finished, never an issue twice', async () => {
    const harness = await setUp('weekly');
    const { services } = harness;
    const schedule = await createSchedule(services, mondayInBerlin(), 'test:editor', at(FIRST_RUN, -3_600_000));
    expect(schedule).toMatchObject({ nextRunAt: FIRST_RUN.toISOString(), createdBy: 'test:editor', lastRun: undefined });

    expect(await runDueSchedules(services, at(FIRST_RUN, -1))).toEqual([]);
    const first = await runDueSchedules(services, at(FIRST_RUN, 10_000));
    expect(first).toEqual([
      expect.objectContaining({ scheduleId: schedule.id, outcome: 'sent', issue: 'vol-202', sendId: 'vol-202.weekly.1', occurrence: FIRST_RUN.toISOString() }),
    ]);
    // The draft vol-203 is newer, but only a finished issue is sent; the older vol-201 is not sent either.
    expect(await sendCount(services, 'vol-203')).toBe(0);
    expect(await sendCount(services, 'vol-201')).toBe(0);
    // The occurrence is done: another tick at the same time runs nothing.
    expect(await runDueSchedules(services, at(FIRST_RUN, 20_000))).toEqual([]);
    expect(await scheduleView(services, schedule.id, at(FIRST_RUN, 20_000))).toMatchObject({
      nextRunAt: at(FIRST_RUN, WEEK).toISOString(),
      lastRun: { outcome: 'sent', issue: 'vol-202', sendId: 'vol-202.weekly.1' },
    });

    const second = await runDueSchedules(services, at(FIRST_RUN, WEEK + 5_000));
    expect(second).toEqual([expect.objectContaining({ scheduleId: schedule.id, outcome: 'nothing-new' })]);
    expect(second[0]?.message).toMatch(/the newest finished issue, vol-202, was already sent to list "weekly" \(send vol-202\.weekly\.1\)/);
    expect(await sendCount(services, 'vol-202')).toBe(1);
    expect(await sendCount(services, 'vol-201')).toBe(0);
    const told = (await services.control.recentEvents()).filter((event) => event.type === 'schedule.nothing-new');
    expect(told).toEqual([
      expect.objectContaining({ scheduleId: schedule.id, list: 'weekly', newestIssue: 'vol-202', occurrence: at(FIRST_RUN, WEEK).toISOString() }),
    ]);
    expect(await scheduleView(services, schedule.id, at(FIRST_RUN, WEEK + 5_000))).toMatchObject({
      nextRunAt: at(FIRST_RUN, 2 * WEEK).toISOString(),
      lastRun: { outcome: 'nothing-new' },
    });

    // The editor finishes the next issue: the week after, it goes out, once.
    await writeIssue(services.config.issuesDir, { id: 'vol-204', volume: 204, from: '2026-06-08', to: '2026-06-14' });
    const third = await runDueSchedules(services, at(FIRST_RUN, 2 * WEEK + 5_000));
    expect(third).toEqual([expect.objectContaining({ outcome: 'sent', issue: 'vol-204', sendId: 'vol-204.weekly.1' })]);
    expect(await sendCount(services, 'vol-202')).toBe(1);
    expect(await sendCount(services, 'vol-204')).toBe(1);
  });

  it('runs an occurrence missed while no process was up once on start, across a restart', async () => {
    const harness = await setUp('restart');
    // The first process: makes the schedule and ticks until shortly before the occurrence, then stops.
    const before = await anotherProcess(harness.services);
    const schedule = await createSchedule(before, mondayInBerlin(), 'test:editor', at(FIRST_RUN, -3_600_000));
    let ticksBefore = 0;
    const first = startScheduler(before, {
      intervalMs: 10,
      clock: () => {
        ticksBefore += 1;
        return at(FIRST_RUN, -60_000);
      },
    });
    await waitFor(() => ticksBefore >= 3, 5_000, 'the first scheduler to tick');
    await first.stop();
    await before.close();
    expect(await sendCount(harness.services, 'vol-202')).toBe(0);

    // Down at 08:00; a new process starts at 10:30 Berlin time (2.5 hours late: within the catch-up window).
    const after = await anotherProcess(harness.services);
    let ticksAfter = 0;
    const second = startScheduler(after, {
      intervalMs: 10,
      clock: () => {
        ticksAfter += 1;
        return at(FIRST_RUN, 2.5 * 3_600_000);
      },
    });
    onTestFinished(() => second.stop());
    const ran = await waitFor(async () => (await scheduleView(after, schedule.id, FIRST_RUN)).lastRun, 10_000, 'the missed occurrence to run');
    const ticksWhenRan = ticksAfter;
    await waitFor(() => ticksAfter >= ticksWhenRan + 5, 5_000, 'five more ticks of the new scheduler');
    await second.stop();
    expect(ran).toMatchObject({ outcome: 'sent', issue: 'vol-202', occurrence: FIRST_RUN.toISOString() });
    expect(await sendCount(after, 'vol-202')).toBe(1);
    expect((await scheduleView(after, schedule.id, at(FIRST_RUN, 3 * 3_600_000))).nextRunAt).toBe(at(FIRST_RUN, WEEK).toISOString());
  });

  it('skips an occurrence 12 hours late or more (missed) and runs the next one', async () => {
    const harness = await setUp('missed');
    const { services } = harness;
    const schedule = await createSchedule(services, mondayInBerlin(), 'test:editor', at(FIRST_RUN, -3_600_000));
    const late = at(FIRST_RUN, SCHEDULE_POLICY.catchUpWithinMs + 60_000);
    // Until a process runs it, the list shows when the scheduler will actually run it.
    expect((await scheduleView(services, schedule.id, late)).nextRunAt).toBe(at(FIRST_RUN, WEEK).toISOString());
    const outcomes = await runDueSchedules(services, late);
    expect(outcomes).toEqual([expect.objectContaining({ scheduleId: schedule.id, outcome: 'missed', occurrence: FIRST_RUN.toISOString() })]);
    expect(outcomes[0]?.message).toMatch(/12 hours late is past the 12-hour catch-up window/);
    expect(await sendCount(services, 'vol-202')).toBe(0);
    expect(await runDueSchedules(services, at(FIRST_RUN, WEEK + 1_000))).toEqual([expect.objectContaining({ outcome: 'sent', issue: 'vol-202' })]);
  });

  it('runs once when two schedulers tick at the same due time: exactly one send per list', async () => {
    const lists = ['weekly', 'digest', 'partners'];
    const harness = await setUp('concurrent', ISSUES, lists);
    const other = await anotherProcess(harness.services);
    for (const list of lists) await createSchedule(harness.services, mondayInBerlin(list), 'test:editor', at(FIRST_RUN, -3_600_000));
    const now = at(FIRST_RUN, 1_000);
    const [mine, theirs] = await Promise.all([runDueSchedules(harness.services, now), runDueSchedules(other, now)]);
    const outcomes = [...mine, ...theirs];
    // Each occurrence ran in exactly one of the two processes (the other found it claimed or done), so no refusal either.
    expect(outcomes).toHaveLength(3);
    expect(outcomes.every((outcome) => outcome.outcome === 'sent' && outcome.issue === 'vol-202')).toBe(true);
    for (const list of lists) expect(await sendCount(harness.services, 'vol-202', list)).toBe(1);
  });

  it('finishes the occurrence of a process that died mid-run with the issue that process chose', async () => {
    const harness = await setUp('takeover');
    const { services } = harness;
    const schedule = await createSchedule(services, mondayInBerlin(), 'test:editor', at(FIRST_RUN, -3_600_000));
    // A process claimed the occurrence, chose vol-201 (say vol-202 was finished just after), and died.
    const store = new ScheduleStore(services.redis, services.config.redis.prefix);
    // A long claim: it holds through the save and the run below however slow they are; its end is simulated below.
    const dying = await store.claim(schedule.id, FIRST_RUN.getTime(), 10 * 60_000);
    const stored = await store.get(schedule.id);
    if (!dying || !stored) throw new Error('the dying process could not claim the occurrence');
    const attempt = { dueMs: FIRST_RUN.getTime(), issue: 'vol-201', startedAt: new Date().toISOString() };
    expect(await store.save({ ...stored.record, attempt }, FIRST_RUN.getTime(), dying, 'keep')).toBe(true);
    // While its claim holds, nobody else runs the occurrence.
    expect(await runDueSchedules(services, at(FIRST_RUN, 1_000))).toEqual([]);
    // The dead process's claim runs out (here: deleted by hand, as its expiry would).
    expect(await services.redis.del(services.sends.keys.scheduleClaim(schedule.id, FIRST_RUN.getTime()))).toBe(1);
    expect(await runDueSchedules(services, at(FIRST_RUN, 2_000))).toEqual([expect.objectContaining({ outcome: 'sent', issue: 'vol-201' })]);
    expect(await sendCount(services, 'vol-202')).toBe(0);
  });
});

describe('a one-off schedule', () => {
  it('sends its issue at its time, then is done and kept with its last run', async () => {
    const harness = await setUp('once');
    const { services } = harness;
    const spec: ScheduleSpec = { kind: 'once', issue: 'vol-201', list: 'weekly', at: FIRST_RUN.toISOString() };
    const schedule = await createSchedule(services, spec, 'test:editor', at(FIRST_RUN, -WEEK));
    expect(schedule.nextRunAt).toBe(FIRST_RUN.toISOString());
    expect(await runDueSchedules(services, at(FIRST_RUN, 30_000))).toEqual([
      expect.objectContaining({ outcome: 'sent', issue: 'vol-201', sendId: 'vol-201.weekly.1' }),
    ]);
    expect(await runDueSchedules(services, at(FIRST_RUN, WEEK))).toEqual([]);
    expect(await scheduleView(services, schedule.id, at(FIRST_RUN, WEEK))).toMatchObject({
      nextRunAt: undefined,
      lastRun: { outcome: 'sent', issue: 'vol-201' },
    });
  });

  it('records a refusal (the issue was sent by hand meanwhile) and never sends it twice', async () => {
    const harness = await setUp('once-refused');
    const { services } = harness;
    const spec: ScheduleSpec = { kind: 'once', issue: 'vol-201', list: 'weekly', at: FIRST_RUN.toISOString() };
    await createSchedule(services, spec, 'test:editor', at(FIRST_RUN, -WEEK));
    await expect(createSchedule(services, spec, 'test:editor', at(FIRST_RUN, -WEEK))).rejects.toThrow(/already scheduled for list "weekly"/);
    await startSend(services, { issueId: 'vol-201', list: 'weekly', resend: false });
    const outcomes = await runDueSchedules(services, at(FIRST_RUN, 1_000));
    expect(outcomes).toEqual([expect.objectContaining({ outcome: 'refused', issue: 'vol-201' })]);
    expect(outcomes[0]?.message).toMatch(/was already sent to list "weekly"/);
    expect(await sendCount(services, 'vol-201')).toBe(1);
    await expect(createSchedule(services, spec, 'test:editor', at(FIRST_RUN, -WEEK))).rejects.toThrow(
      /already sent to list "weekly" \(send vol-201\.weekly\.1\)/,
    );
  });
});

describe('newsletter schedule', () => {
  it('adds, lists and removes schedules, and says what is wrong with a bad one', async () => {
    const harness = await createHarness('schedule-cli');
    const { config } = harness;
    await seedSubscribers(harness.services, 3);

    const weekly = await runCliInProcess(['schedule', 'add', '--list', 'weekly', '--weekly', 'Monday', '--at', '08:00', '--tz', 'Europe/Berlin'], config);
    expect(weekly).toMatchObject({ code: 0, err: '' });
    expect(weekly.out).toMatch(/^schedule sch-[0-9a-f]{8} created: every monday at 08:00 \(Europe\/Berlin\)/);
    const once = await runCliInProcess(['schedule', 'add', '--issue', 'vol-138', '--list', 'weekly', '--at', '2099-12-01T08:00:00Z'], config);
    expect(once).toMatchObject({ code: 0, err: '' });
    expect(once.out).toContain('once at 2099-12-01T08:00:00.000Z: vol-138 to weekly');
    const onceId = /schedule (sch-[0-9a-f]{8}) created/.exec(once.out)?.[1];

    const listed = await runCliInProcess(['schedule', 'list'], config);
    expect(listed.code).toBe(0);
    expect(listed.out).toContain('every monday at 08:00 (Europe/Berlin)');
    expect(listed.out).toContain(`${onceId}  once at 2099-12-01T08:00:00.000Z`);
    const json = await runCliInProcess(['schedule', 'list', '--json'], config);
    const views = JSON.parse(json.out) as ScheduleView[];
    expect(views.map((view) => view.spec.kind).sort()).toEqual(['once', 'weekly']);

    expect(await runCliInProcess(['schedule', 'remove', onceId ?? '?'], config)).toMatchObject({ code: 0, out: `schedule ${onceId} removed` });
    expect(await runCliInProcess(['schedule', 'remove', onceId ?? '?'], config)).toMatchObject({
      code: 1,
      err: `error: No schedule "${onceId}"; see the schedules with: newsletter schedule list`,
    });
    expect(JSON.parse((await runCliInProcess(['schedule', 'list', '--json'], config)).out)).toHaveLength(1);

    const refusals: [string[], RegExp][] = [
      [['--weekly', 'monday', '--at', '08:00', '--tz', 'Mars/Base'], /^error: Unknown time zone "Mars\/Base": give an IANA time zone name/],
      [['--weekly', 'monday', '--at', '8am', '--tz', 'UTC'], /^error: Time "8am" is not a time of day: write HH:MM on a 24-hour clock/],
      [['--weekly', 'monday', '--at', '08:00'], /^error: A weekly schedule needs --tz/],
      [['--issue', 'vol-138', '--at', '2020-01-01T08:00:00Z'], /^error: The time 2020-01-01T08:00:00\.000Z is in the past/],
      [['--issue', 'vol-999', '--at', '2099-12-01T08:00:00Z'], /^error: Unknown issue "vol-999"/],
      [['--issue', 'draft-sample', '--at', '2099-12-01T08:00:00Z'], /^error: Issue "draft-sample" is a draft; only a finished issue can be scheduled/],
      [['--issue', 'vol-138', '--weekly', 'monday', '--at', '08:00'], /^error: Give either --weekly <day>/],
      [['--issue', 'vol-138', '--at', '2099-12-01T08:00:00Z', '--list', 'nobody'], /^error: List "nobody" has no subscribers/],
    ];
    for (const [args, message] of refusals) {
      const result = await runCliInProcess(['schedule', 'add', ...args], config);
      expect(result.code, args.join(' ')).toBe(1);
      expect(result.err, args.join(' ')).toMatch(message);
    }
    // None of the refusals left a schedule behind.
    expect(JSON.parse((await runCliInProcess(['schedule', 'list', '--json'], config)).out)).toHaveLength(1);
  });
});
