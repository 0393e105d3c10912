import { addSubscriber } from '../../app/subscribers.ts';
import type { CliContext } from '../context.ts';

/** `newsletter subscribers add <email>`: adds one subscriber, or merges into the one with that address in any case. */
export async function subscribersAddCommand(cli: CliContext, email: string, options: { name?: string; list: string }): Promise<void> {
  const result = await cli.withServices((services) => addSubscriber(services.subscribers, { email, name: options.name, list: options.list }));
  cli.io.out(`${result.created ? 'added' : 'updated'} ${result.email} (id ${result.id}) on list ${options.list}`);
}
