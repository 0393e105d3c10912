import { startSendWorker } from '../../workers/send.ts';
import type { CliContext } from '../context.ts';

/**
 * `newsletter worker`: runs a send worker (and the shared duties: outgoing webhooks, metrics
 * report) until told to stop, then finishes or hands back its jobs.
 */
export async function workerCommand(cli: CliContext): Promise<void> {
  const config = await cli.config();
  const handle = await startSendWorker(config, { duties: true });
  cli.io.out(`worker ${process.pid} running: concurrency ${config.send.workerConcurrency}, SMTP pool ${config.smtp.poolSize}`);
  const reason = await cli.untilStop();
  cli.io.out(`${reason}: finishing the jobs in flight (up to ${config.send.shutdownTimeoutMs} ms)…`);
  const { handedBack } = await handle.close();
  cli.io.out(handedBack ? 'stopped; jobs still in flight were handed back to the queue' : 'stopped cleanly');
}
