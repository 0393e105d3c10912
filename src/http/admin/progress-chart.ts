import { escape } from '../public/page.ts';

/** One point of a send's progress: how many recipients had reached each final state by `at`. */
export interface ProgressPoint {
  readonly at: string;
  readonly accepted: number;
  readonly failed: number;
  readonly skipped: number;
}

/**
 * One SVG element of the chart. The chart is kept as this list rather than as markup so the server
 * (renderChartSvg) and the browser (console.js, with createElementNS and textContent) draw it from
 * the same geometry: the script never parses markup and never computes a coordinate itself.
 */
export interface ChartShape {
  readonly tag: 'line' | 'polyline' | 'text';
  readonly attrs: Readonly<Partial<Record<ChartAttribute, string | number>>>;
  readonly text?: string;
}

/** The attributes a shape may carry: console.js sets these and no others. */
export type ChartAttribute = 'class' | 'x' | 'y' | 'x1' | 'y1' | 'x2' | 'y2' | 'points' | 'text-anchor';

/** A whole chart: its size (viewBox units), what it shows in words, and its shapes. */
export interface ChartModel {
  readonly width: number;
  readonly height: number;
  /** The chart in one sentence, for screen readers (the SVG's title). */
  readonly label: string;
  readonly shapes: readonly ChartShape[];
}

const WIDTH = 640;
const HEIGHT = 260;
const PLOT = { left: 56, right: WIDTH - 16, top: 32, bottom: HEIGHT - 44 } as const;
/** The outcomes drawn, in legend order; each is a line with the class line-<outcome>. */
const OUTCOMES = ['accepted', 'failed', 'skipped'] as const;
/** The shortest time span the x axis shows, so a send that finished within a second still has a width. */
const MIN_SPAN_MS = 10_000;

const round = (value: number) => Math.round(value * 10) / 10;
const shape = (tag: ChartShape['tag'], attrs: ChartShape['attrs'], text?: string): ChartShape => (text === undefined ? { tag, attrs } : { tag, attrs, text });

/** "08:00:40": the time of day in UTC, as the x axis labels it. */
export function clockTime(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}

/**
 * The progress chart of one send: cumulative accepted, failed and skipped recipients over time,
 * from the send's start, against a y axis that reaches the send's total. An empty series gives the
 * axes and a line of text saying nothing has finished yet.
 */
export function progressChart(series: readonly ProgressPoint[], options: { readonly createdAt: string; readonly total: number }): ChartModel {
  const createdMs = Date.parse(options.createdAt);
  const points = series.map((point) => ({ ...point, ms: Date.parse(point.at) })).filter((point) => Number.isFinite(point.ms));
  // Every send starts at nothing: the origin makes a line of a send that fits in one bucket.
  const first = points[0];
  if (Number.isFinite(createdMs) && (!first || createdMs < first.ms))
    points.unshift({ at: options.createdAt, ms: createdMs, accepted: 0, failed: 0, skipped: 0 });
  const startMs = points[0]?.ms ?? (Number.isFinite(createdMs) ? createdMs : 0);
  const endMs = Math.max(points.at(-1)?.ms ?? startMs, startMs + MIN_SPAN_MS);
  const yMax = Math.max(1, options.total, ...points.map((point) => Math.max(point.accepted, point.failed, point.skipped)));
  const x = (ms: number) => round(PLOT.left + ((ms - startMs) / (endMs - startMs)) * (PLOT.right - PLOT.left));
  const y = (value: number) => round(PLOT.bottom - (value / yMax) * (PLOT.bottom - PLOT.top));

  const shapes: ChartShape[] = [];
  // The y axis: 0, half and the total, with light grid lines across the plot.
  for (const value of new Set([0, Math.round(yMax / 2), yMax])) {
    shapes.push(shape('line', { class: value === 0 ? 'axis' : 'grid', x1: PLOT.left, y1: y(value), x2: PLOT.right, y2: y(value) }));
    shapes.push(shape('text', { class: 'tick', x: PLOT.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, value.toLocaleString('en-US')));
  }
  shapes.push(shape('line', { class: 'axis', x1: PLOT.left, y1: PLOT.top, x2: PLOT.left, y2: PLOT.bottom }));
  shapes.push(shape('text', { class: 'axis-title', x: 8, y: 16 }, 'recipients'));
  shapes.push(shape('text', { class: 'axis-title', x: (PLOT.left + PLOT.right) / 2, y: HEIGHT - 6, 'text-anchor': 'middle' }, 'time (UTC)'));
  // The x axis: start, middle and end of the span.
  for (const [ms, anchor] of [
    [startMs, 'start'],
    [(startMs + endMs) / 2, 'middle'],
    [endMs, 'end'],
  ] as const) {
    shapes.push(shape('text', { class: 'tick', x: x(ms), y: PLOT.bottom + 16, 'text-anchor': anchor }, clockTime(ms)));
  }
  // The legend, top right, one short stroke and a word per outcome.
  OUTCOMES.forEach((outcome, index) => {
    const left = PLOT.right - (OUTCOMES.length - index) * 92;
    shapes.push(shape('line', { class: `line line-${outcome}`, x1: left, y1: 12, x2: left + 18, y2: 12 }));
    shapes.push(shape('text', { class: 'legend', x: left + 24, y: 16 }, outcome));
  });

  const hasProgress = series.length > 0;
  if (hasProgress) {
    for (const outcome of OUTCOMES) {
      shapes.push(shape('polyline', { class: `line line-${outcome}`, points: points.map((point) => `${x(point.ms)},${y(point[outcome])}`).join(' ') }));
    }
  } else {
    shapes.push(
      shape(
        'text',
        { class: 'chart-empty', x: (PLOT.left + PLOT.right) / 2, y: (PLOT.top + PLOT.bottom) / 2, 'text-anchor': 'middle' },
        'No recipient has been accepted, failed or skipped yet.',
      ),
    );
  }
  const last = points.at(-1);
  const label =
    hasProgress && last
      ? `Progress over time: ${last.accepted} accepted, ${last.failed} failed, ${last.skipped} skipped of ${options.total} by ${clockTime(last.ms)} UTC.`
      : 'Progress over time: no recipient finished yet.';
  return { width: WIDTH, height: HEIGHT, label, shapes };
}

/** The chart as inline SVG markup; every value escaped. console.js redraws the same element from a fresh model. */
export function renderChartSvg(model: ChartModel): string {
  const shapes = model.shapes
    .map((item) => {
      const attrs = Object.entries(item.attrs)
        .filter(([, value]) => value !== undefined)
        .map(([name, value]) => ` ${name}="${escape(String(value))}"`)
        .join('');
      return item.text === undefined ? `<${item.tag}${attrs}/>` : `<${item.tag}${attrs}>${escape(item.text)}</${item.tag}>`;
    })
    .join('');
  return (
    `<svg class="chart" data-chart xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${model.width} ${model.height}" role="img" aria-label="${escape(model.label)}">` +
    `<title>${escape(model.label)}</title>${shapes}</svg>`
  );
}
