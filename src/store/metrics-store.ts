import { z } from 'zod';
import { CorruptRecordError, parseRecord } from './records.ts';
import { RedisStore } from './redis-store.ts';

/** One process's metrics report, as stored (keys.ts `metricsProcess`). */
export interface ProcessReport {
  readonly role: string;
  readonly pid: number;
  readonly host: string;
  readonly reportedAt: string;
  /** The process's metrics: its registry's getMetricsAsJSON(), as JSON. */
  readonly metrics: string;
}

const processReportSchema = z.object({
  role: z.string().min(1),
  pid: z.coerce.number().int().positive(),
  host: z.string(),
  reportedAt: z.string(),
  metrics: z.string(),
});

/**
 * The metrics every long-running process reports through Redis, so that one scrape of the server
 * sees them all: a hash per process that expires unless renewed, and an index of the processes
 * scored by when their report expires (a process that died drops out of it by itself).
 */
export class MetricsStore extends RedisStore {
  /** Writes this process's report; it expires after `ttlMs` unless written again. */
  async saveReport(processId: string, report: ProcessReport, ttlMs: number): Promise<void> {
    const nowMs = Date.now();
    const replies =
      (await this.redis
        .multi()
        .hset(this.keys.metricsProcess(processId), { ...report, pid: String(report.pid) })
        .pexpire(this.keys.metricsProcess(processId), ttlMs)
        .zadd(this.keys.metricsProcesses, nowMs + ttlMs, processId)
        .zremrangebyscore(this.keys.metricsProcesses, '-inf', nowMs)
        .exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
  }

  /** Forgets this process's report (a clean shutdown): it leaves the scrape at once. */
  async removeReport(processId: string): Promise<void> {
    const replies = (await this.redis.multi().del(this.keys.metricsProcess(processId)).zrem(this.keys.metricsProcesses, processId).exec()) ?? [];
    for (const [error] of replies) if (error) throw error;
  }

  /**
   * The reports not expired yet, by process id; one that can't be read (a process of another
   * version, say) comes as its CorruptRecordError, so the caller can leave it out and say so.
   */
  async liveReports(): Promise<Map<string, ProcessReport | CorruptRecordError>> {
    const ids = await this.redis.zrangebyscore(this.keys.metricsProcesses, Date.now(), '+inf');
    const reports = new Map<string, ProcessReport | CorruptRecordError>();
    if (ids.length === 0) return reports;
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.metricsProcess(id));
    const replies = (await pipeline.exec()) ?? [];
    ids.forEach((id, index) => {
      const [error, hash] = replies[index] ?? [null, {}];
      if (error) throw error;
      // Expired between the two reads: gone, not corrupt.
      if (Object.keys(hash as object).length === 0) return;
      try {
        reports.set(id, parseRecord(processReportSchema, hash, `The metrics report of process ${id}`));
      } catch (error) {
        if (!(error instanceof CorruptRecordError)) throw error;
        reports.set(id, error);
      }
    });
    return reports;
  }
}
