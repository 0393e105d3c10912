import type { DeliveryDeps } from '../../src/delivery/deliver-job.ts';
/**
 * Wraps one async method of a store so a test can make it fail on purpose (`fault` throws) or
 * change what it returns (`transform`); everything else passes through to the real store.
 */
export function withFault<T extends object, K extends keyof T>(
  target: T,
  method: K,
  fault: (...args: T[K] extends (...args: infer A) => unknown ? A : never) => void,
  transform?: (result: T[K] extends (...args: never[]) => Promise<infer R> ? R : never) => unknown,
): T {
  return new Proxy(target, {
    get(object, property, receiver) {
      const value: unknown = Reflect.get(object, property, receiver);
      if (typeof value !== 'function') return value;
      if (property !== method) return value.bind(object);
      return async (...args: never[]) => {
        fault(...(args as unknown as Parameters<typeof fault>));
        const result: unknown = await (value as (...a: never[]) => Promise<unknown>).apply(object, args);
        return transform ? transform(result as Parameters<typeof transform>[0]) : result;
      };
    },
  });
}

/**
 * Waits until `condition` gives a truthy value (and returns it), checking every `intervalMs`, or
 * fails after `timeoutMs` saying what it waited for: a bounded wait, never a fixed sleep.
 */
export async function waitFor<T>(
  condition: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  timeoutMs: number,
  what: string | (() => string | Promise<string>),
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : await what()}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * A store fault for a worker's handler (startWorker's wrapDeps): recording a recipient as `state`
 * fails, `times` times (every time by default). `refused()` says how often it did.
 */
export function refusingRecords(state: 'accepted' | 'failed', times = Number.POSITIVE_INFINITY) {
  let refused = 0;
  return {
    refused: () => refused,
    wrapDeps: (deps: DeliveryDeps): DeliveryDeps => ({
      ...deps,
      sends: withFault(deps.sends, 'markRecipient', (_sendId, _subscriberId, recorded) => {
        if (recorded !== state || refused >= times) return;
        refused += 1;
        throw new Error('injected: Redis refused the write');
      }),
    }),
  };
}
