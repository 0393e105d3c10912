/**
 * Errors a user can act on: bad input, unknown names, refused operations. The CLI prints their
 * message and exits non-zero without a stack trace; anything else is a bug and keeps its stack.
 */
export class UserFacingError extends Error {
  override readonly name: string = 'UserFacingError';
  /** The process's exit code; 1 unless a caller (an MTA's pipe, say) needs to tell failures apart. */
  readonly exitCode: number;

  constructor(message: string, options: { readonly exitCode?: number; readonly cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.exitCode = options.exitCode ?? 1;
  }
}

/** No issue file with that id exists. */
export class UnknownIssueError extends UserFacingError {
  override readonly name = 'UnknownIssueError';
  constructor(
    readonly issueId: string,
    readonly issuesDir: string,
    readonly known: readonly string[],
  ) {
    super(`Unknown issue "${issueId}": there is no ${issueId}.yaml in ${issuesDir}.` + (known.length > 0 ? ` Known issues: ${known.join(', ')}.` : ''));
  }
}

/** An issue file exists but does not parse or does not match the schema. */
export class IssueContentError extends UserFacingError {
  override readonly name = 'IssueContentError';
  constructor(
    readonly file: string,
    readonly problems: readonly { readonly field: string; readonly reason: string }[],
  ) {
    super(`Invalid issue file ${file}:\n${problems.map((p) => `  - ${p.field}: ${p.reason}`).join('\n')}`);
  }
}

/** A template does not compile: Handlebars syntax or MJML validation. */
export class TemplateError extends UserFacingError {
  override readonly name = 'TemplateError';
  constructor(
    readonly template: string,
    readonly element: string | undefined,
    readonly reason: string,
  ) {
    super(`Template ${template}${element ? `, element <${element}>` : ''}: ${reason}`);
  }
}

/**
 * A user-facing error's message for people other than whoever runs the server: the console, the
 * API, a schedule's record of a refused run. The full message (for the CLI and the log) names
 * ISSUES_DIR's absolute path and every issue id there, drafts included; this one names only what
 * was asked about, and a broken issue file by its file name.
 */
export function messageForOthers(error: Error): string {
  if (error instanceof UnknownIssueError) return `There is no issue "${error.issueId}".`;
  if (error instanceof IssueContentError) return error.message.split(error.file).join(error.file.slice(error.file.lastIndexOf('/') + 1));
  return error.message;
}
