import { z } from 'zod';
import { WEEKDAYS, type ScheduleSpec } from '../core/schedule.ts';
import { takeLease, type Lease } from './lease.ts';
import { parseJson, parseRecord } from './records.ts';
import { runScript } from './scripts.ts';
import { RedisStore } from './redis-store.ts';

/** How one occurrence of a schedule ended. */
export const SCHEDULE_RUN_OUTCOMES = ['sent', 'nothing-new', 'refused', 'missed'] as const;
/** One of SCHEDULE_RUN_OUTCOMES. */
export type ScheduleRunOutcomeKind = (typeof SCHEDULE_RUN_OUTCOMES)[number];

/** The last run of a schedule, as recorded. */
export interface ScheduleRun {
  /** When it ran (ISO 8601). */
  readonly at: string;
  /** The occurrence it ran for (ISO 8601): the scheduled time, which `at` follows by a tick or a restart. */
  readonly occurrence: string;
  readonly outcome: ScheduleRunOutcomeKind;
  readonly sendId?: string;
  readonly issue?: string;
  /** Why nothing was sent (refused, missed, nothing-new). */
  readonly message?: string;
}

/**
 * An occurrence being run: which issue it chose, written before the send starts. A process that
 * dies mid-send leaves it behind, and the process that takes the occurrence over sends the same
 * issue (start-send resumes an interrupted fan-out) instead of choosing again.
 */
export interface ScheduleAttempt {
  /** The due time (ms) of the occurrence. */
  readonly dueMs: number;
  readonly issue: string;
  readonly startedAt: string;
}

/** A schedule as stored. */
export interface ScheduleRecord {
  readonly id: string;
  readonly spec: ScheduleSpec;
  /** Who made it: an account's name, or "cli:<user>". */
  readonly createdBy: string;
  readonly createdAt: string;
  readonly lastRun: ScheduleRun | undefined;
  readonly attempt: ScheduleAttempt | undefined;
}

/** A stored schedule with its next due time (undefined once a one-off schedule has run). */
export interface StoredSchedule {
  readonly record: ScheduleRecord;
  readonly dueMs: number | undefined;
}

/** Where a schedule's occurrence leaves it: due again at a time (ms), done, or still due (a run in progress). */
export type NextDue = number | 'done' | 'keep';

const specSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('once'), issue: z.string().min(1), list: z.string().min(1), at: z.iso.datetime() }),
  z.object({
    kind: z.literal('weekly'),
    list: z.string().min(1),
    day: z.enum(WEEKDAYS),
    time: z.string().regex(/^\d{2}:\d{2}$/),
    timeZone: z.string().min(1),
  }),
]);

const recordSchema = z.object({
  id: z.string().min(1),
  spec: specSchema,
  createdBy: z.string(),
  createdAt: z.string(),
  lastRun: z
    .object({
      at: z.string(),
      occurrence: z.string(),
      outcome: z.enum(SCHEDULE_RUN_OUTCOMES),
      sendId: z.string().optional(),
      issue: z.string().optional(),
      message: z.string().optional(),
    })
    .optional(),
  attempt: z.object({ dueMs: z.number().int(), issue: z.string().min(1), startedAt: z.string() }).optional(),
});

/** How many due schedules one tick takes at most; the rest are due on the next tick. */
const DUE_PAGE = 100;

/**
 * Schedules in Redis: one hash of records by id, a sorted set of the ones still to run scored by
 * when, and a claim per occurrence, so an occurrence runs in one process however many tick.
 */
export class ScheduleStore extends RedisStore {
  /** Stores a new schedule, due at `dueMs`. */
  async create(record: ScheduleRecord, dueMs: number): Promise<void> {
    const replies = await this.redis.multi().hset(this.keys.schedules, record.id, JSON.stringify(record)).zadd(this.keys.scheduleDue, dueMs, record.id).exec();
    for (const [error] of replies ?? []) if (error) throw error;
  }

  /** Every schedule with its due time, in one transaction (a handful: schedules are made by hand). */
  async all(): Promise<StoredSchedule[]> {
    const replies = (await this.redis.multi().hgetall(this.keys.schedules).zrange(this.keys.scheduleDue, '0', '-1', 'WITHSCORES').exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const hash = (replies[0]?.[1] ?? {}) as Record<string, string>;
    const flat = (replies[1]?.[1] ?? []) as string[];
    const due = new Map<string, number>();
    for (let index = 0; index + 1 < flat.length; index += 2) due.set(flat[index]!, Number(flat[index + 1]));
    return Object.entries(hash).map(([id, json]) => ({ record: this.parse(id, json), dueMs: due.get(id) }));
  }

  /** One schedule with its due time; undefined when there is no such schedule. */
  async get(id: string): Promise<StoredSchedule | undefined> {
    const replies = (await this.redis.multi().hget(this.keys.schedules, id).zscore(this.keys.scheduleDue, id).exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    const json = replies[0]?.[1] as string | null | undefined;
    if (json === null || json === undefined) return undefined;
    const score = replies[1]?.[1] as string | null | undefined;
    return { record: this.parse(id, json), dueMs: score === null || score === undefined ? undefined : Number(score) };
  }

  /** Deletes a schedule; false when there was none. A run in progress finishes its send but records nothing. */
  async remove(id: string): Promise<boolean> {
    const replies = (await this.redis.multi().hdel(this.keys.schedules, id).zrem(this.keys.scheduleDue, id).exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
    return replies[0]?.[1] === 1;
  }

  /** The schedules due at or before `nowMs`, earliest first, with their due times. */
  async due(nowMs: number): Promise<{ id: string; dueMs: number }[]> {
    const flat = await this.redis.zrangebyscore(this.keys.scheduleDue, '-inf', String(nowMs), 'WITHSCORES', 'LIMIT', 0, DUE_PAGE);
    const result: { id: string; dueMs: number }[] = [];
    for (let index = 0; index + 1 < flat.length; index += 2) result.push({ id: flat[index]!, dueMs: Number(flat[index + 1]) });
    return result;
  }

  /**
   * Claims one occurrence (a schedule at one due time) for `leaseMs`, or returns undefined when
   * another process holds it. The holder renews it while it works; one that dies lets go.
   */
  async claim(id: string, dueMs: number, leaseMs: number): Promise<Lease | undefined> {
    return takeLease(this.redis, this.keys.scheduleClaim(id, dueMs), leaseMs);
  }

  /**
   * Saves a schedule's record and moves its due time (save-schedule-run.lua), only while `claim`
   * still holds the occurrence due at `dueMs`; false when it no longer does (the schedule was
   * deleted, or another process finished the occurrence after this one's claim ran out).
   */
  async save(record: ScheduleRecord, dueMs: number, claim: Lease, next: NextDue): Promise<boolean> {
    const saved = await runScript(
      this.redis,
      'saveScheduleRun',
      { schedules: this.keys.schedules, due: this.keys.scheduleDue, claim: this.keys.scheduleClaim(record.id, dueMs) },
      { scheduleId: record.id, dueMs, token: claim.token, record: JSON.stringify(record), next: String(next) },
    );
    return saved === 1;
  }

  private parse(id: string, json: string): ScheduleRecord {
    const parsed = parseRecord(recordSchema, parseJson(json), `The record of schedule ${id}`);
    return { ...parsed, lastRun: parsed.lastRun, attempt: parsed.attempt };
  }
}
