import { readFile } from 'node:fs/promises';
import { takeInMail } from '../../app/mail-intake.ts';
import { UserFacingError } from '../../core/errors.ts';
import type { CliContext } from '../context.ts';
import { describeEventOutcome } from '../format.ts';

/**
 * sysexits.h codes an MTA's pipe transport understands: 65 (EX_DATAERR) bounces the message back
 * to its null sender, where it ends; 75 (EX_TEMPFAIL) makes the MTA keep it and try again later.
 */
const EX_DATAERR = 65;
const EX_TEMPFAIL = 75;

/**
 * `newsletter bounces ingest [--to ADDRESS] [FILE|-]`: reads one raw email and applies the
 * report in it. Exit 0 once it is recorded (and for a message that is not a report, so an MTA
 * doesn't loop); 65 for a garbled report (kept for inspection); 75 when Redis can't take it, so
 * the MTA retries.
 */
export async function bouncesIngestCommand(cli: CliContext, file: string | undefined, options: { to?: string; json?: boolean }): Promise<void> {
  // Whatever stops the report from being recorded (a bad setting, Redis down or failing midway)
  // exits 75, so the MTA keeps the message and tries again: any other non-zero code would make it
  // return the report to its null sender, where it would be lost.
  const notRecorded = (error: unknown) =>
    new UserFacingError(`${error instanceof Error ? error.message : String(error)}; the report was not recorded, try again later`, {
      exitCode: EX_TEMPFAIL,
      cause: error,
    });
  const config = await cli.config().catch((error: unknown) => {
    throw notRecorded(error);
  });
  const raw = await readMessage(file, config.bounces.maxMessageBytes);
  let result;
  try {
    result = await cli.withServices((services) => takeInMail(services, raw, options.to ?? undefined));
  } catch (error) {
    throw notRecorded(error);
  }
  if (options.json) cli.io.out(JSON.stringify(result, null, 2));
  if (result.outcome === 'ignored') {
    if (!options.json) cli.io.out(`ignored: not a delivery report (${result.reason})`);
    return;
  }
  if (result.outcome === 'garbled')
    throw new UserFacingError(`garbled delivery report: ${result.reason}; kept for inspection (newsletter bounces unmatched)`, { exitCode: EX_DATAERR });
  if (options.json) return;
  if (result.deferred) cli.io.out(`recorded a ${result.format} report; Redis failed while applying it, so a worker will apply it shortly`);
  for (const outcome of result.outcomes) cli.io.out(describeEventOutcome(outcome));
}

async function readMessage(file: string | undefined, maxBytes: number): Promise<Buffer> {
  const tooLarge = () => new UserFacingError(`the message is larger than BOUNCE_MAX_MESSAGE_BYTES (${maxBytes} bytes)`, { exitCode: EX_DATAERR });
  if (file && file !== '-') {
    const content = await readFile(file).catch((error: NodeJS.ErrnoException) => {
      throw new UserFacingError(`cannot read ${file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`);
    });
    if (content.length > maxBytes) throw tooLarge();
    return content;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
