import { z } from 'zod';

/**
 * One issue compiled for one send: everything per issue is done, and what stays per subscriber
 * ({{name}}, {{email}}, {{unsubscribeUrl}}) is left as Handlebars placeholders. Stored with the send,
 * so that every worker sends this exact version; parsed, never cast, when it is read back.
 */
export const compiledIssueSchema = z.object({
  issueId: z.string().min(1),
  listName: z.string().min(1),
  /** Sender and link base as they were at send time, so that every worker sends the same message. */
  from: z.object({ name: z.string(), address: z.string().min(3) }),
  newsletterName: z.string(),
  publicUrl: z.string().min(1),
  subject: z.string(),
  /** Handlebars source of the HTML part (HTML-escaping). */
  htmlTemplate: z.string(),
  /** Handlebars source of the text part (compile with noEscape). */
  textTemplate: z.string(),
  viewInBrowserUrl: z.string(),
  /** sha256 of both templates and the subject, to tell versions apart. */
  contentHash: z.string(),
  warnings: z.array(z.string()).readonly(),
});

/** See compiledIssueSchema. */
export type CompiledIssue = Readonly<z.infer<typeof compiledIssueSchema>>;
