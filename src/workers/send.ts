import { startBackgroundDuties } from '../app/background.ts';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Config } from '../../config/index.ts';
import { applyHeldEvent, holdEvent } from '../app/delivery-events.ts';
import { countForBreakers } from '../app/send-control.ts';
import { CLAIM_MAX_AGE_MS, createDeliveryHandler, MAX_IN_PROCESS_WAIT_MS, type DeliveryDeps, type DeliveryOutcome } from '../delivery/deliver-job.ts';
import { AcceptedButUnrecordedError } from '../delivery/job-errors.ts';
import { withRetries } from '../delivery/retry.ts';
import { createPacer } from '../delivery/pacing.ts';
import { createSmtpOutage } from '../delivery/smtp-outage.ts';
import { createSmtpTransport, SMTP_TIMEOUTS } from '../delivery/smtp-transport.ts';
import type { Logger } from '../logger.ts';
import { openServices } from '../services.ts';
import { connectionErrorLogger, connectRedis } from '../store/connection.ts';
import { redisKeys } from '../store/keys.ts';
import { SEND_QUEUE_NAME, type SendJobData } from '../store/send-queue.ts';
import { startHeartbeat } from './heartbeat.ts';
import { startReportWorker } from './reports.ts';

/** A running send worker. */
export interface SendWorkerHandle {
  readonly worker: Worker<SendJobData, DeliveryOutcome>;
  /**
   * Stops taking jobs and waits up to `shutdownTimeoutMs` for the ones in flight. Past that it
   * closes without them: their locks lapse and BullMQ hands them to another worker as stalled
   * jobs, where the recipient record keeps an accepted recipient from being mailed twice.
   */
  close(): Promise<{ handedBack: boolean }>;
}

/** What tests may replace; production uses the defaults. */
export interface SendWorkerOptions {
  readonly logger?: Logger;
  /** Waits between tries to record an outcome inside a job. */
  readonly recordRetryDelaysMs?: readonly number[];
  /** Waits between tries to record the outcome of a job that already ended (stalled, or accepted but unrecorded). */
  readonly lateRecordRetryDelaysMs?: readonly number[];
  /** Wraps the stores the handler sees, e.g. to inject a store fault. */
  readonly wrapDeps?: (deps: DeliveryDeps) => DeliveryDeps;
  /**
   * Also run the duties a worker process shares (outgoing webhooks, metrics report;
   * app/background.ts): `newsletter worker` does; tests that only send leave them off.
   */
  readonly duties?: boolean;
}

/** Rides out a Redis failover of a few seconds inside a job. */
const RECORD_RETRY_DELAYS_MS = [100, 300, 1_000, 3_000] as const;
/** After a job has ended there is no hurry, and nothing else will record it: keep trying for minutes. */
const LATE_RECORD_RETRY_DELAYS_MS = [100, 300, 1_000, 3_000, 10_000, 30_000, 60_000, 120_000] as const;
/** An unrecorded acceptance: every 500 ms for ten minutes. */
const URGENT_RECORD_RETRY_DELAYS_MS: readonly number[] = Array.from({ length: 1200 }, () => 500);
/** BullMQ's reason for a job whose workers kept dying while they held it. */
const STALLED_REASON = 'job stalled more than allowable limit';

/**
 * Writes a job could not make before it ended, retried for minutes in the background: nothing else
 * would make them. Each is logged when it lands, and at error level, with its ids, if it never does.
 */
class LateRecords {
  private readonly pending = new Map<Promise<void>, { readonly sendId: string; readonly subscriberId: string; readonly what: string }>();

  constructor(
    private readonly logger: Logger,
    private readonly delaysMs: readonly number[],
  ) {}

  add(
    write: () => Promise<unknown>,
    context: { readonly sendId: string; readonly subscriberId: string; readonly what: string; readonly urgent?: boolean },
  ): void {
    const log = this.logger.child({ sendId: context.sendId, subscriberId: context.subscriberId });
    // An acceptance must land before the job's lock lapses and another worker could take it:
    // retried every half second, not with growing waits.
    const done: Promise<void> = withRetries(write, context.urgent ? URGENT_RECORD_RETRY_DELAYS_MS : this.delaysMs).then(
      (changed) => {
        if (changed !== false) log.warn({ late: true }, `recorded ${context.what} after its job ended`);
      },
      (error: unknown) =>
        log.error({ err: error }, `could not record ${context.what}; if the recipient stays queued, newsletter send <issue> --retry-failed repairs it`),
    );
    this.pending.set(done, context);
    void done.finally(() => this.pending.delete(done));
  }

  /** Waits up to `budgetMs` for the writes under way; logs the ones still unrecorded after that. */
  async settle(budgetMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(this.pending.keys()), new Promise((resolve) => (timer = setTimeout(resolve, budgetMs)))]);
    clearTimeout(timer);
    for (const context of this.pending.values()) this.logger.error({ ...context }, `shutting down with ${context.what} unrecorded`);
  }
}

/**
 * Starts one send worker in this process: its own services (stores, logger) with auto-pipelining,
 * a blocking connection for BullMQ, and a pooled SMTP transport.
 */
export async function startSendWorker(config: Config, options: SendWorkerOptions = {}): Promise<SendWorkerHandle> {
  // Auto-pipelining batches the per-job reads and writes of concurrent jobs into fewer round trips.
  const services = await openServices(config, { autoPipelining: true, ...(options.logger ? { logger: options.logger } : {}) });
  const { logger, sends, queue } = services;
  const blocking = await connectRedis(config.redis.url, { blocking: true, logger });
  // Keeps this process's claims on recipients alive, on a thread of its own (see heartbeat-thread.mjs).
  const heartbeat = await startHeartbeat({ redisUrl: config.redis.url, key: services.control.keys.workerAlive, logger });
  const transport = createSmtpTransport(config.smtp);
  // While the SMTP service is down: the queue held in every process, one probe at a time from
  // here, with a backoff from 500 ms up to SMTP_OUTAGE_MAX_BACKOFF_MS (delivery/smtp-outage.ts).
  const outage = createSmtpOutage({
    logger,
    maxBackoffMs: config.pacing.outageMaxBackoffMs,
    // A probe is one session set up (connect, greeting, EHLO): the transport's own bound for that.
    probeTimeoutMs: SMTP_TIMEOUTS.connectionMs,
    probe: () => transport.verify(),
    // BullMQ's manual rate limit: holds the workers of every process.
    hold: (durationMs) => queue.rateLimit(durationMs),
    release: () => queue.removeRateLimitKey(),
    // Only a manual hold sets the limiter key to this value; a pacing limiter's count never reaches it.
    heldForMs: () => queue.getRateLimitTtl(Number.MAX_SAFE_INTEGER),
  });
  let stopping = false;
  const acceptedUnrecorded = new Set<string>();
  const lateRecords = new LateRecords(logger, options.lateRecordRetryDelaysMs ?? LATE_RECORD_RETRY_DELAYS_MS);
  const baseDeps: DeliveryDeps = {
    acceptedUnrecorded,
    workerId: heartbeat.workerId,
    sendingNow: new Set(),
    control: services.control,
    pacing: createPacer(services.pacing, config.pacing, MAX_IN_PROCESS_WAIT_MS),
    breakers: { count: (sendId, outcome) => countForBreakers(services, sendId, outcome) },
    recordLater: (write, context) => lateRecords.add(write, context),
    stopping: () => stopping,
    config,
    sends,
    subscribers: services.subscribers,
    transport,
    logger,
    events: {
      hold: (event, email) => holdEvent(services, event, email),
      apply: (event, heldAs) => applyHeldEvent(services, event, heldAs),
    },
    recordRetryDelaysMs: options.recordRetryDelaysMs ?? RECORD_RETRY_DELAYS_MS,
    outage,
  };
  const deps = options.wrapDeps ? options.wrapDeps(baseDeps) : baseDeps;
  const handle = createDeliveryHandler(deps);
  /** Handlers running now: a forced close waits (within its budget) for them to record what they did. */
  const inFlight = new Set<Promise<unknown>>();
  const handler: typeof handle = (job, token) => {
    const running = handle(job, token);
    inFlight.add(running);
    void running.then(
      () => inFlight.delete(running),
      () => inFlight.delete(running),
    );
    return running;
  };

  const worker = new Worker<SendJobData, DeliveryOutcome>(SEND_QUEUE_NAME, handler, {
    connection: blocking,
    prefix: redisKeys(config.redis.prefix).bullPrefix,
    concurrency: config.send.workerConcurrency,
    lockDuration: config.send.lockDurationMs,
    stalledInterval: config.send.stalledIntervalMs,
    // The recipient record already stops duplicates, so a job whose workers died may go back to
    // the queue several times; past that it is recorded as a temporary failure, never a final one.
    maxStalledCount: config.send.maxStalledCount,
    // No real limit: BullMQ 6 only honours a manual queue.rateLimit() (our hold while the SMTP
    // service is down) in workers that have a limiter, so every worker process gets one.
    limiter: { max: Number.MAX_SAFE_INTEGER, duration: 1_000 },
    // A worker told to wait for a hold sleeps at most this long before it asks Redis again: when a
    // probe ends the hold early, every process is sending again within half a second.
    maximumRateLimitDelay: 500,
  });
  // BullMQ duplicates the blocking connection; without these, a Redis restart prints raw stacks.
  worker.on('error', connectionErrorLogger(logger, 'send worker'));
  const reportWorker = startReportWorker({ ...services }, blocking);

  // The handler records what it sees itself. This records what ends outside it: a job whose
  // workers kept dying (BullMQ fails it without running the handler), an acceptance that couldn't
  // be recorded in time, an error before the handler's own recording. Recording is a no-op for a
  // recipient already in a final state, so an accepted recipient is never counted as failed, and
  // nothing recorded here is permanent: every permanent outcome is recorded by the handler itself.
  worker.on('failed', (job: Job<SendJobData> | undefined, error: Error) => {
    if (!job) return;
    const stalled = error.message === STALLED_REASON || job.stalledCounter > config.send.maxStalledCount;
    const final = stalled || error instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
    if (!final) return;
    const { sendId, subscriberId } = job.data;
    // The handler already handed an acceptance it could not record to the late records.
    if (error instanceof AcceptedButUnrecordedError) return;
    const failure = {
      at: new Date().toISOString(),
      permanent: false,
      code: stalled ? 'ESTALLED' : 'EJOB',
      response: error.message,
      attempts: job.attemptsMade,
    };
    lateRecords.add(
      async () => {
        // A live worker still holding the recipient's claim may be at the SMTP server with it (its
        // event loop stalled past the lock, again and again): recording a failure now would make
        // its acceptance unrecordable, and --retry-failed would mail the recipient again. So this
        // waits (the late records retry) until that worker has recorded the outcome itself
        // (then this records nothing) or is gone (its heartbeat lapses within seconds).
        const claim = stalled ? await services.control.claimOf(sendId, subscriberId) : undefined;
        if (claim && Date.now() - claim.at < CLAIM_MAX_AGE_MS && (await services.control.workerAlive(claim.workerId))) {
          throw new Error(`recipient ${subscriberId} is claimed by a live worker (${claim.workerId})`);
        }
        // Only while this job is still the recipient's: a --retry-failed round may have given it a new job since.
        return sends.markRecipient(sendId, subscriberId, 'failed', { failure, onlyIfJob: job.id });
      },
      { sendId, subscriberId, what: `a failure (${failure.code})` },
    );
  });

  // Jobs this process finished (any outcome), for its line in /metrics.
  let messagesHandled = 0;
  worker.on('completed', () => void messagesHandled++);
  // A failed attempt that BullMQ will retry is not a message handled yet; the last one is.
  worker.on('failed', (job) => {
    if (!job || job.attemptsMade >= (job.opts.attempts ?? 1) || job.finishedOn !== undefined) messagesHandled += 1;
  });
  const duties = options.duties ? startBackgroundDuties(services, 'worker', { messagesHandled: () => messagesHandled }) : undefined;
  let closing: Promise<{ handedBack: boolean }> | undefined;
  return {
    worker,
    close() {
      closing ??= (async () => {
        const deadline = Date.now() + config.send.shutdownTimeoutMs;
        // The duties first: nothing new (a webhook delivery, a report) starts while the jobs drain.
        await duties?.stop();
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), config.send.shutdownTimeoutMs);
        });
        // pause() stops taking jobs and waits for the ones in flight without starting BullMQ's
        // close; a close already under way would make a later forced close wait for them too.
        const paused = worker.pause().then(() => 'drained' as const);
        paused.catch(() => undefined);
        const outcome = await Promise.race([paused, timedOut]);
        clearTimeout(timer);
        // Past the timeout, a job not yet handed to SMTP goes back to the queue rather than start now.
        stopping = outcome === 'timeout';
        await Promise.all([worker.close(outcome === 'timeout'), reportWorker.close()]);
        // Handlers still running (a forced close leaves them) get to record what the SMTP server
        // answered before Redis and the transport close under them.
        const settleBudget = new Promise((resolve) => (timer = setTimeout(resolve, Math.max(1_000, deadline - Date.now()))));
        await Promise.race([Promise.allSettled(inFlight), settleBudget]);
        clearTimeout(timer);
        // Late records get what is left of the shutdown budget, then are logged as unrecorded.
        await lateRecords.settle(Math.max(1_000, deadline - Date.now()));
        await outage.close();
        transport.close();
        await heartbeat.stop();
        await services.close();
        blocking.disconnect();
        return { handedBack: outcome === 'timeout' };
      })();
      return closing;
    },
  };
}
