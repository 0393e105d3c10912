import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { CsvError, parse, type InfoRecord } from 'csv-parse';
import { UserFacingError } from '../core/errors.ts';
import { cleanDisplayName, normaliseEmail } from '../core/address.ts';
import type { SubscriberInput } from '../core/subscriber.ts';
import type { SubscriberStore } from '../store/subscriber-store.ts';

/** The CSV can't be imported, or not past some line (no such file, no `email` column, broken quoting, binary data). */
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

/** Where an import stands, for a progress display (`subscribers import` draws a bar by bytes). */
export interface ImportProgress {
  /** Data rows read so far (imported, updated or invalid); the header is not one. */
  readonly rows: number;
  /** Bytes of the file parsed so far. */
  readonly bytesRead: number;
  /** The file's size (its size when the import started, or what was read if it grew since). */
  readonly totalBytes: number;
}

/** Options of importSubscribersCsv. */
export interface ImportOptions {
  /** Called every PROGRESS_EVERY_ROWS rows and once at the end of a successful import. */
  readonly onProgress?: (progress: ImportProgress) => void;
}

/** Rows between two onProgress calls. */
const PROGRESS_EVERY_ROWS = 500;

/** Invalid rows reported in detail; the rest are only counted. */
export const INVALID_ROWS_KEPT = 1000;

/** Rows written per Redis round trip. */
const BATCH_SIZE = 500;

/**
 * Longest row the parser buffers. An unclosed quote would otherwise swallow the rest of the file
 * into one field, in memory.
 */
const MAX_ROW_BYTES = 1024 * 1024;

/**
 * Passes the file's bytes on to the parser until binary data (a NUL byte, which no text CSV holds),
 * then ends the stream there. Every chunk is checked, so memory stays flat. Rows after the stop are
 * never imported; the rows before it are.
 */
class TextOnly extends Transform {
  /** The line holding the first binary data, once seen. */
  binaryLine: number | undefined;
  /** The file starts with a UTF-16 byte order mark (Excel's "Unicode Text"). */
  utf16 = false;
  private line = 1;
  private firstChunk = true;
  private stopped = false;

  constructor(private readonly onStop: () => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.stopped) return callback();
    const first = this.firstChunk;
    this.firstChunk = false;
    if (first && chunk.length >= 2 && ((chunk[0] === 0xff && chunk[1] === 0xfe) || (chunk[0] === 0xfe && chunk[1] === 0xff))) {
      this.utf16 = true;
      this.stop();
      return callback();
    }
    const nul = chunk.indexOf(0);
    if (nul === -1) {
      this.line += countNewlines(chunk, chunk.length);
      return callback(null, chunk);
    }
    this.binaryLine = this.line + countNewlines(chunk, nul);
    // In the first chunk it is most likely a binary header (PNG, gzip, zip): forwarding the text
    // before it would only fail later as a header without an "email" column.
    if (!first && nul > 0) this.push(chunk.subarray(0, nul));
    this.stop();
    callback();
  }

  /** Ends the output here; the rest of the input is dropped. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.push(null);
    this.onStop();
  }
}

function countNewlines(chunk: Buffer, end: number): number {
  let count = 0;
  for (let at = chunk.indexOf(10); at !== -1 && at < end; at = chunk.indexOf(10, at + 1)) count += 1;
  return count;
}

/** A numeric position field of a CsvError (they are untyped context copied onto the error). */
function positionOf(error: CsvError, field: 'lines' | 'records'): number {
  const value = error[field];
  return typeof value === 'number' ? value : 0;
}

/**
 * What went wrong, for a person with the file open. `rowStart` is the line the failing row starts
 * on: csv-parse only knows the line where it noticed, which for an unclosed quote is far past it
 * (and inside quotes it counts CRLF as two lines).
 */
function describeCsvError(error: CsvError, rowStart: number): string {
  const noticed = positionOf(error, 'lines') || rowStart;
  // csv-parse has some twenty codes; these get our own wording, the rest the parser's message.
  // oxlint-disable-next-line typescript/switch-exhaustiveness-check
  switch (error.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return `malformed CSV at line ${rowStart}: a quote opens a field that is never closed`;
    case 'CSV_MAX_RECORD_SIZE':
      return `malformed CSV at line ${rowStart}: the row runs on for more than ${MAX_ROW_BYTES / 1024 / 1024} MiB; is a quote never closed?`;
    case 'CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE':
      return `malformed CSV at line ${noticed}: text after the closing quote of a quoted field (inside quotes, write a quote as "")`;
    default:
      return `malformed CSV at line ${noticed}: ${error.message}`;
  }
}

function importedBefore(rows: number): string {
  if (rows === 0) return '; nothing was imported';
  return rows === 1 ? '; 1 row was imported before it' : `; ${rows} rows were imported before it`;
}

/**
 * Streams a subscriber CSV into a list. The header row must name an `email` column; `name` is
 * optional; every other column is kept as an attribute. Invalid rows are reported with their line
 * number and skipped; they never stop the import. Memory stays flat whatever the file size: rows
 * are parsed as a stream and written in batches.
 *
 * A file that is not CSV text, or whose CSV is broken (an unclosed quote, text after a closing
 * quote), stops the import with a CsvImportError naming the line; the rows before it stay imported.
 * A stray quote inside an unquoted field (`Robert "Bob" Smith`) is kept as text, as spreadsheets write it.
 */
export async function importSubscribersCsv(store: SubscriberStore, file: string, list: string, options: ImportOptions = {}): Promise<ImportReport> {
  const { onProgress } = options;
  // A file that can't be read fails below, from the stream, with the message for it.
  const sizeAtStart = onProgress ? ((await stat(file).catch(() => undefined))?.size ?? 0) : 0;
  const input = createReadStream(file);
  const text = new TextOnly(() => input.destroy());
  // The first parse error is kept, not thrown: a thrown one destroys the stream and drops the rows
  // parsed before it but not yet read here. Reading stops at the error; the loop then ends there.
  const failure: { csv?: CsvError } = {};
  const parser = input.pipe(text).pipe(
    parse({
      bom: true,
      skip_empty_lines: true,
      trim: true,
      info: true,
      relax_column_count: true,
      relax_quotes: true,
      max_record_size: MAX_ROW_BYTES,
      skip_records_with_error: true,
      on_skip: (error) => {
        if (error && !failure.csv) {
          failure.csv = error;
          text.stop();
        }
        return undefined;
      },
    }),
  );
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

  let rowsRead = 0;
  // What the parser has consumed, not what was read: reading runs a chunk or more ahead.
  let bytesParsed = 0;
  const reportProgress = () => onProgress?.({ rows: rowsRead, bytesRead: bytesParsed, totalBytes: Math.max(sizeAtStart, bytesParsed) });

  // The line of the last row read, so a failing row's start is known.
  let lastLine = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: string[]; info: InfoRecord }>) {
      // Whatever follows a parse error or binary data is not imported.
      if (failure.csv && info.records > positionOf(failure.csv, 'records')) break;
      if (text.binaryLine !== undefined && info.lines >= text.binaryLine) break;
      lastLine = info.lines;
      if (!header) {
        header = record.map((column) => column.trim().toLowerCase());
        emailColumn = header.indexOf('email');
        nameColumn = header.indexOf('name');
        if (emailColumn === -1) throw new CsvImportError(`${file}: the header row has no "email" column (columns: ${header.join(', ')})`);
        continue;
      }
      const line = info.lines;
      rowsRead += 1;
      bytesParsed = info.bytes;
      if (rowsRead % PROGRESS_EVERY_ROWS === 0) reportProgress();
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
    if (text.utf16) throw new CsvImportError(`${file}: this is UTF-16 text; save it as "CSV UTF-8" and import that`);
    if (text.binaryLine !== undefined) {
      throw new CsvImportError(
        `${file}: this does not look like a CSV text file (binary data at line ${text.binaryLine})${importedBefore(imported + updated)}`,
      );
    }
    if (failure.csv) throw new CsvImportError(`${file}: ${describeCsvError(failure.csv, lastLine + 1)}${importedBefore(imported + updated)}`);
    if (!header) throw new CsvImportError(`${file}: the file is empty; it needs a header row with an "email" column`);
    bytesParsed = input.bytesRead;
    reportProgress();
  } catch (error) {
    if (error instanceof CsvImportError) throw error;
    // Not expected with skip_records_with_error, but any parse error is the file's fault, not a bug.
    if (error instanceof CsvError) throw new CsvImportError(`${file}: ${describeCsvError(error, lastLine + 1)}${importedBefore(imported + updated)}`);
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CsvImportError(`${file}: no such file`);
    if (code === 'EISDIR') throw new CsvImportError(`${file}: is a folder, not a CSV file`);
    if (code === 'EACCES') throw new CsvImportError(`${file}: permission denied`);
    throw error;
  } finally {
    // An early exit (no email column, a Redis error, a stop) must not leave the file open.
    input.destroy();
    text.destroy();
    parser.destroy();
  }
  return { imported, updated, invalidCount, invalid };
}
