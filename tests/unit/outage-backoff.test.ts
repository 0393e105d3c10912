import { describe, expect, it } from 'vitest';
import { OUTAGE_FIRST_BACKOFF_MS, outageBackoffMs, probesWithin } from '../../src/core/outage-backoff.ts';

describe('outageBackoffMs', () => {
  it('starts at 500 ms and doubles after each failed probe, up to the ceiling', () => {
    expect(OUTAGE_FIRST_BACKOFF_MS).toBe(500);
    expect(Array.from({ length: 8 }, (_, failed) => outageBackoffMs(failed, 15_000))).toEqual([500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]);
  });

  it('never exceeds a ceiling below the first wait, and stays finite however long the outage', () => {
    expect(outageBackoffMs(0, 200)).toBe(200);
    expect(outageBackoffMs(5_000, 15_000)).toBe(15_000);
    expect(outageBackoffMs(Number.MAX_SAFE_INTEGER, 1_000)).toBe(1_000);
  });

  it('takes a fractional or negative count as the whole number of failures it holds', () => {
    expect(outageBackoffMs(-3, 15_000)).toBe(500);
    expect(outageBackoffMs(1.7, 15_000)).toBe(1_000);
  });

  it('never waits less than 1 ms', () => {
    expect(outageBackoffMs(0, 0)).toBe(1);
    expect(outageBackoffMs(0, 15_000, 0)).toBe(1);
  });
});

describe('probesWithin', () => {
  it('counts the probes the schedule makes while a service stays down', () => {
    // Probes at 0.5, 1.5, 3.5, 7.5, 15.5, 30.5, 45.5 s with the default 15 s ceiling.
    expect(probesWithin(400, 15_000)).toBe(0);
    expect(probesWithin(500, 15_000)).toBe(1);
    expect(probesWithin(20_000, 15_000)).toBe(5);
    expect(probesWithin(60_000, 15_000)).toBe(7);
    // One a second past the first half second with a 1 s ceiling: 0.5, 1.5, … 7.5 s.
    expect(probesWithin(8_000, 1_000)).toBe(8);
  });
});
