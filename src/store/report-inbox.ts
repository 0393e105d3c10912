import { createHash } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ReportedEvent } from '../core/delivery-event.ts';
import { redisKeys } from './keys.ts';

/** The BullMQ queue that holds every report received until it has been applied. */
export const REPORT_QUEUE_NAME = 'delivery-reports';

/** A report as received, before attribution: what the inbox keeps, and what the report worker applies. */
export interface ReceivedReport {
  /** Where it came in: `mail` (ingest, bounce server), a webhook's provider, or `smtp` (our own SMTP session's rejection). */
  readonly channel: 'mail' | 'ses' | 'mailgun' | 'postmark' | 'sendgrid' | 'webhook' | 'smtp';
  readonly receivedAt: string;
  readonly events: readonly ReportedEvent[];
  /** The report as received (cut to a size worth keeping), kept with an event that can't be attributed. */
  readonly raw: string;
}

/**
 * The durable record of received reports. Every intake (ingest, the bounce server, the webhooks)
 * adds the report here before it acknowledges anything, as a job delayed by `retryDelayMs`, then
 * applies it at once and removes the job. If the process dies or Redis fails in between, the job
 * stays, and a report worker applies it when the delay is over: nothing received is lost, and
 * since applying is idempotent (event ids), applying twice changes nothing.
 */
export class ReportInbox {
  readonly queue: Queue<ReceivedReport>;

  constructor(connection: Redis, prefix: string) {
    this.queue = new Queue<ReceivedReport>(REPORT_QUEUE_NAME, {
      connection,
      prefix: redisKeys(prefix).bullPrefix,
      defaultJobOptions: {
        attempts: 10,
        backoff: { type: 'exponential', delay: 10_000 },
        removeOnComplete: { age: 24 * 3600, count: 10_000 },
        // A report that could never be applied is kept for a month, for ops to look at.
        removeOnFail: { age: 30 * 24 * 3600 },
      },
    });
  }

  /**
   * Records a report; resolves once Redis has it. The job id derives from the content, so the same
   * report received twice while the first is still held is recorded once.
   */
  async record(report: ReceivedReport, retryDelayMs: number): Promise<string> {
    const digest = createHash('sha256')
      .update(report.channel)
      .update('\0')
      .update(JSON.stringify(report.events.map((event) => [event.source, event.id])))
      .update('\0')
      .update(report.events.length === 0 ? report.raw : '')
      .digest('hex');
    const jobId = `report.${digest}`;
    await this.queue.add('apply', report, { jobId, delay: retryDelayMs });
    return jobId;
  }

  /** Forgets a report once it is applied. A job the report worker is running already is left to it. */
  async applied(jobId: string): Promise<void> {
    await this.queue.remove(jobId).catch(() => 0);
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
