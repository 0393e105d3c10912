import { runScript } from './scripts.ts';
import { RedisStore } from './redis-store.ts';

/** What the pacing budgets allow a message now: wait this long in-process, or put the job off. */
export interface SlotReply {
  readonly outcome: 'wait' | 'delay';
  /** How long from now. */
  readonly ms: number;
  /** The slot, in Redis time (ms): what a job put off keeps as its reservation. */
  readonly slot: number;
}

/** The pacing budgets every worker process shares, in Redis (reserve-slot.lua, slow-down.lua). */
export class PacingStore extends RedisStore {
  /** Reserves a send slot for a message to `domain`; see reserve-slot.lua. */
  async reserve(request: {
    readonly domain: string;
    readonly globalIntervalMs: number;
    readonly domainIntervalMs: number;
    /** The domain slot the job reserved before it was put off (0: none). */
    readonly reservedAt: number;
    readonly maxWaitMs: number;
  }): Promise<SlotReply> {
    const [outcome, ms, slot] = await runScript(
      this.redis,
      'reserveSlot',
      { global: this.keys.paceGlobal, domain: this.keys.paceDomain(request.domain) },
      { globalIntervalMs: request.globalIntervalMs, domainIntervalMs: request.domainIntervalMs, reservedAt: request.reservedAt, maxWaitMs: request.maxWaitMs },
    );
    return { outcome, ms: Math.max(0, ms), slot };
  }

  /** A receiver asked to slow down: backs its domain off; returns the backoff in ms. */
  async slowDown(domain: string, baseMs: number): Promise<number> {
    return runScript(this.redis, 'slowDown', { domain: this.keys.paceDomain(domain), backoffs: this.keys.paceBackoffs }, { domainName: domain, baseMs });
  }

  /** The domains in a "slow down" backoff now (Redis time), with when each ends. */
  async backoffs(): Promise<Map<string, number>> {
    const now = await this.now();
    const flat = await this.redis.zrangebyscore(this.keys.paceBackoffs, now, '+inf', 'WITHSCORES');
    const backoffs = new Map<string, number>();
    for (let index = 0; index + 1 < flat.length; index += 2) backoffs.set(flat[index]!, Number(flat[index + 1]));
    return backoffs;
  }

  /** The Redis clock, ms (the clock slots are reserved in). */
  async now(): Promise<number> {
    const [seconds, micros] = await this.redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }
}
