import type { Redis } from 'ioredis';
import type { RedisKeys } from './keys.ts';

/** How often a script is run again when lists keep being created while it runs; each run is one round trip. */
const MAX_LIST_RACES = 10;

/** What a script that keeps every list's counters is given: the number of lists it was built for, and their keys. */
export interface EveryList {
  readonly listCount: number;
  /** A (members, counts) pair of keys per list, to pass after the script's named keys. */
  readonly listKeys: readonly string[];
}

/**
 * Runs a script that changes a subscriber's status and so must move them between the counters of
 * every list they are on (change-status.lua, apply-subscriber-event.lua). The lists are read
 * first and passed in KEYS; a script that finds their number changed answers 'retry', and runs
 * again with the new lists.
 */
export async function withEveryList<Reply extends readonly [string, ...unknown[]]>(
  redis: Redis,
  keys: RedisKeys,
  what: string,
  run: (lists: EveryList) => Promise<Reply>,
): Promise<Reply> {
  for (let round = 0; ; round += 1) {
    const lists = await redis.smembers(keys.lists);
    const reply = await run({ listCount: lists.length, listKeys: lists.flatMap((list) => [keys.list(list), keys.listCounts(list)]) });
    if (reply[0] !== 'retry') return reply;
    if (round >= MAX_LIST_RACES) throw new Error(`could not ${what}: lists kept changing`);
  }
}
