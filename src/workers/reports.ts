import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { applyReport, type EventDeps, type EventOutcome } from '../app/delivery-events.ts';
import { connectionErrorLogger } from '../store/connection.ts';
import { redisKeys } from '../store/keys.ts';
import { REPORT_QUEUE_NAME, type ReceivedReport } from '../store/report-inbox.ts';

/** Reports one worker process applies at once: they are few, and each is a handful of writes. */
const REPORT_CONCURRENCY = 4;

/**
 * Applies the reports whose intake recorded them but could not apply them itself (it died, or
 * Redis failed in the middle): see ReportInbox. Runs inside every send worker process, so a
 * deployment that sends also applies what it was left.
 */
export function startReportWorker(deps: EventDeps, blocking: Redis): Worker<ReceivedReport, number> {
  const worker = new Worker<ReceivedReport, number>(
    REPORT_QUEUE_NAME,
    async (job) => {
      const outcomes: EventOutcome[] = await applyReport(deps, job.data);
      deps.logger.info({ jobId: job.id, channel: job.data.channel, events: outcomes.length }, 'recorded report applied by the report worker');
      return outcomes.length;
    },
    { connection: blocking, prefix: redisKeys(deps.config.redis.prefix).bullPrefix, concurrency: REPORT_CONCURRENCY },
  );
  worker.on('error', connectionErrorLogger(deps.logger, 'report worker'));
  return worker;
}
