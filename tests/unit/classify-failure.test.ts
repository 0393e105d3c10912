import { describe, expect, it } from 'vitest';
import { classifySmtpFailure, type SmtpFailureFields } from '../../src/core/classify-failure.ts';

describe('classifySmtpFailure', () => {
  const table: [string, SmtpFailureFields, { permanent: boolean; bounce: 'hard' | 'soft' | 'block' | undefined }][] = [
    [
      '550 5.1.1 user unknown at RCPT',
      { code: 'EENVELOPE', responseCode: 550, response: '550 5.1.1 User unknown', command: 'RCPT TO' },
      { permanent: true, bounce: 'hard' },
    ],
    [
      '553 5.1.3 bad address syntax after DATA',
      { code: 'EMESSAGE', responseCode: 553, response: '553 5.1.3 Bad recipient address syntax', command: 'DATA' },
      { permanent: true, bounce: 'hard' },
    ],
    [
      '554 5.7.1 policy rejection of the message',
      { code: 'EMESSAGE', responseCode: 554, response: '554 5.7.1 Message rejected', command: 'DATA' },
      { permanent: true, bounce: 'block' },
    ],
    [
      '550 5.7.1 spam block at RCPT says nothing about the address: a block',
      { code: 'EENVELOPE', responseCode: 550, response: '550 5.7.1 Blocked by policy', command: 'RCPT TO' },
      { permanent: true, bounce: 'block' },
    ],
    [
      '552 5.2.2 mailbox full at RCPT: fails, but the address is fine',
      { code: 'EENVELOPE', responseCode: 552, response: '552 5.2.2 Mailbox full', command: 'RCPT TO' },
      { permanent: true, bounce: 'soft' },
    ],
    [
      '550 at RCPT without an enhanced code',
      { code: 'EENVELOPE', responseCode: 550, response: '550 No such user here', command: 'RCPT TO' },
      { permanent: true, bounce: 'hard' },
    ],
    [
      '503 bad sequence is ours: retry',
      { code: 'EPROTOCOL', responseCode: 503, response: '503 5.5.1 Bad sequence of commands', command: 'RCPT TO' },
      { permanent: false, bounce: undefined },
    ],
    [
      '451 greylisting at RCPT',
      { code: 'EENVELOPE', responseCode: 451, response: '451 4.7.1 Greylisted, try again', command: 'RCPT TO' },
      { permanent: false, bounce: 'soft' },
    ],
    [
      '421 service busy at DATA',
      { code: 'EMESSAGE', responseCode: 421, response: '421 4.3.2 Service not available', command: 'DATA' },
      { permanent: false, bounce: undefined },
    ],
    [
      '550 after DATA without an enhanced code refuses the message, not the mailbox: a block',
      { code: 'EMESSAGE', responseCode: 550, response: '550 Message content rejected', command: 'DATA' },
      { permanent: true, bounce: 'block' },
    ],
    [
      '550 5.4.1 (Microsoft: recipient not in the directory) at RCPT',
      { code: 'EENVELOPE', responseCode: 550, response: '550 5.4.1 Recipient address rejected: Access denied', command: 'RCPT TO' },
      { permanent: true, bounce: 'hard' },
    ],
    [
      'an address-like number in the text is not an enhanced status: a block list rejection stays a block',
      { code: 'EENVELOPE', responseCode: 554, response: '554 Service unavailable; Client host [5.1.1.200] blocked using zen.spamhaus.org', command: 'RCPT TO' },
      { permanent: true, bounce: 'block' },
    ],
    [
      '550 5.1.0 at MAIL FROM is about our sender, never the recipient: a block',
      {
        code: 'EENVELOPE',
        responseCode: 550,
        response: '550 5.1.0 <bounces+x@bounce.example.org>: Sender address rejected: Domain not found',
        command: 'MAIL FROM',
      },
      { permanent: true, bounce: 'block' },
    ],
    ['connection refused', { code: 'ECONNECTION' }, { permanent: false, bounce: undefined }],
    ['timeout', { code: 'ETIMEDOUT' }, { permanent: false, bounce: undefined }],
    ['socket error', { code: 'ESOCKET' }, { permanent: false, bounce: undefined }],
    ['authentication failure is an ops problem: retry', { code: 'EAUTH', responseCode: 535, command: 'AUTH PLAIN' }, { permanent: false, bounce: undefined }],
    ['address nodemailer refuses before sending', { code: 'EENVELOPE' }, { permanent: true, bounce: undefined }],
    ['unknown error: retry', {}, { permanent: false, bounce: undefined }],
  ];

  it.each(table)('%s', (_label, fields, expected) => {
    expect(classifySmtpFailure(fields)).toMatchObject(expected);
  });

  it.each([
    [{ code: 'ECONNECTION' }, 'service'],
    [{ code: 'EAUTH', responseCode: 535 }, 'service'],
    // A 421 in answer to RCPT TO or DATA (measured: nodemailer reports ECONNECTION, "Server closed
    // the connection", labelled CONN): this message or our pace, a "slow down" for its domain.
    [{ code: 'ECONNECTION', responseCode: 421, command: 'CONN', response: '421 4.7.0 Try again later, closing connection' }, 'message'],
    // The same 421 as the greeting (measured: EPROTOCOL, "Invalid greeting"): the service.
    [{ code: 'EPROTOCOL', responseCode: 421, command: 'CONN', response: '421 4.3.2 Service not available, closing transmission channel' }, 'service'],
    [{ code: 'EENVELOPE', responseCode: 451, command: 'RCPT TO' }, 'message'],
    [{ code: 'EENVELOPE', responseCode: 550, command: 'RCPT TO' }, 'message'],
    [{ code: 'EMESSAGE', responseCode: 421, command: 'DATA', response: '421 4.7.0 Try again later, closing connection' }, 'message'],
  ] as const)('scopes %j to the %s', (fields, scope) => {
    expect(classifySmtpFailure(fields).scope).toBe(scope);
  });

  // Before the server has judged any message: the service's, never an attempt of the recipient's.
  // `confirm`: whether the fields alone can't tell it from a connection dying under this message.
  const outageTable: [string, SmtpFailureFields, { confirm: boolean; status?: string }][] = [
    [
      // What nodemailer 10 gives for a 421 greeting (measured: smtp-connection _actionGreeting).
      '421 4.3.2 as the greeting',
      {
        code: 'EPROTOCOL',
        responseCode: 421,
        command: 'CONN',
        response: '421 4.3.2 Service not available, closing transmission channel',
      },
      { confirm: false, status: '4.3.2' },
    ],
    [
      '554 as the greeting ("no SMTP service here") is not a bounce',
      { code: 'EPROTOCOL', responseCode: 554, command: 'CONN', response: '554 No SMTP service here' },
      { confirm: false },
    ],
    [
      '421 in answer to EHLO',
      { code: 'ECONNECTION', responseCode: 421, command: 'EHLO', response: '421 4.7.0 Too many connections' },
      { confirm: false, status: '4.7.0' },
    ],
    ['454 to STARTTLS', { code: 'ETLS', responseCode: 454, command: 'STARTTLS', response: '454 4.7.0 TLS not available' }, { confirm: false }],
    ['connection refused (measured: ESOCKET over ECONNREFUSED)', { code: 'ESOCKET', originalCode: 'ECONNREFUSED', command: 'CONN' }, { confirm: false }],
    ['host name that does not resolve', { code: 'EDNS', originalCode: 'ENOTFOUND', command: 'CONN' }, { confirm: false }],
    ['TLS handshake failure', { code: 'ETLS', command: 'CONN' }, { confirm: false }],
    ['reset (measured: a port that resets every connection)', { code: 'ESOCKET', originalCode: 'ECONNRESET', command: 'CONN' }, { confirm: true }],
    ['closed before any reply (nodemailer gave up requeueing)', { code: 'ECONNECTION' }, { confirm: true }],
    ['connect or socket timeout', { code: 'ETIMEDOUT', command: 'CONN' }, { confirm: true }],
    ['bad credentials: the probe logs in too', { code: 'EAUTH', responseCode: 535, command: 'AUTH PLAIN' }, { confirm: true }],
  ];

  it.each(outageTable)('%s: the service, no attempt, no bounce', (_label, fields, expected) => {
    const failure = classifySmtpFailure(fields);
    expect(failure).toMatchObject({ scope: 'service', permanent: false, bounce: undefined, confirm: expected.confirm });
    if (expected.status) expect(failure.status).toBe(expected.status);
  });

  it('asks no confirmation of a failure of the message', () => {
    for (const [, fields] of table) {
      const failure = classifySmtpFailure(fields);
      if (failure.scope === 'message') expect(failure.confirm).toBe(false);
    }
  });

  it('never reads meaning from the reply text alone', () => {
    const fields = { response: '550 5.1.1 User unknown' };
    expect(classifySmtpFailure(fields).permanent).toBe(false);
  });
});
