/**
 * When to try an SMTP service that is down again: the first probe half a second after the outage is
 * known, then a wait that doubles after each failed probe, up to a ceiling
 * (SMTP_OUTAGE_MAX_BACKOFF_MS). Pure; the stateful side is delivery/smtp-outage.ts.
 */

/** The wait before the first probe of an outage. */
export const OUTAGE_FIRST_BACKOFF_MS = 500;

/**
 * The wait before the next probe, after `failedProbes` probes of this outage failed (0: the wait
 * before the first). Never more than `maxMs`, never less than 1 ms.
 */
export function outageBackoffMs(failedProbes: number, maxMs: number, firstMs = OUTAGE_FIRST_BACKOFF_MS): number {
  const ceiling = Math.max(1, maxMs);
  const steps = Math.max(0, Math.floor(failedProbes));
  // 2 ** steps is Infinity past 1023 steps; Math.min keeps the ceiling either way.
  return Math.max(1, Math.min(ceiling, firstMs * 2 ** steps));
}

/**
 * How many probes the schedule makes in the first `elapsedMs` of an outage in which every probe
 * fails (probes themselves taken as instant): the bound on the connections one process opens to
 * a service that stays down that long.
 */
export function probesWithin(elapsedMs: number, maxMs: number, firstMs = OUTAGE_FIRST_BACKOFF_MS): number {
  let probes = 0;
  let at = 0;
  for (;;) {
    at += outageBackoffMs(probes, maxMs, firstMs);
    if (at > elapsedMs) return probes;
    probes += 1;
  }
}
