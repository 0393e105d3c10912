import { classifyBounce, parseSmtpReply, type BounceKind } from './classify-bounce.ts';

/** The structured fields nodemailer puts on an SMTP error; meaning is never read from the text. */
export interface SmtpFailureFields {
  readonly code?: string | undefined;
  readonly responseCode?: number | undefined;
  readonly response?: string | undefined;
  readonly command?: string | undefined;
}

/**
 * A retry decision. `bounce` says, for a rejection by the receiving server, what kind of bounce it
 * is (core/classify-bounce.ts: hard, soft or block); it is undefined for failures that are ours or
 * the network's.
 */
export interface FailureClass {
  readonly permanent: boolean;
  /**
   * What failed: the SMTP service itself (down, refusing, bad credentials: every message would fail
   * the same way, so sending pauses instead of spending this recipient's attempts), or this message.
   */
  readonly scope: 'service' | 'message';
  readonly bounce: BounceKind | undefined;
  /** The RFC 3463 enhanced status at the head of the reply, if any. */
  readonly status: string | undefined;
  readonly reason: string;
}

/** nodemailer codes for failures of the connection or the network: the message never got a verdict. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ECONNRESET', 'ECONNREFUSED', 'EPROTOCOL', 'ETLS']);

/**
 * Classifies a failed SMTP attempt from its structured fields (RFC 5321 reply code, RFC 3463
 * enhanced status, nodemailer `code`). Pure; the table in tests/unit/classify-failure.test.ts pins it.
 */
export function classifySmtpFailure(fields: SmtpFailureFields): FailureClass {
  const { responseCode, code } = fields;
  // Only the head of the reply ("550 5.1.1 …"), where RFC 3463 puts the status: "blocked by
  // [5.1.1.200]" further on is text, and text never decides.
  const enhanced = parseSmtpReply(fields.response).status;

  // A bad credential is an ops problem, not the recipient's (even with its 535): retrying keeps
  // every message of the send until it is fixed, instead of failing them all.
  if (code === 'EAUTH') return { permanent: false, scope: 'service', bounce: undefined, status: enhanced, reason: 'EAUTH: SMTP authentication failed' };

  if (responseCode !== undefined && responseCode >= 500 && responseCode < 600) {
    // 503 is "bad sequence of commands": our session's fault, not this message's.
    if (responseCode === 503)
      return { permanent: false, scope: 'message', bounce: undefined, status: enhanced, reason: `SMTP ${responseCode}: bad sequence, retry` };
    return {
      permanent: true,
      scope: 'message',
      bounce: bounceOf(responseCode, enhanced, fields.command),
      status: enhanced,
      reason: `SMTP ${responseCode}${enhanced ? ` ${enhanced}` : ''}: permanent`,
    };
  }
  if (responseCode !== undefined && responseCode >= 400 && responseCode < 500) {
    // A server that answers, even 421 "closing channel", is judging this message or this sender's
    // pace: retry it with backoff and count the attempt, so one recipient can't stall forever.
    return {
      permanent: false,
      scope: 'message',
      // Only a recipient's own 4xx says anything about that mailbox; a 421 at DATA is the server's state.
      bounce: fields.command === 'RCPT TO' ? bounceOf(responseCode, enhanced, fields.command) : undefined,
      status: enhanced,
      reason: `SMTP ${responseCode}${enhanced ? ` ${enhanced}` : ''}: temporary`,
    };
  }
  // No reply at all (refused, timed out, reset): the service is unreachable.
  if (code && TRANSIENT_CODES.has(code))
    return { permanent: false, scope: 'service', bounce: undefined, status: undefined, reason: `${code}: connection problem` };
  // Rejected before talking to the server: an address or message nodemailer itself refuses.
  if (code === 'EENVELOPE' || code === 'EMESSAGE')
    return { permanent: true, scope: 'message', bounce: undefined, status: undefined, reason: `${code}: refused before sending` };
  return { permanent: false, scope: 'message', bounce: undefined, status: undefined, reason: `${code ?? 'unknown error'}: retry` };
}

/**
 * The kind of bounce a receiver's rejection is, by the one bounce classification (enhanced status,
 * then reply code). A refusal at MAIL FROM, or a bare 5xx after DATA, names no address (the
 * receiver refused us or the message, not the mailbox), so it is a block, never a reason to suppress.
 */
function bounceOf(responseCode: number, enhanced: string | undefined, command: string | undefined): BounceKind | undefined {
  // A refusal at MAIL FROM is about our sender (the VERP domain, say), never the recipient's address.
  if (command === 'MAIL FROM') return 'block';
  if (!enhanced && responseCode >= 500 && command !== 'RCPT TO') return 'block';
  return classifyBounce('smtp', { status: enhanced, replyCode: responseCode });
}
