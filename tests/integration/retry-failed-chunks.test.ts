import { describe, expect, it, onTestFinished } from 'vitest';
import { retryFailedRecipients } from '../../src/app/start-send.ts';
import { startPrivateRedis } from '../../src/dev/private-redis.ts';
import { redisKeys } from '../../src/store/keys.ts';
import { retryJobId, sendJobId } from '../../src/store/send-queue.ts';
import { withFault } from '../support/faults.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';

const PAGE_SIZE = 20;

/** reader<n>@example.org → n */
const readerNumber = (address: string) => Number(/^reader(\d+)@/.exec(address)?.[1]);

/**
 * A send to `count` readers whose attempts (one each) ran out on a 451 while the mailbox was busy;
 * `permanent(n)` readers get a 550 instead, and `accepted(n)` ones are never refused. Returns the
 * harness, the send, and `recover()`, which ends the 451s.
 */
async function sendWithTemporaryFailures(
  label: string,
  count: number,
  rules: { permanent?: (n: number) => boolean; accepted?: (n: number) => boolean } = {},
): Promise<{ harness: Harness; sendId: string; recover: () => void }> {
  let busy = true;
  const harness = await createHarness(label, {
    config: { FANOUT_CHUNK_SIZE: String(PAGE_SIZE), SEND_MAX_ATTEMPTS: '1', SEND_BACKOFF_MS: '10' },
    rejectRecipient: (address) => {
      const n = readerNumber(address);
      if (rules.permanent?.(n)) return { responseCode: 550, message: '5.1.1 User unknown' };
      if (busy && !rules.accepted?.(n)) return { responseCode: 451, message: '4.2.1 Mailbox busy' };
      return undefined;
    },
  });
  await seedSubscribers(harness.services, count);
  await harness.startWorker();
  const { sendId } = await harness.send('vol-138');
  await harness.waitForSend(sendId);
  return { harness, sendId, recover: () => (busy = false) };
}

/** How many messages each address received. */
function deliveries(harness: Harness): Map<string, number> {
  const counts = new Map<string, number>();
  for (const message of harness.received) for (const address of message.recipients) counts.set(address, (counts.get(address) ?? 0) + 1);
  return counts;
}

describe('send --retry-failed, a page at a time', () => {
  it('requeues every temporary failure of a send larger than a page, delivers each once, and leaves permanent failures failed', async () => {
    // Few permanent failures: a hard-bounce rate over BREAKER_BOUNCE_RATE would pause the send.
    const permanent = (n: number) => n % 50 === 0;
    const accepted = (n: number) => n <= 5;
    const { harness, sendId, recover } = await sendWithTemporaryFailures('retry-pages', 150, { permanent, accepted });
    const { services, config } = harness;
    const keys = redisKeys(config.redis.prefix);
    expect(await services.sends.get(sendId)).toMatchObject({ state: 'sent-with-failures', total: 150, accepted: 5, failed: 145, pending: 0 });
    expect(harness.received).toHaveLength(5);

    recover();
    // Counts the pages of the failures hash the retry walks.
    const pages: number[] = [];
    const sends = withFault(
      services.sends,
      'requeueTemporaryFailures',
      () => undefined,
      (page) => {
        pages.push(page.subscriberIds.length);
        return page;
      },
    );
    const retried = await retryFailedRecipients({ ...services, sends }, { issueId: 'vol-138', list: 'weekly' });
    expect(retried).toEqual({ sendId, requeued: 142, repaired: 0, acceptedLate: 0 });
    // More than one page, and together they requeued everyone once.
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.reduce((sum, size) => sum + size, 0)).toBe(142);

    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent-with-failures', total: 150, accepted: 147, failed: 3, pending: 0 });
    const received = deliveries(harness);
    expect(received.size).toBe(147);
    expect([...received.values()].every((times) => times === 1)).toBe(true);
    expect([...received.keys()].some((address) => permanent(readerNumber(address)))).toBe(false);
    // One retry round for the whole run.
    expect(await services.redis.hget(keys.send(sendId), 'retryRound')).toBe('1');
    expect(await services.queue.getJob(retryJobId(sendId, '6', 1))).toBeDefined();
    expect(await services.redis.exists(keys.sendRequeuePending(sendId))).toBe(0);
    // The permanent failures keep their failure; the requeued ones lost theirs when they were accepted.
    expect((await services.sends.failures(sendId, 1000)).map(({ subscriberId }) => Number(subscriberId)).sort((a, b) => a - b)).toEqual([50, 100, 150]);
    // Nothing left to retry.
    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toEqual({ sendId, requeued: 0, repaired: 0, acceptedLate: 0 });
  });

  it("a worker's late failure record of an old job does not land on a recipient a retry round gave a new job", async () => {
    // No worker: the recipients stay queued, each assigned to its job, as a retry round leaves them.
    const harness = await createHarness('retry-late-record');
    const { services } = harness;
    await seedSubscribers(services, 2);
    const { sendId } = await harness.send('vol-138');
    const failure = { at: new Date().toISOString(), permanent: false, code: 'EJOB', response: 'late', attempts: 1 };
    // The record of a job that is no longer the recipient's (the first round's, say) changes nothing…
    expect(await services.sends.markRecipient(sendId, '1', 'failed', { failure, onlyIfJob: retryJobId(sendId, '1', 7) })).toBe(false);
    expect(await services.sends.recipientStates(sendId, ['1'])).toEqual(['queued']);
    // …nor does one for a recipient put back to queued whose new job is not assigned yet.
    await services.redis.hdel(redisKeys(harness.config.redis.prefix).sendQueuedJobs(sendId), '2');
    expect(await services.sends.markRecipient(sendId, '2', 'failed', { failure, onlyIfJob: sendJobId(sendId, '2') })).toBe(false);
    expect(await services.sends.recipientStates(sendId, ['2'])).toEqual(['queued']);
    // The record of the job that is the recipient's applies.
    expect(await services.sends.markRecipient(sendId, '1', 'failed', { failure, onlyIfJob: sendJobId(sendId, '1') })).toBe(true);
    expect(await services.sends.recipientStates(sendId, ['1'])).toEqual(['failed']);
  });

  it('a run that dies between requeueing a page and adding its jobs leaves those recipients to the next run', async () => {
    const { harness, sendId, recover } = await sendWithTemporaryFailures('retry-dies', 100);
    const { services, config } = harness;
    const keys = redisKeys(config.redis.prefix);
    expect(await services.sends.get(sendId)).toMatchObject({ state: 'sent-with-failures', failed: 100 });
    recover();

    // The process dies adding the jobs of the second page (the first page's jobs are added).
    let batches = 0;
    let firstBatch = 0;
    let injected = 0;
    const dying = withFault(services.queue, 'addBulk', (jobs) => {
      batches += 1;
      if (batches === 1) firstBatch = jobs.length;
      if (batches !== 2) return;
      injected += 1;
      throw new Error('injected: the process died');
    });
    await expect(retryFailedRecipients({ ...services, queue: dying }, { issueId: 'vol-138', list: 'weekly' })).rejects.toThrow('injected');
    expect(injected).toBe(1);
    expect(firstBatch).toBeGreaterThan(0);

    // The second page is queued, without jobs, and pending under round 1.
    const pending = await services.redis.smembers(keys.sendRequeuePending(sendId));
    expect(pending.length).toBeGreaterThan(0);
    expect(await services.sends.recipientStates(sendId, pending)).toEqual(pending.map(() => 'queued'));
    expect(await services.queue.getJob(retryJobId(sendId, pending[0]!, 1))).toBeUndefined();
    expect(await services.redis.hget(keys.send(sendId), 'retryRound')).toBe('1');

    // The next run gives them their jobs under round 1, then requeues the rest in a round of its own.
    const retried = await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' });
    expect(retried).toEqual({ sendId, requeued: 100 - firstBatch, repaired: 0, acceptedLate: 0 });
    expect(await services.queue.getJob(retryJobId(sendId, pending[0]!, 1))).toBeDefined();
    expect(await services.redis.exists(keys.sendRequeuePending(sendId))).toBe(0);

    expect(await harness.waitForSend(sendId)).toMatchObject({ state: 'sent', total: 100, accepted: 100, failed: 0, pending: 0 });
    const received = deliveries(harness);
    expect(received.size).toBe(100);
    expect([...received.values()].every((times) => times === 1)).toBe(true);
  });

  it('holds Redis for at most one page of ids per script call, whatever the number of failures', async () => {
    // A Redis of this test's own, so its SLOWLOG sees every command of this send and no other.
    const own = await startPrivateRedis();
    onTestFinished(() => own.stop());
    const harness = await createHarness('retry-bounded', { config: { REDIS_URL: own.url, FANOUT_CHUNK_SIZE: '50' } });
    const { services, config } = harness;
    const keys = redisKeys(config.redis.prefix);
    await seedSubscribers(services, 1);
    const { sendId } = await harness.send('vol-138');
    // 3,000 recipients whose attempts ran out on a 451, and 200 refused for good (written directly:
    // sending them would take a while). No worker runs.
    const temporary = Array.from({ length: 3_000 }, (_, index) => String(index + 100));
    const permanent = Array.from({ length: 200 }, (_, index) => String(index + 10_000));
    const failure = (permanentFailure: boolean) =>
      JSON.stringify({ at: new Date().toISOString(), permanent: permanentFailure, responseCode: permanentFailure ? 550 : 451, attempts: 5 });
    const all = [...temporary, ...permanent];
    await services.redis.hset(keys.sendRecipients(sendId), Object.fromEntries(all.map((id) => [id, 'failed'])));
    await services.redis.hset(keys.sendFailures(sendId), Object.fromEntries(all.map((id) => [id, failure(permanent.includes(id))])));
    await services.redis.hincrby(keys.send(sendId), 'failed', all.length);

    await services.redis.config('SET', 'slowlog-log-slower-than', '0');
    await services.redis.config('SET', 'slowlog-max-len', '100000');
    await services.redis.call('SLOWLOG', 'RESET');
    expect(await retryFailedRecipients(services, { issueId: 'vol-138', list: 'weekly' })).toMatchObject({ sendId, requeued: 3_000 });
    const log = (await services.redis.call('SLOWLOG', 'GET', '-1')) as [number, number, number, string[]][];

    // [id, time, µs, [evalsha, sha, numkeys, send, recipients, failures, pending, progress, domains, round, bucket, ...ids]]
    const calls = log
      .map(([, , micros, args]) => ({ micros, args }))
      .filter(({ args }) => /^eval(sha)?$/i.test(args[0] ?? '') && args[3] === keys.send(sendId) && args[6] === keys.sendRequeuePending(sendId));
    // SLOWLOG keeps 32 arguments of a command, the last one saying how many more there were.
    const idsOf = (args: string[]) => {
      const more = /^\.\.\. \((\d+) more arguments\)$/.exec(args.at(-1) ?? '');
      return (more ? args.length - 1 + Number(more[1]) : args.length) - 11;
    };
    expect(calls.length).toBeGreaterThanOrEqual(3_000 / 50);
    expect(Math.max(...calls.map(({ args }) => idsOf(args)))).toBeLessThanOrEqual(50);
    // The permanent failures never reach the script.
    expect(calls.reduce((sum, { args }) => sum + idsOf(args), 0)).toBeLessThan(3_000 + 50);
    expect(await services.sends.get(sendId)).toMatchObject({ failed: 200, pending: 3_001 });
  });
});
