import { cancelSend } from '../../app/send-control.ts';
import type { CliContext } from '../context.ts';
import { operator } from '../format.ts';

/** `newsletter cancel <issue>`: ends the send; recipients not yet sent are skipped (reason cancelled). */
export async function cancelCommand(cli: CliContext, issueId: string, options: { list?: string; reason?: string }): Promise<void> {
  const result = await cli.withServices((services) => cancelSend(services, { issueId, list: options.list, who: operator(), reason: options.reason }));
  cli.io.out(
    `send ${result.sendId} ${result.changed ? 'cancelled' : 'was already cancelled'}: ${result.skipped} recipients not yet sent are skipped (reason cancelled); messages already at the SMTP server finish`,
  );
}
