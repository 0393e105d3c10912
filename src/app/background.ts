import type { AppServices as Services } from './app-services.ts';
import { startEventRelay } from './event-webhooks.ts';
import { startMetricsReporter } from './metrics.ts';
import { startScheduler } from './schedules.ts';

/** The work every long-running process shares besides its own: it is safe to run in any number of them. */
export interface BackgroundDuties {
  stop(): Promise<void>;
}

/**
 * Starts the duties of a long-running process: the outgoing-webhook relay (each event is delivered
 * by one process, however many run it) and this process's metrics, reported through Redis so one
 * scrape of /metrics sees every process; and in `newsletter serve` the scheduler (each occurrence
 * runs once, whichever serve process claims it). The scheduler stays out of the workers: a weekly
 * run picks the newest issue from ISSUES_DIR, and the server's copy is the one the editor sees in
 * the console; a worker elsewhere may have an older copy, or none.
 */
export function startBackgroundDuties(
  services: Services,
  role: 'worker' | 'server',
  options: { readonly messagesHandled?: () => number } = {},
): BackgroundDuties {
  const duties = [...(role === 'server' ? [startScheduler(services)] : []), startEventRelay(services), startMetricsReporter(services, { role, ...options })];
  return {
    async stop() {
      await Promise.all(duties.map((duty) => duty.stop()));
    },
  };
}
