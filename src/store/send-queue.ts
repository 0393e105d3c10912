import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config/index.ts';
import { redisKeys } from './keys.ts';

/** The BullMQ queue that holds one job per recipient of a send. */
export const SEND_QUEUE_NAME = 'newsletter-send';

/** Job data: ids only. The worker reloads the subscriber and the compiled issue. */
export interface SendJobData {
  readonly sendId: string;
  readonly subscriberId: string;
  /**
   * The recipient domain's send slot (Redis time, ms) this job reserved before it was put off
   * until then: when it comes back it is not charged the domain's budget again.
   */
  readonly paceSlot?: number;
  /** A claim on the recipient whose worker seemed dead at the first look; taken over if it still is at the next. */
  readonly suspectClaim?: string;
  /**
   * When the job was last put off until (ms since the epoch): it went back to the wait list then
   * (or sooner, if resume promoted it). BullMQ keeps no trace of it once the job waits again, and
   * the queue metric measures a job's wait from it (app/metrics.ts).
   */
  readonly putOffUntil?: number;
}

/**
 * Deterministic, so a repeated fan-out adds nothing twice (BullMQ ignores an id it already holds).
 * Send ids contain dots and letters, so the id is never all digits and has no ':'.
 */
export function sendJobId(sendId: string, subscriberId: string): string {
  return `${sendId}.${subscriberId}`;
}

/**
 * How long BullMQ keeps finished jobs. The per-recipient record of each send is the source of
 * truth; the queue only keeps recent history for ops: a day of completed jobs (at most 10,000) and
 * two weeks of failed ones.
 */
const JOB_RETENTION = {
  completedAgeS: 24 * 3600,
  completedMaxCount: 10_000,
  failedAgeS: 14 * 24 * 3600,
} as const;

/** The jobs that deliver a send to these recipients; `jobId` picks each job's id. */
export function deliveryJobs(sendId: string, subscriberIds: readonly string[], jobId: (subscriberId: string) => string) {
  return subscriberIds.map((subscriberId) => ({ name: 'deliver', data: { sendId, subscriberId }, opts: { jobId: jobId(subscriberId) } }));
}

/**
 * The job id of a later round for a recipient (`newsletter send --retry-failed`): the failed job
 * of the first round may still be kept under the plain id, and re-adding that id would be a no-op.
 */
export function retryJobId(sendId: string, subscriberId: string, round: number): string {
  return `${sendJobId(sendId, subscriberId)}.r${round}`;
}

/**
 * The job id that gives a recipient of a stuck send a job again (`--retry-failed`): `tag` is new
 * on every repair, since the lost job's id may still be held by a failed job.
 */
export function repairJobId(sendId: string, subscriberId: string, tag: string): string {
  return `${sendJobId(sendId, subscriberId)}.${tag}`;
}

/** Retry and retention policy of send jobs, from config. */
export function sendJobOptions(send: Config['send']): JobsOptions {
  return {
    attempts: send.maxAttempts,
    backoff: { type: 'exponential', delay: send.backoffMs },
    removeOnComplete: { age: JOB_RETENTION.completedAgeS, count: JOB_RETENTION.completedMaxCount },
    removeOnFail: { age: JOB_RETENTION.failedAgeS },
  };
}

/** The send queue under this config's key prefix, with the configured retry policy as job defaults. */
export function createSendQueue(connection: Redis, config: Config): Queue<SendJobData> {
  return new Queue<SendJobData>(SEND_QUEUE_NAME, {
    connection,
    prefix: redisKeys(config.redis.prefix).bullPrefix,
    defaultJobOptions: sendJobOptions(config.send),
  });
}
