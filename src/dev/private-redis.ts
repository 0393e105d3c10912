import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { UserFacingError } from '../core/errors.ts';

/** A redis-server of our own on a free loopback port, for the demo, the tests and the benchmark. */
export interface PrivateRedis {
  readonly url: string;
  stop(): Promise<void>;
}

/** Whether a redis-server binary is on PATH. */
export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Asks the OS for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** How spawnRedisServer starts redis-server. */
export interface RedisServerOptions {
  /** Loopback port to listen on. */
  readonly port: number;
  /** Its working folder (the AOF lives there). */
  readonly dir: string;
  /** appendonly yes (appendfsync everysec): keeps its data across a restart in `dir`. */
  readonly appendOnly: boolean;
  /** maxmemory-policy. @defaultValue `noeviction`, as BullMQ requires; tests of the start-up check set another. */
  readonly maxmemoryPolicy?: string;
  /** Commands renamed to nothing, as managed Redis services do with CONFIG. @defaultValue none */
  readonly disabledCommands?: readonly string[];
}

/**
 * Spawns redis-server on loopback with `noeviction` (as BullMQ requires, unless told otherwise)
 * and no RDB snapshots; `appendOnly` keeps its data across a restart in `dir`.
 */
export function spawnRedisServer(options: RedisServerOptions): ChildProcess {
  return spawn(
    'redis-server',
    // prettier-ignore
    ['--port', String(options.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', options.appendOnly ? 'yes' : 'no',
      '--dir', options.dir, '--maxmemory-policy', options.maxmemoryPolicy ?? 'noeviction', '--loglevel', 'warning',
      ...(options.disabledCommands ?? []).flatMap((command) => ['--rename-command', command, ''])],
    { stdio: 'ignore' },
  );
}

/** Waits until a just-spawned redis-server answers PING (after loading its AOF), or kills it and throws. */
export async function waitUntilRedisAnswers(url: string, child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // No ready check (it runs INFO, which a server may have disabled): PING itself fails with LOADING until the AOF is loaded.
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableReadyCheck: false });
    // Refusals are expected while the server boots; connect() rejects with them and we retry.
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return;
    } catch (error) {
      probe.disconnect();
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`redis-server at ${url} did not start: ${(error as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/**
 * Starts a throwaway redis-server: loopback only, `noeviction` as BullMQ requires. Its data lives
 * and dies with it; nothing shared is ever touched or flushed. Without persistence by default (the
 * tests' and the benchmark's, for speed); `appendOnly` gives it an AOF in its temp folder, so the
 * start-up check finds a Redis fit for keeping data (the demo's).
 */
export async function startPrivateRedis(options: { readonly appendOnly?: boolean } = {}): Promise<PrivateRedis> {
  if (!hasRedisServer()) {
    throw new UserFacingError(
      'redis-server is not installed. Install it with: apt-get install -y redis-server (Debian/Ubuntu) or brew install redis (macOS), or point REDIS_URL at a running Redis.',
    );
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'nl-redis-'));
  const port = await freePort();
  const child = spawnRedisServer({ port, dir, appendOnly: options.appendOnly ?? false });
  const url = `redis://127.0.0.1:${port}`;
  await waitUntilRedisAnswers(url, child);
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
