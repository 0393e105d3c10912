import { showSubscriber } from '../../app/subscribers.ts';
import type { CliContext } from '../context.ts';
import { describeEvent } from '../format.ts';

/** `newsletter subscribers show <email>`: status, lists and attributes of one subscriber. */
export async function subscribersShowCommand(cli: CliContext, email: string, options: { json?: boolean }): Promise<void> {
  const shown = await cli.withServices((services) => showSubscriber(services, email));
  if (options.json) {
    cli.io.out(JSON.stringify(shown, null, 2));
    return;
  }
  cli.io.out(`${shown.email} (id ${shown.id})\n  name: ${shown.name || '(none)'}\n  status: ${shown.status}\n  lists: ${shown.lists.join(', ') || '(none)'}`);
  for (const [key, value] of Object.entries(shown.attributes)) cli.io.out(`  ${key}: ${value}`);
  if (shown.events.length > 0) cli.io.out('  recent events:');
  for (const event of shown.events) cli.io.out(`    ${describeEvent(event)}`);
}
