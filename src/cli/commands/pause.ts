import { pauseSend } from '../../app/send-control.ts';
import type { CliContext } from '../context.ts';
import { operator } from '../format.ts';

/** `newsletter pause <issue>`: no new message of the send starts until `newsletter resume`. */
export async function pauseCommand(cli: CliContext, issueId: string, options: { list?: string; reason?: string }): Promise<void> {
  const result = await cli.withServices((services) => pauseSend(services, { issueId, list: options.list, who: operator(), reason: options.reason }));
  cli.io.out(
    result.changed
      ? `send ${result.sendId} paused: no new message starts; resume with: newsletter resume ${issueId}`
      : `send ${result.sendId} was already paused`,
  );
}
