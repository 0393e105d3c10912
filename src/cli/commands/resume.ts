import { resumeSend } from '../../app/send-control.ts';
import type { CliContext } from '../context.ts';
import { operator } from '../format.ts';

/** `newsletter resume <issue>`: the send continues where it stopped; held domains are released and the breakers re-armed. */
export async function resumeCommand(cli: CliContext, issueId: string, options: { list?: string }): Promise<void> {
  const result = await cli.withServices((services) => resumeSend(services, { issueId, list: options.list, who: operator() }));
  cli.io.out(
    result.changed
      ? `send ${result.sendId} resumed (${result.jobsPromoted} waiting jobs brought forward; breakers re-armed)`
      : `send ${result.sendId} was not paused; nothing to resume`,
  );
}
