import { describe, expect, it } from 'vitest';
import {
  compareVersions,
  judgeEvictionPolicy,
  judgeMemory,
  judgePersistence,
  judgeVersion,
  persistenceMode,
  startupRedisProblems,
  type DeploymentStrictness,
  type RedisSettings,
} from '../../src/core/redis-requirements.ts';

/** What a healthy Redis reports through CONFIG GET and INFO: AOF everysec, noeviction, 7.2. */
function settings(overrides: Partial<RedisSettings> = {}): RedisSettings {
  return {
    version: '7.2.4',
    maxmemoryPolicy: 'noeviction',
    aofEnabled: true,
    appendfsync: 'everysec',
    rdbSavePoints: '',
    rdbSnapshotSeen: false,
    rdbChangesSinceLastSave: 0,
    usedMemoryBytes: 10 * 1024 * 1024,
    maxmemoryBytes: 0,
    configUnavailable: undefined,
    infoUnavailable: undefined,
    ...overrides,
  };
}

/** What a managed Redis with CONFIG disabled reports: INFO only. */
function infoOnly(overrides: Partial<RedisSettings> = {}): RedisSettings {
  return settings({ appendfsync: undefined, rdbSavePoints: undefined, configUnavailable: "ERR unknown command 'config'", ...overrides });
}

const DEVELOPMENT: DeploymentStrictness = { production: false, allowNoPersistence: false };
const PRODUCTION: DeploymentStrictness = { production: true, allowNoPersistence: false };
const PRODUCTION_ALLOWED: DeploymentStrictness = { production: true, allowNoPersistence: true };

describe('persistenceMode', () => {
  const table: [string, RedisSettings, ReturnType<typeof persistenceMode>][] = [
    ['AOF on', settings(), 'aof'],
    ['AOF on with RDB too', settings({ rdbSavePoints: '3600 1 300 100' }), 'aof'],
    ['RDB save points only', settings({ aofEnabled: false, rdbSavePoints: '3600 1 300 100 60 10000' }), 'rdb'],
    ['neither (save "", appendonly no)', settings({ aofEnabled: false, rdbSavePoints: '' }), 'none'],
    ['neither, save points of spaces', settings({ aofEnabled: false, rdbSavePoints: '  ' }), 'none'],
    ['CONFIG disabled, INFO says aof_enabled:1', infoOnly(), 'aof'],
    ['CONFIG disabled, AOF off, an RDB snapshot was taken', infoOnly({ aofEnabled: false, rdbSnapshotSeen: true }), 'rdb'],
    ['CONFIG disabled, AOF off, no snapshot yet: cannot tell', infoOnly({ aofEnabled: false, rdbSnapshotSeen: false }), 'unknown'],
    ['nothing readable', infoOnly({ aofEnabled: undefined, rdbSnapshotSeen: undefined, infoUnavailable: 'ERR unknown command' }), 'unknown'],
  ];
  it.each(table)('%s', (_name, given, mode) => {
    expect(persistenceMode(given)).toBe(mode);
  });
});

describe('judgePersistence', () => {
  it('is ok with AOF, and says how it syncs', () => {
    expect(judgePersistence(settings(), PRODUCTION)).toMatchObject({ status: 'ok', setting: 'appendonly', summary: 'AOF on (appendfsync everysec)' });
  });

  it('warns about appendfsync no, naming the setting to change', () => {
    const finding = judgePersistence(settings({ appendfsync: 'no' }), DEVELOPMENT);
    expect(finding).toMatchObject({ status: 'warn', mode: 'aof' });
    expect(finding.fix).toContain('appendfsync everysec');
  });

  it('warns about RDB only: what a crash loses, and that AOF fixes it', () => {
    const finding = judgePersistence(settings({ aofEnabled: false, rdbSavePoints: '3600 1', rdbChangesSinceLastSave: 42 }), PRODUCTION);
    expect(finding).toMatchObject({ status: 'warn', mode: 'rdb' });
    expect(finding.summary).toContain('save 3600 1');
    expect(finding.summary).toContain('42 writes since the last one');
    expect(finding.summary).toContain('mailed again');
    expect(finding.fix).toContain('appendonly yes');
  });

  it('warns about no persistence, and fails it in production unless ALLOW_NO_PERSISTENCE=1', () => {
    const none = settings({ aofEnabled: false, rdbSavePoints: '' });
    expect(judgePersistence(none, DEVELOPMENT).status).toBe('warn');
    const production = judgePersistence(none, PRODUCTION);
    expect(production.status).toBe('fail');
    expect(production.fix).toContain('ALLOW_NO_PERSISTENCE=1');
    const allowed = judgePersistence(none, PRODUCTION_ALLOWED);
    expect(allowed.status).toBe('warn');
    expect(allowed.summary).toContain('ALLOW_NO_PERSISTENCE=1');
  });

  it('says it could not check, and why, rather than guessing', () => {
    const finding = judgePersistence(infoOnly({ aofEnabled: false, rdbSnapshotSeen: false }), PRODUCTION);
    expect(finding).toMatchObject({ status: 'warn', mode: 'unknown' });
    expect(finding.summary).toMatch(/^could not check persistence: AOF is off/);
    expect(finding.summary).toContain("CONFIG GET: ERR unknown command 'config'");
  });
});

describe('judgeEvictionPolicy', () => {
  it('is ok with noeviction only', () => {
    expect(judgeEvictionPolicy(settings()).status).toBe('ok');
    for (const policy of ['allkeys-lru', 'volatile-lru', 'allkeys-random', 'volatile-ttl']) {
      const finding = judgeEvictionPolicy(settings({ maxmemoryPolicy: policy }));
      expect(finding).toMatchObject({ status: 'warn', setting: 'maxmemory-policy' });
      expect(finding.summary).toContain(policy);
      expect(finding.fix).toContain('CONFIG SET maxmemory-policy noeviction');
    }
  });

  it('says it could not check when neither CONFIG nor INFO gave the policy', () => {
    const finding = judgeEvictionPolicy(infoOnly({ maxmemoryPolicy: undefined, infoUnavailable: 'NOPERM' }));
    expect(finding.status).toBe('warn');
    expect(finding.summary).toMatch(/^could not check maxmemory-policy \(CONFIG GET: .*; INFO: NOPERM\)$/);
  });
});

describe('judgeVersion', () => {
  const table: [string | undefined, 'ok' | 'warn' | 'fail'][] = [
    ['5.0.14', 'fail'],
    ['6.0.20', 'fail'],
    ['6.2.0', 'warn'],
    ['6.2.14', 'warn'],
    ['7.0.15', 'ok'],
    ['7.2.4', 'ok'],
    ['8.0.0', 'ok'],
    [undefined, 'warn'],
  ];
  it.each(table)('Redis %s: %s', (version, status) => {
    expect(judgeVersion(version).status).toBe(status);
  });

  it('compares versions by number, not as text', () => {
    expect(compareVersions('6.10.0', '6.2.0')).toBe(1);
    expect(compareVersions('7', '7.0.0')).toBe(0);
    expect(compareVersions('6.2.0', '7.0.0')).toBe(-1);
  });
});

describe('judgeMemory', () => {
  const MB = 1024 * 1024;
  it('notes that maxmemory 0 means no limit', () => {
    const finding = judgeMemory({ usedMemoryBytes: 3 * MB, maxmemoryBytes: 0 });
    expect(finding.status).toBe('ok');
    expect(finding.summary).toContain('maxmemory 0 means no limit');
  });

  it('is ok up to 80% of maxmemory, warns above, and fails once full', () => {
    expect(judgeMemory({ usedMemoryBytes: 80 * MB, maxmemoryBytes: 100 * MB }).status).toBe('ok');
    const high = judgeMemory({ usedMemoryBytes: 81 * MB, maxmemoryBytes: 100 * MB });
    expect(high.status).toBe('warn');
    expect(high.summary).toBe('81.0 MB used of maxmemory 100.0 MB (81%): at maxmemory Redis refuses writes and sends stop');
    expect(judgeMemory({ usedMemoryBytes: 100 * MB, maxmemoryBytes: 100 * MB }).status).toBe('fail');
  });
});

describe('startupRedisProblems', () => {
  it('finds nothing wrong with AOF and noeviction, nor with RDB snapshots and noeviction', () => {
    expect(startupRedisProblems(settings(), PRODUCTION)).toEqual([]);
    expect(startupRedisProblems(settings({ aofEnabled: false, rdbSavePoints: '3600 1' }), PRODUCTION)).toEqual([]);
    expect(startupRedisProblems(infoOnly({ aofEnabled: false, rdbSnapshotSeen: true }), PRODUCTION)).toEqual([]);
  });

  it('warns, naming the setting and how to change it, about an eviction policy and no persistence', () => {
    const problems = startupRedisProblems(settings({ maxmemoryPolicy: 'allkeys-lru', aofEnabled: false, rdbSavePoints: '' }), DEVELOPMENT);
    expect(problems.map(({ code, setting, fatal }) => ({ code, setting, fatal }))).toEqual([
      { code: 'eviction-policy', setting: 'maxmemory-policy', fatal: false },
      { code: 'no-persistence', setting: 'appendonly', fatal: false },
    ]);
    expect(problems[0]!.message).toMatch(
      /^Redis maxmemory-policy is allkeys-lru: .*Fix: set maxmemory-policy noeviction in redis\.conf, or run CONFIG SET maxmemory-policy noeviction/,
    );
    expect(problems[1]!.message).toMatch(/^Redis has no persistence .*Fix: set appendonly yes .*CONFIG SET appendonly yes/);
    for (const problem of problems) expect(problem.message).not.toContain('\n');
  });

  it('makes no persistence fatal in production, unless ALLOW_NO_PERSISTENCE=1', () => {
    const none = settings({ aofEnabled: false, rdbSavePoints: '' });
    const [refusal] = startupRedisProblems(none, PRODUCTION);
    expect(refusal).toMatchObject({ code: 'no-persistence', fatal: true });
    expect(refusal!.message).toMatch(
      /^Refusing to start with NODE_ENV=production: Redis has no persistence .*or set ALLOW_NO_PERSISTENCE=1 to start anyway\.$/,
    );
    expect(startupRedisProblems(none, PRODUCTION_ALLOWED)).toEqual([expect.objectContaining({ code: 'no-persistence', fatal: false })]);
  });

  it('warns, never refuses, when the settings cannot be read', () => {
    const unreadable = infoOnly({
      maxmemoryPolicy: undefined,
      aofEnabled: undefined,
      rdbSnapshotSeen: undefined,
      version: undefined,
      infoUnavailable: "ERR unknown command 'info'",
    });
    const problems = startupRedisProblems(unreadable, PRODUCTION);
    expect(problems.map(({ code, fatal }) => ({ code, fatal }))).toEqual([
      { code: 'eviction-policy-unchecked', fatal: false },
      { code: 'persistence-unchecked', fatal: false },
    ]);
    expect(problems[0]!.message).toMatch(/^Redis: could not check maxmemory-policy \(CONFIG GET: .*; INFO: .*\)\. Fix: make sure it is noeviction/);
    expect(problems[1]!.message).toMatch(/^Redis: could not check persistence .*Fix: make sure AOF \(appendonly yes\) or RDB snapshots are on/);
  });
});
