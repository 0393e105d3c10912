import type { DomainRow, FailureRow, SendSummary } from '../../app/dashboard.ts';
import type { SendAction } from '../../app/send-actions.ts';
import { can, ROLES } from '../../core/roles.ts';
import { escape } from '../public/page.ts';
import { progressChart, renderChartSvg, type ProgressPoint } from './progress-chart.ts';
import { DOMAIN_COLUMNS, domainRowViews, formatCount, formatShare, formatTime, liveSendView, type LiveField, type LiveSendView } from './send-views.ts';

/**
 * The HTML of the ops pages: the sends dashboard, one send's page and the confirmation of an action.
 * Every value is escaped here; the live values sit in elements marked with data-field inside an
 * element marked data-send, which console.js updates (see the hooks at the top of console.js).
 */

/** The kinds of the failures table, as sendFailuresPage names them, with what each means. */
export const FAILURE_KINDS: readonly { readonly kind: string; readonly label: string }[] = [
  { kind: 'hard', label: 'hard bounce' },
  { kind: 'soft', label: 'soft bounce' },
  { kind: 'block', label: 'block' },
  { kind: 'complaint', label: 'complaint' },
  { kind: 'unsubscribe', label: 'unsubscribe' },
  { kind: 'failed', label: 'failed (no bounce)' },
];

/** What the failures table shows: the query of the page's URL, checked. */
export interface FailuresQuery {
  readonly filter: string;
  readonly kind: string;
  readonly page: number;
  readonly pageSize: number;
}

/** The failures table's page size unless the URL asks for another. */
export const DEFAULT_FAILURES_PAGE_SIZE = 25;

/** What an action just did, for the notice on the send's page after the redirect. */
export interface DoneNotice {
  readonly action: SendAction;
  readonly changed: boolean;
  readonly count: number | undefined;
}

/** The words of each action: its button, the confirmation's question and what it does. */
export const ACTION_WORDS: Readonly<
  Record<SendAction, { readonly button: string; readonly question: string; readonly explains: string; readonly reason: boolean }>
> = {
  pause: {
    button: 'Pause',
    question: 'Pause this send?',
    explains: 'No new message of this send starts once you confirm; messages already at the SMTP server finish. Resume it to go on where it stopped.',
    reason: true,
  },
  resume: {
    button: 'Resume',
    question: 'Resume this send?',
    explains: 'The send goes on where it stopped. Domains a breaker holds are released and the breakers start counting again.',
    reason: false,
  },
  cancel: {
    button: 'Cancel send',
    question: 'Cancel this send for good?',
    explains:
      'Recipients not yet sent end as skipped (reason: cancelled); messages already at the SMTP server finish. A cancelled send cannot be resumed: to mail the issue to this list again, send it again as a resend.',
    reason: true,
  },
  'retry-failed': {
    button: 'Retry failed',
    question: 'Retry the failed recipients?',
    explains:
      'Recipients whose attempts ran out on temporary errors are queued again. Permanent failures (hard bounces, blocks) stay failed, and accepted recipients are never mailed again.',
    reason: false,
  },
};

const sendHref = (sendId: string) => `/admin/sends/${encodeURIComponent(sendId)}`;

function field(view: LiveSendView, name: LiveField, options: { tag?: string; className?: string } = {}): string {
  const tag = options.tag ?? 'span';
  const over = (name === 'bounceRate' || name === 'complaintRate' || name === 'blockRate') && view.over[name];
  const classes = [options.className, over ? 'over' : undefined].filter(Boolean).join(' ');
  return `<${tag}${classes ? ` class="${escape(classes)}"` : ''} data-field="${name}">${escape(view.text[name])}</${tag}>`;
}

function stateBadge(view: LiveSendView): string {
  return `<span class="state state-${escape(view.state)}" data-field="state">${escape(view.text.state)}</span>`;
}

function progressBar(view: LiveSendView): string {
  return (
    `<div class="bar" data-field="progress" role="progressbar" aria-label="Progress" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${view.progressPercent}">` +
    `<span style="width:${view.progressPercent}%"></span></div>`
  );
}

/** The counts each dashboard row shows, in column order. */
const DASHBOARD_COUNTS = ['accepted', 'failed', 'skipped', 'bounced', 'complained', 'pending'] as const satisfies readonly LiveField[];

/** The sends dashboard: every send (newest first), live while any is not final. */
export function dashboardBody(summaries: readonly SendSummary[], options: { readonly limit: number }): string {
  if (summaries.length === 0) {
    return '<p>No sends yet. A send appears here as soon as it starts, from the console, the CLI, the API or a schedule.</p>';
  }
  const thresholds = summaries[0]!.thresholds;
  const rateLine = (view: LiveSendView, name: 'bounceRate' | 'complaintRate' | 'blockRate', label: string, threshold: number) =>
    `<span class="rate-line">${label} ${field(view, name, { tag: 'b' })} <small>/ ${escape(formatShare(threshold))}</small></span>`;
  const rows = summaries
    .map((summary) => {
      const view = liveSendView(summary);
      return (
        `<tr data-send="${escape(summary.sendId)}" data-final="${view.final}">` +
        `<td><a class="send-id" href="${escape(sendHref(summary.sendId))}">${escape(summary.sendId)}</a>` +
        `<small>${escape(summary.issueId)} to ${escape(summary.list)}, <time datetime="${escape(summary.createdAt)}">${escape(formatTime(summary.createdAt))}</time></small></td>` +
        `<td>${stateBadge(view)}<small data-if="stateReason"${view.text.stateReason ? '' : ' hidden'}>${field(view, 'stateReason')}</small></td>` +
        DASHBOARD_COUNTS.map((name) => field(view, name, { tag: 'td', className: 'num' })).join('') +
        `<td class="progress-cell">${progressBar(view)}${field(view, 'progressText', { tag: 'small' })}` +
        `<small>${field(view, 'rate')} · ETA ${field(view, 'eta')}</small></td>` +
        `<td class="rates">${rateLine(view, 'bounceRate', 'bounce', thresholds.bounce)}${rateLine(view, 'complaintRate', 'complaint', thresholds.complaint)}` +
        `${rateLine(view, 'blockRate', 'block', thresholds.block)}</td>` +
        `</tr>`
      );
    })
    .join('');
  return (
    `<div class="live" data-live="/admin/sends.json">` +
    `<p class="live-status"><a href="/admin/sends">Refresh</a> <span data-live-status></span></p>` +
    `<p data-live-new hidden class="notice">A new send has started: <a href="/admin/sends">refresh</a> to see it.</p>` +
    `<div class="table-wrap"><table class="sends"><caption>Sends, newest first. Rates are shares of the messages answered so far, each against its ` +
    `breaker threshold (after the /); one over its threshold is marked.</caption><thead><tr>` +
    `<th scope="col">Send</th><th scope="col">State</th><th scope="col" class="num">Accepted</th><th scope="col" class="num">Failed</th>` +
    `<th scope="col" class="num">Skipped</th><th scope="col" class="num">Bounced</th><th scope="col" class="num">Complained</th><th scope="col" class="num">Pending</th>` +
    `<th scope="col">Progress, rate, ETA</th><th scope="col">Rates / limits</th></tr></thead><tbody>${rows}</tbody></table></div>` +
    (summaries.length >= options.limit ? `<p>Showing the ${formatCount(options.limit)} newest sends.</p>` : '') +
    `</div>`
  );
}

/** Everything one send's page shows. */
export interface SendPageInput {
  readonly summary: SendSummary;
  readonly series: readonly ProgressPoint[];
  readonly domains: readonly DomainRow[];
  /** The failures table's page; undefined when the viewer may not see who failed (sends.failures): the section says who may. */
  readonly failures: { readonly rows: readonly FailureRow[]; readonly total: number; readonly page: number; readonly pageSize: number } | undefined;
  readonly query: FailuresQuery;
  /** Whether the viewer may pause, resume, cancel and retry (sends.control): the buttons show only then. */
  readonly canControl: boolean;
  readonly done: DoneNotice | undefined;
}

function doneNotice(done: DoneNotice): string {
  const count = done.count ?? 0;
  const text: Record<SendAction, string> = {
    pause: done.changed ? 'Paused: no new message of this send starts until it is resumed.' : 'The send was paused already; nothing changed.',
    resume: done.changed ? 'Resumed: the send goes on where it stopped.' : 'The send was not paused; held domains, if any, were released.',
    cancel: done.changed ? `Cancelled: ${formatCount(count)} recipients not yet sent end as skipped.` : 'The send was cancelled already; nothing changed.',
    'retry-failed': `Queued ${formatCount(count)} failed recipients again.`,
  };
  return `<p class="notice" role="status">${escape(text[done.action])}</p>`;
}

function actionLinks(summary: SendSummary, view: LiveSendView): string {
  const links = (Object.keys(ACTION_WORDS) as SendAction[]).map((action) => {
    const href = `${sendHref(summary.sendId)}/confirm?action=${encodeURIComponent(action)}`;
    const className = action === 'cancel' ? 'button danger' : action === 'retry-failed' ? 'button secondary' : 'button';
    return `<a class="${className}" href="${escape(href)}" data-action="${action}"${view.actions.includes(action) ? '' : ' hidden'}>${escape(ACTION_WORDS[action].button)}…</a>`;
  });
  return `<div class="actions">${links.join('')}</div>`;
}

function card(view: LiveSendView, name: LiveField, label: string, note = ''): string {
  return `<div class="card"><span>${escape(label)}</span>${field(view, name, { tag: 'b' })}${note ? `<small>${escape(note)}</small>` : ''}</div>`;
}

/** One send's page: state, cards, progress chart, per-domain breakdown, failures, and the action buttons. */
export function sendPageBody(input: SendPageInput): string {
  const { summary } = input;
  const view = liveSendView(summary);
  const chart = progressChart(input.series, { createdAt: summary.createdAt, total: summary.total });
  const domainRows = domainRowViews(input.domains);
  const meta =
    `<p class="send-meta">Issue <a href="/admin/issues/${escape(encodeURIComponent(summary.issueId))}">${escape(summary.issueId)}</a> to list <b>${escape(summary.list)}</b> · ` +
    `${stateBadge(view)} · started <time datetime="${escape(summary.createdAt)}">${escape(formatTime(summary.createdAt))}</time>` +
    `<span data-if="finishedAt"${view.text.finishedAt ? '' : ' hidden'}> · finished ${field(view, 'finishedAt')}</span></p>`;
  const cards =
    `<div class="cards">` +
    card(view, 'total', 'Recipients', 'queued for this send so far') +
    card(view, 'accepted', 'Accepted', 'the SMTP server answered 250') +
    card(view, 'failed', 'Failed', 'refused or out of attempts') +
    card(view, 'skipped', 'Skipped', 'suppressed or cancelled before their turn') +
    card(view, 'bounced', 'Bounced', 'hard bounces, late reports included') +
    card(view, 'complained', 'Complained', 'spam reports') +
    card(view, 'pending', 'Pending', 'not yet accepted, failed or skipped') +
    card(view, 'rate', 'Rate', 'over the last minute') +
    card(view, 'eta', 'ETA', 'at the current rate') +
    card(view, 'bounceRate', 'Bounce rate', `limit ${formatShare(summary.thresholds.bounce)}`) +
    card(view, 'complaintRate', 'Complaint rate', `limit ${formatShare(summary.thresholds.complaint)}`) +
    card(view, 'blockRate', 'Block rate', `limit ${formatShare(summary.thresholds.block)}`) +
    `</div>`;
  const domainsTable =
    `<div class="table-wrap"><table class="domains"><thead><tr><th scope="col">Domain</th>` +
    DOMAIN_COLUMNS.map((column) => `<th scope="col" class="num">${escape(column[0]!.toUpperCase() + column.slice(1))}</th>`).join('') +
    `</tr></thead><tbody data-domains>` +
    (domainRows.length === 0
      ? `<tr><td colspan="${DOMAIN_COLUMNS.length + 1}">No recipient has finished yet.</td></tr>`
      : domainRows
          .map((row) => `<tr><td>${escape(row.domain)}</td>${row.cells.map((cell) => `<td class="num">${escape(cell)}</td>`).join('')}</tr>`)
          .join('')) +
    `</tbody></table></div>`;
  return (
    `<div class="live" data-live="${escape(sendHref(summary.sendId))}.json">` +
    (input.done ? doneNotice(input.done) : '') +
    `<p class="live-status"><a href="${escape(sendHref(summary.sendId))}">Refresh</a> · <a href="/admin/sends">All sends</a> <span data-live-status></span></p>` +
    `<section data-send="${escape(summary.sendId)}" data-final="${view.final}">` +
    meta +
    `<p class="notice" data-if="stateReason"${view.text.stateReason ? '' : ' hidden'}>${field(view, 'stateReason')}</p>` +
    `<p class="notice problem" data-if="heldDomains"${view.text.heldDomains ? '' : ' hidden'}>Held by a breaker until resumed: ${field(view, 'heldDomains')}</p>` +
    `<div class="progress">${progressBar(view)}${field(view, 'progressText', { tag: 'small' })}</div>` +
    cards +
    (input.canControl ? actionLinks(summary, view) : '') +
    `<h2>Progress over time</h2><figure class="chart">${renderChartSvg(chart)}` +
    `<figcaption>Recipients accepted, failed and skipped since the send started, in 10-second steps (times in UTC).</figcaption></figure>` +
    `<h2>Recipient domains</h2>${domainsTable}` +
    `</section>` +
    (input.failures ? failuresSection(summary.sendId, input.failures, input.query) : failuresWithheld()) +
    `</div>`
  );
}

function failuresHref(sendId: string, query: Partial<FailuresQuery>, path = ''): string {
  const params = new URLSearchParams();
  if (query.filter) params.set('filter', query.filter);
  if (query.kind) params.set('kind', query.kind);
  if (query.page !== undefined && query.page > 1) params.set('page', String(query.page));
  if (query.pageSize !== undefined && query.pageSize !== DEFAULT_FAILURES_PAGE_SIZE) params.set('pageSize', String(query.pageSize));
  const search = params.toString();
  return `${sendHref(sendId)}${path}${search ? `?${search}` : ''}${path ? '' : '#failures'}`;
}

/**
 * In place of the failures table for a viewer without sends.failures (the editor): the table names
 * subscribers' addresses. The counts above still say how many failed, bounced or complained.
 */
function failuresWithheld(): string {
  const roles = ROLES.filter((role) => can(role, 'sends.failures')).join(' and ');
  return (
    `<section id="failures"><h2>Failures</h2>` +
    `<p>Failures: visible to the ${escape(roles)} roles. Who failed and why names subscribers' addresses; ` +
    `the counts above say how many failed, bounced or complained.</p></section>`
  );
}

function failuresSection(sendId: string, failures: NonNullable<SendPageInput['failures']>, query: FailuresQuery): string {
  const pages = Math.max(1, Math.ceil(failures.total / failures.pageSize));
  const filtered = query.filter !== '' || query.kind !== '';
  const kindOptions = [`<option value="">any kind</option>`]
    .concat(FAILURE_KINDS.map(({ kind, label }) => `<option value="${escape(kind)}"${kind === query.kind ? ' selected' : ''}>${escape(label)}</option>`))
    .join('');
  const form =
    `<form method="get" action="${escape(sendHref(sendId))}#failures" class="filters" role="search">` +
    `<label>Recipient, reason or id <input type="search" name="filter" maxlength="200" value="${escape(query.filter)}"></label>` +
    `<label>Kind <select name="kind">${kindOptions}</select></label>` +
    (query.pageSize === DEFAULT_FAILURES_PAGE_SIZE ? '' : `<input type="hidden" name="pageSize" value="${query.pageSize}">`) +
    `<button type="submit">Filter</button>` +
    (filtered ? ` <a href="${escape(failuresHref(sendId, { pageSize: query.pageSize }))}">Clear</a>` : '') +
    `</form>`;
  const rows = failures.rows
    .map(
      (row) =>
        `<tr><td>${escape(row.email)}</td><td>${escape(row.reason)}</td><td>${escape(row.source)}</td><td>${escape(row.kind)}</td>` +
        `<td class="num">${formatCount(row.attempts)}</td><td>${row.at ? `<time datetime="${escape(row.at)}">${escape(formatTime(row.at))}</time>` : ''}</td></tr>`,
    )
    .join('');
  const table =
    failures.total === 0
      ? `<p>${filtered ? 'No failure matches.' : 'No recipient has failed, bounced or complained.'}</p>`
      : `<div class="table-wrap"><table class="failures"><thead><tr><th scope="col">Recipient</th><th scope="col">Reason</th><th scope="col">Source</th>` +
        `<th scope="col">Kind</th><th scope="col" class="num">Attempts</th><th scope="col">When</th></tr></thead><tbody>` +
        (rows || `<tr><td colspan="6">No failures on this page.</td></tr>`) +
        `</tbody></table></div>`;
  const previous =
    failures.page > 1 ? `<a rel="prev" href="${escape(failuresHref(sendId, { ...query, page: Math.min(failures.page - 1, pages) }))}">« Previous</a>` : '';
  const next = failures.page < pages ? `<a rel="next" href="${escape(failuresHref(sendId, { ...query, page: failures.page + 1 }))}">Next »</a>` : '';
  const paging =
    failures.total > failures.pageSize || failures.page > 1
      ? `<nav class="paging" aria-label="Failures pages">${previous} <span>Page ${formatCount(failures.page)} of ${formatCount(pages)}</span> ${next}</nav>`
      : '';
  return (
    `<section id="failures"><h2>Failures</h2>` +
    `<p>Recipients who failed, bounced, were blocked or complained, late reports included. ${formatCount(failures.total)} ${filtered ? 'match' : 'in all'} · ` +
    `<a href="${escape(failuresHref(sendId, { filter: query.filter, kind: query.kind }, '/failures.csv'))}" download>Download CSV</a>` +
    ` <small>(as of this page load)</small></p>` +
    `<p class="notice" data-failures-stale hidden>Recipients have failed, bounced or complained since this page loaded: ` +
    `<a href="${escape(failuresHref(sendId, query))}">refresh</a> to see them here.</p>` +
    form +
    table +
    paging +
    `</section>`
  );
}

/** The confirmation of an action: what it does, the send as it stands, and the form that does it. */
export function confirmBody(summary: SendSummary, action: SendAction, csrf: string): string {
  const words = ACTION_WORDS[action];
  const view = liveSendView(summary);
  return (
    `<p>${escape(words.explains)}</p>` +
    `<p>Send <a href="${escape(sendHref(summary.sendId))}">${escape(summary.sendId)}</a>: ${stateBadge(view)} · ` +
    `${escape(view.text.progressText)} finished · ${escape(view.text.pending)} pending · ${escape(view.text.failed)} failed</p>` +
    `<form method="post" action="${escape(`${sendHref(summary.sendId)}/${action}`)}" class="stack">` +
    `<input type="hidden" name="_csrf" value="${escape(csrf)}">` +
    (words.reason
      ? `<label>Reason (shown on the send's page) <input type="text" name="reason" maxlength="${MAX_REASON_LENGTH}" placeholder="e.g. wrong list"></label>`
      : '') +
    `<div class="actions"><button type="submit"${action === 'cancel' ? ' class="danger"' : ''}>${escape(words.button)}</button>` +
    `<a class="button secondary" href="${escape(sendHref(summary.sendId))}">Back</a></div></form>`
  );
}

/** The longest pause or cancel reason the console takes. */
export const MAX_REASON_LENGTH = 300;
