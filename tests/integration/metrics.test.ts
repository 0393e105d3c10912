import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { PROJECT_ROOT } from '../../config/index.ts';
import { processId, renderMetrics, startMetricsReporter } from '../../src/app/metrics.ts';
import { openServices, type Services } from '../../src/services.ts';
import { MetricsStore } from '../../src/store/metrics-store.ts';
import { pauseSend } from '../../src/app/send-control.ts';
import { PAUSED_RECHECK_MS } from '../../src/delivery/deliver-job.ts';
import { SEND_QUEUE_NAME, sendJobId } from '../../src/store/send-queue.ts';
import { REPORT_QUEUE_NAME } from '../../src/store/report-inbox.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';

/**
 * GET /metrics as Prometheus reads it: the text is parsed strictly (every sample under a declared
 * family, every series once), and the values are checked against a real send, a queue with jobs
 * waiting, and a second process reporting through Redis. The Grafana dashboard and the alert
 * rules in config/ may only name metrics the scrape emits.
 */

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Scrape {
  /** Family name → type, from the `# TYPE` lines. */
  readonly types: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** The Prometheus text exposition format (0.0.4), parsed strictly: anything off throws with the line. */
function parsePrometheusText(text: string): Scrape {
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const familyOf = (name: string) => {
    if (types.has(name)) return name;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && ['histogram', 'summary'].includes(types.get(base) ?? '') ? base : undefined;
  };
  for (const [index, line] of text.split('\n').entries()) {
    const fail = (why: string) => new Error(`line ${index + 1}: ${why}: ${JSON.stringify(line)}`);
    if (line === '') continue;
    if (line.startsWith('#')) {
      const [, keyword, name, rest] = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line) ?? [];
      if (!keyword) continue; // another comment
      if (!NAME.test(name!)) throw fail('bad metric name');
      if (keyword === 'HELP') {
        if (helped.has(name!)) throw fail('a second HELP');
        helped.add(name!);
      } else {
        if (types.has(name!)) throw fail('a second TYPE');
        if (!TYPES.has(rest!)) throw fail('unknown type');
        if (samples.some((sample) => familyOf(sample.name) === name)) throw fail('TYPE after samples of its family');
        types.set(name!, rest!);
      }
      continue;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) throw fail('no metric name');
    const name = nameMatch[0];
    let at = name.length;
    const labels: Record<string, string> = {};
    if (line[at] === '{') {
      at += 1;
      while (line[at] !== '}') {
        const labelMatch = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(at));
        if (!labelMatch || !LABEL_NAME.test(labelMatch[1]!)) throw fail('bad label');
        at += labelMatch[0].length;
        let value = '';
        for (;;) {
          const char = line[at];
          if (char === undefined) throw fail('unterminated label value');
          at += 1;
          if (char === '"') break;
          if (char === '\\') {
            const escaped = line[at];
            at += 1;
            if (escaped === 'n') value += '\n';
            else if (escaped === '\\' || escaped === '"') value += escaped;
            else throw fail('bad escape in a label value');
          } else value += char;
        }
        if (labelMatch[1]! in labels) throw fail('a label given twice');
        labels[labelMatch[1]!] = value;
        if (line[at] === ',') at += 1;
        else if (line[at] !== '}') throw fail('expected , or } after a label');
      }
      at += 1;
    }
    const [valueText, timestamp, ...extra] = line.slice(at).trim().split(/\s+/);
    if (line[at] !== ' ' || valueText === undefined || extra.length > 0 || (timestamp !== undefined && !/^-?\d+$/.test(timestamp)))
      throw fail('bad value part');
    const value = /^[+-]?inf$/i.test(valueText)
      ? valueText.startsWith('-')
        ? -Infinity
        : Infinity
      : /^nan$/i.test(valueText)
        ? Number.NaN
        : Number(valueText);
    if (Number.isNaN(value) && !/^nan$/i.test(valueText)) throw fail('value is not a number');
    if (familyOf(name) === undefined) throw fail('sample of a family with no TYPE');
    const key = `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))}`;
    if (seen.has(key)) throw fail('the same series twice');
    seen.add(key);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}

/** Allocates and drops tens of megabytes of small objects: more than the young generation holds, so it is collected. */
function makeGarbage(): number {
  const junk: { round: number }[] = [];
  for (let round = 0; round < 1_000_000; round += 1) junk.push({ round });
  return junk.length;
}

async function scrape(services: Services): Promise<Scrape> {
  const { contentType, body } = await renderMetrics(services);
  expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(body);
}

/** The one sample of `name` whose labels include `labels`. */
function valueOf(result: Scrape, name: string, labels: Record<string, string> = {}): number {
  const matches = result.samples.filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value));
  if (matches.length !== 1) throw new Error(`${matches.length} samples of ${name} ${JSON.stringify(labels)}`);
  return matches[0]!.value;
}

function processesOf(result: Scrape, name = 'process_resident_memory_bytes'): string[] {
  return [...new Set(result.samples.filter((sample) => sample.name === name).map((sample) => sample.labels.process ?? ''))].sort();
}

describe('GET /metrics', () => {
  it('counts sends by state and recipients by outcome, and the queue while its jobs wait for a worker', async () => {
    const harness = await createHarness('metrics', {
      rejectRecipient: (address) =>
        ['reader4@example.org', 'reader9@example.org'].includes(address) ? { responseCode: 550, message: '5.1.1 User unknown' } : undefined,
    });
    const { services, config } = harness;
    await seedSubscribers(services, 12);
    // No worker yet: the jobs wait.
    const { sendId } = await harness.send('vol-138');
    const queued = await waitFor(
      async () => {
        const result = await scrape(services);
        return valueOf(result, 'newsletter_queue_oldest_waiting_seconds', { queue: SEND_QUEUE_NAME }) > 0 ? result : undefined;
      },
      5_000,
      'the oldest waiting job to have waited',
    );
    expect(valueOf(queued, 'newsletter_sends', { state: 'queued' })).toBe(1);
    expect(valueOf(queued, 'newsletter_sends', { state: 'sending' })).toBe(0);
    expect(valueOf(queued, 'newsletter_send_recipients', { send: sendId, issue: 'vol-138', list: 'weekly', outcome: 'pending' })).toBe(12);
    expect(valueOf(queued, 'newsletter_queue_jobs', { queue: SEND_QUEUE_NAME, state: 'waiting' })).toBe(12);
    expect(valueOf(queued, 'newsletter_queue_jobs', { queue: SEND_QUEUE_NAME, state: 'active' })).toBe(0);
    expect(valueOf(queued, 'newsletter_queue_jobs', { queue: REPORT_QUEUE_NAME, state: 'waiting' })).toBe(0);
    expect(valueOf(queued, 'newsletter_queue_oldest_waiting_seconds', { queue: SEND_QUEUE_NAME })).toBeLessThan(60);
    expect(valueOf(queued, 'newsletter_queue_oldest_waiting_seconds', { queue: REPORT_QUEUE_NAME })).toBe(0);
    expect(valueOf(queued, 'newsletter_send_rate_messages_per_second', { send: sendId })).toBe(0);

    await harness.startWorker();
    await harness.waitForSend(sendId);
    // The refusals count as hard bounces once their events are applied, just after the send finishes.
    const done = await waitFor(
      async () => {
        const result = await scrape(services);
        return valueOf(result, 'newsletter_send_recipients', { send: sendId, outcome: 'bounced' }) === 2 ? result : undefined;
      },
      10_000,
      'the hard bounces to be counted',
    );
    expect(harness.received).toHaveLength(10);
    expect(valueOf(done, 'newsletter_sends', { state: 'sent-with-failures' })).toBe(1);
    expect(valueOf(done, 'newsletter_sends', { state: 'queued' })).toBe(0);
    const outcomes = Object.fromEntries(
      ['accepted', 'failed', 'skipped', 'bounced', 'complained', 'pending'].map((outcome) => [
        outcome,
        valueOf(done, 'newsletter_send_recipients', { send: sendId, issue: 'vol-138', list: 'weekly', outcome }),
      ]),
    );
    expect(outcomes).toEqual({ accepted: 10, failed: 2, skipped: 0, bounced: 2, complained: 0, pending: 0 });
    expect(done.types.get('newsletter_messages_accepted_total')).toBe('counter');
    expect(valueOf(done, 'newsletter_messages_accepted_total')).toBe(10);
    expect(valueOf(done, 'newsletter_send_rate_messages_per_second', { send: sendId })).toBe(0);
    expect(valueOf(done, 'newsletter_send_bounce_rate', { send: sendId })).toBeCloseTo(2 / 12, 10);
    expect(valueOf(done, 'newsletter_send_complaint_rate', { send: sendId })).toBe(0);
    expect(valueOf(done, 'newsletter_send_block_rate', { send: sendId })).toBe(0);
    expect(valueOf(done, 'newsletter_send_paused', { send: sendId, by: 'ops' })).toBe(0);
    expect(valueOf(done, 'newsletter_send_paused', { send: sendId, by: 'breaker' })).toBe(0);
    expect(valueOf(done, 'newsletter_send_held_domains', { send: sendId })).toBe(0);
    expect(valueOf(done, 'newsletter_breaker_threshold', { kind: 'bounce' })).toBe(config.breakers.bounceRate);
    expect(valueOf(done, 'newsletter_breaker_threshold', { kind: 'complaint' })).toBe(config.breakers.complaintRate);
    expect(valueOf(done, 'newsletter_breaker_threshold', { kind: 'block' })).toBe(config.breakers.blockRate);
    expect(valueOf(done, 'newsletter_queue_jobs', { queue: SEND_QUEUE_NAME, state: 'waiting' })).toBe(0);
    expect(valueOf(done, 'newsletter_queue_oldest_waiting_seconds', { queue: SEND_QUEUE_NAME })).toBe(0);
    // This process's own default metrics, labelled as the server.
    const self = processId('server');
    expect(processesOf(done)).toEqual([self]);
    expect(valueOf(done, 'process_resident_memory_bytes', { process: self, role: 'server' })).toBeGreaterThan(10 * 1024 * 1024);
  });

  it('counts a job put off (a paused send) as waiting from when it was due back, not from when it was last taken', async () => {
    const harness = await createHarness('metrics-put-off');
    const { services } = harness;
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    await pauseSend(services, { issueId: 'vol-138', who: 'test:ops' });
    const worker = await harness.startWorker();
    // The worker takes the job, finds the send paused, and puts the job off until its recheck.
    const jobId = sendJobId(sendId, '1');
    const parked = await waitFor(
      async () => {
        const job = await services.queue.getJob(jobId);
        return job && (await job.isDelayed()) ? job : undefined;
      },
      10_000,
      'the job to be put off',
    );
    await worker.close();
    const takenAt = parked.processedOn ?? 0;
    expect(takenAt).toBeGreaterThan(0);
    expect(parked.data.putOffUntil).toBeGreaterThanOrEqual(takenAt + PAUSED_RECHECK_MS);

    // As if that was twenty minutes ago, and the job was due back two seconds ago (the times
    // moved back by hand): it waits again, and has waited two seconds, not twenty minutes.
    const earlier = 20 * 60_000;
    await services.redis.hset(services.queue.toKey(jobId), 'processedOn', String(takenAt - earlier), 'timestamp', String(parked.timestamp - earlier));
    await parked.updateData({ ...parked.data, putOffUntil: Date.now() - 2_000 });
    await parked.promote();
    const result = await scrape(services);
    expect(valueOf(result, 'newsletter_queue_jobs', { queue: SEND_QUEUE_NAME, state: 'waiting' })).toBe(1);
    const waited = valueOf(result, 'newsletter_queue_oldest_waiting_seconds', { queue: SEND_QUEUE_NAME });
    expect(waited).toBeGreaterThanOrEqual(2);
    expect(waited).toBeLessThan(60);
  });

  it('shows every process that reports through Redis, and drops one that stops or dies', async () => {
    const harness = await createHarness('metrics-processes');
    const worker = await openServices(harness.config);
    onTestFinished(() => worker.close());
    const self = processId('server');
    const workerId = processId('worker');
    // Role, host and pid, and a random part drawn once per process: containers that all run as
    // pid 1 on a shared hostname still report apart.
    expect(self).toMatch(new RegExp(`^server/${hostname().replaceAll('.', '\\.')}/${process.pid}/[0-9a-f]{6}$`));
    expect(workerId).toBe(self.replace(/^server\//, 'worker/'));

    // A worker's report, on a connection of its own, as another process would write it.
    const reporter = startMetricsReporter(worker, { role: 'worker', intervalMs: 200, messagesHandled: () => 7 });
    onTestFinished(() => reporter.stop());
    const both = await waitFor(
      async () => {
        const result = await scrape(harness.services);
        return processesOf(result).length === 2 ? result : undefined;
      },
      5_000,
      'the worker’s report to show in the scrape',
    );
    expect(processesOf(both)).toEqual([self, workerId]);
    expect(processesOf(both, 'nodejs_heap_size_used_bytes')).toEqual([self, workerId]);
    expect(valueOf(both, 'process_resident_memory_bytes', { process: workerId, role: 'worker' })).toBeGreaterThan(0);
    expect(valueOf(both, 'newsletter_process_messages_handled_total', { process: workerId, role: 'worker' })).toBe(7);
    expect(valueOf(both, 'newsletter_process_report_age_seconds', { process: workerId })).toBeLessThan(5);
    // A histogram keeps its buckets per process. Its series appear once a collection was seen:
    // garbage made here brings one about, and the worker's next report has it too.
    const gcProcesses = (result: Awaited<ReturnType<typeof scrape>>) =>
      new Set(
        result.samples
          .filter((sample) => sample.name === 'nodejs_gc_duration_seconds_bucket' && sample.labels.le === '+Inf')
          .map((sample) => sample.labels.process),
      );
    const withGc = await waitFor(
      async () => {
        makeGarbage();
        const result = await scrape(harness.services);
        return gcProcesses(result).size === 2 ? result : undefined;
      },
      10_000,
      'a garbage collection in both processes’ metrics',
    );
    expect(gcProcesses(withGc)).toEqual(new Set([self, workerId]));

    // Stopped cleanly: gone at once.
    await reporter.stop();
    expect(processesOf(await scrape(harness.services))).toEqual([self]);

    // A process that died leaves its last report, which expires by itself. Seen first under a
    // lifetime no slow scrape outlasts; then its last report, with a short one, runs out.
    const store = new MetricsStore(harness.services.redis, harness.config.redis.prefix);
    const goneReport = () => ({ role: 'worker', pid: 1, host: 'gone', reportedAt: new Date().toISOString(), metrics: '[]' });
    await store.saveReport('worker/gone/1', goneReport(), 60_000);
    expect(valueOf(await scrape(harness.services), 'newsletter_process_report_age_seconds', { process: 'worker/gone/1', role: 'worker' })).toBeLessThan(5);
    await store.saveReport('worker/gone/1', goneReport(), 200);
    await waitFor(
      async () => !(await scrape(harness.services)).samples.some((sample) => sample.labels.process === 'worker/gone/1'),
      5_000,
      'the dead process’s report to expire',
    );

    // A report this version can't read leaves that process out, not the scrape.
    await store.saveReport('worker/odd/2', { role: 'worker', pid: 2, host: 'odd', reportedAt: new Date().toISOString(), metrics: '{"not":"families"}' }, 5_000);
    const withOdd = await scrape(harness.services);
    expect(processesOf(withOdd)).toEqual([self]);
    expect(withOdd.samples.some((sample) => sample.labels.process === 'worker/odd/2')).toBe(false);
  });

  it('names in the Grafana dashboard and the alert rules only metrics the scrape emits', async () => {
    const harness = await createHarness('metrics-config');
    const result = await scrape(harness.services);
    const emitted = new Set([...result.types.keys(), ...result.samples.map((sample) => sample.name)]);

    const dashboard = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'config/grafana/newsletter-dashboard.json'), 'utf8')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
      templating: { list: { query: { query: string } | string }[] };
    };
    const dashboardExpressions = [
      ...dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr)),
      ...dashboard.templating.list.map((variable) => (typeof variable.query === 'string' ? variable.query : variable.query.query)),
    ];
    const rules = parseYaml(readFileSync(path.join(PROJECT_ROOT, 'config/prometheus/alerts.yml'), 'utf8')) as {
      groups: { name: string; rules: { alert: string; expr: string }[] }[];
    };
    const alertExpressions = rules.groups.flatMap((group) => group.rules.map((rule) => rule.expr));
    expect(rules.groups.flatMap((group) => group.rules.map((rule) => rule.alert))).toEqual(
      expect.arrayContaining(['NewsletterSendStuck', 'NewsletterBreakerTripped', 'NewsletterQueueNotDraining']),
    );

    // Metric names: our own, and the default process and Node.js metrics.
    const metricNames = (expressions: string[]) => [
      ...new Set(expressions.flatMap((expr) => expr.match(/\b(?:newsletter|process|nodejs)_[a-zA-Z0-9_]*/g) ?? [])),
    ];
    const used = metricNames(dashboardExpressions);
    expect(used).toEqual(
      expect.arrayContaining([
        'newsletter_send_recipients',
        'newsletter_send_rate_messages_per_second',
        'newsletter_send_bounce_rate',
        'newsletter_send_complaint_rate',
        'newsletter_send_block_rate',
        'newsletter_breaker_threshold',
        'newsletter_queue_jobs',
        'newsletter_queue_oldest_waiting_seconds',
        'process_resident_memory_bytes',
      ]),
    );
    expect(metricNames(alertExpressions).length).toBeGreaterThanOrEqual(4);
    expect([...used, ...metricNames(alertExpressions)].filter((name) => !emitted.has(name))).toEqual([]);
  });
});
