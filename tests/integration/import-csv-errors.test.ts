import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CsvImportError, importSubscribersCsv } from '../../src/app/import-csv.ts';
import { UserFacingError } from '../../src/core/errors.ts';
import type { SubscriberStore } from '../../src/store/subscriber-store.ts';
import { createHarness } from '../support/harness.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nl-csv-errors-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Buffer): Promise<string> {
  const target = path.join(dir, name);
  await writeFile(target, content);
  return target;
}

/** The import's rejection, which must be a CsvImportError: the CLI prints its message alone, no stack. */
async function importError(store: SubscriberStore, target: string): Promise<CsvImportError> {
  const error: unknown = await importSubscribersCsv(store, target, 'weekly').then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  expect(error).toBeInstanceOf(CsvImportError);
  expect(error).toBeInstanceOf(UserFacingError);
  return error as CsvImportError;
}

/** `count` CSV rows, reader<first>… onwards. */
function rows(first: number, count: number): string[] {
  return Array.from({ length: count }, (_, index) => `reader${first + index}@example.org,Reader ${first + index}`);
}

// A PNG signature and the start of its IHDR chunk: a line break at bytes 5 and 7, then NULs.
const PNG_HEADER = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x01, 0x00]);

describe('subscribers import of a file that is not a good CSV', () => {
  it('rejects a PNG as not a CSV text file, naming the file and the line, and imports nothing', async () => {
    const { services } = await createHarness('csv-png');
    const target = await file('photo.png', Buffer.concat([PNG_HEADER, Buffer.alloc(4096, 0x5a)]));
    const error = await importError(services.subscribers, target);
    expect(error.message).toBe(`${target}: this does not look like a CSV text file (binary data at line 3); nothing was imported`);
    expect(await services.subscribers.listExists('weekly')).toBe(false);
  });

  it('rejects a gzipped CSV as not a CSV text file', async () => {
    const { services } = await createHarness('csv-gzip');
    const target = await file('list.csv.gz', gzipSync(['email,name', ...rows(1, 100)].join('\n')));
    const error = await importError(services.subscribers, target);
    expect(error.message).toMatch(
      new RegExp(`^${escapeRegExp(target)}: this does not look like a CSV text file \\(binary data at line \\d+\\); nothing was imported$`),
    );
  });

  it('stops at binary data far into a large file; the rows before it stay imported', async () => {
    const { services } = await createHarness('csv-nul');
    // Past the first 64 KiB chunk, so the check of every chunk is what finds it.
    const lines = ['email,name', ...rows(1, 5000), 'reader5001@example.org,Bro\u0000ken', ...rows(5002, 100)];
    const target = await file('nul.csv', `${lines.join('\n')}\n`);
    const error = await importError(services.subscribers, target);
    expect(error.message).toBe(`${target}: this does not look like a CSV text file (binary data at line 5002); 5000 rows were imported before it`);
    expect((await services.subscribers.countList('weekly')).total).toBe(5000);
    expect(await services.subscribers.findIdByEmail('reader5000@example.org')).toBeDefined();
    expect(await services.subscribers.findIdByEmail('reader5001@example.org')).toBeUndefined();
    expect(await services.subscribers.findIdByEmail('reader5002@example.org')).toBeUndefined();
  });

  it('tells a UTF-16 file (Excel "Unicode Text") to be saved as UTF-8', async () => {
    const { services } = await createHarness('csv-utf16');
    const target = await file('unicode.csv', Buffer.from('\ufeffemail,name\nada@example.org,Ada\n', 'utf16le'));
    const error = await importError(services.subscribers, target);
    expect(error.message).toBe(`${target}: this is UTF-16 text; save it as "CSV UTF-8" and import that`);
  });

  it('keeps a stray quote inside an unquoted field as the text it is', async () => {
    const { services } = await createHarness('csv-stray-quote');
    const { subscribers } = services;
    const target = await file('quotes.csv', 'email,name,disk\nbob@example.org,Robert "Bob" Smith,3.5" floppy\nada@example.org,"Ada ""Countess"" Lovelace",\n');
    const report = await importSubscribersCsv(subscribers, target, 'weekly');
    expect(report).toMatchObject({ imported: 2, updated: 0, invalidCount: 0 });
    const bob = await subscribers.get((await subscribers.findIdByEmail('bob@example.org'))!);
    expect(bob).toMatchObject({ name: 'Robert "Bob" Smith', attributes: { disk: '3.5" floppy' } });
    const ada = await subscribers.get((await subscribers.findIdByEmail('ada@example.org'))!);
    expect(ada?.name).toBe('Ada "Countess" Lovelace');
  });

  it('fails on a quoted field that is never closed, naming the line it opens on; the rows before it stay imported', async () => {
    const { services } = await createHarness('csv-unclosed');
    const target = await file('unclosed.csv', ['email,name', ...rows(1, 3), 'reader4@example.org,"Reader 4', ...rows(5, 2)].join('\n'));
    const error = await importError(services.subscribers, target);
    expect(error.message).toBe(`${target}: malformed CSV at line 5: a quote opens a field that is never closed; 3 rows were imported before it`);
    expect((await services.subscribers.countList('weekly')).total).toBe(3);
    expect(await services.subscribers.findIdByEmail('reader5@example.org')).toBeUndefined();
  });

  it('fails on text after a closing quote ("a"b) with its line number', async () => {
    const { services } = await createHarness('csv-closing-quote');
    const target = await file('closing.csv', ['email,name', ...rows(1, 1), 'reader2@example.org,"a"b', ...rows(3, 1), ''].join('\n'));
    const error = await importError(services.subscribers, target);
    expect(error.message).toMatch(new RegExp(`^${escapeRegExp(target)}: malformed CSV at line 3: text after the closing quote`));
    expect(error.message).toContain('; 1 row was imported before it');
    expect((await services.subscribers.countList('weekly')).total).toBe(1);
  });

  it('fails on a broken header row with line 1', async () => {
    const { services } = await createHarness('csv-bad-header');
    const target = await file('header.csv', 'email,"name" x\nada@example.org,Ada\n');
    const error = await importError(services.subscribers, target);
    expect(error.message).toContain(`${target}: malformed CSV at line 1: `);
    expect(error.message).toContain('; nothing was imported');
  });

  it('stops a runaway quoted field at the row size limit instead of reading the rest of the file into it', async () => {
    const { services } = await createHarness('csv-runaway');
    const lines = ['email,name', ...rows(1, 1), 'reader2@example.org,"Reader 2', ...rows(3, 60_000)];
    const target = await file('runaway.csv', `${lines.join('\n')}\n`);
    const error = await importError(services.subscribers, target);
    expect(error.message).toMatch(
      new RegExp(`^${escapeRegExp(target)}: malformed CSV at line 3: the row runs on for more than 1 MiB; is a quote never closed\\?`),
    );
    expect(error.message).toContain('; 1 row was imported before it');
    expect((await services.subscribers.countList('weekly')).total).toBe(1);
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
