import type { AppServices as Services } from './app-services.ts';
import { startEventRelay } from './event-webhooks.ts';
import { startMetricsReporter } from './metrics.ts';
import { startScheduler } from './schedules.ts';

/** The work every long-running process shares besides its own: it is safe to run in any number of them. */
export interface BackgroundDuties {
  stop(): Promise<void>;
}

/**
 * Starts the duties of a long-running process (`newsletter serve` and `newsletter worker`): the
 * scheduler (each occurrence runs once, whichever process claims it), the outgoing-webhook relay
 * (each event is delivered by one process), and this process's metrics, reported through Redis so
 * one scrape of /metrics sees every process.
 */
export function startBackgroundDuties(
  services: Services,
  role: 'worker' | 'server',
  options: { readonly messagesHandled?: () => number } = {},
): BackgroundDuties {
  const duties = [startScheduler(services), startEventRelay(services), startMetricsReporter(services, { role, ...options })];
  return {
    async stop() {
      await Promise.all(duties.map((duty) => duty.stop()));
    },
  };
}
