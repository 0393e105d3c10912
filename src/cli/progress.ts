import { SingleBar } from 'cli-progress';
import type { CliIO } from './context.ts';

/** Plain progress lines (standard out not a terminal) are printed at most this often, so a log stays readable. */
export const PLAIN_LINE_EVERY_MS = 2_000;

/** The rate is measured over the last this many milliseconds, so it follows a send that speeds up or slows down. */
const RATE_WINDOW_MS = 10_000;

/** Below this span of samples there is no rate yet: two polls a few milliseconds apart would give nonsense. */
const MIN_RATE_SPAN_MS = 1_000;

/** Redraws of the bar per second; the figures change a few times a second at most. */
const BAR_FPS = 5;

/** Where a piece of long work stands. */
export interface ProgressSnapshot {
  /** Finished so far: messages (accepted, failed or skipped) or bytes read. */
  readonly done: number;
  /** Of how many; it may grow (a send still being queued). */
  readonly total: number;
  /** What follows the figures, e.g. "sending: accepted 1180, failed 12, skipped 8". */
  readonly detail?: string | undefined;
}

/** What a progress display measures, which decides how its figures and rate read. */
export type ProgressMeasure = 'messages' | 'bytes';

/** Options of createProgressReporter. */
export interface ProgressOptions {
  /** Names the work, e.g. "sending vol-138 to weekly". */
  readonly label: string;
  readonly measure: ProgressMeasure;
  /** The clock, in milliseconds; Date.now by default. */
  readonly now?: () => number;
}

/** Shows the progress of one piece of long work, as a bar, as plain lines, or not at all (see CliIO.progress). */
export interface ProgressReporter {
  update(snapshot: ProgressSnapshot): void;
  /** The work is done: shows the last snapshot as final (as plain lines, always printed) and ends the bar. */
  finish(): void;
  /** The work stopped short (Ctrl-C, an error): ends the bar where it stands, with no final line. Safe to call twice. */
  stop(): void;
}

/**
 * The progress display for `io`: a bar redrawn on the terminal, or a plain line at most every
 * PLAIN_LINE_EVERY_MS (the first at once, the final one always), or nothing when io has no progress.
 */
export function createProgressReporter(io: CliIO, options: ProgressOptions): ProgressReporter {
  const now = options.now ?? Date.now;
  const meter = new RateMeter();
  let last: ProgressSnapshot | undefined;
  const figuresOf = (snapshot: ProgressSnapshot) => {
    meter.add(now(), snapshot.done);
    return describeFigures(snapshot, meter.perSecond(), options.measure);
  };

  const display = io.progress;
  if (!display) return { update: () => undefined, finish: () => undefined, stop: () => undefined };

  if (display.kind === 'lines') {
    let printedAt: number | undefined;
    let printedLine: string | undefined;
    const print = (line: string) => {
      printedAt = now();
      printedLine = line;
      io.out(line);
    };
    return {
      update(snapshot) {
        last = snapshot;
        const line = describeProgressLine(options.label, snapshot, figuresOf(snapshot));
        if (printedAt === undefined || now() - printedAt >= PLAIN_LINE_EVERY_MS) print(line);
      },
      finish() {
        if (!last) return;
        const line = describeProgressLine(options.label, last, figuresOf(last));
        if (line !== printedLine) print(line);
      },
      stop: () => undefined,
    };
  }

  // The label and the detail go in as payload values, never into the format string: a file name
  // with "{bar}" in it stays text. Payload values are substituted once, not scanned again.
  const bar = new SingleBar({
    stream: display.terminal,
    format: '{label} [{bar}] {figures}{detail}',
    barsize: 30,
    hideCursor: true,
    clearOnComplete: false,
    // The caller stops the bar on SIGINT (it is watching for it); cli-progress's own handler would race it.
    gracefulExit: false,
    emptyOnZero: true,
    fps: BAR_FPS,
  });
  let started = false;
  let stopped = false;
  const payloadOf = (snapshot: ProgressSnapshot) => {
    const figures = figuresOf(snapshot);
    return {
      label: options.label,
      figures: `${figures.progress} (${figures.percent}%)${figures.rate ? ` ${figures.rate}, eta ${figures.eta}` : ''}`,
      detail: snapshot.detail ? `  ${snapshot.detail}` : '',
    };
  };
  const stop = () => {
    if (!started || stopped) return;
    stopped = true;
    bar.stop();
  };
  return {
    update(snapshot) {
      if (stopped) return;
      last = snapshot;
      if (!started) {
        started = true;
        bar.start(snapshot.total, snapshot.done, payloadOf(snapshot));
        return;
      }
      bar.setTotal(snapshot.total);
      bar.update(snapshot.done, payloadOf(snapshot));
    },
    finish() {
      if (last && started && !stopped) bar.update(last.done, payloadOf(last));
      stop();
    },
    stop,
  };
}

/** The figures of one snapshot, as the bar and the plain lines print them. */
export interface ProgressFigures {
  /** "1200/5000" or "1.2/4.0 MB". */
  readonly progress: string;
  /** Whole percent, 0–100. */
  readonly percent: number;
  /** "310 msg/s" or "2.1 MB/s"; undefined until there is a rate to show. */
  readonly rate: string | undefined;
  /** "12s", "3m 05s"; "unknown" while nothing moves. */
  readonly eta: string;
}

/** The figures of a snapshot at a rate (per second, in the snapshot's measure). */
export function describeFigures(snapshot: ProgressSnapshot, ratePerSecond: number | undefined, measure: ProgressMeasure): ProgressFigures {
  const { done, total } = snapshot;
  const percent = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : done > 0 ? 100 : 0;
  const remaining = Math.max(0, total - done);
  const progress = measure === 'bytes' ? describeBytesOf(done, total) : `${done}/${total}`;
  const rate =
    ratePerSecond === undefined ? undefined : measure === 'bytes' ? `${formatSize(ratePerSecond).join(' ')}/s` : `${formatRate(ratePerSecond)} msg/s`;
  let eta = 'unknown';
  if (remaining === 0) eta = '0s';
  else if (ratePerSecond !== undefined && ratePerSecond > 0) eta = formatDuration(remaining / ratePerSecond);
  return { progress, percent, rate, eta };
}

/** One plain progress line: "sending vol-138 to weekly: 1200/5000 (24%) 310 msg/s, eta 12s; sending: accepted 1180, …". */
export function describeProgressLine(label: string, snapshot: ProgressSnapshot, figures: ProgressFigures): string {
  const rate = figures.rate ? ` ${figures.rate}, eta ${figures.eta}` : '';
  return `${label}: ${figures.progress} (${figures.percent}%)${rate}${snapshot.detail ? `; ${snapshot.detail}` : ''}`;
}

/**
 * The rate of a count over a sliding window of samples: what was done per second lately, not
 * since the start, so the ETA follows a send that is paced, paused or sped up.
 */
export class RateMeter {
  private readonly samples: { readonly at: number; readonly done: number }[] = [];

  add(at: number, done: number): void {
    this.samples.push({ at, done });
    // Keep one sample at or before the window's start, so the window always spans it whole.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - RATE_WINDOW_MS) this.samples.shift();
  }

  /** Per second over the window; undefined until the samples span MIN_RATE_SPAN_MS. Never negative. */
  perSecond(): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.at - first.at < MIN_RATE_SPAN_MS) return undefined;
    return Math.max(0, (last.done - first.done) / ((last.at - first.at) / 1000));
  }
}

function formatRate(perSecond: number): string {
  return perSecond >= 10 ? String(Math.round(perSecond)) : perSecond.toFixed(1);
}

const SIZE_UNITS = ['B', 'KB', 'MB', 'GB'] as const;

/** A byte count in the unit that fits it: [number, unit]. */
function formatSize(bytes: number): [string, string] {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < SIZE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return [unit === 0 ? String(Math.round(value)) : value.toFixed(1), SIZE_UNITS[unit]!];
}

/** "1.2/4.0 MB": both in the unit of the total. */
function describeBytesOf(done: number, total: number): string {
  const [totalText, unit] = formatSize(total);
  const scale = 1024 ** SIZE_UNITS.indexOf(unit as (typeof SIZE_UNITS)[number]);
  const doneText = unit === 'B' ? String(done) : (done / scale).toFixed(1);
  return `${doneText}/${totalText} ${unit}`;
}

/** "45s", "3m 05s", "2h 10m". */
export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.ceil(seconds));
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h ${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}
