import { UserFacingError } from '../core/errors.ts';
import { isFinalSendState, type SendState } from '../core/send-status.ts';
import type { AppServices as Services } from './app-services.ts';
import { PROGRESS_BUCKET_MS } from '../store/recipient-domains.ts';
import type { SendRecord } from '../store/send-store.ts';
import { recipientProblems, type RecipientProblem } from './send-report.ts';

/**
 * What the ops console shows of the sends: one summary per send, its progress over time, its
 * per-domain breakdown and its failures. Everything here reads counters the store's scripts keep
 * (the send hash, its progress and domain hashes), or the send's failure and report records: never
 * all of a send's recipients.
 */

/** One send as the sends dashboard shows it. */
export interface SendSummary {
  readonly sendId: string;
  readonly issueId: string;
  readonly list: string;
  readonly state: SendState;
  readonly createdAt: string;
  readonly finishedAt: string | undefined;
  /** Recipients fanned out so far. */
  readonly total: number;
  readonly accepted: number;
  readonly failed: number;
  readonly skipped: number;
  /** Recipients with a hard bounce (at SMTP or reported later). */
  readonly bounced: number;
  readonly complained: number;
  /** Recipients not yet accepted, failed or skipped. */
  readonly pending: number;
  /** Recipients finished (accepted, failed or skipped) per second over the last minute; 0 once the send is over. */
  readonly ratePerSec: number;
  /** pending / rate; undefined when the rate is 0, the send is paused, or it is over. */
  readonly etaSeconds: number | undefined;
  /**
   * Hard bounces, complaints and blocks as shares of the messages answered so far (accepted +
   * failed): the whole send's rates, to set against the breaker thresholds (which the breakers
   * apply to their window of BREAKER_WINDOW_MINUTES).
   */
  readonly rates: { readonly bounce: number; readonly complaint: number; readonly block: number };
  /** BREAKER_BOUNCE_RATE, BREAKER_COMPLAINT_RATE, BREAKER_BLOCK_RATE. */
  readonly thresholds: { readonly bounce: number; readonly complaint: number; readonly block: number };
  /** Who paused or cancelled the send, and why (undefined while it runs). */
  readonly stateReason: { by: 'ops' | 'breaker'; who?: string; reason: string; at: string } | undefined;
  /** Recipient domains a breaker holds. */
  readonly heldDomains: readonly string[];
}

/** One recipient of the failures table. */
export interface FailureRow {
  readonly subscriberId: string;
  /** The address, or "(deleted)" for a subscriber removed since. */
  readonly email: string;
  /** What the receiving server (or the report) said; the SMTP reply text when there is one. */
  readonly reason: string;
  /** Where it came from: smtp (our SMTP session), dsn, arf, a provider's webhook, or worker (ours: a record, a template, a stalled job). */
  readonly source: string;
  /** hard, soft, block, complaint, unsubscribe (a delivery event), or failed (a failure that is no bounce, e.g. a connection that never answered). */
  readonly kind: string;
  /** SMTP attempts recorded with the failure; 0 when the recipient did not fail at SMTP (a bounce reported after acceptance). */
  readonly attempts: number;
  readonly at: string | undefined;
}

/** A send id the store doesn't know: the console answers 404. */
export class UnknownSendError extends UserFacingError {
  override readonly name = 'UnknownSendError';
  constructor(readonly sendId: string) {
    super(`Send "${sendId}" does not exist.`);
  }
}

/** How far back the rate looks. */
const RATE_WINDOW_MS = 60_000;
/** Sends listed when the caller gives no limit. */
const DEFAULT_SEND_LIMIT = 50;
/** Records read at once while listing sends (each read is one short transaction). */
const READ_BATCH = 100;
const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 500;
/** Failure codes of our own making (store/delivery), not an answer of the receiving server. */
const WORKER_CODES: ReadonlySet<string> = new Set(['ERECORD', 'ECOMPOSE', 'ESTALLED', 'EJOB']);

/** Every send, newest first (at most `limit`, default 50), with its live state and progress. */
export async function listSendSummaries(services: Services, options: { limit?: number } = {}): Promise<SendSummary[]> {
  const limit = options.limit ?? DEFAULT_SEND_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new UserFacingError(`The number of sends to list must be a whole number of at least 1, not ${limit}.`);
  const records = await allSendRecords(services);
  records.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
  const nowMs = Date.now();
  return Promise.all(records.slice(0, limit).map((record) => summarize(services, record, nowMs)));
}

/** One send's summary; undefined when there is no such send. */
export async function sendSummary(services: Services, sendId: string): Promise<SendSummary | undefined> {
  const record = await services.sends.get(sendId);
  return record ? summarize(services, record, Date.now()) : undefined;
}

/**
 * The send's progress over time: for each 10-second bucket in which recipients finished, the
 * cumulative counts as of its end (`at`, never later than now). Failed recipients that
 * `--retry-failed` put back leave the failed count at the bucket of the retry, so the last point
 * matches the send's counters.
 */
export async function sendProgressSeries(services: Services, sendId: string): Promise<{ at: string; accepted: number; failed: number; skipped: number }[]> {
  const entries = await services.sends.progress(sendId);
  const buckets = new Map<number, { accepted: number; failed: number; skipped: number }>();
  for (const { bucketMs, state, count } of entries) {
    const bucket = buckets.get(bucketMs) ?? { accepted: 0, failed: 0, skipped: 0 };
    if (state === 'accepted' || state === 'failed' || state === 'skipped') bucket[state] += count;
    else if (state === 'requeued') bucket.failed -= count;
    buckets.set(bucketMs, bucket);
  }
  const nowMs = Date.now();
  const totals = { accepted: 0, failed: 0, skipped: 0 };
  return [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([bucketMs, bucket]) => {
      totals.accepted += bucket.accepted;
      totals.failed += bucket.failed;
      totals.skipped += bucket.skipped;
      return { at: new Date(Math.min(bucketMs + PROGRESS_BUCKET_MS, nowMs)).toISOString(), ...totals };
    });
}

/** The name the breakdown gives recipients whose domain was not known when they were counted (a subscriber deleted since). */
const UNKNOWN_DOMAIN = '(unknown)';
/** The name of the breakdown's last row, which sums the domains past its limit. */
export const OTHER_DOMAINS = '(other domains)';
/** Domains the breakdown lists when the caller gives no limit; the rest are summed in one row. */
const DEFAULT_DOMAIN_LIMIT = 50;

/** One row of a send's per-domain breakdown. */
export interface DomainRow {
  readonly domain: string;
  readonly accepted: number;
  readonly failed: number;
  readonly skipped: number;
  readonly bounced: number;
  readonly complained: number;
}

const DOMAIN_COUNTERS = ['accepted', 'failed', 'skipped', 'bounced', 'complained'] as const;
type DomainCounter = (typeof DOMAIN_COUNTERS)[number];
const isDomainCounter = (counter: string): counter is DomainCounter => (DOMAIN_COUNTERS as readonly string[]).includes(counter);

/**
 * Per recipient domain: recipients accepted, failed, skipped, and with a hard bounce or a
 * complaint; the busiest `limit` domains (default 50) first, then, if there are more, one row
 * named OTHER_DOMAINS with the sums of the rest: a send to a big list reaches tens of thousands
 * of domains, and the page and the API answer stay small.
 */
export async function sendDomainBreakdown(services: Services, sendId: string, options: { limit?: number } = {}): Promise<DomainRow[]> {
  const limit = options.limit ?? DEFAULT_DOMAIN_LIMIT;
  if (!Number.isInteger(limit) || limit < 1) throw new UserFacingError(`The number of domains to list must be a whole number of at least 1, not ${limit}.`);
  const counts = await services.sends.domainCounts(sendId);
  const domains = new Map<string, { domain: string } & Record<DomainCounter, number>>();
  for (const { domain, counter, count } of counts) {
    if (!isDomainCounter(counter)) continue;
    const name = domain === '' ? UNKNOWN_DOMAIN : domain;
    const row = domains.get(name) ?? { domain: name, accepted: 0, failed: 0, skipped: 0, bounced: 0, complained: 0 };
    row[counter] += count;
    domains.set(name, row);
  }
  const size = (row: DomainRow) => row.accepted + row.failed + row.skipped;
  const rows = [...domains.values()]
    .filter((row) => size(row) + row.bounced + row.complained > 0)
    .sort((a, b) => size(b) - size(a) || a.domain.localeCompare(b.domain));
  if (rows.length <= limit) return rows;
  const other = { domain: OTHER_DOMAINS, accepted: 0, failed: 0, skipped: 0, bounced: 0, complained: 0 };
  for (const row of rows.slice(limit)) for (const counter of DOMAIN_COUNTERS) other[counter] += row[counter];
  return [...rows.slice(0, limit), other];
}

/**
 * One page of the send's failures table: every recipient who failed, bounced, was blocked or
 * complained (late reports included), by subscriber id; a soft bounce the recipient got past (they
 * are accepted now) is no failure and is left out (see recipientProblems). `filter` matches the address, the reason
 * or the subscriber id (case-insensitive); `kind` keeps one kind (hard, soft, block, complaint,
 * unsubscribe, failed). `page` counts from 1; a page past the end is empty.
 */
export async function sendFailuresPage(
  services: Services,
  sendId: string,
  query: { filter?: string; kind?: string; page?: number; pageSize?: number },
): Promise<{ rows: FailureRow[]; total: number; page: number; pageSize: number }> {
  const page = query.page ?? 1;
  const pageSize = query.pageSize ?? DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(page) || page < 1) throw new UserFacingError(`The page must be a whole number of at least 1, not ${page}.`);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE)
    throw new UserFacingError(`The page size must be a whole number from 1 to ${MAX_PAGE_SIZE}, not ${pageSize}.`);
  const rows = await failureRows(services, sendId, query);
  return { rows: rows.slice((page - 1) * pageSize, page * pageSize), total: rows.length, page, pageSize };
}

/** The CSV columns of the failures export, in order. */
const CSV_COLUMNS = ['subscriber_id', 'email', 'kind', 'source', 'reason', 'attempts', 'at'] as const;

/**
 * The send's failures (filtered as sendFailuresPage filters them) as CSV (RFC 4180, CRLF line
 * ends): a header line, then one line per recipient. A cell that a spreadsheet would run as a
 * formula (it starts with =, +, -, @, a tab or a carriage return) gets a leading apostrophe.
 */
export async function* sendFailuresCsv(services: Services, sendId: string, query: { filter?: string; kind?: string }): AsyncGenerator<string> {
  const rows = await failureRows(services, sendId, query);
  yield csvLine(CSV_COLUMNS);
  for (const row of rows) yield csvLine([row.subscriberId, row.email, row.kind, row.source, row.reason, String(row.attempts), row.at ?? '']);
}

async function allSendRecords(services: Services): Promise<SendRecord[]> {
  const ids = await services.sends.allIds();
  const records: SendRecord[] = [];
  for (let start = 0; start < ids.length; start += READ_BATCH) {
    const batch = await Promise.all(ids.slice(start, start + READ_BATCH).map((id) => services.sends.get(id)));
    for (const record of batch) if (record) records.push(record);
  }
  return records;
}

/** A send's summary from its record; `nowMs` is the moment the rate is measured at. */
async function summarize(services: Services, record: SendRecord, nowMs: number): Promise<SendSummary> {
  const over = isFinalSendState(record.state);
  const ratePerSec = over ? 0 : await recentRate(services, record, nowMs);
  const answered = record.accepted + record.failed;
  const share = (count: number) => (answered === 0 ? 0 : count / answered);
  const { breakers } = services.config;
  const reason = record.stateReason;
  return {
    sendId: record.id,
    issueId: record.issueId,
    list: record.list,
    state: record.state,
    createdAt: record.createdAt,
    finishedAt: record.finishedAt,
    total: record.total,
    accepted: record.accepted,
    failed: record.failed,
    skipped: record.skipped,
    bounced: record.bounced,
    complained: record.complained,
    pending: record.pending,
    ratePerSec,
    etaSeconds: over || record.state === 'paused' || ratePerSec === 0 ? undefined : Math.ceil(record.pending / ratePerSec),
    rates: { bounce: share(record.bounced), complaint: share(record.complained), block: share(record.blocked) },
    thresholds: { bounce: breakers.bounceRate, complaint: breakers.complaintRate, block: breakers.blockRate },
    stateReason: reason ? { by: reason.by, ...(reason.who === undefined ? {} : { who: reason.who }), reason: reason.reason, at: reason.at } : undefined,
    heldDomains: record.heldDomains.map(({ domain }) => domain),
  };
}

/**
 * Recipients finished per second over the last minute, from the progress buckets that cover it
 * (one read of a few fields). The buckets start up to 10 s before the minute, so the time they
 * cover is counted from their start, or from the send's creation when that is later.
 */
async function recentRate(services: Services, record: SendRecord, nowMs: number): Promise<number> {
  const fromMs = nowMs - RATE_WINDOW_MS;
  const sums = await services.sends.progressBetween(record.id, fromMs, nowMs);
  const finished = sums.accepted + sums.failed + sums.skipped;
  if (finished <= 0) return 0;
  const coveredFrom = Math.max(fromMs - (fromMs % PROGRESS_BUCKET_MS), Date.parse(record.createdAt) || 0);
  const seconds = Math.max(1, (nowMs - coveredFrom) / 1000);
  return finished / seconds;
}

async function failureRows(services: Services, sendId: string, query: { filter?: string | undefined; kind?: string | undefined }): Promise<FailureRow[]> {
  if (!(await services.sends.exists(sendId))) throw new UnknownSendError(sendId);
  const problems = await recipientProblems(services, sendId);
  const needle = query.filter?.trim().toLowerCase() ?? '';
  const kind = query.kind?.trim() ?? '';
  return problems
    .map(toFailureRow)
    .filter(
      (row) =>
        (kind === '' || row.kind === kind) && (needle === '' || [row.email, row.reason, row.subscriberId].some((text) => text.toLowerCase().includes(needle))),
    );
}

function toFailureRow(problem: RecipientProblem): FailureRow {
  const { failure, event } = problem;
  const smtpReason = failure ? (failure.response ?? [failure.responseCode, failure.code].filter((part) => part !== undefined).join(' ')) : '';
  const eventReason = event ? [event.diagnostic.status, event.diagnostic.text ?? event.diagnostic.providerType].filter(Boolean).join(' ') : '';
  const workerFailure = failure?.code !== undefined && WORKER_CODES.has(failure.code);
  return {
    subscriberId: problem.subscriberId,
    email: problem.email,
    reason: smtpReason || eventReason,
    source: event?.source ?? (workerFailure ? 'worker' : 'smtp'),
    kind: event?.kind ?? 'failed',
    attempts: failure?.attempts ?? 0,
    at: failure?.at ?? event?.at,
  };
}

/** Characters that make a spreadsheet read a cell as a formula when they come first (CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/;

/** One CSV line (RFC 4180): a cell with a comma, a quote or a line break is quoted, its quotes doubled. */
function csvLine(cells: readonly string[]): string {
  return `${cells.map(csvCell).join(',')}\r\n`;
}

function csvCell(value: string): string {
  const safe = FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}
