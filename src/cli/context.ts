import { loadConfig, type Config } from '../../config/index.ts';
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
}

/** Opens services for one command over a given config, closing them afterwards. */
export async function withServicesOf<T>(config: Config, run: (services: Services) => Promise<T>): Promise<T> {
  const services = await openServices(config);
  try {
    return await run(services);
  } finally {
    await services.close();
  }
}

/** The context of the real `newsletter` process. */
export function shellContext(): CliContext {
  return {
    io: { out: (line) => console.log(line), err: (line) => console.error(line) },
    config: () => loadConfig(),
    withServices: async (run) => withServicesOf(await loadConfig(), run),
    untilStop: () =>
      new Promise((resolve) => {
        for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
      }),
  };
}
