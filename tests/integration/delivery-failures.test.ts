import { describe, expect, it } from 'vitest';
import { sendStatusReport } from '../../src/app/send-report.ts';
import { retryFailedRecipients } from '../../src/app/start-send.ts';
import { createHarness, seedSubscribers } from '../support/harness.ts';


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
    const { services, config } = harness;
    await seedSubscribers(services, 3);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    const record = await harness.waitForSend(sendId);

    expect(record).toMatchObject({ state: 'sent-with-failures', total: 3, accepted: 2, failed: 1, pending: 0 });
    expect(rcptAttempts).toBe(1); // permanent: no retry
    const report = await sendStatusReport(config, services, 'vol-138', 'weekly');
    expect(report.failures).toEqual([
      expect.objectContaining({ email: 'reader2@example.org', permanent: true, responseCode: 550, attempts: 1, response: expect.stringContaining('5.1.1') }),
    ]);
    const failedJobs = await services.queue.getFailed();
    expect(failedJobs.map((job) => job.id)).toEqual([`${sendId}.2`]);

    // A hard bounce is suppressed: the address is never mailed again, not even by a resend.
    expect((await services.subscribers.get('2'))?.status).toBe('bounced');
    const again = await harness.send('vol-138', { resend: true });
    expect(await harness.waitForSend(again.sendId)).toMatchObject({ total: 2, accepted: 2, failed: 0 });
    expect(rcptAttempts).toBe(1);
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

  it('never sends twice when recording the acceptance fails for a moment after the 250', async () => {
    let sendId = '';
    let sabotaged = false;
    const harness = await createHarness('unrecorded', {
      acceptDelayMs: 200,
      onMessage: () => {
        if (sabotaged) return;
        sabotaged = true;
        // While the server holds its 250, the recipient record becomes unreadable for 700 ms.
        const key = `${harness.config.redis.prefix}:send:${sendId}:recipients`;
        void (async () => {
          const saved = await harness.services.redis.hgetall(key);
          await harness.services.redis.multi().del(key).set(key, 'not a hash').exec();
          setTimeout(() => void harness.services.redis.multi().del(key).hset(key, saved).exec(), 700);
        })();
      },
    });
    const { services } = harness;
    await seedSubscribers(services, 1);
    sendId = (await harness.send('vol-138')).sendId;
    await harness.startWorker();
    while (harness.received.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // the record is readable again
    const record = await harness.waitForSend(sendId);
    expect(sabotaged).toBe(true);
    expect(record).toMatchObject({ state: 'sent', accepted: 1, failed: 0 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(harness.received).toHaveLength(1);
  });

  it('retries a temporary 451 with backoff and then delivers once', async () => {
    let rejectionsLeft = 2;
    const harness = await createHarness('tempfail', {
      config: { SEND_BACKOFF_MS: '20' },
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
    const { services, config } = harness;
    await seedSubscribers(services, 3);
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent-with-failures', accepted: 1, failed: 2 });
    const report = await sendStatusReport(config, services, 'vol-138', 'weekly');
    expect(report.failures).toEqual(
      expect.arrayContaining([expect.objectContaining({ email: 'reader1@example.org', permanent: false, attempts: 3, responseCode: 451 })]),
    );

    // The mailbox recovers; ops retry the failed ones. The permanent 550 is not retried.
    mailboxBusy = false;
    // The first --retry-failed dies after putting them back to queued, before adding their jobs;
    // running it again finishes that round instead of leaving the send pending forever.
    await services.sends.requeueTemporaryFailures(sendId);
    expect(await services.sends.get(sendId)).toMatchObject({ state: 'sending', pending: 1 });
    const retried = await retryFailedRecipients({ config, ...services }, { issueId: 'vol-138', list: 'weekly' });
    expect(retried).toEqual({ sendId, requeued: 1 });
    const after = await harness.waitForSend(sendId);
    expect(after).toMatchObject({ state: 'sent-with-failures', total: 3, accepted: 2, failed: 1, pending: 0 });
    expect(harness.received.map((message) => message.recipients[0]).sort()).toEqual(['reader1@example.org', 'reader2@example.org']);
    expect(await retryFailedRecipients({ config, ...services }, { issueId: 'vol-138', list: 'weekly' })).toEqual({ sendId, requeued: 0 });
  });

  it('holds the send while the SMTP server refuses connections, without spending attempts, and delivers when it is back', async () => {
    // One attempt per message: any attempt spent on the outage would fail the recipient.
    const harness = await createHarness('refused', { config: { SEND_BACKOFF_MS: '100', SEND_MAX_ATTEMPTS: '1' } });
    const { services } = harness;
    await seedSubscribers(services, 2);
    const port = harness.sink.port;
    await harness.sink.stop();
    await harness.startWorker();
    const { sendId } = await harness.send('vol-138');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await services.sends.get(sendId)).toMatchObject({ accepted: 0, failed: 0, pending: 2 });

    const { startSmtpSink } = await import('../../src/dev/smtp-sink.ts');
    const revived = await startSmtpSink({ onMessage: (raw, recipients) => harness.received.push({ raw, recipients }), port });
    try {
      const record = await harness.waitForSend(sendId);
      expect(record).toMatchObject({ state: 'sent', accepted: 2, failed: 0 });
      expect(harness.received).toHaveLength(2);
    } finally {
      // Workers first: smtp-server's close() waits for the pool's open connections to end.
      await harness.close();
      await revived.stop();
    }
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
    expect((await sendStatusReport(harness.config, services, 'vol-138', 'weekly')).failures).toEqual([
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
    await services.redis.hset(`${config.redis.prefix}:sub:${second!.id}`, 'status', 'mystery');
    await harness.startWorker();
    const record = await harness.waitForSend(sendId);
    expect(record).toMatchObject({ state: 'sent-with-failures', accepted: 1, failed: 1, pending: 0 });
    const report = await sendStatusReport(config, services, 'vol-138', 'weekly');
    expect(report.failures[0]).toMatchObject({ subscriberId: second!.id, code: 'EJOB', response: expect.stringContaining('unknown status "mystery"') });
    expect(harness.received.map((message) => message.recipients[0])).toEqual(['reader1@example.org']);
  });
});
