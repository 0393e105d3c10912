import { issueSchema } from '../content/issue-schema.ts';
import { compileStageTwo, type SubscriberFieldName } from '../render/stage-two-fields.ts';
import type { SendStore } from '../store/send-store.ts';

/** One entry of the web archive's index. */
export interface ArchivedIssue {
  readonly issueId: string;
  /** The subject line the issue went out with. */
  readonly subject: string;
  /** When the issue was first sent (ISO 8601). */
  readonly sentAt: string;
  /** Its web version, under the current PUBLIC_URL. */
  readonly webUrl: string;
}

/** The web version of a sent issue: its identity first, so a cache check needs no rendering. */
export interface WebVersion {
  readonly issueId: string;
  readonly sendId: string;
  /** The send's contentHash: the page is a function of the stored compiled issue alone. */
  readonly contentHash: string;
  /** The issue's HTML as compiled for that send, filled for a neutral reader. */
  render(): Promise<string>;
}

/** The public archive of sent issues, behind the "View in browser" link of every email. */
export interface IssueArchive {
  /** The sent issues, newest first. */
  index(): Promise<ArchivedIssue[]>;
  /** The web version of an issue's latest send; undefined for a draft, an unsent or unknown issue, or a malformed id. */
  webVersion(issueId: string): Promise<WebVersion | undefined>;
}

/**
 * What the web version fills the per-subscriber placeholders with: nobody in particular (the
 * footer says so when `email` is empty), and an unsubscribe link without a token, whose page
 * explains that each email's own link unsubscribes its reader.
 */
export function neutralReaderFields(publicUrl: string): Readonly<Record<SubscriberFieldName, string>> {
  return { name: '', email: '', unsubscribeUrl: `${publicUrl}/unsubscribe` };
}

/** Fills a compiled HTML template as the worker does (compileStageTwo). */
export function fillHtmlTemplate(htmlTemplate: string, fields: Readonly<Record<SubscriberFieldName, string>>): string {
  return compileStageTwo({ htmlTemplate, textTemplate: '' }).html(fields);
}

/** Whether a string is shaped like an issue id; anything else never reaches a Redis key. */
export function isIssueId(value: string): boolean {
  return issueSchema.shape.id.safeParse(value).success;
}

export function createIssueArchive(deps: { readonly sends: SendStore; readonly publicUrl: string }): IssueArchive {
  const { sends, publicUrl } = deps;
  // A send's compiled issue never changes, so its subject is read once, not on every index view.
  const subjects = new Map<string, string>();
  // Likewise its web version: filled once per send (a compile and a render of ~64 KB), then served.
  const pages = new Map<string, string>();
  const subjectOf = async (sendId: string): Promise<string | undefined> => {
    const known = subjects.get(sendId);
    if (known !== undefined) return known;
    const compiled = await sends.loadCompiled(sendId);
    if (compiled) subjects.set(sendId, compiled.subject);
    return compiled?.subject;
  };

  return {
    async index() {
      const sent = await sends.sentIssues();
      const entries = await Promise.all(
        sent.map(async ({ issueId, sentAt }): Promise<ArchivedIssue | undefined> => {
          const sendId = await sends.latestId(issueId);
          const subject = sendId === undefined ? undefined : await subjectOf(sendId);
          return subject === undefined ? undefined : { issueId, subject, sentAt, webUrl: `${publicUrl}/issues/${issueId}` };
        }),
      );
      return entries.filter((entry) => entry !== undefined);
    },

    async webVersion(issueId) {
      if (!isIssueId(issueId)) return undefined;
      const sendId = await sends.latestId(issueId);
      const send = sendId === undefined ? undefined : await sends.get(sendId);
      if (!send) return undefined;
      return {
        issueId,
        sendId: send.id,
        contentHash: send.contentHash,
        async render() {
          const known = pages.get(send.id);
          if (known !== undefined) return known;
          const compiled = await sends.loadCompiled(send.id);
          if (!compiled) throw new Error(`Send ${send.id} has no stored compiled issue`);
          // The base the email's own links were compiled with, so the page depends on the stored issue only.
          const page = fillHtmlTemplate(compiled.htmlTemplate, neutralReaderFields(compiled.publicUrl));
          pages.set(send.id, page);
          return page;
        },
      };
    },
  };
}
