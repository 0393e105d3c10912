import { environmentSets, loadConfig, type Config } from '../../config/index.ts';
import { openServices, type Services } from '../services.ts';

/** Where a command writes: human lines on standard out, warnings and errors on standard error. */
export interface CliIO {
  out(line: string): void;
  err(line: string): void;
}

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
  const io: CliIO = { out: (line) => console.log(line), err: (line) => console.error(line) };
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
