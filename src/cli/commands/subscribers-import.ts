import { importSubscribersCsv } from '../../app/import-csv.ts';
import type { CliContext } from '../context.ts';

/** Invalid CSV rows printed by `subscribers import`; the rest are counted. */
const INVALID_ROWS_SHOWN = 50;

/** `newsletter subscribers import <file.csv>`: streams a CSV into a list and reports what it did. */
export async function subscribersImportCommand(cli: CliContext, file: string, options: { list: string }): Promise<void> {
  const report = await cli.withServices((services) => importSubscribersCsv(services.subscribers, file, options.list));
  cli.io.out(`list ${options.list}: ${report.imported} imported, ${report.updated} updated, ${report.invalidCount} invalid`);
  for (const row of report.invalid.slice(0, INVALID_ROWS_SHOWN)) cli.io.out(`  line ${row.line}: ${row.reason}`);
  if (report.invalidCount > INVALID_ROWS_SHOWN) cli.io.out(`  … and ${report.invalidCount - INVALID_ROWS_SHOWN} more invalid rows`);
}
