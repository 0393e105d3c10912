import type { Redis } from 'ioredis';
import type { RedisSettings } from '../core/redis-requirements.ts';

/** The CONFIG parameters read, each with its own CONFIG GET (one parameter per call works on every version). */
const CONFIG_PARAMETERS = ['maxmemory-policy', 'appendonly', 'appendfsync', 'save', 'maxmemory'] as const;
type ConfigParameter = (typeof CONFIG_PARAMETERS)[number];

/**
 * Reads what Redis says about eviction, persistence, memory and its version. CONFIG GET is
 * preferred (it gives the configured values); managed services often disable CONFIG, so INFO
 * (server, memory, persistence) fills in what it can. A command that fails leaves its fields
 * undefined and says why: this never throws for a refused command, only the core decides what an
 * unreadable setting means.
 */
export async function readRedisSettings(redis: Redis): Promise<RedisSettings> {
  const [info, config] = await Promise.all([readInfo(redis), readConfig(redis)]);
  const fields = info.fields;
  const aofFromInfo = fields.get('aof_enabled');
  const rdbSaves = numberOrUndefined(fields.get('rdb_saves'));
  const lastBgsaveSeconds = numberOrUndefined(fields.get('rdb_last_bgsave_time_sec'));
  const appendonly = config.values.get('appendonly');
  const maxmemory = config.values.get('maxmemory');
  return {
    version: fields.get('redis_version'),
    maxmemoryPolicy: config.values.get('maxmemory-policy') ?? fields.get('maxmemory_policy'),
    aofEnabled: appendonly !== undefined ? appendonly === 'yes' : aofFromInfo !== undefined ? aofFromInfo === '1' : undefined,
    appendfsync: config.values.get('appendfsync'),
    rdbSavePoints: config.values.get('save'),
    rdbSnapshotSeen: rdbSaves === undefined && lastBgsaveSeconds === undefined ? undefined : (rdbSaves ?? 0) > 0 || (lastBgsaveSeconds ?? -1) >= 0,
    rdbChangesSinceLastSave: numberOrUndefined(fields.get('rdb_changes_since_last_save')),
    usedMemoryBytes: numberOrUndefined(fields.get('used_memory')),
    maxmemoryBytes: numberOrUndefined(maxmemory ?? fields.get('maxmemory')),
    configUnavailable: config.error,
    infoUnavailable: info.error,
  };
}

/** INFO's default sections (server, memory, persistence among them) as field → value. */
async function readInfo(redis: Redis): Promise<{ readonly fields: ReadonlyMap<string, string>; readonly error: string | undefined }> {
  try {
    const text = await redis.info();
    const fields = new Map<string, string>();
    for (const line of text.split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon > 0 && !line.startsWith('#')) fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    return { fields, error: undefined };
  } catch (error) {
    return { fields: new Map(), error: reason(error) };
  }
}

/** The CONFIG GET values that could be read, in one round trip; `error` when CONFIG is refused. */
async function readConfig(redis: Redis): Promise<{ readonly values: ReadonlyMap<ConfigParameter, string>; readonly error: string | undefined }> {
  const pipeline = redis.pipeline();
  for (const parameter of CONFIG_PARAMETERS) pipeline.config('GET', parameter);
  let results: [Error | null, unknown][] | null;
  try {
    results = await pipeline.exec();
  } catch (error) {
    return { values: new Map(), error: reason(error) };
  }
  const values = new Map<ConfigParameter, string>();
  let error: string | undefined;
  CONFIG_PARAMETERS.forEach((parameter, index) => {
    const [failure, reply] = results?.[index] ?? [new Error('no reply'), undefined];
    if (failure) {
      error ??= reason(failure);
      return;
    }
    // CONFIG GET answers [name, value], or [] for a parameter this server does not know.
    if (Array.isArray(reply) && typeof reply[1] === 'string') values.set(parameter, reply[1]);
  });
  return { values, error };
}

function numberOrUndefined(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const number = Number(value);
  return Number.isFinite(number) ? number : undefined;
}

function reason(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!.trim();
}
