import { classifyBounce, parseSmtpReply, type BounceKind } from './classify-bounce.ts';

/** The structured fields nodemailer puts on an SMTP error; meaning is never read from the text. */
export interface SmtpFailureFields {
  readonly code?: string | undefined;
  readonly responseCode?: number | undefined;
  readonly response?: string | undefined;
  readonly command?: string | undefined;
  /** The system error under nodemailer's code (ECONNREFUSED, ECONNRESET, ENOTFOUND…), when there was one. */
  readonly originalCode?: string | undefined;
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
  /**
   * For a service failure, whether a fresh connection must confirm that the service is down before
   * the failure is taken as the service's: nodemailer labels a reset, a timeout or a reply that
   * closes the session `CONN` whether it came on connect or in the middle of this message. False
   * when the fields prove it (refused, a name that does not resolve, a TLS failure, a reply to
   * EHLO/HELO/LHLO/STARTTLS), and for a failure of the message.
   */
  readonly confirm: boolean;
  readonly bounce: BounceKind | undefined;
  /** The RFC 3463 enhanced status at the head of the reply, if any. */
  readonly status: string | undefined;
  readonly reason: string;
}

/** nodemailer codes for failures of the connection or the network: the message never got a verdict. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ECONNRESET', 'ECONNREFUSED', 'EPROTOCOL', 'ETLS']);

/** Failures that prove no session was ever set up (refused, no address, TLS failed), so no message was judged. */
const NO_SESSION: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EDNS', 'ETLS']);

/** The client's introduction and TLS upgrade: a refusal of one of them came before any message. */
const SESSION_SETUP_COMMANDS: ReadonlySet<string> = new Set(['EHLO', 'HELO', 'LHLO', 'STARTTLS']);

/**
 * A 4xx/5xx reply that turns the session away rather than judging a message. nodemailer labels
 * the greeting `CONN` with code EPROTOCOL ("Invalid greeting", measured with a server that answers
 * 421 on connect); a 421 in answer to MAIL FROM, RCPT TO or DATA also comes labelled `CONN`, but as
 * ECONNECTION ("Server closed the connection"): that one judges this message or our pace
 * (core/pacing-policy.ts, a "slow down") and stays the message's.
 */
function turnsSessionAway(fields: SmtpFailureFields): boolean {
  const { responseCode, command } = fields;
  if (responseCode === undefined || responseCode < 400 || responseCode >= 600 || !command) return false;
  return SESSION_SETUP_COMMANDS.has(command) || (command === 'CONN' && fields.code === 'EPROTOCOL');
}

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
  if (code === 'EAUTH')
    return { permanent: false, scope: 'service', confirm: true, bounce: undefined, status: enhanced, reason: 'EAUTH: SMTP authentication failed' };

  // A 4xx or 5xx while the session is set up ("421 4.3.2 Service not available" as the greeting, a
  // 554 "no SMTP service here", a refused EHLO): the server is turning every session away, not
  // judging a message, and says so itself.
  if (turnsSessionAway(fields))
    return {
      permanent: false,
      scope: 'service',
      confirm: false,
      bounce: undefined,
      status: enhanced,
      reason: `SMTP ${responseCode}${enhanced ? ` ${enhanced}` : ''} on connect: service unavailable`,
    };

  if (responseCode !== undefined && responseCode >= 500 && responseCode < 600) {
    // 503 is "bad sequence of commands": our session's fault, not this message's.
    if (responseCode === 503)
      return { permanent: false, scope: 'message', confirm: false, bounce: undefined, status: enhanced, reason: `SMTP ${responseCode}: bad sequence, retry` };
    return {
      permanent: true,
      scope: 'message',
      confirm: false,
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
      confirm: false,
      // Only a recipient's own 4xx says anything about that mailbox; a 421 at DATA is the server's state.
      bounce: fields.command === 'RCPT TO' ? bounceOf(responseCode, enhanced, fields.command) : undefined,
      status: enhanced,
      reason: `SMTP ${responseCode}${enhanced ? ` ${enhanced}` : ''}: temporary`,
    };
  }
  // No reply at all (refused, timed out, reset): the service is unreachable. A reset or a timeout
  // may also be one connection dying under this message, so only "no session at all" is proof.
  if (code && TRANSIENT_CODES.has(code)) {
    const proof = [code, fields.originalCode].find((each) => each !== undefined && NO_SESSION.has(each));
    return {
      permanent: false,
      scope: 'service',
      confirm: proof === undefined,
      bounce: undefined,
      status: undefined,
      reason: `${code}${fields.originalCode && fields.originalCode !== code ? ` (${fields.originalCode})` : ''}: connection problem`,
    };
  }
  // Rejected before talking to the server: an address or message nodemailer itself refuses.
  if (code === 'EENVELOPE' || code === 'EMESSAGE')
    return { permanent: true, scope: 'message', confirm: false, bounce: undefined, status: undefined, reason: `${code}: refused before sending` };
  return { permanent: false, scope: 'message', confirm: false, bounce: undefined, status: undefined, reason: `${code ?? 'unknown error'}: retry` };
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
