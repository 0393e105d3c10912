import type { SendStatusReport } from '../app/send-report.ts';

/** "12.3 KB (12595 bytes)": sizes the editor compares with Gmail's clipping limit. */
export function formatBytes(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB (${bytes} bytes)`;
}

/** The human-readable form of a status report. */
export function describeSendStatus(report: SendStatusReport): string {
  const lines = [
    `send ${report.sendId}: issue ${report.issueId} to list ${report.list}`,
    `  state     ${report.state}`,
    `  total     ${report.total}`,
    `  accepted  ${report.accepted}   (the SMTP server answered 250; not proof of delivery)`,
    `  failed    ${report.failed}`,
    `  skipped   ${report.skipped}   (unsubscribed or suppressed after the send was queued)`,
    `  pending   ${report.pending}${report.stuck ? `   STUCK: no job is left to serve them; run: newsletter send ${report.issueId} --list ${report.list} --retry-failed` : ''}`,
    `  started   ${report.createdAt}${report.finishedAt ? `\n  finished  ${report.finishedAt}` : ''}`,
  ];
  if (report.failures.length > 0) {
    lines.push('  failed recipients:');
    for (const failure of report.failures) {
      // An SMTP response already starts with its code ("550 5.1.1 …"); other failures carry a code only.
      lines.push(
        `    ${failure.email}: ${failure.response ?? failure.code ?? 'unknown'} (${failure.permanent ? 'permanent' : `gave up after ${failure.attempts} attempts`})`,
      );
    }
  }
  return lines.join('\n');
}
