import { sendStatusReport } from '../../app/send-report.ts';
import { describeSendStatus } from '../format.ts';
import type { CliContext } from '../context.ts';

/** `newsletter status <issue>`: where the latest send stands and who failed. */
export async function statusCommand(cli: CliContext, issueId: string, options: { list?: string; json?: boolean }): Promise<void> {
  const report = await cli.withServices((services) => sendStatusReport(services, issueId, options.list));
  cli.io.out(options.json ? JSON.stringify(report, null, 2) : describeSendStatus(report));
}
