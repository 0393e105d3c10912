import { OUTAGE_FIRST_BACKOFF_MS, outageBackoffMs } from '../core/outage-backoff.ts';
import type { Logger } from '../logger.ts';

/** A failure the classification put on the SMTP service (core/classify-failure.ts, scope 'service'). */
export interface ServiceFailure {
  readonly reason: string;
  readonly code?: string | undefined;
  readonly responseCode?: number | undefined;
  /** A fresh connection must confirm the service is down before the failure counts as the service's. */
  readonly confirm: boolean;
}

/** What the job handler asks of this process's SMTP outage circuit (DeliveryDeps.outage). */
export interface SmtpOutage {
  /** Whether this process knows the SMTP service to be down now. */
  isDown(): boolean;
  /**
   * Asked right before a message is handed to SMTP: may it go? Always, while the service is up.
   * While it is down, no as long as the queue is held; once the hold is gone before this process's
   * next probe (a probe in another process found the service back and ended it, or it lapsed),
   * one probe at once decides, shared by every job that asks meanwhile.
   */
  admit(): Promise<boolean>;
  /**
   * Reports a failure classified as the service's. Resolves true when the service is down: the
   * queue is held by then, and the job goes back without spending an attempt. False when a fresh
   * connection got through: the failure was this message's.
   */
  report(failure: ServiceFailure): Promise<boolean>;
}

/** The circuit as its worker owns it. */
export interface SmtpOutageCircuit extends SmtpOutage {
  /**
   * Stops probing. A hold this process keeps for an outage is ended: nothing here would end it
   * early any more, and the other workers find out for themselves with one probe each.
   */
  close(): Promise<void>;
}

export interface SmtpOutageOptions {
  /** Opens one fresh connection to the SMTP service (greeting, EHLO, AUTH); rejects if it fails. */
  readonly probe: () => Promise<unknown>;
  /** Holds every worker of the queue, in every process, for `durationMs` (BullMQ's queue.rateLimit). */
  readonly hold: (durationMs: number, reason: string) => Promise<void>;
  /** Ends the hold at once (queue.removeRateLimitKey). */
  readonly release: () => Promise<unknown>;
  /** What is left of the queue's hold, in ms; 0 when there is none. */
  readonly heldForMs: () => Promise<number>;
  readonly logger: Logger;
  /** Longest wait between probes (SMTP_OUTAGE_MAX_BACKOFF_MS). */
  readonly maxBackoffMs: number;
  /** A probe that has not answered after this long has failed. */
  readonly probeTimeoutMs: number;
  /** The wait before the first probe; 500 ms by default. */
  readonly firstBackoffMs?: number;
}

interface Outage {
  readonly since: number;
  readonly reason: string;
  readonly code: string | undefined;
  /** Connections this circuit opened to the service since the outage began, the confirming one included. */
  probes: number;
  failedProbes: number;
}

/**
 * This process's view of the SMTP service: up, or down since a failure that every message would
 * share. While down, the queue is held (in every process) and one probe at a time tries the
 * service again, 500 ms after the outage began and then at doubling intervals up to
 * `maxBackoffMs`. The hold is re-armed at each step to last until the next probe has had its
 * time, and ended the moment a probe gets through, so sending resumes at once. One warn line
 * when an outage begins, one info line when it ends; nothing per job.
 */
export function createSmtpOutage(options: SmtpOutageOptions): SmtpOutageCircuit {
  const { logger } = options;
  const firstBackoffMs = options.firstBackoffMs ?? OUTAGE_FIRST_BACKOFF_MS;
  let outage: Outage | undefined;
  let probing: Promise<boolean> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let armed: Promise<void> = Promise.resolve();
  let closed = false;

  /** Holds the queue until the next probe of `current` has had its time, and schedules that probe. */
  const nextStep = (current: Outage): Promise<void> => {
    clearTimeout(timer);
    const waitMs = outageBackoffMs(current.failedProbes, options.maxBackoffMs, firstBackoffMs);
    if (!closed) timer = setTimeout(() => void probe(), waitMs);
    armed = options.hold(waitMs + options.probeTimeoutMs, current.reason).catch((error: unknown) => {
      // Redis not answering: the jobs can't run either; the next step or job tries again.
      logger.debug({ err: error }, 'could not hold the queue for the SMTP outage');
    });
    return armed;
  };

  const end = async (ended: Outage): Promise<void> => {
    clearTimeout(timer);
    outage = undefined;
    // A release that fails leaves the hold to lapse by itself, within one step.
    await options.release().catch((error: unknown) => logger.warn({ err: error }, 'could not end the hold of the send queue; it lapses by itself'));
    logger.info({ durationMs: Date.now() - ended.since, probes: ended.probes, reason: ended.reason, code: ended.code }, 'SMTP service back; sending resumes');
  };

  /**
   * One fresh connection to the service, never two at once: a caller that asks while one is under
   * way shares its answer. During an outage the answer moves the circuit: back up, or one step on.
   */
  const probe = (): Promise<boolean> => {
    probing ??= (async () => {
      const during = outage;
      if (during) during.probes += 1;
      let timeout: NodeJS.Timeout | undefined;
      const answered = await Promise.race([
        options.probe().then(
          () => true,
          (error: unknown) => {
            logger.debug({ err: error }, 'SMTP probe failed');
            return false;
          },
        ),
        new Promise<false>((resolve) => (timeout = setTimeout(() => resolve(false), options.probeTimeoutMs))),
      ]);
      clearTimeout(timeout);
      // Only the outage this probe was made for; one that ended or began meanwhile has its own.
      if (during && during === outage && !closed) {
        if (answered) await end(during);
        else {
          during.failedProbes += 1;
          await nextStep(during);
        }
      }
      return answered;
    })().finally(() => (probing = undefined));
    return probing;
  };

  const begin = async (failure: ServiceFailure, probes: number): Promise<void> => {
    if (outage) return armed;
    if (closed) return;
    outage = { since: Date.now(), reason: failure.reason, code: failure.code, probes, failedProbes: 0 };
    logger.warn(
      { reason: failure.reason, code: failure.code, responseCode: failure.responseCode, firstProbeInMs: firstBackoffMs, maxBackoffMs: options.maxBackoffMs },
      'SMTP service unavailable; holding the queue',
    );
    return nextStep(outage);
  };

  return {
    isDown: () => outage !== undefined,

    async admit() {
      if (!outage) return true;
      if (closed) return false;
      const heldMs = await options.heldForMs().catch(() => 1);
      if (heldMs > 0) return false;
      // Up again meanwhile (this process's own probe), or the hold is gone: ask the service now.
      return outage ? probe() : true;
    },

    async report(failure) {
      if (outage) {
        await armed;
        return true;
      }
      if (failure.confirm && (await probe())) return false;
      await begin(failure, failure.confirm ? 1 : 0);
      return true;
    },

    async close() {
      closed = true;
      clearTimeout(timer);
      const current = outage;
      if (!current) return;
      outage = undefined;
      await options.release().catch(() => undefined);
      logger.info(
        { durationMs: Date.now() - current.since, probes: current.probes, reason: current.reason },
        'worker stopping while the SMTP service is down: its hold of the queue is ended, the other workers probe for themselves',
      );
    },
  };
}
