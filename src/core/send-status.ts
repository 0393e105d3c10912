/**
 * Where a send stands. `accepted` means the SMTP server answered 250, not that the message was
 * delivered; `skipped` recipients were suppressed (unsubscribed, bounced, complained) between
 * fan-out and their turn.
 */
export type SendState = 'preparing' | 'queued' | 'sending' | 'sent' | 'sent-with-failures';

/** The stored facts of a send that its status derives from. */
export interface SendRecordFacts {
  /** Recipients fanned out so far. */
  readonly total: number;
  readonly accepted: number;
  readonly failed: number;
  readonly skipped: number;
  readonly fanOutDone: boolean;
}

/** A send's facts with what derives from them. */
export interface SendStatus extends SendRecordFacts {
  readonly state: SendState;
  /** Recipients queued and not yet accepted, failed or skipped. */
  readonly pending: number;
}

/** Derives the state and the pending count; pure, so the CLI, the dashboard and tests agree. */
export function computeSendStatus(facts: SendRecordFacts): SendStatus {
  const processed = facts.accepted + facts.failed + facts.skipped;
  const pending = Math.max(0, facts.total - processed);
  let state: SendState;
  if (!facts.fanOutDone) state = 'preparing';
  else if (pending > 0) state = processed === 0 ? 'queued' : 'sending';
  else state = facts.failed > 0 ? 'sent-with-failures' : 'sent';
  return { ...facts, pending, state };
}
