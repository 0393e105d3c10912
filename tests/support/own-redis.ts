import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { onTestFinished } from 'vitest';
import { freePort, hasRedisServer, spawnRedisServer, waitUntilRedisAnswers, type RedisServerOptions } from '../../src/dev/private-redis.ts';

/**
 * Starts a redis-server of the test's own, set up as the test needs (AOF, an eviction policy,
 * CONFIG disabled as on managed services), on a free loopback port in a temp folder. Stopped and
 * removed when the test finishes. For tests of the start-up check and `doctor`, which look at
 * settings the run's shared private Redis must not change.
 */
export async function startOwnRedis(options: Omit<RedisServerOptions, 'port' | 'dir'>): Promise<{ readonly url: string }> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-redis-own-'));
  const port = await freePort();
  const child = spawnRedisServer({ ...options, port, dir });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      // Redis exits within milliseconds of SIGTERM; one that doesn't is killed rather than waited on.
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  });
  const url = `redis://127.0.0.1:${port}`;
  await waitUntilRedisAnswers(url, child);
  return { url };
}
