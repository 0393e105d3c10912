import { sendProblems, sendStatusReport } from '../../app/send-report.ts';
import { describeProblem, describeSendStatus } from '../format.ts';
import type { CliContext } from '../context.ts';

/**
 * `newsletter status <issue>`: where the latest send stands and who failed. With --failures, every
 * recipient that failed, bounced, was blocked or complained, with the diagnostic and its source.
 */
export async function statusCommand(cli: CliContext, issueId: string, options: { list?: string; json?: boolean; failures?: boolean }): Promise<void> {
  if (options.failures) {
    const { sendId, problems } = await cli.withServices((services) => sendProblems(services, issueId, options.list));
    if (options.json) {
      cli.io.out(JSON.stringify({ sendId, problems }, null, 2));
      return;
    }
    cli.io.out(`send ${sendId}: ${problems.length} recipient${problems.length === 1 ? '' : 's'} failed, bounced, were blocked or complained`);
    for (const problem of problems) cli.io.out(`  ${describeProblem(problem)}`);
    return;
  }
  const report = await cli.withServices((services) => sendStatusReport(services, issueId, options.list));
  cli.io.out(options.json ? JSON.stringify(report, null, 2) : describeSendStatus(report));
}
