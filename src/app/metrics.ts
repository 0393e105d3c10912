import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Queue } from 'bullmq';
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { z } from 'zod';
import { isFinalSendState, type SendState } from '../core/send-status.ts';
import type { AppServices as Services } from './app-services.ts';
import { MetricsStore } from '../store/metrics-store.ts';
import { CorruptRecordError, parseJson, parseRecord } from '../store/records.ts';
import { listSendSummaries, type SendSummary } from './dashboard.ts';

/**
 * The Prometheus metrics of `GET /metrics`. The newsletter's own gauges are computed at scrape time
 * from the counters the store keeps (no scan of recipients); the default process metrics (memory,
 * CPU, event loop, GC) of every long-running process come through Redis: each reports its own
 * there (startMetricsReporter), and the scrape merges them under a `process` label, so one scrape
 * of the server sees every worker.
 */

/** Every send state, so that `newsletter_sends` has a series for each even when it counts none (the compiler checks the list is whole). */
const SEND_STATES: Readonly<Record<SendState, true>> = {
  preparing: true,
  queued: true,
  sending: true,
  paused: true,
  sent: true,
  'sent-with-failures': true,
  cancelled: true,
};
/** How long a finished send keeps its per-send series. */
const FINISHED_SEND_KEPT_MS = 24 * 3600_000;
/** How often a process reports its metrics unless told otherwise. */
const DEFAULT_REPORT_INTERVAL_MS = 15_000;
/** A report lives this many intervals: a process that missed two is gone from the scrape at the third. */
const REPORT_TTL_INTERVALS = 3;

/** This process's default metrics (prom-client's collectDefaultMetrics), in a registry of their own; made once per process. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * Drawn once per process: role, host and pid alone can name two processes alike (containers all
 * run as pid 1, and may share a hostname), and their reports would overwrite each other.
 */
const PROCESS_SUFFIX = randomBytes(3).toString('hex');

/** How a process is named in the `process` label: role, host, pid, and a random suffix of its own. */
export function processId(role: string): string {
  return `${role}/${hostname()}/${process.pid}/${PROCESS_SUFFIX}`;
}

/** What the server renders of itself, read fresh; a report it also writes to Redis is left out. */
const SERVER_ROLE = 'server';

/** A metric family as prom-client's getMetricsAsJSON() gives it (after a trip through JSON: NaN became null). */
const metricFamiliesSchema = z.array(
  z.object({
    name: z.string().min(1),
    help: z.string(),
    type: z.enum(['counter', 'gauge', 'histogram', 'summary']),
    values: z.array(
      z.object({
        value: z.number().nullable(),
        labels: z.record(z.string(), z.union([z.string(), z.number()])).default({}),
        metricName: z.string().optional(),
      }),
    ),
  }),
);
type MetricFamily = z.infer<typeof metricFamiliesSchema>[number];

function readFamilies(json: string, id: string): MetricFamily[] | CorruptRecordError {
  try {
    return parseRecord(metricFamiliesSchema, parseJson(json), `The metrics reported by process ${id}`);
  } catch (error) {
    if (error instanceof CorruptRecordError) return error;
    throw error;
  }
}

/** The metrics of every process and of the newsletter, as Prometheus text. */
export async function renderMetrics(services: Services): Promise<{ contentType: string; body: string }> {
  const [newsletter, processes] = await Promise.all([newsletterMetrics(services), processMetricsOfAll(services)]);
  const registry = Registry.merge([newsletter, processes]);
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/**
 * Reports this process's default metrics (and, for a worker, the messages it handled) to Redis
 * every `intervalMs` (default 15 s), where they expire after three intervals: a process that died
 * leaves the scrape by itself. A report that can't be written is logged and tried again at the
 * next interval; metrics never stop a worker.
 */
export function startMetricsReporter(
  services: Services,
  options: {
    role: 'worker' | 'server';
    /** Milliseconds between reports. @defaultValue 15000 */
    intervalMs?: number;
    /** Messages this process has handled so far (a worker's count), reported as `newsletter_process_messages_handled_total`. */
    messagesHandled?: () => number;
  },
): { stop(): Promise<void> } {
  const intervalMs = options.intervalMs ?? DEFAULT_REPORT_INTERVAL_MS;
  const store = new MetricsStore(services.redis, services.config.redis.prefix);
  const id = processId(options.role);
  let writing: Promise<void> | undefined;
  let stopped = false;
  const report = async () => {
    const families = await processMetrics().getMetricsAsJSON();
    const handled = options.messagesHandled?.();
    const extra =
      handled === undefined
        ? []
        : [
            {
              name: 'newsletter_process_messages_handled_total',
              help: 'Messages this process has handled.',
              type: 'counter',
              values: [{ value: handled, labels: {} }],
            },
          ];
    await store.saveReport(
      id,
      { role: options.role, pid: process.pid, host: hostname(), reportedAt: new Date().toISOString(), metrics: JSON.stringify([...families, ...extra]) },
      intervalMs * REPORT_TTL_INTERVALS,
    );
  };
  const tick = () => {
    if (writing || stopped) return;
    writing = report()
      .catch((error: unknown) =>
        services.logger.warn({ err: error, process: id }, 'could not report this process’s metrics; trying again at the next interval'),
      )
      .finally(() => {
        writing = undefined;
      });
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await writing;
      await store
        .removeReport(id)
        .catch((error: unknown) => services.logger.warn({ err: error, process: id }, 'could not remove this process’s metrics report'));
    },
  };
}

/** The newsletter's own metrics: sends, recipients, rates, breakers, queues. */
async function newsletterMetrics(services: Services): Promise<Registry> {
  const registry = new Registry();
  const registers = [registry];
  const [summaries, queues] = await Promise.all([
    listSendSummaries(services, { limit: Number.MAX_SAFE_INTEGER }),
    Promise.all([services.queue, services.reports.queue].map((queue) => queueReading(queue))),
  ]);

  const byState = new Gauge({ name: 'newsletter_sends', help: 'Sends by state.', labelNames: ['state'], registers });
  for (const state of Object.keys(SEND_STATES)) byState.set({ state }, summaries.filter((summary) => summary.state === state).length);

  const accepted = new Counter({
    name: 'newsletter_messages_accepted_total',
    help: 'Messages the SMTP server accepted (250), summed over every send; accepted is not delivered.',
    registers,
  });
  accepted.inc(summaries.reduce((sum, summary) => sum + summary.accepted, 0));

  const recipients = new Gauge({
    name: 'newsletter_send_recipients',
    help: 'Recipients of a send by outcome (bounced and complained overlap the others), for sends not finished and those finished in the last 24 h.',
    labelNames: ['send', 'issue', 'list', 'outcome'],
    registers,
  });
  const rate = new Gauge({
    name: 'newsletter_send_rate_messages_per_second',
    help: 'Recipients of a send finished per second over the last minute.',
    labelNames: ['send'],
    registers,
  });
  const bounceRate = new Gauge({
    name: 'newsletter_send_bounce_rate',
    help: 'Hard bounces as a share of the messages of a send answered so far.',
    labelNames: ['send'],
    registers,
  });
  const complaintRate = new Gauge({
    name: 'newsletter_send_complaint_rate',
    help: 'Complaints as a share of the messages of a send answered so far.',
    labelNames: ['send'],
    registers,
  });
  const blockRate = new Gauge({
    name: 'newsletter_send_block_rate',
    help: 'Blocks as a share of the messages of a send answered so far.',
    labelNames: ['send'],
    registers,
  });
  const paused = new Gauge({
    name: 'newsletter_send_paused',
    help: 'Whether a send is paused (1), by ops or by its breaker.',
    labelNames: ['send', 'by'],
    registers,
  });
  const held = new Gauge({ name: 'newsletter_send_held_domains', help: 'Recipient domains a send’s breaker holds.', labelNames: ['send'], registers });
  const nowMs = Date.now();
  for (const summary of summaries.filter((candidate) => isRecent(candidate, nowMs))) {
    const send = summary.sendId;
    const outcomes = {
      accepted: summary.accepted,
      failed: summary.failed,
      skipped: summary.skipped,
      bounced: summary.bounced,
      complained: summary.complained,
      pending: summary.pending,
    };
    for (const [outcome, count] of Object.entries(outcomes)) recipients.set({ send, issue: summary.issueId, list: summary.list, outcome }, count);
    rate.set({ send }, summary.ratePerSec);
    bounceRate.set({ send }, summary.rates.bounce);
    complaintRate.set({ send }, summary.rates.complaint);
    blockRate.set({ send }, summary.rates.block);
    for (const by of ['ops', 'breaker'] as const) paused.set({ send, by }, summary.state === 'paused' && summary.stateReason?.by === by ? 1 : 0);
    held.set({ send }, summary.heldDomains.length);
  }

  const threshold = new Gauge({
    name: 'newsletter_breaker_threshold',
    help: 'The rate over which a send’s breaker pauses it (BREAKER_*_RATE).',
    labelNames: ['kind'],
    registers,
  });
  const { breakers } = services.config;
  threshold.set({ kind: 'bounce' }, breakers.bounceRate);
  threshold.set({ kind: 'complaint' }, breakers.complaintRate);
  threshold.set({ kind: 'block' }, breakers.blockRate);

  const jobs = new Gauge({ name: 'newsletter_queue_jobs', help: 'Jobs of a queue by state.', labelNames: ['queue', 'state'], registers });
  const oldest = new Gauge({
    name: 'newsletter_queue_oldest_waiting_seconds',
    help: 'How long the oldest job waiting in a queue has waited (0 when none waits).',
    labelNames: ['queue'],
    registers,
  });
  for (const reading of queues) {
    for (const [state, count] of Object.entries(reading.counts)) jobs.set({ queue: reading.name, state }, count);
    oldest.set({ queue: reading.name }, reading.oldestWaitingSeconds);
  }
  return registry;
}

/** A send not finished, or finished (or cancelled) in the last 24 hours. */
function isRecent(summary: SendSummary, nowMs: number): boolean {
  if (!isFinalSendState(summary.state)) return true;
  const endedAt = Date.parse(summary.finishedAt ?? summary.createdAt);
  return Number.isNaN(endedAt) || nowMs - endedAt <= FINISHED_SEND_KEPT_MS;
}

/** What a job's data may say about its wait: when it was last put off until (store/send-queue.ts `putOffUntil`). */
const putOffSchema = z.looseObject({ putOffUntil: z.number().optional() });

/**
 * A queue's job counts, and how long its oldest waiting job has waited. BullMQ pushes new jobs
 * at the head of the wait list and workers take from its tail, so the oldest is the first in
 * ascending order (getWaiting(0, 0)). It has waited since the latest of: when it was added, when
 * its delay ran out, when a worker last took it (a job retried or stalled comes back to the list
 * later), and when it was last put off until (pacing, a paused send). BullMQ keeps no trace of the
 * last (its `delay` is 0 again once the job waits), so the worker writes it in the job's data:
 * without it, a job put off for an hour would count that hour as waiting. A job that resume
 * brought forward before that time counts as not waiting yet until then (at most the paused
 * send's recheck, 5 minutes).
 */
async function queueReading(queue: Queue): Promise<{ name: string; counts: Record<string, number>; oldestWaitingSeconds: number }> {
  const [counts, [oldest]] = await Promise.all([queue.getJobCounts(), queue.getWaiting(0, 0)]);
  if (!oldest) return { name: queue.name, counts, oldestWaitingSeconds: 0 };
  const putOff = putOffSchema.safeParse(oldest.data);
  const since = Math.max(oldest.timestamp + (oldest.opts.delay ?? 0), oldest.processedOn ?? 0, (putOff.success ? putOff.data.putOffUntil : undefined) ?? 0);
  return { name: queue.name, counts, oldestWaitingSeconds: Math.max(0, (Date.now() - since) / 1000) };
}

/**
 * The default metrics of this process (read now) and of every other process that reported to
 * Redis, each value labelled with its process and role. The families are merged by prom-client's
 * own aggregation; the labels keep every process's values apart, so nothing is summed.
 */
async function processMetricsOfAll(services: Services): Promise<Registry> {
  const localId = processId(SERVER_ROLE);
  const local = (await processMetrics().getMetricsAsJSON()) as unknown as MetricFamily[];
  const sources: { id: string; role: string; families: MetricFamily[]; ageSeconds: number }[] = [
    { id: localId, role: SERVER_ROLE, families: local, ageSeconds: 0 },
  ];
  const reports = await new MetricsStore(services.redis, services.config.redis.prefix).liveReports();
  for (const [id, report] of reports) {
    if (id === localId) continue;
    // One process's unreadable report (another version's, say) leaves that process out of the scrape, not every process.
    const families = report instanceof CorruptRecordError ? report : readFamilies(report.metrics, id);
    if (report instanceof CorruptRecordError || families instanceof CorruptRecordError) {
      services.logger.warn({ err: families, process: id }, 'left a process’s metrics out of the scrape: its report is unreadable');
      continue;
    }
    sources.push({ id, role: report.role, families, ageSeconds: Math.max(0, (Date.now() - Date.parse(report.reportedAt)) / 1000) || 0 });
  }
  const age: MetricFamily = {
    name: 'newsletter_process_report_age_seconds',
    help: 'How old the metrics of a process are (0 for the process that answered the scrape).',
    type: 'gauge',
    values: [],
  };
  const labelled = sources.map(({ id, role, families, ageSeconds }) =>
    [...families, { ...age, values: [{ value: ageSeconds, labels: {} }] }].map((family) => ({
      ...family,
      // Each (metric, labels) pair comes from one process only, so "first" keeps its value as it is.
      aggregator: 'first',
      values: family.values.map((value) => ({ ...value, value: value.value ?? Number.NaN, labels: { ...value.labels, process: id, role } })),
    })),
  );
  return AggregatorRegistry.aggregate(labelled);
}
