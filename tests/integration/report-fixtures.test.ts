import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { MailIntakeResult } from '../../src/app/mail-intake.ts';
import { verpToken } from '../../src/core/verp.ts';
import { startBounceServer } from '../../src/workers/bounce-smtp.ts';
import { runCliInProcess } from '../support/cli.ts';
import { createHarness, seedSubscribers, type Harness } from '../support/harness.ts';

/**
 * The MTA formats of tests/fixtures/reports (written from RFC 3464 / 5965 and what Postfix, Exim,
 * Microsoft, Gmail and the feedback loops are documented to send), each with the kinds of its
 * events. Their quoted original is message 42 of send vol-138.weekly.1, sent from a VERP address
 * whose token the test signs with its own secret.
 */
const FIXTURES: readonly (readonly [file: string, format: string, kinds: readonly string[]])[] = [
  ['postfix-dsn-hard.eml', 'dsn', ['hard bounce']],
  ['postfix-dsn-two-recipients.eml', 'dsn', ['hard bounce', 'block']],
  ['exim-dsn.eml', 'dsn', ['hard bounce']],
  ['exim-legacy.eml', 'legacy-bounce', ['hard bounce', 'soft bounce']],
  ['microsoft-ndr.eml', 'dsn', ['hard bounce']],
  ['microsoft-access-denied.eml', 'dsn', ['hard bounce']],
  ['gmail-dsn.eml', 'dsn', ['hard bounce']],
  ['gmail-block.eml', 'dsn', ['block']],
  ['gmail-legacy.eml', 'legacy-bounce', ['hard bounce']],
  ['yahoo-or-generic-arf.eml', 'arf', ['complaint']],
  ['hotmail-arf.eml', 'arf', ['complaint']],
  ['arf-redacted.eml', 'arf', ['complaint']],
];
const FIXTURE_TOKEN = 'vol-138.weekly.1-42-0123456789ab';
const SEND_ID = 'vol-138.weekly.1';

/** A send of vol-138 with subscriber 42 among its recipients (queued: no worker is needed to attribute reports to it). */
async function sendWith42(label: string): Promise<Harness> {
  const harness = await createHarness(label, { config: { BOUNCE_ADDRESS: 'bounces@bounce.example.org' } });
  await seedSubscribers(harness.services, 42);
  const { sendId } = await harness.send('vol-138');
  expect(sendId).toBe(SEND_ID);
  return harness;
}

/** A fixture with the VERP token of message 42 signed by this run's secret. */
function fixture(harness: Harness, file: string): Buffer {
  const text = readFileSync(new URL(`../fixtures/reports/${file}`, import.meta.url), 'utf8');
  expect(text).toContain(FIXTURE_TOKEN);
  return Buffer.from(text.replaceAll(FIXTURE_TOKEN, verpToken(harness.config.appSecret, { sendId: SEND_ID, subscriberId: '42' })));
}

describe('the MTA report fixtures, end to end', () => {
  it('are attributed by the quoted Message-ID when the envelope was lost, only to the subscriber whose address the report names', async () => {
    const harness = await createHarness('fixtures-unsigned');
    const { parseMailReport } = await import('../../src/intake/mail-report.ts');
    const dir = await mkdtemp(path.join(tmpdir(), 'nl-fixtures-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const outcomes: string[] = [];
    for (const [file, , kinds] of FIXTURES) {
      // No VERP token, no envelope id, no signed List-Unsubscribe: only the unsigned quoted headers are left.
      const text = readFileSync(new URL(`../fixtures/reports/${file}`, import.meta.url), 'utf8')
        .replaceAll(FIXTURE_TOKEN, 'lost')
        .replace(/^List-Unsubscribe:.*\r?\n/gm, '');
      const parsed = await parseMailReport(Buffer.from(text));
      const recipients = parsed.kind === 'report' ? [...new Set(parsed.events.map((event) => event.clues.recipient?.toLowerCase()))] : [];
      // Make the quoted message's subscriber the one with the report's address (or a stranger, for a redacted report).
      const address = recipients[0] ?? `someone-${file}@example.org`;
      const { id } = await harness.services.subscribers.upsert({ email: address, list: 'weekly' });
      const rewritten = text
        .replaceAll('vol-138.weekly.1.42@', `vol-138.weekly.1.${id}@`)
        .replace(/^X-Newsletter-Subscriber: 42/gm, `X-Newsletter-Subscriber: ${id}`);
      await writeFile(path.join(dir, file), rewritten);
      const result = await runCliInProcess(['bounces', 'ingest', '--json', path.join(dir, file)], harness.config);
      const taken = JSON.parse(result.out) as MailIntakeResult;
      if (taken.outcome !== 'taken') throw new Error(`${file}: ${taken.outcome}`);
      for (const outcome of taken.outcomes)
        outcomes.push(
          `${file}: ${outcome.outcome === 'unmatched' ? 'unmatched' : `${outcome.via} → ${outcome.event.subscriberId === id ? 'its subscriber' : 'another subscriber'}`}`,
        );
      expect(taken.outcomes).toHaveLength(kinds.length);
    }
    // Every event that names the subscriber's address is matched to that subscriber. Kept unmatched:
    // the second recipient of the two reports that name two (no subscriber has that address, and
    // the quoted message is someone else's), and the redacted complaint, with nothing signed and
    // no address to check the unsigned ids against.
    expect(outcomes.filter((line) => line.includes('another subscriber'))).toEqual([]);
    const unmatched = outcomes.filter((line) => line.includes('unmatched'));
    expect(unmatched).toEqual(['postfix-dsn-two-recipients.eml: unmatched', 'exim-legacy.eml: unmatched', 'arf-redacted.eml: unmatched']);
    console.log(
      `report fixtures without the envelope: ${outcomes.length - unmatched.length} of ${outcomes.length} events attributed by their quoted headers, ${unmatched.length} kept unmatched`,
    );
  });

  it('are all parsed and attributed to message 42 through `bounces ingest`', async () => {
    const harness = await sendWith42('fixtures-ingest');
    const dir = await mkdtemp(path.join(tmpdir(), 'nl-fixtures-'));
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const tally = new Map<string, { parsed: number; attributed: number }>();
    for (const [file, format, kinds] of FIXTURES) {
      await writeFile(path.join(dir, file), fixture(harness, file));
      const result = await runCliInProcess(['bounces', 'ingest', '--json', path.join(dir, file)], harness.config);
      expect([file, result.code, result.err]).toEqual([file, 0, '']);
      const parsed = JSON.parse(result.out) as MailIntakeResult;
      const entry = tally.get(format) ?? { parsed: 0, attributed: 0 };
      tally.set(format, entry);
      if (parsed.outcome !== 'taken') throw new Error(`${file}: ${parsed.outcome}`);
      expect([file, parsed.format]).toEqual([file, format]);
      entry.parsed += 1;
      const kindWords = {
        hard: 'hard bounce',
        soft: 'soft bounce',
        block: 'block',
        complaint: 'complaint',
        unsubscribe: 'unsubscribe',
        accepted: 'accepted',
      } as const;
      const attributed = parsed.outcomes.flatMap((outcome) =>
        outcome.outcome === 'unmatched'
          ? []
          : [{ kind: kindWords[outcome.event.kind], subscriberId: outcome.event.subscriberId, sendId: outcome.event.sendId }],
      );
      expect([file, attributed]).toEqual([file, kinds.map((kind) => ({ kind, subscriberId: '42', sendId: SEND_ID }))]);
      entry.attributed += 1;
    }
    console.log(`report fixtures via ingest: ${[...tally].map(([format, { parsed, attributed }]) => `${format} ${attributed}/${parsed}`).join(', ')}`);
    expect(Object.fromEntries(tally)).toEqual({
      dsn: { parsed: 7, attributed: 7 },
      'legacy-bounce': { parsed: 2, attributed: 2 },
      arf: { parsed: 3, attributed: 3 },
    });
    // A delay warning is no bounce: the message may still be delivered.
    await writeFile(path.join(dir, 'postfix-dsn-delayed.eml'), fixture(harness, 'postfix-dsn-delayed.eml'));
    const delayed = await runCliInProcess(['bounces', 'ingest', path.join(dir, 'postfix-dsn-delayed.eml')], harness.config);
    expect(delayed).toMatchObject({ code: 0, out: expect.stringMatching(/^ignored: not a delivery report \(the report tells of no failure/) });
    // Replayed: nothing more is applied.
    const again = await runCliInProcess(['bounces', 'ingest', '--json', path.join(dir, 'gmail-dsn.eml')], harness.config);
    const replay = JSON.parse(again.out) as MailIntakeResult;
    expect(replay.outcome === 'taken' && replay.outcomes.map((outcome) => outcome.outcome)).toEqual(['duplicate']);
  });

  it('are all received over SMTP by the bounce server, recorded before its 250, and applied', async () => {
    const harness = await sendWith42('fixtures-smtp');
    const results: MailIntakeResult[] = [];
    const server = await startBounceServer(harness.services, { port: 0, onReport: (result) => results.push(result) });
    onTestFinished(() => server.close());
    const mta = nodemailer.createTransport({ host: '127.0.0.1', port: server.port, secure: false, ignoreTLS: true, pool: true });
    onTestFinished(() => mta.close());
    const verp = `bounces+${verpToken(harness.config.appSecret, { sendId: SEND_ID, subscriberId: '42' })}@bounce.example.org`;
    for (const [file] of FIXTURES) {
      const info = await mta.sendMail({ envelope: { from: 'mailer-daemon@mx.example.net', to: [verp] }, raw: fixture(harness, file) });
      expect([file, info.response]).toEqual([file, expect.stringMatching(/^250 .*report recorded/)]);
    }
    const applied = results.flatMap((result) => (result.outcome === 'taken' ? result.outcomes.filter((outcome) => outcome.outcome === 'applied') : []));
    expect(applied).toHaveLength(FIXTURES.reduce((sum, [, , kinds]) => sum + kinds.length, 0));
    const events = await harness.services.events.recentEvents('42', 50);
    expect(new Set(events.map((event) => event.source))).toEqual(new Set(['dsn', 'arf']));
    // The complaints were the strongest: subscriber 42 ends complained, off every list.
    expect((await harness.services.subscribers.get('42'))?.status).toBe('complained');
    expect(await harness.services.sends.get(SEND_ID)).toMatchObject({ bounced: 1, softBounced: 1, blocked: 1, complained: 1 });
  });
});
