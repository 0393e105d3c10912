/**
 * Where a send stands. `accepted` means the SMTP server answered 250, not that the message was
 * delivered; `skipped` recipients were suppressed (unsubscribed, bounced, complained) between
 * fan-out and their turn.
 */
export type SendState = 'preparing' | 'queued' | 'sending' | 'paused' | 'sent' | 'sent-with-failures' | 'cancelled';

/**
 * What ops (or a breaker) set on a send: `paused` starts no new message until resumed; `cancelled`
 * is final, and its recipients not yet sent end as skipped with the reason cancelled.
 */
export type SendControl = 'active' | 'paused' | 'cancelled';

/** Who or what paused or cancelled a send, and why: shown by `status` and the console. */
export interface StateReason {
  /** `ops` (a person, through the CLI, console or API) or `breaker` (the send paused itself). */
  readonly by: 'ops' | 'breaker';
  /** The person, when ops did it (e.g. "cli:alice"). */
  readonly who?: string | undefined;
  readonly reason: string;
  readonly at: string;
}

/** What happened to one recipient of a send. Only `queued` is not final. */
export type RecipientState = 'queued' | 'accepted' | 'failed' | 'skipped';
/** The final recipient states, each also a counter on the send record. */
export const FINAL_RECIPIENT_STATES = ['accepted', 'failed', 'skipped'] as const;

/** Why a recipient failed, kept for ops. */
export interface RecipientFailure {
  readonly at: string;
  /** False when the cause was temporary: `send --retry-failed` tries them again. */
  readonly permanent: boolean;
  readonly code?: string | undefined;
  readonly responseCode?: number | undefined;
  readonly response?: string | undefined;
  readonly attempts: number;
}

/** The stored facts of a send that its status derives from. */
export interface SendRecordFacts {
  /** Recipients fanned out so far. */
  readonly total: number;
  readonly accepted: number;
  readonly failed: number;
  readonly skipped: number;
  readonly fanOutDone: boolean;
  /**
   * Set by the store's scripts when the last recipient reaches a final state after fan-out: the
   * one place that decides a send is finished (scripts/lib/finish-if-done.lua).
   */
  readonly finished: boolean;
  readonly control: SendControl;
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
  if (facts.control === 'cancelled') state = 'cancelled';
  else if (facts.control === 'paused' && !facts.finished) state = 'paused';
  else if (!facts.fanOutDone) state = 'preparing';
  else if (!facts.finished) state = processed === 0 ? 'queued' : 'sending';
  else state = facts.failed > 0 ? 'sent-with-failures' : 'sent';
  return { ...facts, pending, state };
}

/** Whether a state is final: nothing more will happen unless ops retry the failed recipients. */
export function isFinalSendState(state: SendState): boolean {
  return state === 'sent' || state === 'sent-with-failures' || state === 'cancelled';
}

/** The issue a send belongs to: send ids read "<issue>.<list>.<n>", and issue ids have no dots. */
export function issueIdOfSend(sendId: string): string {
  return sendId.slice(0, sendId.indexOf('.') === -1 ? sendId.length : sendId.indexOf('.'));
}
