import type { DeliveryEventSource, Diagnostic } from './delivery-event.ts';

/** A bounce: hard (the address is bad), soft (temporary), block (policy or reputation). */
export type BounceKind = 'hard' | 'soft' | 'block';

/** A rule's verdict: a kind, or `next` when the field is too vague to decide and the next field should. */
type Verdict = BounceKind | 'next';

/**
 * RFC 3463 enhanced status codes, most specific first: the first pattern that matches decides.
 * `*` matches any one number. A status that says only "something permanent" (5.0.0, 5.3.0…)
 * defers to the reply code, which often says more (a 550 with 5.0.0 is a bad mailbox).
 */
export const ENHANCED_STATUS_RULES: readonly (readonly [pattern: string, verdict: Verdict])[] = [
  // Temporary, whatever the subject: the receiver may take it later.
  ['4.*.*', 'soft'],
  // X.1.7 and X.1.8 are about our sender address, not the recipient's.
  ['5.1.7', 'block'],
  ['5.1.8', 'block'],
  // Bad destination mailbox, system or address syntax; moved; null MX (RFC 7505).
  ['5.1.*', 'hard'],
  // Mailbox disabled is permanent; full, too large and the rest are the mailbox's state today.
  ['5.2.1', 'hard'],
  ['5.2.0', 'next'],
  ['5.2.*', 'soft'],
  ['5.3.0', 'next'],
  ['5.3.*', 'soft'],
  // Microsoft answers 5.4.1 "Recipient address rejected: Access denied" for a recipient its
  // directory doesn't have; 5.4.4 is a domain with nowhere to deliver to.
  ['5.4.1', 'hard'],
  ['5.4.4', 'hard'],
  ['5.4.0', 'next'],
  ['5.4.*', 'soft'],
  ['5.5.0', 'next'],
  ['5.5.*', 'soft'],
  // Content, security and policy: the receiver refuses us or this message, the address may be fine.
  ['5.6.*', 'block'],
  ['5.7.*', 'block'],
  ['5.*.*', 'next'],
];

/** RFC 5321 reply codes, for a report without a decisive enhanced status. */
export const REPLY_CODE_RULES: readonly (readonly [pattern: string, verdict: Verdict])[] = [
  ['4**', 'soft'],
  // Mailbox unavailable, user not local, mailbox name not allowed; RFC 7504's "does not accept mail".
  ['550', 'hard'],
  ['551', 'hard'],
  ['553', 'hard'],
  ['521', 'hard'],
  ['556', 'hard'],
  ['552', 'soft'],
  // "Transaction failed" with nothing more said is how most receivers refuse for policy.
  ['554', 'block'],
  ['5**', 'soft'],
];

/**
 * Providers' own bounce types, keyed "<source>:<type>" or "<source>:<type>/<subtype>" (the longer
 * key wins). Read only when the report carries neither a decisive status nor a reply code.
 */
export const PROVIDER_TYPE_RULES: Readonly<Record<string, BounceKind>> = {
  'ses:Permanent': 'hard',
  'ses:Permanent/UnsupportedAttachment': 'block',
  'ses:Permanent/ContentRejected': 'block',
  'ses:Permanent/AttachmentRejected': 'block',
  'ses:Transient': 'soft',
  'ses:Transient/ContentRejected': 'block',
  'ses:Transient/AttachmentRejected': 'block',
  'ses:Undetermined': 'soft',
  'mailgun:permanent': 'hard',
  'mailgun:permanent/espblock': 'block',
  'mailgun:temporary': 'soft',
  'postmark:HardBounce': 'hard',
  'postmark:BadEmailAddress': 'hard',
  'postmark:ManuallyDeactivated': 'hard',
  'postmark:SoftBounce': 'soft',
  'postmark:Transient': 'soft',
  'postmark:DnsError': 'soft',
  'postmark:Blocked': 'block',
  'postmark:SpamNotification': 'block',
  'postmark:ContentRelated': 'block',
  'postmark:DMARCPolicy': 'block',
  'postmark:VirusNotification': 'block',
  'sendgrid:bounce': 'hard',
  'sendgrid:blocked': 'block',
  'sendgrid:deferred': 'soft',
  'webhook:hard': 'hard',
  'webhook:soft': 'soft',
  'webhook:block': 'block',
};

/**
 * Classifies a failed delivery from its structured fields: the enhanced status first, then the
 * reply code, then the provider's own type. Free text is never read. Undefined when none of the
 * fields says anything (the caller decides what an unclassifiable report means).
 */
export function classifyBounce(source: DeliveryEventSource, diagnostic: Diagnostic): BounceKind | undefined {
  const given = diagnostic.status?.trim();
  // A malformed status ("5.1", "5.foo") says nothing: it is ignored, as if absent.
  const status = given && /^[245]\.\d{1,3}\.\d{1,3}$/.test(given) ? given : undefined;
  if (status) {
    const verdict = firstMatch(ENHANCED_STATUS_RULES, status.split('.'));
    if (verdict && verdict !== 'next') return verdict;
  }
  if (diagnostic.replyCode !== undefined && diagnostic.replyCode >= 400 && diagnostic.replyCode < 600) {
    const verdict = firstMatch(REPLY_CODE_RULES, String(diagnostic.replyCode).split(''));
    if (verdict && verdict !== 'next') return verdict;
  }
  if (diagnostic.providerType) {
    const [type] = diagnostic.providerType.split('/');
    const verdict = PROVIDER_TYPE_RULES[`${source}:${diagnostic.providerType}`] ?? PROVIDER_TYPE_RULES[`${source}:${type}`];
    if (verdict) return verdict;
  }
  // A vague status with nothing else that decides: a failure, but nothing says the address is bad.
  if (status?.startsWith('5.') || status?.startsWith('4.')) return 'soft';
  return undefined;
}

function firstMatch(rules: readonly (readonly [string, Verdict])[], parts: readonly string[]): Verdict | undefined {
  for (const [pattern, verdict] of rules) {
    const patternParts = pattern.split(pattern.includes('.') ? '.' : '');
    if (patternParts.length === parts.length && patternParts.every((part, index) => part === '*' || part === parts[index])) return verdict;
  }
  return undefined;
}

/**
 * The parts of an RFC 3464 Diagnostic-Code of type smtp ("smtp; 550 5.1.1 User unknown"), or of
 * an SMTP reply: the reply code and the enhanced status at the head of the text, where RFC 3463
 * puts it. Only the head is read; words further on are never interpreted.
 */
export function parseSmtpReply(reply: string | undefined): { replyCode?: number; status?: string } {
  if (!reply) return {};
  const match = /^\s*(?:smtp\s*;\s*)?([245]\d\d)(?:[ -]+([245]\.\d{1,3}\.\d{1,3}))?\b/i.exec(reply);
  if (!match) return {};
  return { replyCode: Number(match[1]), ...(match[2] ? { status: match[2] } : {}) };
}
