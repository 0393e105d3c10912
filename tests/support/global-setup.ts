import type { TestProject } from 'vitest/node';
import { startPrivateRedis } from '../../src/dev/private-redis.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/**
 * Starts a private redis-server for the test run. Tests never use the machine's shared Redis, and
 * never flush anything: each test file works under a key prefix of its own.
 */
export default async function setup(project: TestProject) {
  const redis = await startPrivateRedis();
  project.provide('redisUrl', redis.url);
  return () => redis.stop();
}
