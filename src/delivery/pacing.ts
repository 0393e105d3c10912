import type { Config } from '../../config/index.ts';
import { intervalMs } from '../core/pacing-policy.ts';
import type { PacingStore, SlotReply } from '../store/pacing-store.ts';

/** How often a worker re-reads which domains are in a "slow down" backoff, when it paces nothing else. */
const BACKOFF_INDEX_MS = 500;

/** The pacing of one worker process over the budgets every process shares (store/pacing-store.ts). */
export interface Pacer {
  /** Reserves a send slot for a message to `domain`; `reservedAt` is the domain slot the job holds already. */
  reserve(domain: string, reservedAt: number): Promise<SlotReply>;
  /** The receiver asked us to slow down: its domain waits. Returns the backoff, in ms. */
  slowDown(domain: string): Promise<number>;
}

const GO_NOW: SlotReply = { outcome: 'wait', ms: 0, slot: 0 };

/**
 * The pacer of a worker. With no ceiling for a message (no SEND_RATE_PER_SEC, none for its domain)
 * only a "slow down" backoff can hold it, so the reservation is skipped unless its domain is in the
 * backoff index, read at most every 500 ms: one Redis call fewer per message in the common case,
 * at the price of another process's backoff reaching this one up to half a second late.
 */
export function createPacer(store: Pick<PacingStore, 'reserve' | 'slowDown' | 'backoffs'>, settings: Config['pacing'], maxWaitMs: number): Pacer {
  const globalIntervalMs = intervalMs(settings.ratePerSec);
  let backoffs: Promise<Map<string, number>> | undefined;
  let readAt = 0;
  const backedOff = async (domain: string): Promise<boolean> => {
    if (!backoffs || Date.now() - readAt > BACKOFF_INDEX_MS) {
      readAt = Date.now();
      backoffs = store.backoffs();
      backoffs.catch(() => (backoffs = undefined));
    }
    return (await backoffs).has(domain);
  };
  return {
    async reserve(domain, reservedAt) {
      const domainIntervalMs = intervalMs(settings.domainRates[domain]);
      if (globalIntervalMs === 0 && domainIntervalMs === 0 && !(await backedOff(domain))) return GO_NOW;
      return store.reserve({ domain, globalIntervalMs, domainIntervalMs, reservedAt, maxWaitMs });
    },
    async slowDown(domain) {
      const backoffMs = await store.slowDown(domain, settings.domainBackoffMs);
      // This process sees its own backoff at once.
      backoffs = undefined;
      return backoffMs;
    },
  };
}
