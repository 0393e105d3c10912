import { sendStatusReport } from '../../app/send-report.ts';
import { retryFailedRecipients, startSend } from '../../app/start-send.ts';
import { isFinalSendState } from '../../core/send-status.ts';
import type { Services } from '../../services.ts';
import type { SendRecord } from '../../store/send-store.ts';
import type { CliContext } from '../context.ts';
import { describeSendStatus, printable } from '../format.ts';
import { createProgressReporter } from '../progress.ts';

/** How often `send --watch` reads the send's record: two reads of counters, whatever the send's size. */
const WATCH_POLL_MS = 500;

/** A send that has not moved for this long while queued or sending gets a hint that no worker may be running. */
const NO_PROGRESS_HINT_MS = 60_000;

/**
 * `newsletter send <issue>`: records the send and queues one job per active subscriber; or retries
 * the failed ones. With --watch, it then shows the send's progress until it ends.
 */
export async function sendCommand(
  cli: CliContext,
  issueId: string,
  options: { list: string; resend?: boolean; retryFailed?: boolean; watch?: boolean },
): Promise<void> {
  await cli.withServices(async (services) => {
    if (options.retryFailed) {
      const retried = await retryFailedRecipients(services, { issueId, list: options.list });
      cli.io.out(`send ${retried.sendId}: ${retried.requeued} recipients requeued (permanent failures stay failed)`);
      if (retried.repaired > 0) cli.io.out(`send ${retried.sendId} was stuck: ${retried.repaired} queued recipients with no job got one again`);
      if (options.watch) await watchSend(cli, services, { sendId: retried.sendId, issueId, list: options.list });
      return;
    }
    // `send --watch` again, for a send still under way, watches it: that is how one watches again
    // after Ctrl-C. Starting it would be refused as a double send anyway.
    const running = options.watch && !options.resend ? await runningSend(services, issueId, options.list) : undefined;
    if (running) {
      cli.io.out(`send ${running.id} is under way (${running.state}); watching it`);
      await watchSend(cli, services, { sendId: running.id, issueId, list: options.list });
      return;
    }
    const started = await startSend(services, { issueId, list: options.list, resend: options.resend === true });
    const record = await services.sends.get(started.sendId);
    for (const warning of started.warnings) cli.io.err(`warning: ${warning}`);
    cli.io.out(`${started.resumed ? 'resumed send' : 'send'} ${started.sendId}: ${record?.total ?? 0} recipients queued`);
    if (options.watch) {
      await watchSend(cli, services, { sendId: started.sendId, issueId, list: options.list });
      return;
    }
    cli.io.out(`follow it with: newsletter status ${issueId} --list ${options.list}`);
    cli.io.out(started.sendId);
  });
}

/** The latest send of the issue to the list, when it is fully queued and not yet over. */
async function runningSend(services: Services, issueId: string, list: string): Promise<SendRecord | undefined> {
  const sendId = await services.sends.latestId(issueId, list);
  const record = sendId ? await services.sends.get(sendId) : undefined;
  return record && record.fanOutDone && !isFinalSendState(record.state) ? record : undefined;
}

/**
 * Shows a send's progress until it ends (sent, sent with failures, cancelled), then its status as
 * `newsletter status` prints it. Ctrl-C (cli.untilStop) stops the watching; the send goes on.
 * Reads only the send's counters, every WATCH_POLL_MS.
 */
async function watchSend(cli: CliContext, services: Services, send: { sendId: string; issueId: string; list: string }): Promise<void> {
  const progress = createProgressReporter(cli.io, { label: `sending ${send.issueId} to ${send.list}`, measure: 'messages' });
  let stopReason: string | undefined;
  const stopRequested = cli.untilStop().then((reason) => {
    stopReason = reason;
  });
  let lastChange = { at: Date.now(), key: '' };
  try {
    for (;;) {
      const record = await services.sends.get(send.sendId);
      if (!record) throw new Error(`send ${send.sendId} has no record`);
      const done = record.accepted + record.failed + record.skipped;
      const key = `${done}/${record.total}/${record.state}`;
      if (key !== lastChange.key) lastChange = { at: Date.now(), key };
      const stalled = (record.state === 'queued' || record.state === 'sending') && Date.now() - lastChange.at >= NO_PROGRESS_HINT_MS;
      progress.update({ done, total: record.total, detail: describeWatchedState(record, stalled) });
      if (isFinalSendState(record.state)) break;
      await sleepUnless(WATCH_POLL_MS, stopRequested);
      if (stopReason !== undefined) {
        progress.stop();
        cli.io.out(`stopped watching; send ${send.sendId} goes on. Watch it again with: newsletter send ${send.issueId} --list ${send.list} --watch`);
        return;
      }
    }
    progress.finish();
  } finally {
    progress.stop();
  }
  cli.io.out(describeSendStatus(await sendStatusReport(services, send.issueId, send.list)));
}

/** "sending: accepted 1180, failed 12, skipped 8", with the pause reason, or a hint when nothing moves. */
function describeWatchedState(record: SendRecord, stalled: boolean): string {
  const reason = record.state === 'paused' && record.stateReason ? ` (${printable(record.stateReason.reason)})` : '';
  const hint = stalled ? ` (nothing moved for ${NO_PROGRESS_HINT_MS / 1000}s: is a worker running? newsletter worker)` : '';
  return `${record.state}${reason}${hint}: accepted ${record.accepted}, failed ${record.failed}, skipped ${record.skipped}`;
}

/** Waits `ms`, or less when `stop` settles first; leaves no timer behind. */
async function sleepUnless(ms: number, stop: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), stop]);
  } finally {
    clearTimeout(timer);
  }
}
