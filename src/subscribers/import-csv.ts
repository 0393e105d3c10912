import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import { UserFacingError } from '../errors.ts';
import { cleanDisplayName, normaliseEmail } from './address.ts';
import type { SubscriberInput, SubscriberStore } from './subscriber-store.ts';

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

export interface ImportReport {
  readonly imported: number;
  readonly updated: number;
  readonly invalid: readonly InvalidRow[];
}

/** Rows written per Redis round trip. */
const BATCH_SIZE = 500;

/**
 * Streams a subscriber CSV into a list. The header row must name an `email` column; `name` is
 * optional; every other column is kept as an attribute. Invalid rows are reported with their line
 * number and skipped; they never stop the import. Memory stays flat whatever the file size: rows
 * are parsed as a stream and written in batches.
 */
export async function importSubscribersCsv(store: SubscriberStore, file: string, list: string): Promise<ImportReport> {
  const parser = createReadStream(file).pipe(
    parse({
      columns: (header: string[]) => header.map((column) => column.trim().toLowerCase()),
      bom: true,
      skip_empty_lines: true,
      trim: true,
      info: true,
      // A row with the wrong number of fields is reported, not fatal.
      relax_column_count: true,
    }),
  );

  let imported = 0;
  let updated = 0;
  const invalid: InvalidRow[] = [];
  let batch: SubscriberInput[] = [];
  let headerChecked = false;
  // csv-parse counts rows with a wrong field count cumulatively; a rise marks the current row.
  let wrongLengthRowsSeen = 0;

  const flush = async () => {
    for (const result of await store.upsertMany(batch)) {
      if (result.created) imported += 1;
      else updated += 1;
    }
    batch = [];
  };

  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number; invalid_field_length: number } }>) {
      if (!headerChecked) {
        if (!('email' in record)) throw new CsvImportError(`${file}: the header row has no "email" column (columns: ${Object.keys(record).join(', ')})`);
        headerChecked = true;
      }
      const line = info.lines;
      if (info.invalid_field_length > wrongLengthRowsSeen) {
        wrongLengthRowsSeen = info.invalid_field_length;
        invalid.push({ line, reason: 'the row does not have the same number of fields as the header (an unquoted comma?)' });
        continue;
      }
      const email = normaliseEmail(record.email ?? '');
      if (!email) {
        invalid.push({ line, reason: record.email ? `"${record.email}" is not a valid email address` : 'the email is empty' });
        continue;
      }
      const { email: _email, name, ...attributes } = record;
      batch.push({ email, name: cleanDisplayName(name), attributes: dropEmpty(attributes), list });
      if (batch.length >= BATCH_SIZE) await flush();
    }
    await flush();
  } catch (error) {
    if (error instanceof CsvImportError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CsvImportError(`${file}: no such file`);
    if (typeof code === 'string' && code.startsWith('CSV_')) {
      throw new CsvImportError(`${file}: malformed CSV: ${(error as Error).message} (${imported + updated} rows were imported before it)`);
    }
    throw error;
  }
  return { imported, updated, invalid };
}

function dropEmpty(attributes: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(attributes).filter(([key, value]) => key !== '' && value !== ''));
}
