import { userInfo } from 'node:os';
import type { EventOutcome } from '../app/delivery-events.ts';
import type { RecipientProblem, SendStatusReport } from '../app/send-report.ts';
import type { DeliveryEvent, DeliveryEventKind, Diagnostic } from '../core/delivery-event.ts';

/** The words of the glossary for each kind of delivery event. */
const KIND_WORDS: Readonly<Record<DeliveryEventKind, string>> = {
  accepted: 'accepted',
  hard: 'hard bounce',
  soft: 'soft bounce',
  block: 'block',
  complaint: 'complaint',
  unsubscribe: 'unsubscribe',
};

/**
 * Text that came from outside (a report's diagnostic, an address, a reason) made safe to print:
 * control characters (ANSI escapes, carriage returns) become spaces, so a crafted report can't
 * rewrite the operator's terminal.
 */
export function printable(text: string): string {
  return text.replace(/\p{Cc}+/gu, ' ');
}

/** "550 5.1.1 User unknown": the reply code, the enhanced status and the text, as far as they are known. */
export function describeDiagnostic(diagnostic: Diagnostic): string {
  const text = diagnostic.text === undefined ? undefined : printable(diagnostic.text).replace(/\s+/g, ' ').trim();
  const codes = [diagnostic.replyCode, diagnostic.status].filter((part) => part !== undefined && !text?.includes(String(part)));
  const providerType = diagnostic.providerType && !text ? `(${printable(diagnostic.providerType)})` : undefined;
  return [...codes, providerType, text].filter(Boolean).join(' ') || '(no diagnostic)';
}

/** One line about a delivery event: when, what, from where, and why. */
export function describeEvent(event: Pick<DeliveryEvent, 'kind' | 'source' | 'diagnostic' | 'at'> & { readonly sendId?: string | undefined }): string {
  return `${event.at}  ${KIND_WORDS[event.kind]} (${event.source})${event.sendId ? ` on ${event.sendId}` : ''}: ${describeDiagnostic(event.diagnostic)}`;
}

/** What `bounces ingest` (and the bounce server's log) says about one event of a report. */
export function describeEventOutcome(outcome: EventOutcome): string {
  if (outcome.outcome === 'unmatched') {
    const { reported } = outcome;
    const recipient = reported.clues.recipient ? ` for ${printable(reported.clues.recipient)}` : '';
    return `unmatched: ${KIND_WORDS[reported.kind]}${recipient} (${reported.source}): ${printable(outcome.reason)}; kept for inspection (newsletter bounces unmatched)`;
  }
  const { event } = outcome;
  const change = outcome.statusBefore !== outcome.statusAfter ? `; status ${outcome.statusBefore ?? '?'} → ${outcome.statusAfter ?? '?'}` : '';
  return (
    `${outcome.outcome === 'applied' ? 'applied' : 'already applied'}: ${KIND_WORDS[event.kind]} for ${outcome.email} (subscriber ${event.subscriberId})` +
    `${event.sendId ? ` on send ${event.sendId}` : ''}, matched by ${outcome.via} (${event.source}): ${describeDiagnostic(event.diagnostic)}${change}`
  );
}

/** One line per recipient of `status --failures`. */
export function describeProblem(problem: RecipientProblem): string {
  const parts = [`${problem.email} (id ${problem.subscriberId})`, problem.state ?? 'not a recipient'];
  if (problem.failure)
    parts.push(
      `failed: ${printable(problem.failure.response ?? problem.failure.code ?? 'unknown')} (${problem.failure.permanent ? 'permanent' : `gave up after ${problem.failure.attempts} attempts`})`,
    );
  if (problem.event) parts.push(`${KIND_WORDS[problem.event.kind]} (${problem.event.source}): ${describeDiagnostic(problem.event.diagnostic)}`);
  return parts.join('  ');
}

/** Who runs a command, for a send's stateReason: "cli:<user name>". */
export function operator(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

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
    `  skipped   ${report.skipped}   (${report.skippedCancelled > 0 ? `${report.skippedCancelled} because the send was cancelled; the others ` : ''}unsubscribed or suppressed after the send was queued)`,
    `  bounced   ${report.bounced}   hard bounces, reported now or later${report.softBounced > 0 ? `; soft bounces ${report.softBounced}` : ''}`,
    `  blocked   ${report.blocked}   (refused for policy or reputation: never suppressed)`,
    `  complained ${report.complained}`,
    `  pending   ${report.pending}${report.sending > 0 ? `   (${report.sending} being sent right now)` : ''}${report.stuck ? `   STUCK: no job is left to serve them; run: newsletter send ${report.issueId} --list ${report.list} --retry-failed` : ''}`,
    `  started   ${report.createdAt}${report.finishedAt ? `\n  finished  ${report.finishedAt}` : ''}`,
  ];
  if (report.stateReason) {
    const { by, who, reason, at } = report.stateReason;
    lines.splice(2, 0, `  reason    ${printable(reason)} (${by === 'breaker' ? "the send's breaker" : printable(who ?? 'ops')}, ${at})`);
  }
  if (report.state === 'paused') lines.push(`  resume it with: newsletter resume ${report.issueId} --list ${report.list}`);
  for (const held of report.heldDomains) {
    lines.push(`  held      ${held.domain}: ${printable(held.reason)} (since ${held.at}; newsletter resume releases it)`);
  }
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
