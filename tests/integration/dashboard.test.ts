import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import {
  listSendSummaries,
  OTHER_DOMAINS,
  sendDomainBreakdown,
  sendFailuresCsv,
  sendFailuresPage,
  sendProgressSeries,
  sendSummary,
  UnknownSendError,
} from '../../src/app/dashboard.ts';
import { cancelSend } from '../../src/app/send-control.ts';
import { retryFailedRecipients, startSend } from '../../src/app/start-send.ts';
import { suppressByEmail } from '../../src/app/subscribers.ts';
import { UserFacingError } from '../../src/core/errors.ts';
import type { Services } from '../../src/services.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, type Harness } from '../support/harness.ts';

/**
 * The ops dashboard's queries against a real send: real workers, a real SMTP server that refuses
 * chosen recipients, and the counters the store's scripts keep. What the dashboard shows must
 * match what the SMTP server saw and what the send records.
 */

/** `count` subscribers of a list: reader<n>@example.org for the first `count - onNet`, reader<n>@mail.example.net for the rest. */
async function seedTwoDomains(services: Services, count: number, onNet: number, list = 'weekly') {
  const inputs = Array.from({ length: count }, (_, index) => {
    const n = index + 1;
    return { email: n > count - onNet ? `reader${n}@mail.example.net` : `reader${n}@example.org`, name: `Reader ${n}`, list };
  });
  return services.subscribers.upsertMany(inputs);
}

/** The CSV lines of the failures export, joined, parsed back. */
async function csvOf(services: Services, sendId: string, query: { filter?: string; kind?: string } = {}): Promise<string[][]> {
  let text = '';
  for await (const line of sendFailuresCsv(services, sendId, query)) text += line;
  expect(text.endsWith('\r\n')).toBe(true);
  return parse(text, { relax_column_count: false }) as string[][];
}

const HARD = new Set(['reader3@example.org', 'reader7@example.org', 'reader11@example.org', 'reader15@example.org']);
const BLOCKED = new Set(['reader55@mail.example.net', 'reader58@mail.example.net']);
/** A failure with a reason a spreadsheet would run, and that needs quoting: what a template error's message might say. */
const ODD_REASON = '=HYPERLINK("https://evil.example/x", "click"), then\na second line';

async function finishedSend(): Promise<{ harness: Harness; sendId: string }> {
  const harness = await createHarness('dashboard', {
    rejectRecipient: (address) => {
      if (HARD.has(address)) return { responseCode: 550, message: '5.1.1 User unknown' };
      if (BLOCKED.has(address)) return { responseCode: 550, message: '5.7.1 Message refused for policy reasons' };
      return undefined;
    },
  });
  const { services } = harness;
  // 40 recipients at example.org, 20 at mail.example.net.
  const subscribers = await seedTwoDomains(services, 60, 20);
  const { sendId } = await harness.send('vol-138');
  // Before any worker runs: one recipient unsubscribes (skipped), and one fails on our side with
  // an odd reason (as a template error would), recorded as the job handler records it.
  await suppressByEmail(services.subscribers, 'reader20@example.org', 'unsubscribed');
  const odd = subscribers[44]!.id; // reader45@mail.example.net
  expect(
    await services.sends.markRecipient(sendId, odd, 'failed', {
      failure: { at: new Date().toISOString(), permanent: true, code: 'ECOMPOSE', response: ODD_REASON, attempts: 1 },
    }),
  ).toBe(true);
  await harness.startWorker();
  await harness.waitForSend(sendId);
  // The SMTP server's refusals are applied as delivery events just after their failure is recorded.
  await waitFor(
    async () => {
      const record = await services.sends.get(sendId);
      return record && record.bounced === HARD.size && record.blocked === BLOCKED.size;
    },
    10_000,
    'the hard bounces and blocks of the send to be counted',
  );
  return { harness, sendId };
}

describe('the sends dashboard', () => {
  it('shows a finished send with the counts the SMTP server saw, its progress, its domains and its failures', async () => {
    const { harness, sendId } = await finishedSend();
    const { services, config } = harness;
    const accepted = harness.received.length;
    expect(accepted).toBe(60 - HARD.size - BLOCKED.size - 2);
    expect(new Set(harness.received.flatMap((message) => message.recipients)).size).toBe(accepted);

    // The summary: counts, rates against the breaker thresholds, nothing pending.
    const summary = await sendSummary(services, sendId);
    const answered = accepted + HARD.size + BLOCKED.size + 1;
    expect(summary).toEqual({
      sendId,
      issueId: 'vol-138',
      list: 'weekly',
      state: 'sent-with-failures',
      createdAt: expect.any(String),
      finishedAt: expect.any(String),
      total: 60,
      accepted,
      failed: HARD.size + BLOCKED.size + 1,
      skipped: 1,
      bounced: HARD.size,
      complained: 0,
      pending: 0,
      ratePerSec: 0,
      etaSeconds: undefined,
      rates: { bounce: HARD.size / answered, complaint: 0, block: BLOCKED.size / answered },
      thresholds: { bounce: config.breakers.bounceRate, complaint: config.breakers.complaintRate, block: config.breakers.blockRate },
      stateReason: undefined,
      heldDomains: [],
    });
    expect(await sendSummary(services, 'vol-138.weekly.99')).toBeUndefined();

    // A newer send (another list) comes first in the list.
    await seedTwoDomains(services, 2, 0, 'monthly');
    const monthly = await startSend(services, { issueId: 'vol-138', list: 'monthly', resend: false });
    await harness.waitForSend(monthly.sendId);
    const listed = await listSendSummaries(services);
    expect(listed.map((row) => row.sendId)).toEqual([monthly.sendId, sendId]);
    expect(listed[1]).toEqual(summary);
    expect(await listSendSummaries(services, { limit: 1 })).toHaveLength(1);
    await expect(listSendSummaries(services, { limit: 0 })).rejects.toThrow(UserFacingError);

    // The progress series is cumulative and ends at the send's counts.
    const series = await sendProgressSeries(services, sendId);
    expect(series.length).toBeGreaterThan(0);
    expect(series.at(-1)).toMatchObject({ accepted, failed: summary!.failed, skipped: 1 });
    for (const [index, point] of series.entries()) {
      expect(Number.isNaN(Date.parse(point.at))).toBe(false);
      if (index === 0) continue;
      const before = series[index - 1]!;
      expect(point.at > before.at).toBe(true);
      expect(point.accepted).toBeGreaterThanOrEqual(before.accepted);
      expect(point.failed).toBeGreaterThanOrEqual(before.failed);
      expect(point.skipped).toBeGreaterThanOrEqual(before.skipped);
    }

    // Per domain: what each domain's recipients came to.
    expect(await sendDomainBreakdown(services, sendId)).toEqual([
      { domain: 'example.org', accepted: 40 - HARD.size - 1, failed: HARD.size, skipped: 1, bounced: HARD.size, complained: 0 },
      { domain: 'mail.example.net', accepted: 20 - BLOCKED.size - 1, failed: BLOCKED.size + 1, skipped: 0, bounced: 0, complained: 0 },
    ]);

    // The failures table: every failed recipient, by subscriber id, filterable and paged.
    const all = await sendFailuresPage(services, sendId, {});
    expect(all).toMatchObject({ total: 7, page: 1, pageSize: 50 });
    expect(all.rows.map((row) => row.email)).toEqual([
      'reader3@example.org',
      'reader7@example.org',
      'reader11@example.org',
      'reader15@example.org',
      'reader45@mail.example.net',
      'reader55@mail.example.net',
      'reader58@mail.example.net',
    ]);
    expect(all.rows[0]).toEqual({
      subscriberId: expect.any(String),
      email: 'reader3@example.org',
      reason: expect.stringContaining('5.1.1 User unknown'),
      source: 'smtp',
      kind: 'hard',
      attempts: 1,
      at: expect.any(String),
    });
    expect(all.rows[4]).toMatchObject({ email: 'reader45@mail.example.net', reason: ODD_REASON, source: 'worker', kind: 'failed', attempts: 1 });
    expect(all.rows[5]).toMatchObject({ email: 'reader55@mail.example.net', reason: expect.stringContaining('5.7.1'), source: 'smtp', kind: 'block' });

    const blocks = await sendFailuresPage(services, sendId, { kind: 'block' });
    expect(blocks.rows.map((row) => row.email)).toEqual([...BLOCKED]);
    const onNet = await sendFailuresPage(services, sendId, { filter: 'MAIL.EXAMPLE.NET' });
    expect(onNet.total).toBe(3);
    const byReason = await sendFailuresPage(services, sendId, { filter: 'user unknown' });
    expect(byReason.rows.map((row) => row.email)).toEqual([...HARD]);
    const secondPage = await sendFailuresPage(services, sendId, { page: 2, pageSize: 3 });
    expect(secondPage).toMatchObject({ total: 7, page: 2, pageSize: 3 });
    expect(secondPage.rows.map((row) => row.email)).toEqual(all.rows.slice(3, 6).map((row) => row.email));
    expect((await sendFailuresPage(services, sendId, { page: 4, pageSize: 3 })).rows).toEqual([]);
    await expect(sendFailuresPage(services, sendId, { page: 0 })).rejects.toThrow(/page must be a whole number/);
    await expect(sendFailuresPage(services, sendId, { pageSize: 10_000 })).rejects.toThrow(/page size/);
    await expect(sendFailuresPage(services, 'vol-138.weekly.99', {})).rejects.toThrow(UnknownSendError);

    // The CSV export: the same rows, quoted per RFC 4180, and a formula neutralised.
    const csv = await csvOf(services, sendId);
    expect(csv[0]).toEqual(['subscriber_id', 'email', 'kind', 'source', 'reason', 'attempts', 'at']);
    expect(csv.slice(1).map((row) => row[1])).toEqual(all.rows.map((row) => row.email));
    const oddRow = csv.find((row) => row[1] === 'reader45@mail.example.net');
    expect(oddRow?.[4]).toBe(`'${ODD_REASON}`);
    expect(oddRow?.slice(2, 4)).toEqual(['failed', 'worker']);
    expect(await csvOf(services, sendId, { kind: 'hard' })).toHaveLength(1 + HARD.size);
  });

  it('measures the rate and the ETA while a send runs', async () => {
    // Two messages at a time, each answered after 100 ms: about 20 messages a second.
    const harness = await createHarness('dashboard-rate', { acceptDelayMs: 100, config: { WORKER_CONCURRENCY: '2', SMTP_POOL_SIZE: '2' } });
    const { services } = harness;
    await seedTwoDomains(services, 40, 0);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    const running = await waitFor(
      async () => {
        const summary = await sendSummary(services, sendId);
        return summary && summary.state === 'sending' && summary.accepted >= 4 && summary.pending >= 10 ? summary : undefined;
      },
      20_000,
      'the send to be under way',
      20,
    );
    expect(running.ratePerSec).toBeGreaterThan(0);
    expect(running.ratePerSec).toBeLessThanOrEqual(25);
    expect(running.etaSeconds).toBe(Math.ceil(running.pending / running.ratePerSec));
    const done = await harness.waitForSend(sendId);
    expect(await sendSummary(services, sendId)).toMatchObject({ state: done.state, accepted: 40, ratePerSec: 0, etaSeconds: undefined });
  });

  it('keeps the counters right through a cancel and a --retry-failed', async () => {
    let mailboxBusy = true;
    const harness = await createHarness('dashboard-retry', {
      config: { SEND_MAX_ATTEMPTS: '1', SEND_BACKOFF_MS: '10' },
      rejectRecipient: (address) => (mailboxBusy && address.endsWith('@mail.example.net') ? { responseCode: 451, message: '4.2.1 Mailbox busy' } : undefined),
    });
    const { services } = harness;
    await seedTwoDomains(services, 12, 4);
    await seedTwoDomains(services, 9, 3, 'monthly');

    // Cancelled before any worker runs: every recipient ends skipped, counted under their domain.
    const monthly = await startSend(services, { issueId: 'vol-138', list: 'monthly', resend: false });
    const cancelled = await cancelSend(services, { issueId: 'vol-138', list: 'monthly', who: 'test:ops', reason: 'wrong list' });
    expect(cancelled.skipped).toBe(9);
    expect(await sendSummary(services, monthly.sendId)).toMatchObject({
      state: 'cancelled',
      skipped: 9,
      pending: 0,
      ratePerSec: 0,
      stateReason: { by: 'ops', who: 'test:ops', reason: 'wrong list' },
    });
    expect(await sendDomainBreakdown(services, monthly.sendId)).toEqual([
      { domain: 'example.org', accepted: 0, failed: 0, skipped: 6, bounced: 0, complained: 0 },
      { domain: 'mail.example.net', accepted: 0, failed: 0, skipped: 3, bounced: 0, complained: 0 },
    ]);
    expect((await sendProgressSeries(services, monthly.sendId)).at(-1)).toMatchObject({ accepted: 0, failed: 0, skipped: 9 });

    // The weekly send: mail.example.net is busy, its recipients fail on a temporary error.
    await harness.startWorker();
    const weekly = await harness.send('vol-138');
    expect(await harness.waitForSend(weekly.sendId)).toMatchObject({ accepted: 8, failed: 4 });
    expect(await sendDomainBreakdown(services, weekly.sendId)).toEqual([
      { domain: 'example.org', accepted: 8, failed: 0, skipped: 0, bounced: 0, complained: 0 },
      { domain: 'mail.example.net', accepted: 0, failed: 4, skipped: 0, bounced: 0, complained: 0 },
    ]);
    // A job records the recipient's state, then applies its soft bounce: the send can be over a moment before the last one is applied.
    const kinds = async () => (await sendFailuresPage(services, weekly.sendId, {})).rows.map((row) => row.kind);
    await waitFor(
      async () => (await kinds()).every((kind) => kind === 'soft'),
      5_000,
      async () => `failure kinds: ${(await kinds()).join(', ')}`,
    );
    expect(await kinds()).toEqual(['soft', 'soft', 'soft', 'soft']);

    // The domain recovers; ops retry the failed ones: the counters move back, nothing is counted twice.
    mailboxBusy = false;
    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toMatchObject({ requeued: 4 });
    expect(await harness.waitForSend(weekly.sendId)).toMatchObject({ state: 'sent', accepted: 12, failed: 0 });
    expect(await sendDomainBreakdown(services, weekly.sendId)).toEqual([
      { domain: 'example.org', accepted: 8, failed: 0, skipped: 0, bounced: 0, complained: 0 },
      { domain: 'mail.example.net', accepted: 4, failed: 0, skipped: 0, bounced: 0, complained: 0 },
    ]);
    expect((await sendProgressSeries(services, weekly.sendId)).at(-1)).toMatchObject({ accepted: 12, failed: 0, skipped: 0 });
    // Their soft bounces were overcome: the retry got every one of them through, so the failures table is empty.
    expect(await sendFailuresPage(services, weekly.sendId, {})).toMatchObject({ total: 0, rows: [] });
    expect(await csvOf(services, weekly.sendId)).toHaveLength(1);
  });

  it('lists the busiest 50 domains of a send and sums the rest in one row', async () => {
    const harness = await createHarness('dashboard-domains');
    const { services } = harness;
    // 60 domains: d1.example has 60 recipients, d2.example 59, … d60.example 1 (1,830 in all).
    const domainCount = 60;
    const inputs = Array.from({ length: domainCount }, (_, index) => index + 1).flatMap((domain) =>
      Array.from({ length: domainCount + 1 - domain }, (_, n) => ({ email: `reader${n + 1}@d${domain}.example`, name: `Reader ${n + 1}`, list: 'weekly' })),
    );
    await services.subscribers.upsertMany(inputs);
    // Cancelled before any worker runs: every recipient is counted skipped under their domain, at once.
    const { sendId } = await harness.send('vol-138');
    expect((await cancelSend(services, { issueId: 'vol-138', list: 'weekly', who: 'test:ops', reason: 'domains only' })).skipped).toBe(inputs.length);

    const rows = await sendDomainBreakdown(services, sendId);
    expect(rows).toHaveLength(51);
    expect(rows.slice(0, 50).map((row) => row.domain)).toEqual(Array.from({ length: 50 }, (_, index) => `d${index + 1}.example`));
    expect(rows[0]).toEqual({ domain: 'd1.example', accepted: 0, failed: 0, skipped: 60, bounced: 0, complained: 0 });
    // The rest: d51.example (10 recipients) … d60.example (1), 55 recipients.
    expect(rows[50]).toEqual({ domain: OTHER_DOMAINS, accepted: 0, failed: 0, skipped: 55, bounced: 0, complained: 0 });
    expect(rows.reduce((sum, row) => sum + row.skipped, 0)).toBe(inputs.length);

    expect(await sendDomainBreakdown(services, sendId, { limit: 2 })).toEqual([
      { domain: 'd1.example', accepted: 0, failed: 0, skipped: 60, bounced: 0, complained: 0 },
      { domain: 'd2.example', accepted: 0, failed: 0, skipped: 59, bounced: 0, complained: 0 },
      { domain: OTHER_DOMAINS, accepted: 0, failed: 0, skipped: inputs.length - 60 - 59, bounced: 0, complained: 0 },
    ]);
    // No row of others when every domain fits.
    expect((await sendDomainBreakdown(services, sendId, { limit: domainCount })).map((row) => row.domain)).not.toContain(OTHER_DOMAINS);
    await expect(sendDomainBreakdown(services, sendId, { limit: 0 })).rejects.toThrow(UserFacingError);
  });
});
