import type { CliContext } from '../context.ts';
import { printable } from '../format.ts';

/** `newsletter bounces unmatched`: the reports no subscriber could be found for, newest first. */
export async function bouncesUnmatchedCommand(cli: CliContext, options: { limit: number; json?: boolean }): Promise<void> {
  const { total, reports } = await cli.withServices((services) => services.events.unmatched(options.limit));
  if (options.json) {
    cli.io.out(JSON.stringify({ total, reports }, null, 2));
    return;
  }
  cli.io.out(`${total} unmatched report${total === 1 ? '' : 's'}${total > reports.length ? ` (the newest ${reports.length} shown)` : ''}`);
  for (const report of reports)
    cli.io.out(
      printable(
        `  ${report.receivedAt}  ${report.source}${report.kind ? ` ${report.kind}` : ''}${report.recipient ? ` for ${report.recipient}` : ''}: ${report.reason}`,
      ),
    );
}
