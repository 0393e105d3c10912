import { environmentSets, loadConfig, type Config } from '../../config/index.ts';
import { openServices, type Services } from '../services.ts';

/** Where a command writes: human lines on standard out, warnings and errors on standard error. */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
  /** How progress of long work is shown; absent: not at all (a test that compares output exactly). */
  readonly progress?: ProgressDisplay;
}

/**
 * How a command shows the progress of long work (`send --watch`, `subscribers import`): `bar`, a bar
 * redrawn in place on a terminal; `lines`, plain lines at most every 2 s (a file, a pipe, a log).
 */
export type ProgressDisplay = { readonly kind: 'bar'; readonly terminal: NodeJS.WritableStream } | { readonly kind: 'lines' };

/**
 * What a command runs with. The shell gives it the environment, the console and the process's
 * signals; a test gives it a config, a buffer and a promise, and runs the command in-process.
 */
export interface CliContext {
  readonly io: CliIO;
  /** The config, parsed once. */
  config(): Promise<Config>;
  /** Opens the wired services for one command and closes them when it is done. */
  withServices<T>(run: (services: Services) => Promise<T>): Promise<T>;
  /** Resolves with a reason when a long-running command (worker, serve) should stop. */
  untilStop(): Promise<string>;
  /**
   * The settings as given (environment and .env), unparsed: for `doctor`, which goes on checking
   * what it can when the config as a whole does not parse. Absent where there is no environment
   * (a test's context).
   */
  readonly rawSettings?: () => Promise<Readonly<Record<string, string | undefined>>>;
  /** Standard input, read to the end as UTF-8 (`users add --password-stdin`); a test gives its own. Absent: the process's. */
  readonly readStdin?: () => Promise<string>;
}

/** The process's standard input, read to the end as UTF-8; more than `maxBytes` is refused. */
export async function readProcessStdin(maxBytes = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new Error(`standard input is longer than ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Opens services for one command over a given config, closing them afterwards. With `io`, what
 * start-up found wrong with Redis (services.redisWarnings) is printed as `warning: …` lines on
 * standard error, where a person running the command sees it.
 */
export async function withServicesOf<T>(config: Config, run: (services: Services) => Promise<T>, io?: CliIO): Promise<T> {
  const services = await openServices(config);
  if (io) for (const warning of services.redisWarnings) io.err(`warning: ${warning.message}`);
  try {
    return await run(services);
  } finally {
    await services.close();
  }
}

/** The context of the real `newsletter` process. */
export function shellContext(): CliContext {
  const io: CliIO = {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    progress: process.stdout.isTTY ? { kind: 'bar', terminal: process.stdout } : { kind: 'lines' },
  };
  return {
    io,
    config: () => loadConfig(),
    withServices: async (run) => withServicesOf(await loadConfig(), run, io),
    untilStop: () =>
      new Promise((resolve) => {
        for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
      }),
    rawSettings: async () => {
      // environmentSets loads .env into the environment (once), as loadConfig does.
      await environmentSets('REDIS_URL');
      return { ...process.env };
    },
  };
}
