import { importSubscribersCsv, type ImportReport } from '../../app/import-csv.ts';
import type { CliContext } from '../context.ts';
import { printable } from '../format.ts';
import { createProgressReporter } from '../progress.ts';

/** Invalid CSV rows printed by `subscribers import`; the rest are counted. */
const INVALID_ROWS_SHOWN = 50;

/**
 * `newsletter subscribers import <file.csv>`: streams a CSV into a list and reports what it did.
 * Shows its progress by bytes of the file read: a bar on a terminal, plain lines otherwise.
 */
export async function subscribersImportCommand(cli: CliContext, file: string, options: { list: string }): Promise<void> {
  const progress = createProgressReporter(cli.io, { label: `importing ${printable(file)} into ${options.list}`, measure: 'bytes' });
  let report: ImportReport;
  try {
    report = await cli.withServices((services) =>
      importSubscribersCsv(services.subscribers, file, options.list, {
        onProgress: ({ rows, bytesRead, totalBytes }) => progress.update({ done: bytesRead, total: totalBytes, detail: `${rows} rows` }),
      }),
    );
    progress.finish();
  } finally {
    // A failed import ends the bar where it stood, before its error is printed.
    progress.stop();
  }
  cli.io.out(`list ${options.list}: ${report.imported} imported, ${report.updated} updated, ${report.invalidCount} invalid`);
  for (const row of report.invalid.slice(0, INVALID_ROWS_SHOWN)) cli.io.out(`  line ${row.line}: ${row.reason}`);
  if (report.invalidCount > INVALID_ROWS_SHOWN) cli.io.out(`  … and ${report.invalidCount - INVALID_ROWS_SHOWN} more invalid rows`);
}
