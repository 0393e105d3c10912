/**
 * Reports as a receiving MTA or a mailbox provider would mail them back about a message we sent:
 * an RFC 3464 DSN (multipart/report with message/delivery-status and the original's headers) and
 * an RFC 5965 ARF complaint. Built from the message as the SMTP sink received it, so the VERP
 * address, envelope id and quoted headers are the real ones.
 */
export interface DsnRecipient {
  readonly recipient: string;
  readonly action: 'failed' | 'delayed' | 'delivered';
  readonly status: string;
  readonly diagnostic?: string;
}

function originalHeaders(original: Buffer): string {
  const text = original.toString('utf8');
  const end = text.search(/\r?\n\r?\n/);
  return (end === -1 ? text : text.slice(0, end)).replace(/\r?\n/g, '\r\n');
}

/** A DSN mailed to `to` (the envelope sender of the original: our VERP address). */
export function buildDsn(options: {
  readonly to: string;
  readonly original: Buffer;
  readonly recipients: readonly DsnRecipient[];
  readonly envelopeId?: string | undefined;
  readonly messageId?: string;
}): Buffer {
  const boundary = 'dsn-boundary-7a1';
  const perRecipient = options.recipients
    .map((r) =>
      [
        `Final-Recipient: rfc822; ${r.recipient}`,
        `Original-Recipient: rfc822;${r.recipient}`,
        `Action: ${r.action}`,
        `Status: ${r.status}`,
        'Remote-MTA: dns; mx.receiver.example',
        ...(r.diagnostic ? [`Diagnostic-Code: smtp; ${r.diagnostic}`] : []),
        'Last-Attempt-Date: Thu, 26 Nov 2026 10:00:05 +0000',
      ].join('\r\n'),
    )
    .join('\r\n\r\n');
  return Buffer.from(
    [
      'Return-Path: <>',
      `Delivered-To: ${options.to}`,
      'From: MAILER-DAEMON@mx.sender.example (Mail Delivery System)',
      `To: ${options.to}`,
      'Subject: Undelivered Mail Returned to Sender',
      `Message-ID: ${options.messageId ?? '<20261126100005.ABC123@mx.sender.example>'}`,
      'Date: Thu, 26 Nov 2026 10:00:05 +0000',
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/plain; charset=us-ascii',
      '',
      'This is the mail system at host mx.sender.example. Your message could not be delivered.',
      '',
      `--${boundary}`,
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.sender.example',
      ...(options.envelopeId ? [`Original-Envelope-Id: ${options.envelopeId}`] : []),
      'Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000',
      '',
      perRecipient,
      '',
      `--${boundary}`,
      'Content-Type: text/rfc822-headers',
      '',
      originalHeaders(options.original),
      '',
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
}

/** An ARF complaint (RFC 5965) about the original, as a mailbox provider's feedback loop sends it. */
export function buildArf(options: { readonly to: string; readonly original: Buffer; readonly recipient?: string; readonly messageId?: string }): Buffer {
  const boundary = 'arf-boundary-3c9';
  return Buffer.from(
    [
      'From: feedback-loop@provider.example',
      `To: ${options.to}`,
      'Subject: Complaint about a message from example.org',
      `Message-ID: ${options.messageId ?? '<arf-20261126-1@provider.example>'}`,
      'Date: Thu, 26 Nov 2026 11:00:00 +0000',
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=feedback-report; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/plain; charset=us-ascii',
      '',
      'This is an email abuse report for an email message received from IP 192.0.2.1.',
      '',
      `--${boundary}`,
      'Content-Type: message/feedback-report',
      '',
      'Feedback-Type: abuse',
      'User-Agent: ProviderFBL/1.0',
      'Version: 1',
      'Original-Mail-From: <bounces@bounce.example.org>',
      ...(options.recipient ? [`Original-Rcpt-To: <${options.recipient}>`] : []),
      'Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000',
      'Source-IP: 192.0.2.1',
      '',
      `--${boundary}`,
      'Content-Type: message/rfc822',
      '',
      options.original.toString('utf8').replace(/\r?\n/g, '\r\n'),
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
}
