import { retryFailedRecipients, startSend } from '../../app/start-send.ts';
import type { CliContext } from '../context.ts';

/** `newsletter send <issue>`: records the send and queues one job per active subscriber; or retries the failed ones. */
export async function sendCommand(cli: CliContext, issueId: string, options: { list: string; resend?: boolean; retryFailed?: boolean }): Promise<void> {
  if (options.retryFailed) {
    const retried = await cli.withServices((services) => retryFailedRecipients(services, { issueId, list: options.list }));
    cli.io.out(`send ${retried.sendId}: ${retried.requeued} recipients requeued (permanent failures stay failed)`);
    if (retried.repaired > 0) cli.io.out(`send ${retried.sendId} was stuck: ${retried.repaired} queued recipients with no job got one again`);
    return;
  }
  const result = await cli.withServices(async (services) => {
    const started = await startSend(services, { issueId, list: options.list, resend: options.resend === true });
    return { ...started, record: await services.sends.get(started.sendId) };
  });
  for (const warning of result.warnings) cli.io.err(`warning: ${warning}`);
  cli.io.out(`${result.resumed ? 'resumed send' : 'send'} ${result.sendId}: ${result.record?.total ?? 0} recipients queued`);
  cli.io.out(`follow it with: newsletter status ${issueId} --list ${options.list}`);
  cli.io.out(result.sendId);
}
