import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CsvImportError, importSubscribersCsv } from '../../src/app/import-csv.ts';
import { STATUS_CHANGES } from '../../src/core/subscriber.ts';
import { createHarness } from '../support/harness.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nl-csv-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function csv(name: string, content: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, content);
  return file;
}

describe('subscribers import', () => {
  it('imports valid rows, merges duplicates, keeps attributes and reports invalid rows by line', async () => {
    const harness = await createHarness('csv');
    const { subscribers } = harness.services;
    const file = await csv(
      'list.csv',
      [
        'email,name,company,Country',
        'ada@example.org,Ada Lovelace,Analytical Engines,UK',
        'not-an-address,Nobody,,',
        ' grace@Example.ORG ,Grace Hopper,US Navy,US',
        ',Missing Email,,',
        'grace@example.org,Amazing Grace,,US',
        'zoe@example.org,"Martín, Zoë",,ES',
        'eve@example.org,Eve,Acme,DE,one-field-too-many',
        '',
      ].join('\n'),
    );
    const report = await importSubscribersCsv(subscribers, file, 'weekly');
    expect(report.imported).toBe(3);
    expect(report.updated).toBe(1);
    expect(report.invalidCount).toBe(3);
    expect(report.invalid).toEqual([
      { line: 3, reason: '"not-an-address" is not a valid email address' },
      { line: 5, reason: 'the email is empty' },
      { line: 8, reason: expect.stringContaining('the row has 5 fields but the header has 4') },
    ]);

    const graceId = await subscribers.findIdByEmail('grace@example.org');
    expect(graceId).toBeDefined();
    expect(await subscribers.get(graceId!)).toMatchObject({
      email: 'grace@example.org',
      name: 'Amazing Grace',
      attributes: { company: 'US Navy', country: 'US' },
      status: 'active',
    });
    const zoe = await subscribers.get((await subscribers.findIdByEmail('zoe@example.org'))!);
    expect(zoe).toMatchObject({ name: 'Martín, Zoë', attributes: { country: 'ES' } });
    const ada = await subscribers.get((await subscribers.findIdByEmail('ada@example.org'))!);
    expect(ada?.attributes).toEqual({ company: 'Analytical Engines', country: 'UK' });
    expect(await subscribers.countList('weekly')).toMatchObject({ total: 3, byStatus: { active: 3 } });

    // Re-importing never revives a suppressed subscriber.
    await subscribers.changeStatus(ada!.id, STATUS_CHANGES.unsubscribe);
    const again = await importSubscribersCsv(subscribers, file, 'weekly');
    expect(again).toMatchObject({ imported: 0, updated: 4 });
    expect((await subscribers.get(ada!.id))?.status).toBe('unsubscribed');
  });

  it('adds existing subscribers to a second list without duplicating them', async () => {
    const harness = await createHarness('csv-lists');
    const { subscribers } = harness.services;
    const file = await csv('two.csv', 'email\nada@example.org\nbob@example.org\n');
    await importSubscribersCsv(subscribers, file, 'weekly');
    const report = await importSubscribersCsv(subscribers, file, 'monthly');
    expect(report).toMatchObject({ imported: 0, updated: 2 });
    const adaId = (await subscribers.findIdByEmail('ada@example.org'))!;
    expect(await subscribers.listsOf(adaId)).toEqual(['monthly', 'weekly']);
  });

  it('fails clearly on a file without an email column or with broken quoting', async () => {
    const harness = await createHarness('csv-bad');
    const { subscribers } = harness.services;
    await expect(importSubscribersCsv(subscribers, await csv('nomail.csv', 'name,address\nAda,x\n'), 'weekly')).rejects.toThrow(/no "email" column/);
    const unclosed = await csv('quote.csv', 'email,name\nada@example.org,"unclosed\n');
    await expect(importSubscribersCsv(subscribers, unclosed, 'weekly')).rejects.toThrow(CsvImportError);
    await expect(importSubscribersCsv(subscribers, unclosed, 'weekly')).rejects.toThrow(
      `${unclosed}: malformed CSV at line 2: a quote opens a field that is never closed`,
    );
    await expect(importSubscribersCsv(subscribers, path.join(dir, 'missing.csv'), 'weekly')).rejects.toThrow(/no such file/);
    await expect(importSubscribersCsv(subscribers, dir, 'weekly')).rejects.toThrow(/is a folder, not a CSV file/);
    await expect(importSubscribersCsv(subscribers, await csv('empty.csv', ''), 'weekly')).rejects.toThrow(/the file is empty/);
  });

  it('counts every invalid row but details only the first thousand', async () => {
    const harness = await createHarness('csv-invalid');
    const lines = ['email,name', 'ok@example.org,Ok'];
    for (let n = 0; n < 1500; n += 1) lines.push(`broken-${n},Broken`);
    const report = await importSubscribersCsv(harness.services.subscribers, await csv('invalid.csv', `${lines.join('\n')}\n`), 'weekly');
    expect(report).toMatchObject({ imported: 1, invalidCount: 1500 });
    expect(report.invalid).toHaveLength(1000);
    expect(report.invalid[999]).toEqual({ line: 1002, reason: '"broken-999" is not a valid email address' });
  });

  it('imports a 50,000-row file in batches', async () => {
    const harness = await createHarness('csv-large');
    const { subscribers } = harness.services;
    const rows = 50_000;
    const lines = ['email,name'];
    for (let n = 0; n < rows; n += 1) lines.push(`reader${n}@example.org,Reader ${n}`);
    const file = await csv('large.csv', `${lines.join('\n')}\n`);
    const report = await importSubscribersCsv(subscribers, file, 'weekly');
    expect(report).toMatchObject({ imported: rows, updated: 0, invalidCount: 0, invalid: [] });
    expect((await subscribers.countList('weekly')).total).toBe(rows);
  });
});
