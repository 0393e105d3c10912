import { describe, expect, it, onTestFinished } from 'vitest';
import { sendStatusReport } from '../../src/app/send-report.ts';
import { describeSendStatus } from '../../src/cli/format.ts';
import { suppressionTo } from '../../src/core/subscriber.ts';
import { redisKeys } from '../../src/store/keys.ts';
import { refusingRecords, waitFor, withFault } from '../support/faults.ts';
import { retryFailedRecipients } from '../../src/app/start-send.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';
import { startTcpGate } from '../support/tcp-gate.ts';

describe('delivery failures', () => {
  it('fails a recipient the server rejects with 550 at once, and shows who failed and why', async () => {
    let rcptAttempts = 0;
    const harness = await createHarness('reject', {
      rejectRecipient: (address) => {
        if (address !== 'reader2@example.org') return undefined;
        rcptAttempts += 1;
        return { responseCode: 550, message: '5.1.1 User unknown' };
      },
    });
    const { services } = harness;
    await seedSubscribers(services, 3);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    const record = await harness.waitForSend(sendId);

    expect(record).toMatchObject({ state: 'sent-with-failures', total: 3, accepted: 2, failed: 1, pending: 0 });
    expect(rcptAttempts).toBe(1); // permanent: no retry
    const report = await sendStatusReport(services, 'vol-138', 'weekly');
    expect(report.failures).toEqual([
      expect.objectContaining({ email: 'reader2@example.org', permanent: true, responseCode: 550, attempts: 1, response: expect.stringContaining('5.1.1') }),
    ]);
    // The job ends, and its bounce is applied, a moment after the recipient's record finished the send.
    await waitFor(async () => (await services.queue.getFailed()).length > 0, 5_000, 'the failed job');
    const failedJobs = await services.queue.getFailed();
    expect(failedJobs.map((job) => job.id)).toEqual([`${sendId}.2`]);

    // A hard bounce is suppressed: the address is never mailed again, not even by a resend.
    await waitFor(async () => (await services.subscribers.get('2'))?.status === 'bounced', 5_000, 'the hard bounce to suppress reader2');
    const again = await harness.send('vol-138', { resend: true });
    expect(await harness.waitForSend(again.sendId)).toMatchObject({ total: 2, accepted: 2, failed: 0 });
    expect(rcptAttempts).toBe(1);
  });

  it('never weakens a suppression: a hard bounce arriving after a complaint leaves the address complained', async () => {
    const harness = await createHarness('bounce-after-complaint', {
      rejectRecipient: (address) => (address === 'reader1@example.org' ? { responseCode: 550, message: '5.1.1 User unknown' } : undefined),
    });
    const { services } = harness;
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    // The complaint lands after the worker read the subscriber as active and before the 550 comes back.
    await services.subscribers.changeStatus('1', suppressionTo('complained'));
    let staleReads = 0;
    await harness.startWorker({
      wrapDeps: (deps) => ({
        ...deps,
        subscribers: withFault(
          deps.subscribers,
          'get',
          () => undefined,
          (subscriber) => {
            staleReads += 1;
            return subscriber && { ...subscriber, status: 'active' as const };
          },
        ),
      }),
    });
    expect(await harness.waitForSend(sendId)).toMatchObject({ failed: 1 });
    expect(staleReads).toBeGreaterThan(0);
    expect((await services.subscribers.get('1'))?.status).toBe('complained');
    expect(await services.subscribers.countList('weekly')).toMatchObject({ byStatus: { active: 0, complained: 1, bounced: 0 } });
  });

  it('fails but does not suppress a recipient whose mailbox is full', async () => {
    const harness = await createHarness('full', {
      rejectRecipient: (address) => (address === 'reader1@example.org' ? { responseCode: 552, message: '5.2.2 Mailbox full' } : undefined),
    });
    const { services } = harness;
    await seedSubscribers(services, 1);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    expect(await harness.waitForSend(sendId)).toMatchObject({ failed: 1 });
    expect((await services.subscribers.get('1'))?.status).toBe('active');
  });

  it('never sends twice when recording the acceptance keeps failing after the 250: the job ends, and the acceptance is recorded later', async () => {
    const harness = await createHarness('unrecorded');
    const { services } = harness;
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    // An injected store fault: the three tries the handler makes to record this acceptance fail
    // (Redis answers again afterwards, and the worker's late record lands).
    const fault = refusingRecords('accepted', 3);
    await harness.startWorker({ recordRetryDelaysMs: [1, 1], wrapDeps: fault.wrapDeps });
    const record = await harness.waitForSend(sendId);
    expect(fault.refused()).toBe(3); // the first try and both retries failed
    expect(record).toMatchObject({ state: 'sent', accepted: 1, failed: 0 });
    // The job was failed on purpose, so BullMQ never runs it (and never sends it) again.
    const [failedJob] = await services.queue.getFailed();
    expect(failedJob?.failedReason).toContain('accepted by the SMTP server, but recording it failed');
    expect(failedJob?.attemptsMade).toBe(1);
    expect(await services.queue.getJobCounts('waiting', 'delayed', 'active')).toEqual({ waiting: 0, delayed: 0, active: 0 });
    expect(harness.received).toHaveLength(1);
  });

  it('puts the job back, rather than leaving the recipient queued with no job, when a failure cannot be recorded', async () => {
    let rcptAttempts = 0;
    const harness = await createHarness('unrecorded-failure', {
      rejectRecipient: () => {
        rcptAttempts += 1;
        return { responseCode: 550, message: '5.1.1 User unknown' };
      },
    });
    const { services } = harness;
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    const fault = refusingRecords('failed', 4);
    await harness.startWorker({ recordRetryDelaysMs: [1, 1], wrapDeps: fault.wrapDeps });
    const record = await harness.waitForSend(sendId);
    expect(fault.refused()).toBe(4); // three tries in the first run, one in the second
    expect(record).toMatchObject({ state: 'sent-with-failures', failed: 1, pending: 0 });
    expect(rcptAttempts).toBe(2); // the job came back once, and was not counted as a retry
    const report = await sendStatusReport(services, 'vol-138', 'weekly');
    expect(report.failures).toEqual([expect.objectContaining({ permanent: true, responseCode: 550, attempts: 1 })]);
  });

  it('fails a recipient whose message cannot be composed with its own reason, without trying SMTP or retrying', async () => {
    const harness = await createHarness('compose');
    const { services } = harness;
    await seedSubscribers(services, 2);
    const { sendId } = await harness.send('vol-138');
    await harness.startWorker({
      wrapDeps: (deps) => ({
        ...deps,
        // A subscriber whose name can't be read when the message is composed: composing throws
        // before any SMTP exchange.
        subscribers: withFault(
          deps.subscribers,
          'get',
          () => undefined,
          (subscriber) =>
            subscriber?.id === '2'
              ? Object.defineProperty({ ...subscriber }, 'name', {
                  get: () => {
                    throw new Error('injected: unencodable name');
                  },
                })
              : subscriber,
        ),
      }),
    });
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent-with-failures', accepted: 1, failed: 1 });
    const report = await sendStatusReport(services, 'vol-138', 'weekly');
    expect(report.failures).toEqual([
      expect.objectContaining({
        subscriberId: '2',
        code: 'ECOMPOSE',
        permanent: true,
        attempts: 1,
        response: expect.stringContaining('injected: unencodable name'),
      }),
    ]);
    expect(harness.received.map((message) => message.recipients[0])).toEqual(['reader1@example.org']);
  });

  it('tells a stuck send from a running one, and --retry-failed gives its orphaned recipients a job again', async () => {
    const harness = await createHarness('stuck');
    const { services } = harness;
    await seedSubscribers(services, 3);
    const { sendId } = await harness.send('vol-138');
    expect((await sendStatusReport(services, 'vol-138', 'weekly')).stuck).toBe(false); // queued, with jobs
    // The job of recipient 2 is lost (as when a worker dies and its last record can't be written).
    await services.queue.remove(`${sendId}.2`);
    await harness.startWorker();
    await waitFor(async () => (await services.sends.get(sendId))?.accepted === 2, 10_000, 'the other two recipients to be accepted');
    const stuck = await sendStatusReport(services, 'vol-138', 'weekly');
    expect(stuck).toMatchObject({ state: 'sending', pending: 1, stuck: true });
    expect(describeSendStatus(stuck)).toContain('STUCK');
    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toEqual({ sendId, requeued: 0, repaired: 1, acceptedLate: 0 });
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', accepted: 3 });
    expect(harness.received.map((message) => message.recipients[0] ?? '').sort()).toEqual([
      'reader1@example.org',
      'reader2@example.org',
      'reader3@example.org',
    ]);
  });

  it('retries a temporary 451 with backoff and then delivers once', async () => {
    let rejectionsLeft = 2;
    const harness = await createHarness('tempfail', {
      // A 4.7.x answer also backs the recipient's domain off (a "slow down"): kept short here.
      config: { SEND_BACKOFF_MS: '20', DOMAIN_BACKOFF_MS: '50' },
      rejectRecipient: (address) => {
        if (address !== 'reader1@example.org' || rejectionsLeft === 0) return undefined;
        rejectionsLeft -= 1;
        return { responseCode: 451, message: '4.7.1 Try again later' };
      },
    });
    const { services } = harness;
    await seedSubscribers(services, 2);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent', accepted: 2, failed: 0 });
    expect(rejectionsLeft).toBe(0);
    expect(harness.received.filter((message) => message.recipients[0] === 'reader1@example.org')).toHaveLength(1);
  });

  it('records a recipient as failed once the attempts run out on a temporary error, and retries them on request', async () => {
    let mailboxBusy = true;
    const harness = await createHarness('exhaust', {
      config: { SEND_BACKOFF_MS: '10', SEND_MAX_ATTEMPTS: '3' },
      rejectRecipient: (address) => {
        if (address === 'reader1@example.org' && mailboxBusy) return { responseCode: 451, message: '4.2.1 Mailbox busy' };
        if (address === 'reader3@example.org') return { responseCode: 550, message: '5.1.1 User unknown' };
        return undefined;
      },
    });
    const { services } = harness;
    await seedSubscribers(services, 3);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent-with-failures', accepted: 1, failed: 2 });
    const report = await sendStatusReport(services, 'vol-138', 'weekly');
    expect(report.failures).toEqual(
      expect.arrayContaining([expect.objectContaining({ email: 'reader1@example.org', permanent: false, attempts: 3, responseCode: 451 })]),
    );

    // The mailbox recovers; ops retry the failed ones. The permanent 550 is not retried.
    mailboxBusy = false;
    // The first --retry-failed dies after putting them back to queued, before adding their jobs;
    // running it again finishes that round instead of leaving the send pending forever.
    await services.sends.requeueTemporaryFailures(sendId);
    expect(await services.sends.get(sendId)).toMatchObject({ state: 'sending', pending: 1 });
    const retried = await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' });
    expect(retried).toEqual({ sendId, requeued: 1, repaired: 0, acceptedLate: 0 });
    const after = await harness.waitForSend(sendId);
    expect(after).toMatchObject({ state: 'sent-with-failures', total: 3, accepted: 2, failed: 1, pending: 0 });
    expect(harness.received.map((message) => message.recipients[0] ?? '').sort()).toEqual(['reader1@example.org', 'reader2@example.org']);
    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toEqual({ sendId, requeued: 0, repaired: 0, acceptedLate: 0 });
  });

  it('holds the send while the SMTP server refuses connections, without spending attempts, and delivers when it is back', async () => {
    // A gate on a port of its own, bound for the whole test: no server is restarted on a port
    // that another test could take in the meantime.
    const gate = await startTcpGate();
    onTestFinished(() => gate.stop());
    // One attempt per message: any attempt spent on the outage would fail the recipient.
    const harness = await createHarness('refused', { config: { SMTP_URL: gate.url, SEND_BACKOFF_MS: '100', SEND_MAX_ATTEMPTS: '1' } });
    const { services } = harness;
    await seedSubscribers(services, 2);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    await waitFor(() => gate.refused() >= 3, 10_000, 'connections refused during the outage');
    expect(await services.sends.get(sendId)).toMatchObject({ accepted: 0, failed: 0, pending: 2 });

    gate.open(harness.sink.port);
    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', accepted: 2, failed: 0 });
    expect(harness.received).toHaveLength(2);
  });

  it('spends attempts, rather than holding forever, on a message the server hangs up on while it still answers others', async () => {
    let hangUps = 0;
    const harness = await createHarness('hang-up', {
      config: { SEND_BACKOFF_MS: '20', SEND_MAX_ATTEMPTS: '2' },
      hangUpOn: (address) => address === 'reader2@example.org' && ++hangUps > 0,
    });
    const { services } = harness;
    await seedSubscribers(services, 3);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent-with-failures', accepted: 2, failed: 1 });
    expect((await sendStatusReport(services, 'vol-138', 'weekly')).failures).toEqual([
      expect.objectContaining({ email: 'reader2@example.org', permanent: false, attempts: 2, code: 'ECONNECTION' }),
    ]);
    // Two attempts; nodemailer's pool itself tries a message once more on a dropped connection.
    expect(hangUps).toBeGreaterThanOrEqual(2);
    expect(hangUps).toBeLessThanOrEqual(4);
  });

  it('still completes the send, showing the failure, when a job fails outside the SMTP exchange', async () => {
    const harness = await createHarness('corrupt', { config: { SEND_BACKOFF_MS: '10', SEND_MAX_ATTEMPTS: '2' } });
    const { services, config } = harness;
    const [, second] = await seedSubscribers(services, 2);
    const { sendId } = await harness.send('vol-138');
    // A subscriber record this code can't read: never mailed, and reported rather than stuck "pending".
    await services.redis.hset(redisKeys(config.redis.prefix).subscriber(second!.id), 'status', 'mystery');
    await harness.startWorker();
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent-with-failures', accepted: 1, failed: 1, pending: 0 });
    const report = await sendStatusReport(services, 'vol-138', 'weekly');
    expect(report.failures[0]).toMatchObject({ subscriberId: second!.id, code: 'ERECORD', response: expect.stringContaining('unknown status "mystery"') });
    expect(harness.received.map((message) => message.recipients[0])).toEqual(['reader1@example.org']);
  });
});
