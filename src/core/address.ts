/** The longest address SMTP allows in a path (RFC 5321 §4.5.3.1.3, less the angle brackets). */
const MAX_ADDRESS_LENGTH = 254;
// Local part: printable ASCII without specials. Non-ASCII addresses need SMTPUTF8, which the
// pipeline does not negotiate, so they are refused at import rather than failing at send.
const ADDRESS_SHAPE = /^[!#-'*+\--9=?A-Z^-~]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/;

/**
 * Cleans an address for delivery: trimmed, domain lower-cased. The local part keeps the case the
 * subscriber gave it (RFC 5321 lets a server tell cases apart, so that is what we send to); the
 * address's identity is emailKey(). Returns undefined for anything that is not a plain address.
 */
export function normaliseEmail(input: string): string | undefined {
  const trimmed = input.trim();
  const at = trimmed.lastIndexOf('@');
  if (at <= 0) return undefined;
  const address = `${trimmed.slice(0, at)}@${trimmed.slice(at + 1).toLowerCase()}`;
  if (address.length > MAX_ADDRESS_LENGTH || !ADDRESS_SHAPE.test(address)) return undefined;
  return address;
}

/** C0 and C1 controls (CR and LF among them) and the Unicode line separators. */
// oxlint-disable-next-line no-control-regex -- control characters are exactly what this matches
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** Longest display name kept; longer ones are cut. */
const MAX_NAME_LENGTH = 120;

/**
 * Cleans a subscriber-supplied display name: control characters (CR and LF among them) become
 * spaces, runs of white space collapse. The result can never break a header line; HTML escaping
 * happens later, in the template.
 */
export function cleanDisplayName(input: string | undefined): string {
  if (!input) return '';
  return input.replace(CONTROL_CHARACTERS, ' ').replace(/\s+/g, ' ').trim().slice(0, MAX_NAME_LENGTH);
}

/**
 * The identity of an address: lower-cased whole. Practically every mailbox provider treats local
 * parts case-insensitively, and people type their address in whatever case; matching,
 * de-duplication and suppression all go by this key, so READER5@X and reader5@x are one subscriber.
 */
export function emailKey(address: string): string {
  return address.trim().toLowerCase();
}
