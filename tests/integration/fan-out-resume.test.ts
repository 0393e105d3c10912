import type { Queue } from 'bullmq';
import { STATUS_CHANGES } from '../../src/core/subscriber.ts';
import { describe, expect, it } from 'vitest';
import { loadIssue } from '../../src/content/load-issue.ts';
import { compileIssue } from '../../src/render/compile-issue.ts';
import { fanOut } from '../../src/app/fan-out.ts';
import { SendRefusedError, startSend } from '../../src/app/start-send.ts';
import type { SendJobData } from '../../src/store/send-queue.ts';
import { compileContextFor } from '../../src/render/compile-issue.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';

describe('a fan-out interrupted by a crash', () => {
  it('resumes where it stopped and mails every subscriber exactly once', async () => {
    const harness = await createHarness('resume', { config: { FANOUT_CHUNK_SIZE: '500' } });
    const { services, config } = harness;
    await seedSubscribers(services, 1200);

    // The editor's first `send` dies while adding the second chunk of jobs.
    const issue = await loadIssue(config.issuesDir, 'vol-138');
    const compiled = await compileIssue(issue, compileContextFor(config, 'weekly'));
    const { sendId } = await services.sends.create(compiled, false);
    let addBulkCalls = 0;
    const crashingQueue = {
      addBulk: async (jobs: Parameters<Queue<SendJobData>['addBulk']>[0]) => {
        addBulkCalls += 1;
        // Recipients 501–1000 are recorded as queued, their jobs never added.
        if (addBulkCalls === 2) throw new Error('simulated crash during fan-out');
        return services.queue.addBulk(jobs);
      },
    } as unknown as Queue<SendJobData>;
    await expect(
      fanOut({ sendId, list: 'weekly', startAfter: 0, chunkSize: 500, sends: services.sends, subscribers: services.subscribers, queue: crashingQueue }),
    ).rejects.toThrow('simulated crash');
    expect((await services.sends.get(sendId))?.state).toBe('preparing');
    expect(await services.queue.count()).toBe(500);

    // One of them unsubscribes before the editor notices and runs `send` again.
    await services.subscribers.changeStatus('700', STATUS_CHANGES.unsubscribe);
    // Workers already deliver the first chunk while the send is half queued.
    await harness.startWorker();

    // Just after the crash its fan-out lease still runs: a `send` can't tell it from a fan-out at
    // work, and is refused rather than queueing the send a second time at once.
    await expect(harness.send('vol-138')).rejects.toThrow(/is being queued right now by .*pid \d+ since .*lease runs out within 60 seconds/);
    // Once the lease runs out (here: ended by hand), running `send` again resumes that send rather
    // than refusing it or starting a second one.
    await services.sends.releaseFanOutLease(sendId);
    const resumed = await harness.send('vol-138');
    expect(resumed).toMatchObject({ sendId, resumed: true });
    const record = await harness.waitForSend(sendId, 60_000);
    expect(record).toMatchObject({ state: 'sent', total: 1200, accepted: 1199, skipped: 1, failed: 0, pending: 0 });

    const perRecipient = new Map<string, number>();
    for (const message of harness.received) perRecipient.set(message.recipients[0]!, (perRecipient.get(message.recipients[0]!) ?? 0) + 1);
    expect(perRecipient.size).toBe(1199);
    expect(perRecipient.has('reader700@example.org')).toBe(false);
    expect([...perRecipient.values()].every((count) => count === 1)).toBe(true);

    // A fan-out repeated over a finished send (say, a retried deploy script) mails no one again.
    await fanOut({ sendId, list: 'weekly', startAfter: 0, chunkSize: 500, sends: services.sends, subscribers: services.subscribers, queue: services.queue });
    // Nothing was queued again, so nothing can be sent again: no waiting for a message that never comes.
    expect(await services.queue.getJobCounts('waiting', 'delayed', 'prioritized', 'active')).toEqual({ waiting: 0, delayed: 0, prioritized: 0, active: 0 });
    expect(harness.received).toHaveLength(1199);
    expect((await services.sends.get(sendId))?.accepted).toBe(1199);
  });
});

describe('two sends of the same issue at once', () => {
  it('refuses the second while the first still queues, and announces the send once', async () => {
    const harness = await createHarness('fan-out-busy', { config: { FANOUT_CHUNK_SIZE: '500' } });
    const { services } = harness;
    await seedSubscribers(services, 3000);

    // The first `send` queues its first chunk, then holds at its second until the test lets it go.
    let reachSecondChunk: () => void = () => undefined;
    const atSecondChunk = new Promise<void>((resolve) => (reachSecondChunk = resolve));
    let letGo: () => void = () => undefined;
    const goOn = new Promise<void>((resolve) => (letGo = resolve));
    let chunks = 0;
    const slowQueue = {
      addBulk: async (jobs: Parameters<Queue<SendJobData>['addBulk']>[0]) => {
        chunks += 1;
        if (chunks === 2) {
          reachSecondChunk();
          await goOn;
        }
        return services.queue.addBulk(jobs);
      },
    } as unknown as Queue<SendJobData>;
    const first = startSend({ ...services, queue: slowQueue }, { issueId: 'vol-138', list: 'weekly', resend: false, requestedBy: 'editor@example.org' });
    try {
      await Promise.race([
        atSecondChunk,
        first.then(() => {
          throw new Error('the first send was queued without reaching its second chunk');
        }),
      ]);
      const sendId = await services.sends.latestId('vol-138', 'weekly');
      expect(await services.sends.get(sendId ?? '')).toMatchObject({ state: 'preparing', fanOutDone: false, fanOutCursor: 500 });

      // The second `send` (another editor, or the same one pressing again) finds the send half
      // queued, but its fan-out at work: refused, saying by whom and how to follow it.
      const second = harness.send('vol-138');
      await expect(second).rejects.toThrow(SendRefusedError);
      await expect(second).rejects.toThrow(
        /Send vol-138\.weekly\.1 .* is being queued right now by editor@example\.org \(.*pid \d+\) since \d{4}-.*newsletter status vol-138 --list weekly/,
      );
      // --resend is refused the same way: that send is not over, so it can't be sent again yet.
      await expect(harness.send('vol-138', { resend: true })).rejects.toThrow(/is being queued right now/);
      letGo();
      expect(await first).toMatchObject({ sendId, resumed: false });
    } finally {
      letGo();
      await first.catch(() => undefined);
    }

    const started = (await services.control.recentEvents()).filter((event) => event.type === 'send.started');
    expect(started).toEqual([expect.objectContaining({ sendId: 'vol-138.weekly.1', total: '3000' })]);
    expect(await services.sends.get('vol-138.weekly.1')).toMatchObject({ fanOutDone: true, total: 3000, state: 'queued' });
    expect(await services.queue.count()).toBe(3000);
    // Fully queued: the lease is given back, and a `send` now says the issue was sent.
    expect(await services.sends.fanOutRunning('vol-138.weekly.1')).toBe(false);
    await expect(harness.send('vol-138')).rejects.toThrow(/was already sent to list "weekly"/);
  });
});
