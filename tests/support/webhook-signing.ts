/**
 * Valid (and deliberately invalid) credentials for the providers' webhooks, made offline: an SNS
 * signature under a test certificate the validator finds in its cache, Mailgun's HMAC, SendGrid's
 * ECDSA P-256 signature, Basic and Bearer headers. Shared by the unit tests of src/intake/webhooks
 * and the integration tests of the HTTP routes.
 */
import { createHmac, createSign, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import SnsPayloadValidator from 'sns-payload-validator';

const FIXTURES = new URL('../fixtures/webhooks/', import.meta.url);

/** A fixture of tests/fixtures/webhooks, parsed. */
export function webhookFixture<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8')) as T;
}

/**
 * The test-only self-signed certificate and its key (openssl req -x509, RSA 2048), standing in for
 * Amazon's SNS signing certificate. Node can't make an X.509 certificate itself, hence the files.
 */
export const SNS_TEST_CERT_PEM = readFileSync(new URL('sns-test-cert.pem', FIXTURES), 'utf8');
const SNS_TEST_KEY_PEM = readFileSync(new URL('sns-test-key.pem', FIXTURES), 'utf8');

/** A SigningCertURL on SNS's real pattern, under which the test validator has the test certificate cached. */
export const SNS_TEST_CERT_URL = 'https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem';

/** The topic the tests subscribe. */
export const SNS_TEST_TOPIC_ARN = 'arn:aws:sns:us-east-1:123456789012:ses-feedback';

/** sns-payload-validator's cache; its .d.ts doesn't declare it, so this names the one method used. */
interface CertCache {
  set(url: string, pem: string): unknown;
}

/**
 * A validator that finds the test certificate under certUrl in its cache, so validate() never goes
 * to the network for it. A URL that isn't cached would be fetched: tests only sign with cached ones.
 */
export function snsTestValidator(certUrl: string = SNS_TEST_CERT_URL, certPem: string = SNS_TEST_CERT_PEM): SnsPayloadValidator {
  const validator = new SnsPayloadValidator({ useCache: true });
  (validator as unknown as { certCache: CertCache }).certCache.set(certUrl, certPem);
  return validator;
}

/** The fields of an SNS HTTP message before it is signed. */
export interface SnsFields {
  readonly Type: 'Notification' | 'SubscriptionConfirmation' | 'UnsubscribeConfirmation';
  readonly MessageId: string;
  readonly TopicArn: string;
  readonly Message: string;
  readonly Timestamp: string;
  readonly Subject?: string;
  readonly SubscribeURL?: string;
  readonly Token?: string;
  readonly UnsubscribeURL?: string;
}

/** The fields SNS signs, in its order (docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html). */
const SIGNED_FIELDS: Readonly<Record<SnsFields['Type'], readonly (keyof SnsFields)[]>> = {
  Notification: ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'],
  SubscriptionConfirmation: ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'],
  UnsubscribeConfirmation: ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'],
};

/**
 * The SNS message as SNS posts it, signed like SNS does: "Name\nvalue\n" for each signed field
 * present, RSA with SHA1 (SignatureVersion 1) or SHA256 (2). `privateKeyPem` other than the test
 * key's makes a forged signature; `certUrl` other than the cached one tests the URL check.
 */
export function signSnsMessage(
  fields: SnsFields,
  options: { readonly certUrl?: string; readonly signatureVersion?: '1' | '2'; readonly privateKeyPem?: string | KeyObject } = {},
): Record<string, string> {
  const version = options.signatureVersion ?? '1';
  const text = SIGNED_FIELDS[fields.Type]
    .filter((name) => fields[name] !== undefined)
    .map((name) => `${name}\n${String(fields[name])}\n`)
    .join('');
  const signer = createSign(version === '1' ? 'RSA-SHA1' : 'RSA-SHA256');
  signer.update(text, 'utf8');
  return {
    ...(fields as unknown as Record<string, string>),
    SignatureVersion: version,
    Signature: signer.sign(options.privateKeyPem ?? SNS_TEST_KEY_PEM, 'base64'),
    SigningCertURL: options.certUrl ?? SNS_TEST_CERT_URL,
  };
}

/** An SNS Notification carrying an SES notification as its Message. */
export function snsNotificationOf(
  sesNotification: unknown,
  options: { readonly timestamp: string; readonly topicArn?: string; readonly messageId?: string },
): SnsFields {
  return {
    Type: 'Notification',
    MessageId: options.messageId ?? '22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324',
    TopicArn: options.topicArn ?? SNS_TEST_TOPIC_ARN,
    Message: JSON.stringify(sesNotification),
    Timestamp: options.timestamp,
    UnsubscribeURL:
      'https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:ses-feedback:c9135db0-26c4-47ec-8998-413945fb5a96',
  };
}

/** An RSA key that is not the test certificate's: what a forger would sign with. */
export function forgerKey(): KeyObject {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
}

/** Mailgun's signature: hex HMAC-SHA256 of timestamp + token under the signing key. */
export function mailgunSignature(signingKey: string, timestamp: string, token: string): string {
  return createHmac('sha256', signingKey)
    .update(timestamp + token)
    .digest('hex');
}

/** A Mailgun body with its signature block set (timestamp, token and a signature under signingKey), as bytes. */
export function signMailgunBody(
  payload: Readonly<Record<string, unknown>>,
  signingKey: string,
  block: { readonly timestamp: string; readonly token: string },
): Buffer {
  const signature = { timestamp: block.timestamp, token: block.token, signature: mailgunSignature(signingKey, block.timestamp, block.token) };
  return Buffer.from(JSON.stringify({ ...payload, signature }));
}

/** A SendGrid verification key pair: the public half as SendGrid shows it (base64 DER SubjectPublicKeyInfo). */
export function sendgridKeyPair(): { readonly publicKey: string; readonly privateKey: KeyObject } {
  const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { publicKey: pair.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), privateKey: pair.privateKey };
}

/** SendGrid's headers for a body: the base64 DER ECDSA signature over timestamp + body, and the timestamp. */
export function sendgridHeaders(privateKey: KeyObject, timestamp: string, rawBody: Buffer): Record<string, string> {
  const signature = sign('sha256', Buffer.concat([Buffer.from(timestamp), rawBody]), { key: privateKey, dsaEncoding: 'der' }).toString('base64');
  return {
    'x-twilio-email-event-webhook-signature': signature,
    'x-twilio-email-event-webhook-timestamp': timestamp,
  };
}

/** `Authorization: Basic` for a user and password. */
export function basicAuthorization(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}
