import type { SendSummary } from '../../app/dashboard.ts';
import type { SendAction } from '../../app/send-actions.ts';
import { isFinalSendState, type SendState } from '../../core/send-status.ts';

/**
 * What the ops pages show of a send, as text: the server renders it, and console.js copies it into
 * the same elements when it polls, so the page reads the same with and without the script and the
 * script formats nothing itself.
 */

/** The `data-field` names of a send's live values (see console.js for the hooks). */
export const LIVE_FIELDS = [
  'state',
  'total',
  'accepted',
  'failed',
  'skipped',
  'bounced',
  'complained',
  'pending',
  'progressText',
  'rate',
  'eta',
  'bounceRate',
  'complaintRate',
  'blockRate',
  'stateReason',
  'heldDomains',
  'finishedAt',
] as const;
/** One of LIVE_FIELDS. */
export type LiveField = (typeof LIVE_FIELDS)[number];

/** A send as the live parts of the pages show it. */
export interface LiveSendView {
  readonly sendId: string;
  readonly state: SendState;
  /** Nothing more will change unless ops act: the script stops polling once every send on the page is final. */
  readonly final: boolean;
  /** Share of the recipients fanned out so far that are accepted, failed or skipped, 0–100. */
  readonly progressPercent: number;
  /** The text of each data-field; '' hides an element marked `data-if` with that field. */
  readonly text: Readonly<Record<LiveField, string>>;
  /** The rate fields over their breaker threshold: shown with the class `over`. */
  readonly over: Readonly<Record<'bounceRate' | 'complaintRate' | 'blockRate', boolean>>;
  /** The actions that apply to the send as it stands (buttons shown to those who may act). */
  readonly actions: readonly SendAction[];
}

/** One row of the per-domain breakdown, as text, in column order (DOMAIN_COLUMNS). */
export interface DomainRowView {
  readonly domain: string;
  readonly cells: readonly string[];
}

/** The numeric columns of the per-domain breakdown, after the domain. */
export const DOMAIN_COLUMNS = ['accepted', 'failed', 'skipped', 'bounced', 'complained'] as const;

/** "1,234". */
export function formatCount(value: number): string {
  return value.toLocaleString('en-US');
}

/** "2.5%" (two decimals below 1%, so a 0.3% complaint threshold reads as such). */
export function formatShare(value: number): string {
  return `${(value * 100).toFixed(value > 0 && value < 0.01 ? 2 : 1)}%`;
}

/** "2026-11-03 08:00:12 UTC". */
export function formatTime(iso: string | undefined): string {
  if (iso === undefined) return '';
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC` : iso;
}

/** "12.5 msg/s"; the rate is recipients finished per second over the last minute. */
export function formatRate(ratePerSec: number): string {
  return `${ratePerSec.toFixed(ratePerSec >= 100 ? 0 : 1)} msg/s`;
}

/** "about 3 min 20 s"; "—" when there is no estimate (no rate yet, paused, or over). */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '—';
  const whole = Math.max(0, Math.ceil(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = whole % 60;
  if (hours > 0) return `about ${hours} h ${minutes} min`;
  if (minutes > 0) return `about ${minutes} min ${rest} s`;
  return `about ${rest} s`;
}

/** "Paused by ops (console:ana@example.org) at 2026-11-03 08:00:12 UTC: list looks wrong"; '' when running. */
export function describeStateReason(state: SendState, reason: SendSummary['stateReason']): string {
  if (!reason) return '';
  const verb = state === 'cancelled' ? 'Cancelled' : 'Paused';
  const who = reason.by === 'breaker' ? 'a breaker' : `ops${reason.who ? ` (${reason.who})` : ''}`;
  return `${verb} by ${who} at ${formatTime(reason.at)}: ${reason.reason}`;
}

/**
 * The actions that apply to a send as it stands; the use cases decide again when one is asked for.
 * Pause: a send still going. Resume: a paused send, or one with domains a breaker holds. Cancel:
 * any send not over. Retry-failed: a send with failed recipients, queued in full and not cancelled.
 */
export function applicableActions(summary: Pick<SendSummary, 'state' | 'failed' | 'heldDomains'>): SendAction[] {
  const { state } = summary;
  const over = isFinalSendState(state);
  const actions: SendAction[] = [];
  if (state === 'preparing' || state === 'queued' || state === 'sending') actions.push('pause');
  if (state === 'paused' || (!over && summary.heldDomains.length > 0)) actions.push('resume');
  if (!over) actions.push('cancel');
  if (summary.failed > 0 && state !== 'cancelled' && state !== 'preparing') actions.push('retry-failed');
  return actions;
}

/** The live view of one send. */
export function liveSendView(summary: SendSummary): LiveSendView {
  const finishedCount = summary.accepted + summary.failed + summary.skipped;
  const progressPercent = summary.total === 0 ? 0 : Math.min(100, Math.round((finishedCount / summary.total) * 1000) / 10);
  return {
    sendId: summary.sendId,
    state: summary.state,
    final: isFinalSendState(summary.state),
    progressPercent,
    text: {
      state: summary.state,
      total: formatCount(summary.total),
      accepted: formatCount(summary.accepted),
      failed: formatCount(summary.failed),
      skipped: formatCount(summary.skipped),
      bounced: formatCount(summary.bounced),
      complained: formatCount(summary.complained),
      pending: formatCount(summary.pending),
      progressText: `${formatCount(finishedCount)} of ${formatCount(summary.total)} (${progressPercent}%)`,
      rate: formatRate(summary.ratePerSec),
      eta: formatEta(summary.etaSeconds),
      bounceRate: formatShare(summary.rates.bounce),
      complaintRate: formatShare(summary.rates.complaint),
      blockRate: formatShare(summary.rates.block),
      stateReason: describeStateReason(summary.state, summary.stateReason),
      heldDomains: summary.heldDomains.join(', '),
      finishedAt: formatTime(summary.finishedAt),
    },
    over: {
      bounceRate: summary.rates.bounce > summary.thresholds.bounce,
      complaintRate: summary.rates.complaint > summary.thresholds.complaint,
      blockRate: summary.rates.block > summary.thresholds.block,
    },
    actions: applicableActions(summary),
  };
}

/** The per-domain breakdown as text. */
export function domainRowViews(domains: readonly ({ readonly domain: string } & Readonly<Record<(typeof DOMAIN_COLUMNS)[number], number>>)[]): DomainRowView[] {
  return domains.map((row) => ({ domain: row.domain, cells: DOMAIN_COLUMNS.map((column) => formatCount(row[column])) }));
}
