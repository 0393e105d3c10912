import { describe, expect, it } from 'vitest';
import { cancelSend, pauseSend, resumeSend } from '../../src/app/send-control.ts';
import { retryFailedRecipients, startSend } from '../../src/app/start-send.ts';
import type { Services } from '../../src/services.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';
import { runCliInProcess } from '../support/cli.ts';
import { waitFor } from '../support/faults.ts';

/**
 * Pause, resume and cancel of one send while another send shares the queue, through the use cases
 * the CLI (and the console of #6) call, with a real worker, Redis and SMTP server.
 */

async function record(services: Services, sendId: string) {
  const current = await services.sends.get(sendId);
  if (!current) throw new Error(`send ${sendId} is missing`);
  return current;
}

/** Messages the SMTP server took per recipient address. */
function receivedBy(harness: Harness): Map<string, number> {
  const counts = new Map<string, number>();
  for (const message of harness.received) for (const recipient of message.recipients) counts.set(recipient, (counts.get(recipient) ?? 0) + 1);
  return counts;
}

/** Jobs of the queue not finished yet, by state. */
async function unfinishedJobs(services: Services) {
  const counts = await services.queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
  return Object.values(counts).reduce((sum, count) => sum + count, 0);
}

describe('pause, resume and cancel', () => {
  it('pauses one send within a second while the other send in the queue goes on, and resume finishes it with everyone mailed once', async () => {
    const harness = await createHarness('pause-resume', { acceptDelayMs: 5, config: { WORKER_CONCURRENCY: '8', SMTP_POOL_SIZE: '4' } });
    const { services } = harness;
    const subscribers = 600;
    await seedSubscribers(services, subscribers);
    await seedSubscribers(services, subscribers, 'monthly');
    const weekly = await harness.send('vol-138');
    const monthly = await startSend(services, { issueId: 'vol-138', list: 'monthly', resend: false });
    await harness.startWorker();
    await waitFor(async () => (await record(services, weekly.sendId)).accepted >= 50, 20_000, 'the weekly send to be under way');

    const paused = await pauseSend(services, { issueId: 'vol-138', list: 'weekly', who: 'test:editor', reason: 'wrong link in the intro' });
    const pausedAt = Date.now();
    expect(paused).toMatchObject({ sendId: weekly.sendId, changed: true });
    const atPause = await record(services, weekly.sendId);
    // Messages already at the SMTP server finish; nothing new starts: what is recorded after the
    // pause is at most what was in flight (claimed) when it was recorded.
    const drained = await waitFor(
      async () => {
        const current = await record(services, weekly.sendId);
        return current.sending === 0 ? current : undefined;
      },
      5_000,
      'the weekly messages in flight to finish',
      5,
    );
    const drainedAfterMs = Date.now() - pausedAt;
    expect(drained.accepted + drained.failed).toBeLessThanOrEqual(atPause.accepted + atPause.failed + atPause.sending);
    expect(drained).toMatchObject({
      state: 'paused',
      stateReason: { by: 'ops', who: 'test:editor', reason: 'wrong link in the intro' },
    });
    expect(drained.pending).toBeGreaterThan(0);
    // The other send goes on: 300 more of its messages while the paused one doesn't move.
    const monthlyAtPause = (await record(services, monthly.sendId)).accepted;
    await waitFor(
      async () => (await record(services, monthly.sendId)).accepted >= Math.min(subscribers, monthlyAtPause + 300),
      20_000,
      'the monthly send to go on',
    );
    const stillPaused = await record(services, weekly.sendId);
    expect(stillPaused.accepted + stillPaused.failed).toBe(drained.accepted + drained.failed);
    expect(stillPaused.state).toBe('paused');
    const status = JSON.parse((await runCliInProcess(['status', 'vol-138', '--list', 'weekly', '--json'], harness.config)).out) as Record<string, unknown>;
    expect(status).toMatchObject({ state: 'paused', stateReason: { by: 'ops', who: 'test:editor' } });
    const events = await services.control.recentEvents();
    expect(events).toContainEqual(expect.objectContaining({ type: 'send.paused', sendId: weekly.sendId, by: 'ops', who: 'test:editor' }));

    // Pausing again changes nothing; resume continues where it stopped.
    expect(await pauseSend(services, { issueId: 'vol-138', list: 'weekly', who: 'test:editor' })).toMatchObject({ changed: false });
    const resumed = await resumeSend(services, { issueId: 'vol-138', list: 'weekly', who: 'test:editor' });
    expect(resumed).toMatchObject({ changed: true });
    // The jobs put off while paused came forward at once, not after their 5-minute recheck.
    expect(resumed.jobsPromoted).toBeGreaterThan(0);
    const finished = await harness.waitForSend(weekly.sendId, 30_000);
    expect(finished).toMatchObject({ state: 'sent', total: subscribers, accepted: subscribers, failed: 0, stateReason: undefined });
    await harness.waitForSend(monthly.sendId, 30_000);
    // Both sends went to the same addresses: each got exactly two messages, one per send.
    const counts = receivedBy(harness);
    expect(counts.size).toBe(subscribers);
    expect([...counts.values()].every((count) => count === 2)).toBe(true);
    console.info(`pause: in-flight messages drained ${drainedAfterMs} ms after the pause; ${resumed.jobsPromoted} jobs brought forward by resume`);
  });

  it('cancels a paused send: recipients not yet sent end as skipped (cancelled), its jobs go away at once, and nothing more is mailed', async () => {
    const harness = await createHarness('cancel', { acceptDelayMs: 5, config: { WORKER_CONCURRENCY: '8', SMTP_POOL_SIZE: '4' } });
    const { services } = harness;
    const subscribers = 400;
    await seedSubscribers(services, subscribers);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    await waitFor(async () => (await record(services, sendId)).accepted >= 40, 20_000, 'the send to be under way');
    // Paused first, so that many of its jobs wait in the delayed set (for their 5-minute recheck).
    await pauseSend(services, { issueId: 'vol-138', who: 'test:ops' });
    await waitFor(async () => (await services.queue.getDelayedCount()) > 0, 10_000, 'jobs of the paused send to be put off');

    const cancelled = await cancelSend(services, { issueId: 'vol-138', who: 'test:ops', reason: 'sent the wrong issue' });
    expect(cancelled.changed).toBe(true);
    expect(cancelled.skipped).toBeGreaterThan(0);
    const final = await harness.waitForSend(sendId, 10_000);
    expect(final).toMatchObject({
      state: 'cancelled',
      total: subscribers,
      failed: 0,
      stateReason: { by: 'ops', who: 'test:ops', reason: 'sent the wrong issue' },
    });
    expect(final.accepted + final.skipped).toBe(subscribers);
    expect(final.skippedCancelled).toBe(final.skipped);
    // Every job ends within seconds (the delayed ones were brought forward), none by sending.
    await waitFor(
      async () => (await unfinishedJobs(services)) === 0,
      15_000,
      async () => `the queue to drain: ${JSON.stringify(await services.queue.getJobCounts())}`,
    );
    const after = await record(services, sendId);
    expect(after.accepted).toBe(final.accepted);
    expect(harness.received).toHaveLength(final.accepted);
    expect(new Set(harness.received.map((message) => message.recipients[0])).size).toBe(final.accepted);

    // A cancelled send can't be resumed or retried, and says how to send again.
    await expect(retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).rejects.toThrow(/was cancelled; there is nothing to retry/);
    await expect(resumeSend(services, { issueId: 'vol-138', who: 'test:ops' })).rejects.toThrow(/was cancelled; .*--resend/);
    const cli = await runCliInProcess(['resume', 'vol-138'], harness.config);
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/^error: Send vol-138\.weekly\.1 was cancelled/);
  });

  it('through the CLI: pause, status, resume; and a clear error for an issue never sent', async () => {
    const harness = await createHarness('control-cli', { acceptDelayMs: 20, config: { WORKER_CONCURRENCY: '2', SMTP_POOL_SIZE: '2' } });
    const { services } = harness;
    await seedSubscribers(services, 60);
    const { sendId } = await harness.send('vol-138');
    const pause = await runCliInProcess(['pause', 'vol-138', '--reason', 'checking a link'], harness.config);
    expect(pause).toMatchObject({ code: 0, out: expect.stringMatching(new RegExp(`^send ${sendId.replace(/\./g, '\\.')} paused`)) });
    const status = await runCliInProcess(['status', 'vol-138'], harness.config);
    expect(status.out).toMatch(/state {5}paused/);
    expect(status.out).toMatch(/reason {4}checking a link \(cli:/);
    // Nothing is sent while paused, though a worker runs.
    await harness.startWorker();
    await waitFor(async () => (await services.queue.getDelayedCount()) >= 60, 10_000, 'every job to be put off');
    expect(harness.received).toHaveLength(0);
    const resume = await runCliInProcess(['resume', 'vol-138'], harness.config);
    expect(resume.out).toMatch(/resumed \(60 waiting jobs brought forward; breakers re-armed\)/);
    expect(await harness.waitForSend(sendId, 20_000)).toMatchObject({ state: 'sent', accepted: 60 });

    const unknown = await runCliInProcess(['pause', 'vol-139'], harness.config);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/^error: .*vol-139/);
  });
});
