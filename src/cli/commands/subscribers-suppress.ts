import { suppressByEmail } from '../../app/subscribers.ts';
import type { SuppressionReason } from '../../core/subscriber.ts';
import type { CliContext } from '../context.ts';

/** `newsletter subscribers suppress <email>`: never mailed again until lifted. */
export async function subscribersSuppressCommand(cli: CliContext, email: string, options: { reason: SuppressionReason }): Promise<void> {
  const { subscriber, changed } = await cli.withServices((services) => suppressByEmail(services.subscribers, email, options.reason));
  cli.io.out(
    changed
      ? `${subscriber.email} is suppressed (${subscriber.status})`
      : `${subscriber.email} was already suppressed (${subscriber.status}); lift it first to change the reason`,
  );
}
