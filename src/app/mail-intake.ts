import { GarbledReportError, parseMailReport } from '../intake/mail-report.ts';
import { UNMATCHED_RAW_BYTES } from '../store/event-store.ts';
import { takeInReport, type EventDeps, type EventOutcome } from './delivery-events.ts';

/** What became of one inbound email. */
export type MailIntakeResult =
  /** Not a delivery report (a reply, an auto-reply): nothing to do, and no bounce back to its sender. */
  | { readonly outcome: 'ignored'; readonly reason: string }
  /** It claims to be a report but can't be read; kept for inspection with the reason. */
  | { readonly outcome: 'garbled'; readonly reason: string }
  | {
      readonly outcome: 'taken';
      readonly format: string;
      readonly outcomes: readonly EventOutcome[];
      /** Recorded, but Redis failed while applying it: the report worker applies it later. */
      readonly deferred: boolean;
    };

/**
 * Takes in one raw email sent to the bounce address (`bounces ingest`, the bounce server): a DSN,
 * an ARF complaint or an MTA's older bounce format. Resolves once the report is durably recorded;
 * only then may the caller acknowledge it.
 */
export async function takeInMail(
  deps: EventDeps,
  raw: Buffer,
  envelopeRecipient: string | undefined,
  options: { readonly retryDelayMs?: number } = {},
): Promise<MailIntakeResult> {
  const receivedAt = (deps.now?.() ?? new Date()).toISOString();
  const kept = raw.subarray(0, UNMATCHED_RAW_BYTES).toString('utf8');
  let report;
  try {
    report = await parseMailReport(raw, { envelopeRecipient });
  } catch (error) {
    if (!(error instanceof GarbledReportError)) throw error;
    await deps.events.addUnmatched({
      receivedAt,
      source: 'mail',
      reason: `garbled report: ${error.message}`,
      recipient: envelopeRecipient,
      kind: undefined,
      eventId: undefined,
      raw: kept,
    });
    deps.logger.warn({ envelopeRecipient, reason: error.message }, 'garbled delivery report kept for inspection');
    return { outcome: 'garbled', reason: error.message };
  }
  if (report.kind === 'not-a-report') return { outcome: 'ignored', reason: report.reason };
  if (report.events.length === 0) return { outcome: 'ignored', reason: 'the report tells of no failure or complaint (delivered, relayed or expanded only)' };
  const { outcomes, deferred } = await takeInReport(deps, { channel: 'mail', receivedAt, events: report.events, raw: kept }, options);
  return { outcome: 'taken', format: report.format, outcomes, deferred };
}
