import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildIssuePreview } from '../../app/preview.ts';
import { UserFacingError } from '../../core/errors.ts';
import { GMAIL_CLIP_BYTES } from '../../render/compile-issue.ts';
import type { CliContext } from '../context.ts';
import { formatBytes } from '../format.ts';

/** `newsletter build <issue>`: compiles an issue as a send would and writes it, filled for a sample subscriber. */
export async function buildCommand(cli: CliContext, issueId: string, options: { out: string; list: string }): Promise<void> {
  const preview = await buildIssuePreview(await cli.config(), issueId, options.list);
  const htmlFile = path.join(options.out, `${issueId}.html`);
  const textFile = path.join(options.out, `${issueId}.txt`);
  try {
    await mkdir(options.out, { recursive: true });
    await writeFile(htmlFile, preview.html);
    await writeFile(textFile, preview.text);
  } catch (error) {
    throw new UserFacingError(`Cannot write the preview to ${options.out}: ${(error as Error).message}`);
  }
  cli.io.out(`${htmlFile}  ${formatBytes(Buffer.byteLength(preview.html))}  (Gmail clips past ${formatBytes(GMAIL_CLIP_BYTES)})`);
  cli.io.out(`${textFile}  ${formatBytes(Buffer.byteLength(preview.text))}`);
  cli.io.out(`subject: ${preview.compiled.subject}`);
  for (const warning of preview.compiled.warnings) cli.io.err(`warning: ${warning}`);
  if (preview.issue.status === 'draft') cli.io.err(`note: issue ${issueId} is a draft; "newsletter send" will refuse it until its status is finished.`);
}
