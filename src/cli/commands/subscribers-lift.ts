import { liftSuppressionByEmail } from '../../app/subscribers.ts';
import type { CliContext } from '../context.ts';

/** `newsletter subscribers lift <email>`: the only way a suppressed address is mailed again. */
export async function subscribersLiftCommand(cli: CliContext, email: string): Promise<void> {
  const { subscriber, previous } = await cli.withServices((services) => liftSuppressionByEmail(services.subscribers, email));
  cli.io.out(previous === 'active' ? `${subscriber.email} was not suppressed` : `${subscriber.email} is active again (was ${previous})`);
}
