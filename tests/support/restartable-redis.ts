import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { onTestFinished } from 'vitest';
import { freePort, hasRedisServer, spawnRedisServer, waitUntilRedisAnswers } from '../../src/dev/private-redis.ts';

/** A redis-server of a test's own that it can stop and start again, keeping its data (AOF). */
export interface RestartableRedis {
  readonly url: string;
  readonly port: number;
  /** SIGTERM (Redis flushes the AOF and exits), then waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder, and waits until it answers PING. */
  start(): Promise<void>;
  /** Stops it for good and removes its folder; runs by itself when the test finishes. */
  destroy(): Promise<void>;
}

/**
 * Starts redis-server with `--appendonly yes` in a temp folder on a free loopback port. Only for
 * tests that restart Redis; every other test uses the run's shared private Redis.
 */
export async function startRestartableRedis(): Promise<RestartableRedis> {
  if (!hasRedisServer()) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-redis-restart-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    if (child && child.exitCode === null && child.signalCode === null) throw new Error('redis-server is already running');
    const server = spawnRedisServer({ port, dir, appendOnly: true });
    child = server;
    exited = new Promise((resolve) => server.once('exit', () => resolve()));
    // Answers PING only once the AOF is loaded (LOADING errors before that).
    await waitUntilRedisAnswers(url, server);
  };
  const stop = async () => {
    const server = child;
    if (!server || server.exitCode !== null || server.signalCode !== null) return;
    server.kill('SIGTERM');
    // Redis exits within milliseconds of SIGTERM; a server that doesn't is killed rather than waited on.
    const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  let destroying: Promise<void> | undefined;
  const destroy = () =>
    (destroying ??= (async () => {
      await stop();
      await rm(dir, { recursive: true, force: true });
    })());

  await start();
  onTestFinished(() => destroy());
  return { url, port, start, stop, destroy };
}
