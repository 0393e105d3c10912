import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { IssueContentError, UnknownIssueError } from '../core/errors.ts';
import { issueSchema, type Issue } from './issue-schema.ts';

const ISSUE_FILE_EXTENSION = '.yaml';

/** The ids of the issues in a folder, sorted. */
export async function listIssueIds(issuesDir: string): Promise<string[]> {
  const entries = await readdir(issuesDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return entries
    .filter((entry) => entry.endsWith(ISSUE_FILE_EXTENSION))
    .map((entry) => entry.slice(0, -ISSUE_FILE_EXTENSION.length))
    .sort();
}

/**
 * Reads and validates one issue. Throws UnknownIssueError when there is no such file, and
 * IssueContentError naming the file, each bad field and the reason.
 */
export async function loadIssue(issuesDir: string, issueId: string): Promise<Issue> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(issueId)) {
    throw new UnknownIssueError(issueId, issuesDir, await listIssueIds(issuesDir));
  }
  const file = path.join(issuesDir, `${issueId}${ISSUE_FILE_EXTENSION}`);
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new UnknownIssueError(issueId, issuesDir, await listIssueIds(issuesDir));
    }
    throw error;
  }
  const issue = parseIssueSource(source, file);
  if (issue.id !== issueId) {
    throw new IssueContentError(file, [{ field: 'id', reason: `is "${issue.id}" but the file is named ${issueId}${ISSUE_FILE_EXTENSION}` }]);
  }
  return issue;
}

/** Parses issue YAML; `file` only labels errors. */
export function parseIssueSource(source: string, file: string): Issue {
  const document = parseDocument(source, { prettyErrors: true });
  if (document.errors.length > 0) {
    throw new IssueContentError(
      file,
      document.errors.map((error) => ({ field: `line ${error.linePos?.[0].line ?? '?'}`, reason: `YAML syntax: ${error.message.split('\n')[0]}` })),
    );
  }
  const result = issueSchema.safeParse(document.toJS());
  if (!result.success) {
    throw new IssueContentError(
      file,
      result.error.issues.map((problem) => ({
        field: problem.path.length > 0 ? formatPath(problem.path) : '(top level)',
        reason: problem.message,
      })),
    );
  }
  return result.data;
}

function formatPath(segments: readonly PropertyKey[]): string {
  return segments.map((segment, index) => (typeof segment === 'number' ? `[${segment}]` : `${index === 0 ? '' : '.'}${String(segment)}`)).join('');
}
