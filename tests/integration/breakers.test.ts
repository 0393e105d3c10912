import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { resumeSend } from '../../src/app/send-control.ts';
import type { Services } from '../../src/services.ts';
import { runCliInProcess } from '../support/cli.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { buildArf } from '../support/reports.ts';

/**
 * The reputation breakers with a real worker, Redis and SMTP server: a send whose hard-bounce or
 * complaint rate goes over its threshold pauses itself, a domain that blocks us is held while the
 * others go on, and resume re-arms them.
 */

async function record(services: Services, sendId: string) {
  const current = await services.sends.get(sendId);
  if (!current) throw new Error(`send ${sendId} is missing`);
  return current;
}

async function pausedByBreaker(services: Services, sendId: string) {
  return waitFor(
    async () => {
      const current = await record(services, sendId);
      return current.state === 'paused' ? current : undefined;
    },
    20_000,
    async () => `send ${sendId} to pause itself: ${JSON.stringify(await record(services, sendId))}`,
  );
}

describe('reputation breakers', () => {
  it('pauses a send whose hard-bounce rate goes over BREAKER_BOUNCE_RATE, says why, and resume re-arms it', async () => {
    let rejecting = true;
    const harness = await createHarness('breaker-hard', {
      acceptDelayMs: 5,
      config: { BREAKER_MIN_SAMPLE: '50', BREAKER_BOUNCE_RATE: '0.05', WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '4' },
      // One address in ten is unknown: a 10% hard-bounce rate.
      rejectRecipient: (address) =>
        rejecting && /^reader\d*0@/.test(address)
          ? { responseCode: 550, message: '5.1.1 <' + address + '>: Recipient address rejected: User unknown' }
          : undefined,
    });
    const { services } = harness;
    const subscribers = 500;
    await seedSubscribers(services, subscribers);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();

    const paused = await pausedByBreaker(services, sendId);
    expect(paused.stateReason).toMatchObject({ by: 'breaker' });
    expect(paused.stateReason?.reason).toMatch(
      /^hard-bounce rate \d+\.\d% \(\d+ of \d+ messages answered in the last 15 min\) is over BREAKER_BOUNCE_RATE 5\.0%$/,
    );
    // It judged only once the sample was large enough, and stopped well before the end.
    const answered = Number(/of (\d+) messages/.exec(paused.stateReason?.reason ?? '')?.[1]);
    expect(answered).toBeGreaterThanOrEqual(50);
    expect(paused.pending).toBeGreaterThan(subscribers / 2);
    // The event follows the pause by a moment (it is published once the pause is recorded).
    await waitFor(
      async () => (await services.control.recentEvents()).some((event) => event.type === 'send.paused' && event.by === 'breaker'),
      5_000,
      'the send.paused event',
    );
    expect(await services.control.recentEvents()).toContainEqual(
      expect.objectContaining({ type: 'send.paused', sendId, by: 'breaker', breaker: 'hard', threshold: '0.05' }),
    );
    const status = await runCliInProcess(['status', 'vol-138'], harness.config);
    expect(status.out).toMatch(/reason {4}hard-bounce rate .* \(the send's breaker, /);

    // The list is cleaned (here: the server stops refusing); resume re-arms the breaker with fresh
    // counts. Without the re-arm, the bounces already in the window would pause it again at once.
    await waitFor(async () => (await record(services, sendId)).sending === 0, 5_000, 'messages in flight to finish');
    rejecting = false;
    await resumeSend(services, { issueId: 'vol-138', who: 'test:ops' });
    // A trip judged on counts read before the resume (armed 0) can't undo it.
    const stale = { by: 'breaker' as const, reason: 'judged on counts from before the resume', at: new Date().toISOString() };
    expect(await services.control.setControl(sendId, 'pause', stale, 15, 0)).toEqual(['unchanged', 'active']);
    expect(await services.control.holdDomain(sendId, 'example.org', stale, 0)).toBe(false);
    const finished = await harness.waitForSend(sendId, 30_000);
    expect(finished).toMatchObject({ state: 'sent-with-failures', total: subscribers, stateReason: undefined });
    expect(finished.accepted + finished.failed).toBe(subscribers);
    expect(finished.bounced).toBe(finished.failed);
  });

  it('holds a recipient domain that blocks us while the other domains go on, and resume releases it', async () => {
    let blocking = true;
    const harness = await createHarness('breaker-domain', {
      config: { BREAKER_MIN_SAMPLE: '20', BREAKER_BLOCK_RATE: '0.05', WORKER_CONCURRENCY: '4', SMTP_POOL_SIZE: '4' },
      rejectRecipient: (address) =>
        blocking && address.endsWith('@blocked.example')
          ? { responseCode: 554, message: '5.7.1 Service unavailable; client host blocked using a reputation list' }
          : undefined,
    });
    const { services } = harness;
    // One subscriber in 30 is at blocked.example: 40 of 1,200, too few (3.3%) to trip the send's
    // own block breaker, enough to trip the domain's once 20 of them have been answered.
    const subscribers = 1_200;
    const inputs = Array.from({ length: subscribers }, (_, index) => ({
      email: (index + 1) % 30 === 0 ? `reader${index + 1}@blocked.example` : `reader${index + 1}@example.org`,
      list: 'weekly',
    }));
    await services.subscribers.upsertMany(inputs);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();

    const elsewhere = subscribers - 40;
    const held = await waitFor(
      async () => {
        const current = await record(services, sendId);
        return current.accepted >= elsewhere && current.heldDomains.length > 0 && current.sending === 0 ? current : undefined;
      },
      30_000,
      async () => `the other domains to finish while blocked.example is held: ${JSON.stringify(await record(services, sendId))}`,
    );
    expect(held.state).toBe('sending');
    expect(held.stateReason).toBeUndefined();
    expect(held.heldDomains).toEqual([
      expect.objectContaining({
        domain: 'blocked.example',
        by: 'breaker',
        reason: expect.stringMatching(/^block rate for blocked\.example \d+\.\d% \(\d+ of 2\d messages/),
      }),
    ]);
    // Refused: the sample that tripped it (and what was in flight then); the rest wait.
    expect(held.failed).toBeGreaterThanOrEqual(20);
    expect(held.failed).toBeLessThan(40);
    expect(held.pending).toBe(40 - held.failed);
    expect(held.blocked).toBe(held.failed);
    expect(harness.received.every((message) => message.recipients.every((recipient) => recipient.endsWith('@example.org')))).toBe(true);
    await waitFor(async () => (await services.control.recentEvents()).some((event) => event.type === 'send.domain-held'), 5_000, 'the send.domain-held event');
    expect(await services.control.recentEvents()).toContainEqual(
      expect.objectContaining({ type: 'send.domain-held', sendId, domain: 'blocked.example', breaker: 'block' }),
    );
    expect((await runCliInProcess(['status', 'vol-138'], harness.config)).out).toMatch(/held {6}blocked\.example: block rate for blocked\.example/);

    // Delisted: resume releases the domain, and its waiting recipients go out.
    blocking = false;
    await resumeSend(services, { issueId: 'vol-138', who: 'test:ops' });
    const finished = await harness.waitForSend(sendId, 30_000);
    expect(finished).toMatchObject({ state: 'sent-with-failures', accepted: subscribers - held.failed, failed: held.failed, heldDomains: [] });
  });

  it('pauses a send on a complaint rate over BREAKER_COMPLAINT_RATE, counted from reports that come back while it runs', async () => {
    const harness = await createHarness('breaker-complaint', {
      acceptDelayMs: 25,
      config: { BOUNCE_ADDRESS: 'bounces@bounce.example.org', BREAKER_MIN_SAMPLE: '20', WORKER_CONCURRENCY: '1', SMTP_POOL_SIZE: '1' },
    });
    const { services } = harness;
    await seedSubscribers(services, 200);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker();
    await waitFor(() => harness.received.length >= 30, 20_000, 'thirty messages to go out');
    expect((await record(services, sendId)).state).toBe('sending');

    // One reader marks it as spam: one complaint in 30+ messages is far over the default 0.3%.
    const dir = await mkdtemp(path.join(tmpdir(), 'nl-breaker-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'arf.eml');
    await writeFile(file, buildArf({ to: 'fbl@bounce.example.org', original: harness.received[0]!.raw }));
    const ingested = await runCliInProcess(['bounces', 'ingest', file], harness.config);
    expect(ingested.out).toMatch(/^applied: complaint for reader1@example\.org/);

    const paused = await pausedByBreaker(services, sendId);
    expect(paused.stateReason).toMatchObject({
      by: 'breaker',
      reason: expect.stringMatching(/^complaint rate \d+\.\d+% \(1 of \d+ messages .*\) is over BREAKER_COMPLAINT_RATE 0\.30%$/),
    });
    expect(paused.complained).toBe(1);
    expect(paused.pending).toBeGreaterThan(100);
  });
});
