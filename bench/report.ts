import type { SendRecord } from '../src/store/send-store.ts';
import type { BaselineResult } from './baseline.ts';

export const TARGET_RATIO = 20;

/** What one benchmark run measured; times in ms (performance.now) unless named otherwise. */
export interface Measurements {
  readonly issueId: string;
  readonly subscribers: number;
  readonly t0: number;
  readonly tFanOut: number;
  readonly tEnd: number;
  readonly acceptedAtFanOutEnd: number;
  readonly extraMessages: number;
  readonly record: SendRecord | undefined;
  readonly compileMs: number;
  readonly workerReadyLine: string;
  readonly peakRssMb: number;
  readonly readyRssMb: number;
  /** CPU seconds used during the send window; undefined when /proc could not be read. */
  readonly cpu: { readonly worker: number | undefined; readonly redis: number | undefined; readonly bench: number };
  readonly workerExit: { readonly code: number | null; readonly signal: NodeJS.Signals | null };
  readonly baseline: BaselineResult;
  readonly baselineSinkCount: number;
}

const round = (value: number, digits = 1) => Number(value.toFixed(digits));

/** Prints the human report and the one-line JSON summary; returns whether the consistency checks passed. */
export function printReport(m: Measurements): boolean {
  const n = m.subscribers;
  const sendSeconds = (m.tEnd - m.t0) / 1000;
  const fanOutSeconds = (m.tFanOut - m.t0) / 1000;
  const rate = n / sendSeconds;
  const ratio = rate / m.baseline.messagesPerSecond;
  const cpuShare = (seconds: number | undefined) =>
    seconds === undefined ? 'n/a' : `${seconds.toFixed(1)} s CPU (${Math.round((seconds / sendSeconds) * 100)}% of one core)`;
  const ok = m.record?.accepted === n && m.record.failed === 0 && m.extraMessages === 0 && m.baselineSinkCount === m.baseline.messages + 1;
  const { record, baseline } = m;

  console.log(`
================ results (${n} subscribers, 1 worker process) ================
pipeline, end to end (startSend → ${n}th message accepted by the sink)
  time              ${sendSeconds.toFixed(2)} s
  throughput        ${rate.toFixed(0)} messages/s   (${((sendSeconds * 1000) / n).toFixed(3)} ms per message)
  send record       ${record?.state ?? 'missing'}: ${record?.accepted ?? 0} accepted, ${record?.failed ?? 0} failed, ${record?.skipped ?? 0} skipped; sink extra messages: ${m.extraMessages}
fan-out (startSend: load issue, compile once, queue one job per subscriber)
  time              ${fanOutSeconds.toFixed(2)} s → ${(n / fanOutSeconds).toFixed(0)} jobs/s   (${m.acceptedAtFanOutEnd} messages already accepted meanwhile)
  compile           ${m.compileMs.toFixed(0)} ms per compileIssue (median of 3, measured separately afterwards, warm)
  fan-out w/o compile ≈ ${(n / Math.max(fanOutSeconds - m.compileMs / 1000, 1e-6)).toFixed(0)} jobs/s
worker process (${m.workerReadyLine.replace(/^worker \d+ running: /, '')})
  peak RSS          ${m.peakRssMb.toFixed(1)} MB (VmHWM; ${m.readyRssMb.toFixed(1)} MB RSS when it reported ready, before any job)
  CPU during send   worker ${cpuShare(m.cpu.worker)}
                    redis-server ${cpuShare(m.cpu.redis)}
                    bench process (fan-out + SMTP sink) ${cpuShare(m.cpu.bench)}
  exit              ${m.workerExit.signal ? `signal ${m.workerExit.signal}` : `code ${m.workerExit.code}`} after SIGTERM
naive baseline (${baseline.messages} messages; pooled transport with ONE connection, never recycled, after 1 untimed
  warm-up message, so the sink's ~100 ms greeting per new connection is not counted per message)
  throughput        ${baseline.messagesPerSecond.toFixed(1)} messages/s   (${baseline.msPerMessage.toFixed(1)} ms per message, of which MJML compile ${baseline.mjmlMsPerMessage.toFixed(1)} ms)
ratio               pipeline / baseline = ${ratio.toFixed(1)}×   target ≥ ${TARGET_RATIO}×: ${ratio >= TARGET_RATIO ? 'MET' : 'NOT MET'}
${ok ? '' : 'CHECK FAILED: the send record or the sink count does not match the number of subscribers\n'}`);

  console.log(
    JSON.stringify({
      issue: m.issueId,
      subscribers: n,
      pipelineSeconds: round(sendSeconds, 3),
      pipelineMessagesPerSecond: round(rate),
      pipelineMsPerMessage: round((sendSeconds * 1000) / n, 3),
      fanOutSeconds: round(fanOutSeconds, 3),
      fanOutJobsPerSecond: round(n / fanOutSeconds),
      compileMs: round(m.compileMs),
      workerPeakRssMb: round(m.peakRssMb),
      workerReadyRssMb: round(m.readyRssMb),
      workerConcurrency: Number(/concurrency (\d+)/.exec(m.workerReadyLine)?.[1]),
      smtpPoolSize: Number(/SMTP pool (\d+)/.exec(m.workerReadyLine)?.[1]),
      baselineMessages: baseline.messages,
      baselineMessagesPerSecond: round(baseline.messagesPerSecond, 2),
      baselineMsPerMessage: round(baseline.msPerMessage, 2),
      ratio: round(ratio, 2),
      targetRatio: TARGET_RATIO,
      targetMet: ratio >= TARGET_RATIO,
      checksPassed: ok,
    }),
  );
  return ok;
}
