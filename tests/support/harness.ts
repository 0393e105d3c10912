import { onTestFinished } from 'vitest';
import type { Config } from '../../config/index.ts';
import { isFinalSendState } from '../../src/core/send-status.ts';
import { startSmtpSink, type SinkEnvelope, type SmtpRejection, type SmtpSink } from '../../src/dev/smtp-sink.ts';
import { openServices, type Services } from '../../src/services.ts';
import type { SendRecord } from '../../src/store/send-store.ts';
import { startSend, type StartSendResult } from '../../src/app/start-send.ts';
import { startSendWorker, type SendWorkerHandle, type SendWorkerOptions } from '../../src/workers/send.ts';
import { waitFor } from './faults.ts';
import { testConfig } from './test-config.ts';

/** One message as the SMTP server received it. */
export interface ReceivedMessage {
  readonly raw: Buffer;
  readonly recipients: readonly string[];
  /** MAIL FROM (VERP) and the DSN parameters the client gave. */
  readonly envelope: SinkEnvelope;
}

/** A private pipeline for one test: its own key prefix, a real SMTP server, real BullMQ workers. */
export interface Harness {
  readonly config: Config;
  readonly sink: SmtpSink;
  readonly services: Services;
  readonly received: ReceivedMessage[];
  startWorker(options?: SendWorkerOptions): Promise<SendWorkerHandle>;
  /** `newsletter send <issue>` to the weekly list. */
  send(issueId?: string, options?: { resend?: boolean }): Promise<StartSendResult>;
  /** Waits until the send is sent or sent-with-failures. */
  waitForSend(sendId: string, timeoutMs?: number): Promise<SendRecord>;
  /** Runs by itself when the test finishes; safe to call earlier. */
  close(): Promise<void>;
}

/** Creates the harness and closes it when the current test finishes. */
export async function createHarness(
  label: string,
  options: {
    rejectRecipient?: (address: string) => SmtpRejection | undefined;
    config?: Record<string, string>;
    acceptDelayMs?: number;
    hangUpOn?: (address: string) => boolean;
    /** Runs when the SMTP server has a message, before it answers 250. */
    onMessage?: (message: ReceivedMessage) => void;
  } = {},
): Promise<Harness> {
  const received: ReceivedMessage[] = [];
  const sink = await startSmtpSink({
    onMessage: (raw, recipients, envelope) => {
      received.push({ raw, recipients, envelope });
      options.onMessage?.({ raw, recipients, envelope });
    },
    ...(options.rejectRecipient ? { rejectRecipient: options.rejectRecipient } : {}),
    ...(options.acceptDelayMs ? { acceptDelayMs: options.acceptDelayMs } : {}),
    ...(options.hangUpOn ? { hangUpOn: options.hangUpOn } : {}),
  });
  const config = testConfig(label, { SMTP_URL: sink.url, ...options.config });
  const services = await openServices(config);
  const workers: SendWorkerHandle[] = [];
  let closing: Promise<void> | undefined;
  const harness: Harness = {
    config,
    sink,
    services,
    received,
    async startWorker(workerOptions = {}) {
      const worker = await startSendWorker(config, { recordRetryDelaysMs: [5, 10, 20], lateRecordRetryDelaysMs: [5, 10, 20, 50], ...workerOptions });
      workers.push(worker);
      return worker;
    },
    send(issueId = 'vol-138', sendOptions = {}) {
      return startSend(services, { issueId, list: 'weekly', resend: sendOptions.resend ?? false });
    },
    async waitForSend(sendId, timeoutMs = 30_000) {
      let record: SendRecord | undefined;
      return waitFor(
        async () => {
          record = await services.sends.get(sendId);
          return record && isFinalSendState(record.state) ? record : undefined;
        },
        timeoutMs,
        () => `send ${sendId} to finish: ${JSON.stringify(record)}`,
        25,
      );
    },
    close() {
      closing ??= (async () => {
        await Promise.all(workers.map((worker) => worker.close()));
        await services.queue.obliterate({ force: true });
        await deletePrefix(services, config.redis.prefix);
        await services.close();
        await sink.stop();
      })();
      return closing;
    },
  };
  onTestFinished(() => harness.close());
  return harness;
}

/** Removes this test's keys (its own prefix only; the private Redis is never flushed). */
async function deletePrefix(services: Services, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await services.redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await services.redis.unlink(...keys);
  } while (cursor !== '0');
}

/** Adds `count` subscribers named "Reader <n>" to a list, in one batch. */
export async function seedSubscribers(services: Services, count: number, list = 'weekly', name = (n: number) => `Reader ${n}`) {
  const inputs = Array.from({ length: count }, (_, index) => ({ email: `reader${index + 1}@example.org`, name: name(index + 1), list }));
  return services.subscribers.upsertMany(inputs);
}
