import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import { UserFacingError } from '../core/errors.ts';
import { cleanDisplayName, normaliseEmail } from '../core/address.ts';
import type { SubscriberInput, SubscriberStore } from '../store/subscriber-store.ts';

/** The CSV can't be imported at all (no such file, no `email` column, broken quoting). */
export class CsvImportError extends UserFacingError {
  override readonly name = 'CsvImportError';
}

/** A row that was skipped, and why. */
export interface InvalidRow {
  /** 1-based line number in the file (the header is line 1). */
  readonly line: number;
  readonly reason: string;
}

/** What an import did. */
export interface ImportReport {
  readonly imported: number;
  readonly updated: number;
  /** How many rows were skipped as invalid. */
  readonly invalidCount: number;
  /** The first INVALID_ROWS_KEPT of them, with line and reason (a broken 1M-line file stays small). */
  readonly invalid: readonly InvalidRow[];
}

/** Invalid rows reported in detail; the rest are only counted. */
export const INVALID_ROWS_KEPT = 1000;

/** Rows written per Redis round trip. */
const BATCH_SIZE = 500;

/**
 * Streams a subscriber CSV into a list. The header row must name an `email` column; `name` is
 * optional; every other column is kept as an attribute. Invalid rows are reported with their line
 * number and skipped; they never stop the import. Memory stays flat whatever the file size: rows
 * are parsed as a stream and written in batches.
 */
export async function importSubscribersCsv(store: SubscriberStore, file: string, list: string): Promise<ImportReport> {
  const input = createReadStream(file);
  const parser = input.pipe(parse({ bom: true, skip_empty_lines: true, trim: true, info: true, relax_column_count: true }));
  // pipe() does not forward a read error (a missing file); hand it to the parser so the loop sees it.
  input.on('error', (error) => parser.destroy(error));

  let imported = 0;
  let updated = 0;
  const invalid: InvalidRow[] = [];
  let invalidCount = 0;
  const skip = (row: InvalidRow) => {
    invalidCount += 1;
    if (invalid.length < INVALID_ROWS_KEPT) invalid.push(row);
  };
  let batch: SubscriberInput[] = [];
  let header: string[] | undefined;
  let emailColumn = -1;
  let nameColumn = -1;

  const flush = async () => {
    for (const result of await store.upsertMany(batch)) {
      if (result.created) imported += 1;
      else updated += 1;
    }
    batch = [];
  };

  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      if (!header) {
        header = record.map((column) => column.trim().toLowerCase());
        emailColumn = header.indexOf('email');
        nameColumn = header.indexOf('name');
        if (emailColumn === -1) throw new CsvImportError(`${file}: the header row has no "email" column (columns: ${header.join(', ')})`);
        continue;
      }
      const line = info.lines;
      if (record.length > header.length) {
        skip({ line, reason: `the row has ${record.length} fields but the header has ${header.length} (an unquoted comma?)` });
        continue;
      }
      const rawEmail = record[emailColumn] ?? '';
      const email = normaliseEmail(rawEmail);
      if (!email) {
        skip({ line, reason: rawEmail ? `"${rawEmail}" is not a valid email address` : 'the email is empty' });
        continue;
      }
      const attributes: Record<string, string> = {};
      header.forEach((column, index) => {
        const value = record[index] ?? '';
        if (index !== emailColumn && index !== nameColumn && column !== '' && value !== '') attributes[column] = value;
      });
      batch.push({ email, name: cleanDisplayName(nameColumn === -1 ? '' : record[nameColumn]), attributes, list });
      if (batch.length >= BATCH_SIZE) await flush();
    }
    await flush();
    if (!header) throw new CsvImportError(`${file}: the file is empty; it needs a header row with an "email" column`);
  } catch (error) {
    if (error instanceof CsvImportError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CsvImportError(`${file}: no such file`);
    if (code === 'EISDIR') throw new CsvImportError(`${file}: is a folder, not a CSV file`);
    if (code === 'EACCES') throw new CsvImportError(`${file}: permission denied`);
    if (typeof code === 'string' && code.startsWith('CSV_')) {
      throw new CsvImportError(`${file}: malformed CSV: ${(error as Error).message} (${imported + updated} rows were imported before it)`);
    }
    throw error;
  }
  return { imported, updated, invalidCount, invalid };
}
