import type { Config } from '../../config/index.ts';
import { loadIssue } from '../content/load-issue.ts';
import { prepareMessageComposer, type Recipient } from '../delivery/compose-message.ts';
import { compileContextFor } from '../render/compile-issue.ts';
import { compileIssue } from '../render/compile-issue.ts';

/** The subscriber the preview is filled for. */
export const SAMPLE_RECIPIENT: Recipient = { id: '0', email: 'ada.lovelace@example.org', name: 'Ada Lovelace' };

/**
 * Compiles an issue exactly as a send would and fills it for a sample subscriber: what the editor
 * checks before pressing send.
 */
export async function buildIssuePreview(config: Config, issueId: string, list: string) {
  const issue = await loadIssue(config.issuesDir, issueId);
  const compiled = await compileIssue(issue, compileContextFor(config, list));
  const composer = await prepareMessageComposer(compiled, { sendId: `${issue.id}.preview`, appSecret: config.appSecret });
  return { issue, compiled, ...composer.renderParts(SAMPLE_RECIPIENT) };
}
