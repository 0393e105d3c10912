/**
 * The two ways a provider's webhook request is refused. The HTTP route maps them to a status and
 * nothing else: any other error is ours (a certificate that could not be fetched, a key that is
 * not configured) and becomes a 5xx, so the provider retries later.
 */

/**
 * The request does not prove it comes from the provider: a wrong signature, secret or password, a
 * timestamp outside the allowed age, a reused token, an SNS topic we don't subscribe to, a signing
 * certificate URL that is not Amazon's. Answered with 401; the message is for our logs, not for the
 * caller (the route should not echo it).
 */
export class WebhookAuthError extends Error {
  override readonly name = 'WebhookAuthError';
  /** The HTTP status the route answers with. */
  readonly statusCode = 401;
}

/**
 * The request is authentic (or authentication did not need its content yet) but its body is not
 * what the provider documents: not JSON, or a field missing or of the wrong type. Answered with
 * 400; the message names the field, e.g. "event 2: email is missing".
 */
export class MalformedWebhookError extends Error {
  override readonly name = 'MalformedWebhookError';
  /** The HTTP status the route answers with. */
  readonly statusCode = 400;
}
