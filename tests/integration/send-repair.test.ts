import { Worker } from 'bullmq';
import { describe, expect, it, onTestFinished } from 'vitest';
import { sendStatusReport } from '../../src/app/send-report.ts';
import { retryFailedRecipients, startSend } from '../../src/app/start-send.ts';
import { AcceptedButUnrecordedError } from '../../src/delivery/job-errors.ts';
import { redisKeys } from '../../src/store/keys.ts';
import { repairJobId, SEND_QUEUE_NAME, sendJobId } from '../../src/store/send-queue.ts';
import { queueDeliveries } from '../../src/app/send-jobs.ts';
import { fanOut } from '../../src/app/fan-out.ts';
import { loadIssue } from '../../src/content/load-issue.ts';
import { compileContextFor, compileIssue } from '../../src/render/compile-issue.ts';
import { waitFor } from '../support/faults.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';

describe('telling and repairing a stuck send', () => {
  it('tells a stuck send even while another send has jobs waiting in the same queue', async () => {
    const harness = await createHarness('stuck-beside');
    const { services } = harness;
    await seedSubscribers(services, 2);
    await seedSubscribers(services, 1, 'other');
    const { sendId } = await harness.send('vol-138');
    const other = await startSend(services, { issueId: 'vol-138', list: 'other', resend: false });
    // Both of this send's jobs are lost; the other send's job still waits (no worker runs).
    await services.queue.remove(sendJobId(sendId, '1'));
    await services.queue.remove(sendJobId(sendId, '2'));
    expect(await services.queue.getJobCounts('waiting')).toEqual({ waiting: 1 });
    expect(await sendStatusReport(services, 'vol-138', 'weekly')).toMatchObject({ pending: 2, stuck: true });
    expect(await sendStatusReport(services, 'vol-138', 'other')).toMatchObject({ sendId: other.sendId, pending: 1, stuck: false });

    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toMatchObject({ repaired: 2 });
    // A second repair finds live jobs for both and adds nothing.
    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toMatchObject({ repaired: 0 });
    await harness.startWorker();
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', accepted: 2 });
    expect(await harness.waitForSend(other.sendId)).toMatchObject({ state: 'sent', accepted: 1 });
    // reader1 is on both lists: one message from each send, none twice.
    expect(harness.received.map((message) => message.recipients[0] ?? '').sort()).toEqual([
      'reader1@example.org',
      'reader1@example.org',
      'reader2@example.org',
    ]);
  });

  it('records as accepted, and never sends again, a recipient whose job ended with its acceptance unrecorded', async () => {
    const harness = await createHarness('accepted-late');
    const { services, config } = harness;
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    // The job ends the way a worker ends it when the 250 came but Redis never took the record.
    const worker = new Worker(SEND_QUEUE_NAME, null, {
      connection: services.redis.duplicate({ maxRetriesPerRequest: null }),
      prefix: redisKeys(config.redis.prefix).bullPrefix,
    });
    onTestFinished(() => worker.close());
    const job = await worker.getNextJob('test-token');
    expect(job?.id).toBe(sendJobId(sendId, '1'));
    await job!.moveToFailed(new AcceptedButUnrecordedError('injected: Redis refused the write'), 'test-token', false);
    expect(await job!.getState()).toBe('failed');
    expect(await sendStatusReport(services, 'vol-138', 'weekly')).toMatchObject({ pending: 1, stuck: true });

    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toMatchObject({ requeued: 0, repaired: 0, acceptedLate: 1 });
    expect(await sendStatusReport(services, 'vol-138', 'weekly')).toMatchObject({ state: 'sent', accepted: 1, pending: 0, stuck: false });
    expect(await services.queue.getJobCounts('waiting', 'delayed', 'active')).toEqual({ waiting: 0, delayed: 0, active: 0 });
    expect(harness.received).toHaveLength(0);
  });

  it('requeues 10,000 temporary failures a page at a time, each once, in one retry round', async () => {
    const harness = await createHarness('requeue-many');
    const { services, config } = harness;
    const keys = redisKeys(config.redis.prefix);
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    // A send whose 10,000 recipients all ran out of attempts on a 451 (written directly: sending them would take minutes).
    const ids = Array.from({ length: 10_000 }, (_, index) => String(index + 100));
    const failure = JSON.stringify({ at: new Date().toISOString(), permanent: false, responseCode: 451, attempts: 5 });
    await services.redis.hset(keys.sendRecipients(sendId), Object.fromEntries(ids.map((id) => [id, 'failed'])));
    await services.redis.hset(keys.sendFailures(sendId), Object.fromEntries(ids.map((id) => [id, failure])));
    await services.redis.hincrby(keys.send(sendId), 'failed', ids.length);

    const requeued = new Set<string>();
    let pages = 0;
    let cursor = '0';
    let round = 0;
    do {
      const page = await services.sends.requeueTemporaryFailures(sendId, { cursor, round, skip: requeued });
      ({ cursor, round } = page);
      pages += 1;
      for (const id of page.subscriberIds) {
        expect(requeued.has(id)).toBe(false);
        requeued.add(id);
      }
    } while (cursor !== '0');
    expect(pages).toBeGreaterThan(1);
    expect(round).toBe(1);
    expect(requeued.size).toBe(10_000);
    expect(await services.redis.scard(keys.sendRequeuePending(sendId))).toBe(10_000);
    expect(await services.sends.get(sendId)).toMatchObject({ failed: 0, pending: 10_001 });
  });

  it('lets only the job the send names for a recipient send, when a repair gave the recipient a second job', async () => {
    const harness = await createHarness('superseded');
    const { services } = harness;
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    const first = sendJobId(sendId, '1');
    // A second job for the same recipient, as a repair adds one when it takes the first for lost.
    const second = repairJobId(sendId, '1', 'xtest');
    expect(
      await queueDeliveries(
        services,
        sendId,
        ['1'],
        () => second,
        () => first,
      ),
    ).toBe(1);
    expect(await services.queue.getJobCounts('waiting')).toEqual({ waiting: 2 });

    await harness.startWorker();
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', accepted: 1 });
    await waitFor(async () => (await services.queue.getJobCounts('completed')).completed === 2, 10_000, 'both jobs to finish');
    expect(harness.received).toHaveLength(1);
    expect((await services.queue.getJob(first))?.returnvalue).toEqual({ outcome: 'superseded', by: second });
    expect((await services.queue.getJob(second))?.returnvalue).toMatchObject({ outcome: 'accepted' });
  });

  it('refuses to retry a send still being queued, and tells a fan-out that died from a running one', async () => {
    const harness = await createHarness('fan-out-died');
    const { services, config } = harness;
    await seedSubscribers(services, 3);
    const compiled = await compileIssue(await loadIssue(config.issuesDir, 'vol-138'), compileContextFor(config, 'weekly'));
    const { sendId } = await services.sends.create(compiled, false);
    // The editor's `send` dies while adding the first chunk of jobs.
    const dying = { addBulk: () => Promise.reject(new Error('injected: the process died')) } as unknown as typeof services.queue;
    await expect(
      fanOut({ sendId, list: 'weekly', startAfter: 0, chunkSize: 2, sends: services.sends, subscribers: services.subscribers, queue: dying }),
    ).rejects.toThrow('injected');
    // Just after, its lease still runs: it can't be told from a fan-out that is working.
    expect(await sendStatusReport(services, 'vol-138', 'weekly')).toMatchObject({ state: 'preparing', stuck: false });
    await expect(retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).rejects.toThrow(
      /still being queued.*newsletter send vol-138 --list weekly/,
    );
    // Once the lease runs out (here: ended by hand), status says the send is stuck, and `send` resumes it.
    await services.sends.releaseFanOutLease(sendId);
    expect(await sendStatusReport(services, 'vol-138', 'weekly')).toMatchObject({ state: 'preparing', stuck: true });
    expect(await harness.send('vol-138')).toMatchObject({ sendId, resumed: true });
    await harness.startWorker();
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', accepted: 3 });
    expect(harness.received).toHaveLength(3);
  });
});
