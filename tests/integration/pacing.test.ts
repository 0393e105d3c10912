import { describe, expect, it } from 'vitest';
import type { Services } from '../../src/services.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { spawnWorker, workerEnv } from '../support/worker-process.ts';

/**
 * Pacing shared by every worker process: the global ceiling (SEND_RATE_PER_SEC) with two real
 * worker processes, per-domain ceilings (DOMAIN_RATE_LIMITS), and a receiver's "slow down".
 * Times are the SMTP server's own clock of when it took each message.
 */

/** The most messages taken within any `windowMs`. */
function busiestWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  for (let start = 0, end = 0; end < sorted.length; end += 1) {
    while (sorted[end]! - sorted[start]! >= windowMs) start += 1;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

/** Messages per second from the first to the last. */
function rateOf(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return (sorted.length - 1) / ((sorted.at(-1)! - sorted[0]!) / 1000);
}

async function completedAttempts(services: Services): Promise<{ attempts: number[]; putOff: number }> {
  const jobs = await services.queue.getCompleted(0, 5_000);
  return { attempts: jobs.map((job) => job.attemptsMade), putOff: jobs.filter((job) => job.data.paceSlot !== undefined).length };
}

describe('pacing', () => {
  it('holds SEND_RATE_PER_SEC for two worker processes together, within 10%', async () => {
    // 30 a second: slots 33.3 ms apart, a fraction of a millisecond the timeline must carry.
    const ceiling = 30;
    const times: number[] = [];
    const harness = await createHarness('pace-global', {
      config: { SEND_RATE_PER_SEC: String(ceiling), WORKER_CONCURRENCY: '10', SMTP_POOL_SIZE: '5' },
      onMessage: () => times.push(Date.now()),
    });
    const { services } = harness;
    const subscribers = 240;
    await seedSubscribers(services, subscribers);
    const { sendId } = await harness.send('vol-138');
    const env = workerEnv(harness.config, { LOG_LEVEL: 'info' });
    const [first, second] = await Promise.all([spawnWorker(env), spawnWorker(env)]);
    const record = await harness.waitForSend(sendId, 30_000);
    await Promise.all([first.kill('SIGTERM'), second.kill('SIGTERM')]);

    expect(record).toMatchObject({ state: 'sent', accepted: subscribers, failed: 0 });
    // Both processes sent: each alone would have been held to the ceiling too, so together
    // without a shared budget they would have sent at twice it.
    const sentBy = [first, second].map(
      (worker) =>
        worker
          .stderr()
          .split('\n')
          .filter((line) => line.includes('"msg":"accepted"')).length,
    );
    expect(sentBy.every((count) => count > subscribers / 5)).toBe(true);
    const rate = rateOf(times);
    const busiest = busiestWindow(times, 1_000);
    console.info(
      `pacing: SEND_RATE_PER_SEC ${ceiling}, two workers sent ${sentBy.join(' + ')}: measured ${rate.toFixed(1)} msg/s overall, at most ${busiest} in any second`,
    );
    expect(Math.abs(rate - ceiling) / ceiling).toBeLessThanOrEqual(0.1);
    // Slots are spaced exactly; the server's clock sees them with the jitter of the SMTP exchange.
    expect(busiest).toBeLessThanOrEqual(Math.ceil(ceiling * 1.25));
  });

  it('holds a domain to its DOMAIN_RATE_LIMITS budget by delaying its messages, without spending attempts or holding up other domains', async () => {
    const timesByDomain = new Map<string, number[]>();
    const harness = await createHarness('pace-domain', {
      config: { DOMAIN_RATE_LIMITS: 'slow.example=3', WORKER_CONCURRENCY: '8', SMTP_POOL_SIZE: '4' },
      onMessage: (message) => {
        const domain = message.recipients[0]?.split('@')[1] ?? '';
        timesByDomain.set(domain, [...(timesByDomain.get(domain) ?? []), Date.now()]);
      },
    });
    const { services } = harness;
    // 15 at slow.example, limited to 3 a second (slots 333.3 ms apart), among 165.
    const inputs = Array.from({ length: 165 }, (_, index) => ({
      email: index % 11 === 0 ? `reader${index + 1}@slow.example` : `reader${index + 1}@example.org`,
      list: 'weekly',
    }));
    await services.subscribers.upsertMany(inputs);
    const startedAt = Date.now();
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    const record = await harness.waitForSend(sendId, 30_000);
    expect(record).toMatchObject({ state: 'sent', accepted: 165, failed: 0 });

    const slow = timesByDomain.get('slow.example') ?? [];
    const other = timesByDomain.get('example.org') ?? [];
    expect(slow).toHaveLength(15);
    expect(other).toHaveLength(150);
    // slow.example went at its 3 per second (15 messages: at least 4.7 s from first to last)…
    expect(rateOf(slow)).toBeLessThanOrEqual(3 * 1.1);
    expect(busiestWindow(slow, 1_000)).toBeLessThanOrEqual(4);
    // …while example.org was not held up to that pace: it went several times faster.
    expect(rateOf(other)).toBeGreaterThan(3 * 3);
    // Messages over the budget were put off until their slot, and no attempt was spent on them.
    const { attempts, putOff } = await completedAttempts(services);
    expect(putOff).toBeGreaterThan(5);
    // BullMQ counts the attempt that completed a job: one each, the put-off ones included.
    expect(attempts.every((count) => count === 1)).toBe(true);
    console.info(
      `pacing: slow.example=3 → ${rateOf(slow).toFixed(2)} msg/s (${putOff} jobs put off until their slot, 0 attempts spent); ` +
        `example.org's 150 at ${rateOf(other).toFixed(0)} msg/s, done ${Math.max(...other) - startedAt} ms after the send started; slow.example's 15 after ${Math.max(...slow) - startedAt} ms`,
    );
  });

  it('backs off a domain that answers "slow down" (421 4.7.0), not the whole queue', async () => {
    const rcpts: { address: string; domain: string; at: number; refused: boolean }[] = [];
    let refusedAddress: string | undefined;
    const harness = await createHarness('pace-slowdown', {
      acceptDelayMs: 10,
      config: { DOMAIN_BACKOFF_MS: '1500', SEND_BACKOFF_MS: '50', WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '4' },
      // The first slow.example recipient is told to slow down, once.
      rejectRecipient: (address) => {
        const domain = address.split('@')[1] ?? '';
        if (domain === 'slow.example') refusedAddress ??= address;
        const refuse = address === refusedAddress && !rcpts.some((rcpt) => rcpt.refused);
        rcpts.push({ address, domain, at: Date.now(), refused: refuse });
        return refuse ? { responseCode: 421, message: '4.7.0 Too many messages from your IP, slow down' } : undefined;
      },
    });
    const { services } = harness;
    const inputs = Array.from({ length: 150 }, (_, index) => ({
      email: index % 15 === 0 ? `reader${index + 1}@slow.example` : `reader${index + 1}@example.org`,
      list: 'weekly',
    }));
    await services.subscribers.upsertMany(inputs);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    const record = await harness.waitForSend(sendId, 30_000);
    expect(record).toMatchObject({ state: 'sent', accepted: 150, failed: 0 });

    // After the "slow down", nothing else went to slow.example for the backoff (1.5 s), while
    // example.org kept going in that time. The refused message itself may be tried once more at
    // once: nodemailer's pool puts a message whose connection the server closed back once, on a
    // fresh connection (SMTP transport, maxRequeues 1), before the job hears of it.
    const refusals = rcpts.filter((rcpt) => rcpt.refused);
    expect(refusals).toHaveLength(1);
    const refusal = refusals[0]!;
    // (A message to the domain already past its slot when the answer came may still go: ≤ 3 here.)
    const inFlightThen = rcpts.filter(
      (rcpt) => rcpt.domain === 'slow.example' && rcpt.address !== refusedAddress && rcpt.at > refusal.at && rcpt.at <= refusal.at + 100,
    );
    expect(inFlightThen.length).toBeLessThanOrEqual(3);
    const nextToSlow = rcpts.find((rcpt) => rcpt.domain === 'slow.example' && rcpt.address !== refusedAddress && rcpt.at > refusal.at + 100);
    expect(nextToSlow, 'a later RCPT to slow.example').toBeDefined();
    expect(nextToSlow!.at - refusal.at).toBeGreaterThanOrEqual(1500 - 150);
    expect(rcpts.filter((rcpt) => rcpt.address === refusedAddress && rcpt.at > refusal.at && rcpt.at < refusal.at + 1350).length).toBeLessThanOrEqual(1);
    const othersMeanwhile = rcpts.filter((rcpt) => rcpt.domain === 'example.org' && rcpt.at > refusal.at && rcpt.at < refusal.at + 1400).length;
    expect(othersMeanwhile).toBeGreaterThan(20);
    console.info(`pacing: after a 421 slow-down, slow.example waited ${nextToSlow!.at - refusal.at} ms while example.org took ${othersMeanwhile} messages`);
    await waitFor(async () => (await services.queue.getCompletedCount()) === 150, 5_000, 'every job to complete');
  });
});
