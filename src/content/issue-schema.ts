import { z } from 'zod';

/** What a link under a paper or a tool points at; it picks the button label and icon. */
export const LINK_TYPES = ['paper', 'code', 'model', 'other'] as const;
/** One of LINK_TYPES. */
export type LinkType = (typeof LINK_TYPES)[number];

const nonEmptyText = z.string().trim().min(1, 'must not be empty');
const isoDate = z
  .union([z.string(), z.date()])
  .transform((value) => (value instanceof Date ? value.toISOString().slice(0, 10) : value))
  .pipe(z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date written YYYY-MM-DD'));

const linkSchema = z.strictObject({
  type: z.enum(LINK_TYPES),
  url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  /** Optional button text; the type's default label is used otherwise. */
  label: nonEmptyText.optional(),
});

const paperSchema = z.strictObject({
  number: z.number().int().positive(),
  title: nonEmptyText,
  organisation: nonEmptyText,
  /** Markdown: paragraphs and bullet lists. */
  summary: nonEmptyText,
  links: z.array(linkSchema).min(1, 'a paper needs at least one link'),
});

const toolSchema = z.strictObject({
  name: nonEmptyText,
  /** Markdown. */
  description: nonEmptyText,
  links: z.array(linkSchema).min(1, 'a tool needs at least one link'),
});

/**
 * One edition of the newsletter, as the editor writes it in emails/issues/<id>.yaml.
 * Prose fields (intro, summaries, descriptions, closing) are Markdown.
 */
export const issueSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lower-case letters, digits and dashes, e.g. vol-138'),
    status: z.enum(['draft', 'finished']),
    volume: z.number().int().positive(),
    title: nonEmptyText,
    /** Subject line; defaults to "<newsletter name> Vol.<volume>: <title>". */
    subject: nonEmptyText.optional(),
    dates: z.strictObject({ from: isoDate, to: isoDate }),
    /** The hidden preview line mail clients show next to the subject. */
    preheader: nonEmptyText,
    intro: z.strictObject({
      /** Markdown shown before the highlights list. */
      text: nonEmptyText,
      highlights: z.array(nonEmptyText).min(1, 'list at least one highlight'),
    }),
    papers: z.array(paperSchema).min(1, 'an issue needs at least one paper'),
    tools: z.array(toolSchema).default([]),
    /** Markdown. */
    closing: nonEmptyText,
  })
  .superRefine((issue, ctx) => {
    if (issue.dates.from > issue.dates.to) {
      ctx.addIssue({ code: 'custom', path: ['dates', 'to'], message: 'must not be before dates.from' });
    }
    const seen = new Set<number>();
    issue.papers.forEach((paper, index) => {
      if (seen.has(paper.number)) {
        ctx.addIssue({ code: 'custom', path: ['papers', index, 'number'], message: `duplicates paper number ${paper.number}` });
      }
      seen.add(paper.number);
    });
  });

/** A validated issue. */
export type Issue = z.infer<typeof issueSchema>;
/** A typed link under a paper or a tool. */
export type IssueLink = z.infer<typeof linkSchema>;
