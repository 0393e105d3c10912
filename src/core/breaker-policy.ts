/**
 * The reputation breakers: when a send (or one recipient domain of it) is doing the sender's
 * reputation harm, it stops itself instead of finishing the damage. Pure: the store counts, this
 * judges. Thresholds come from config (BREAKER_*), so the policy is data.
 */

/** The outcomes the breakers watch; each has its own threshold. */
export const BREAKER_KINDS = ['complaint', 'hard', 'block'] as const;
export type BreakerKind = (typeof BREAKER_KINDS)[number];

export interface BreakerSettings {
  readonly bounceRate: number;
  readonly complaintRate: number;
  readonly blockRate: number;
  readonly minSample: number;
  readonly windowMinutes: number;
}

/**
 * Counts over the breaker window. `sample` is the messages the receiving servers answered
 * (accepted, or refused at SMTP): a domain that refuses everything has a sample too, though it
 * accepted nothing.
 */
export interface BreakerCounts {
  readonly sample: number;
  readonly hard: number;
  readonly complaint: number;
  readonly block: number;
}

/** A rate over its threshold, with the numbers that show it. */
export interface BreakerTrip {
  readonly kind: BreakerKind;
  readonly count: number;
  readonly sample: number;
  readonly rate: number;
  readonly threshold: number;
  /** The config key of the threshold, so the message says what to change. */
  readonly setting: string;
  readonly windowMinutes: number;
  /** Set when the trip is one recipient domain's, not the whole send's. */
  readonly domain?: string | undefined;
}

const WORDS: Readonly<Record<BreakerKind, string>> = { hard: 'hard-bounce', complaint: 'complaint', block: 'block' };

function thresholdOf(kind: BreakerKind, settings: BreakerSettings): { threshold: number; setting: string } {
  if (kind === 'hard') return { threshold: settings.bounceRate, setting: 'BREAKER_BOUNCE_RATE' };
  if (kind === 'complaint') return { threshold: settings.complaintRate, setting: 'BREAKER_COMPLAINT_RATE' };
  return { threshold: settings.blockRate, setting: 'BREAKER_BLOCK_RATE' };
}

/**
 * The first rate over its threshold, complaints first (the costliest to reputation), once the
 * sample is large enough to judge; undefined while everything is within bounds.
 */
export function judgeBreakers(counts: BreakerCounts, settings: BreakerSettings, domain?: string): BreakerTrip | undefined {
  if (counts.sample < settings.minSample) return undefined;
  for (const kind of BREAKER_KINDS) {
    const { threshold, setting } = thresholdOf(kind, settings);
    const rate = counts[kind] / counts.sample;
    if (rate > threshold) return { kind, count: counts[kind], sample: counts.sample, rate, threshold, setting, windowMinutes: settings.windowMinutes, domain };
  }
  return undefined;
}

const percent = (value: number) => `${(value * 100).toFixed(value < 0.01 ? 2 : 1)}%`;

/** "hard-bounce rate 6.0% (12 of 200 messages in the last 15 min) is over BREAKER_BOUNCE_RATE 5.0%". */
export function describeTrip(trip: BreakerTrip): string {
  const scope = trip.domain ? ` for ${trip.domain}` : '';
  return (
    `${WORDS[trip.kind]} rate${scope} ${percent(trip.rate)} (${trip.count} of ${trip.sample} messages answered in the last ` +
    `${trip.windowMinutes} min) is over ${trip.setting} ${percent(trip.threshold)}`
  );
}

/** The minute buckets of the window ending now, the current one first. */
export function breakerMinutes(nowMs: number, windowMinutes: number): number[] {
  const current = Math.floor(nowMs / 60_000);
  return Array.from({ length: windowMinutes }, (_, index) => current - index);
}
