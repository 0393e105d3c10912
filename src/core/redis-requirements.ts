/**
 * What Redis must be for it to hold subscribers, sends and the queue durably, judged from the
 * settings it reports. Pure: src/store/redis-settings.ts reads the settings, services.ts (start-up)
 * and app/doctor.ts act on the verdicts.
 */

/** What a Redis server says about the settings that decide what a crash can lose; undefined: could not be read. */
export interface RedisSettings {
  /** `redis_version` (INFO server). */
  readonly version: string | undefined;
  /** `maxmemory-policy` (CONFIG GET, else `maxmemory_policy` of INFO memory). */
  readonly maxmemoryPolicy: string | undefined;
  /** `appendonly` (CONFIG GET, else `aof_enabled` of INFO persistence). */
  readonly aofEnabled: boolean | undefined;
  /** `appendfsync` (CONFIG GET only): always, everysec or no. */
  readonly appendfsync: string | undefined;
  /** RDB save points as CONFIG GET gives them ("3600 1 300 100"); "" when RDB snapshots are off. */
  readonly rdbSavePoints: string | undefined;
  /**
   * Whether INFO persistence shows an RDB snapshot taken since Redis started (`rdb_saves`, or a last
   * bgsave time): the only sign of RDB when CONFIG is disabled, as on many managed services.
   */
  readonly rdbSnapshotSeen: boolean | undefined;
  /** Writes since the last RDB snapshot (`rdb_changes_since_last_save`): what a crash would lose with RDB only. */
  readonly rdbChangesSinceLastSave: number | undefined;
  /** `used_memory` (INFO memory), bytes. */
  readonly usedMemoryBytes: number | undefined;
  /** `maxmemory`, bytes; 0 means no limit. */
  readonly maxmemoryBytes: number | undefined;
  /** Why CONFIG GET could not be used (renamed, or refused by an ACL), when it could not. */
  readonly configUnavailable: string | undefined;
  /** Why INFO could not be used, when it could not. */
  readonly infoUnavailable: string | undefined;
}

/** How strict start-up is (config: NODE_ENV, ALLOW_NO_PERSISTENCE). */
export interface DeploymentStrictness {
  /** NODE_ENV=production: a Redis without persistence stops every process at start-up. */
  readonly production: boolean;
  /** ALLOW_NO_PERSISTENCE=1: start anyway. */
  readonly allowNoPersistence: boolean;
}

/** ok: nothing to do; warn: a risk worth fixing; fail: something will not work, or must not run like this. */
export type FindingStatus = 'ok' | 'warn' | 'fail';

/** One verdict about one Redis setting: what was found, and how to fix it when it needs fixing. */
export interface RedisFinding {
  /** The setting as redis.conf names it. */
  readonly setting: 'redis_version' | 'maxmemory-policy' | 'appendonly' | 'maxmemory';
  readonly status: FindingStatus;
  /** What is the case (and, when it is wrong, what that risks). */
  readonly summary: string;
  /** How to fix it; undefined when there is nothing to fix. */
  readonly fix: string | undefined;
}

/** How Redis keeps its data across a restart. `unknown`: neither CONFIG nor INFO told. */
export type PersistenceMode = 'aof' | 'rdb' | 'none' | 'unknown';

/** A problem start-up reports: logged once per process, printed by the CLI, or (`fatal`) refusing to start. */
export interface RedisProblem {
  /** Stable name of the problem, for logs and tests. */
  readonly code: 'eviction-policy' | 'eviction-policy-unchecked' | 'no-persistence' | 'persistence-unchecked';
  /** The Redis setting to change. */
  readonly setting: RedisFinding['setting'];
  /** Start-up must stop: NODE_ENV=production, no persistence, and no ALLOW_NO_PERSISTENCE=1. */
  readonly fatal: boolean;
  /** One line: what is wrong, and how to fix it. */
  readonly message: string;
}

/** BullMQ's Lua scripts need at least this version. */
export const MINIMUM_REDIS_VERSION = '6.2.0';
/** What we recommend (and test with). */
export const RECOMMENDED_REDIS_VERSION = '7.0.0';
/** Above this share of maxmemory, memory is reported as running out. */
export const MEMORY_WARN_RATIO = 0.8;

const EVICTION_FIX = 'set maxmemory-policy noeviction in redis.conf, or run CONFIG SET maxmemory-policy noeviction (then CONFIG REWRITE)';
const AOF_FIX =
  'set appendonly yes and appendfsync everysec in redis.conf, or run CONFIG SET appendonly yes (then CONFIG REWRITE); on managed Redis, turn on AOF in its settings';

/**
 * The eviction policy. Anything but `noeviction` lets Redis delete keys when memory runs out:
 * subscribers, send records and queued jobs would vanish without an error.
 */
export function judgeEvictionPolicy(settings: RedisSettings): RedisFinding {
  const policy = settings.maxmemoryPolicy;
  if (policy === undefined) {
    return {
      setting: 'maxmemory-policy',
      status: 'warn',
      summary: `could not check maxmemory-policy (${unreadable(settings)})`,
      fix: `make sure it is noeviction: ${EVICTION_FIX}`,
    };
  }
  if (policy === 'noeviction') return { setting: 'maxmemory-policy', status: 'ok', summary: 'maxmemory-policy noeviction', fix: undefined };
  return {
    setting: 'maxmemory-policy',
    status: 'warn',
    summary: `maxmemory-policy is ${policy}: when memory runs out, Redis deletes keys (subscribers, sends, queued jobs) without an error`,
    fix: EVICTION_FIX,
  };
}

/** How Redis keeps its data across a restart, as far as the settings tell. */
export function persistenceMode(settings: RedisSettings): PersistenceMode {
  if (settings.aofEnabled === true) return 'aof';
  if (settings.aofEnabled === undefined) return 'unknown';
  if (settings.rdbSavePoints !== undefined) return settings.rdbSavePoints.trim() === '' ? 'none' : 'rdb';
  return settings.rdbSnapshotSeen ? 'rdb' : 'unknown';
}

/**
 * Persistence. AOF is what we want; RDB snapshots alone lose whatever was written since the last
 * one (recipients recorded as accepted among it: their jobs would run again after a restart, and
 * mail them twice); none loses everything. In production, none stops start-up unless allowed.
 */
export function judgePersistence(settings: RedisSettings, deployment: DeploymentStrictness): RedisFinding & { readonly mode: PersistenceMode } {
  const mode = persistenceMode(settings);
  switch (mode) {
    case 'aof': {
      const fsync = settings.appendfsync;
      if (fsync === 'no') {
        return {
          mode,
          setting: 'appendonly',
          status: 'warn',
          summary: 'AOF is on, but with appendfsync no: the OS decides when to flush, and a crash of the machine can lose about 30 s of writes',
          fix: 'set appendfsync everysec in redis.conf, or run CONFIG SET appendfsync everysec',
        };
      }
      const rdb = settings.rdbSavePoints ? `, RDB snapshots too (save ${settings.rdbSavePoints})` : '';
      return { mode, setting: 'appendonly', status: 'ok', summary: `AOF on${fsync ? ` (appendfsync ${fsync})` : ''}${rdb}`, fix: undefined };
    }
    case 'rdb': {
      const points = settings.rdbSavePoints ? ` (save ${settings.rdbSavePoints})` : '';
      const changes = settings.rdbChangesSinceLastSave === undefined ? '' : `; ${settings.rdbChangesSinceLastSave} writes since the last one`;
      return {
        mode,
        setting: 'appendonly',
        status: 'warn',
        summary:
          `RDB snapshots only${points}${changes}: a crash loses every write since the last snapshot, ` +
          'and recipients recorded as accepted among them would be mailed again',
        fix: AOF_FIX,
      };
    }
    case 'none': {
      const refused = deployment.production && !deployment.allowNoPersistence;
      const allowed = deployment.production && deployment.allowNoPersistence ? ' (started anyway: ALLOW_NO_PERSISTENCE=1)' : '';
      return {
        mode,
        setting: 'appendonly',
        status: refused ? 'fail' : 'warn',
        summary: `no persistence (appendonly no, no RDB save points): a restart of Redis loses every subscriber, send and queued job${allowed}`,
        fix: refused ? `${AOF_FIX}; or set ALLOW_NO_PERSISTENCE=1 to run without it (NODE_ENV=production refuses to start otherwise)` : AOF_FIX,
      };
    }
    case 'unknown':
      return {
        mode,
        setting: 'appendonly',
        status: 'warn',
        summary:
          settings.aofEnabled === false
            ? `could not check persistence: AOF is off, and whether RDB snapshots are on could not be read (${unreadable(settings)}) and none was taken since Redis started`
            : `could not check persistence (${unreadable(settings)})`,
        fix: `make sure AOF (appendonly yes) or RDB snapshots are on: ${AOF_FIX}`,
      };
    default:
      return mode satisfies never;
  }
}

/** The version: BullMQ needs 6.2; 7 is recommended. */
export function judgeVersion(version: string | undefined): RedisFinding {
  if (version === undefined) {
    return {
      setting: 'redis_version',
      status: 'warn',
      summary: 'could not read the Redis version (INFO server)',
      fix: `use Redis ${RECOMMENDED_REDIS_VERSION} or later`,
    };
  }
  if (compareVersions(version, MINIMUM_REDIS_VERSION) < 0) {
    return {
      setting: 'redis_version',
      status: 'fail',
      summary: `Redis ${version} is older than ${MINIMUM_REDIS_VERSION}, which the queue (BullMQ) needs`,
      fix: `upgrade to Redis ${RECOMMENDED_REDIS_VERSION} or later`,
    };
  }
  if (compareVersions(version, RECOMMENDED_REDIS_VERSION) < 0) {
    return {
      setting: 'redis_version',
      status: 'warn',
      summary: `Redis ${version} works, but 7 is recommended`,
      fix: `upgrade to Redis ${RECOMMENDED_REDIS_VERSION} or later`,
    };
  }
  return { setting: 'redis_version', status: 'ok', summary: `Redis ${version}`, fix: undefined };
}

/**
 * Memory: used against maxmemory. With noeviction, Redis refuses writes once maxmemory is reached,
 * so sends stop; past 80% it is time to make room. maxmemory 0 is no limit: Redis grows until the
 * machine runs out, when the kernel may kill it.
 */
export function judgeMemory(settings: Pick<RedisSettings, 'usedMemoryBytes' | 'maxmemoryBytes'>): RedisFinding {
  const used = settings.usedMemoryBytes;
  const max = settings.maxmemoryBytes;
  if (used === undefined) return { setting: 'maxmemory', status: 'warn', summary: 'could not read used memory (INFO memory)', fix: undefined };
  if (max === undefined) return { setting: 'maxmemory', status: 'ok', summary: `${formatBytes(used)} used; maxmemory could not be read`, fix: undefined };
  if (max === 0) {
    return {
      setting: 'maxmemory',
      status: 'ok',
      summary: `${formatBytes(used)} used; maxmemory 0 means no limit: Redis grows until the machine runs out of memory`,
      fix: undefined,
    };
  }
  const ratio = used / max;
  const share = `${formatBytes(used)} used of maxmemory ${formatBytes(max)} (${Math.round(ratio * 100)}%)`;
  if (ratio >= 1) {
    return {
      setting: 'maxmemory',
      status: 'fail',
      summary: `${share}: Redis refuses writes (OOM), so sends and imports fail`,
      fix: 'raise maxmemory (CONFIG SET maxmemory <bytes>, and in redis.conf) or free memory',
    };
  }
  if (ratio > MEMORY_WARN_RATIO) {
    return {
      setting: 'maxmemory',
      status: 'warn',
      summary: `${share}: at maxmemory Redis refuses writes and sends stop`,
      fix: 'raise maxmemory (CONFIG SET maxmemory <bytes>, and in redis.conf) before it fills up',
    };
  }
  return { setting: 'maxmemory', status: 'ok', summary: share, fix: undefined };
}

/**
 * What start-up checks: the eviction policy and persistence. Returns the problems to report (none
 * when all is well); one of them is `fatal` when NODE_ENV=production finds no persistence and
 * ALLOW_NO_PERSISTENCE=1 is not set. A setting that could not be read is a problem too (it could
 * not be ruled out), never a fatal one.
 */
export function startupRedisProblems(settings: RedisSettings, deployment: DeploymentStrictness): RedisProblem[] {
  const problems: RedisProblem[] = [];
  const eviction = judgeEvictionPolicy(settings);
  if (eviction.status !== 'ok') {
    problems.push({
      code: settings.maxmemoryPolicy === undefined ? 'eviction-policy-unchecked' : 'eviction-policy',
      setting: eviction.setting,
      fatal: false,
      message: `${settings.maxmemoryPolicy === undefined ? 'Redis: ' : 'Redis '}${eviction.summary}. Fix: ${eviction.fix ?? EVICTION_FIX}.`,
    });
  }
  const persistence = judgePersistence(settings, deployment);
  if (persistence.mode === 'none') {
    const fatal = persistence.status === 'fail';
    problems.push({
      code: 'no-persistence',
      setting: persistence.setting,
      fatal,
      message: fatal
        ? 'Refusing to start with NODE_ENV=production: Redis has no persistence (appendonly no, no RDB save points), so a restart of Redis would lose every ' +
          `subscriber, send and queued job. Fix: ${AOF_FIX}; or set ALLOW_NO_PERSISTENCE=1 to start anyway.`
        : `Redis has ${persistence.summary}. Fix: ${AOF_FIX}.`,
    });
  } else if (persistence.mode === 'unknown') {
    problems.push({
      code: 'persistence-unchecked',
      setting: persistence.setting,
      fatal: false,
      message: `Redis: ${persistence.summary}. Fix: ${persistence.fix}.`,
    });
  }
  return problems;
}

/** Compares dotted versions numerically ("6.2.14" < "7.0.0"); missing parts count as 0. */
export function compareVersions(a: string, b: string): number {
  const parse = (version: string) => version.split('.').map((part) => Number.parseInt(part, 10) || 0);
  const [left, right] = [parse(a), parse(b)];
  for (let index = 0; index < Math.max(left.length, right.length); index += 1) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0);
    if (difference !== 0) return Math.sign(difference);
  }
  return 0;
}

/** "1.4 MB": a size for a person. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function unreadable(settings: RedisSettings): string {
  const reasons = [
    settings.configUnavailable === undefined ? undefined : `CONFIG GET: ${settings.configUnavailable}`,
    settings.infoUnavailable === undefined ? undefined : `INFO: ${settings.infoUnavailable}`,
  ].filter(Boolean);
  return reasons.length > 0 ? reasons.join('; ') : 'neither CONFIG GET nor INFO reports it';
}
