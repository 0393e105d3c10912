import { countSubscribers } from '../../app/subscribers.ts';
import type { CliContext } from '../context.ts';

/** `newsletter subscribers count`: a list's members by status, from counters. */
export async function subscribersCountCommand(cli: CliContext, options: { list: string }): Promise<void> {
  const counts = await cli.withServices((services) => countSubscribers(services.subscribers, options.list));
  const parts = Object.entries(counts.byStatus).map(([status, count]) => `${count} ${status}`);
  cli.io.out(`list ${options.list}: ${counts.total} subscribers (${parts.join(', ')})`);
}
