import { createHash } from 'node:crypto';
import mjml2html from 'mjml';
import path from 'node:path';
import { PROJECT_ROOT, type Config, type Mailbox } from '../../config/index.ts';
import type { CompiledIssue } from '../core/compiled-issue.ts';
import type { Issue } from '../content/issue-schema.ts';
import { markdownToHtml } from '../content/markdown.ts';
import { TemplateError } from '../core/errors.ts';
import { formatDateLine, LINK_LABELS } from './link-labels.ts';
import { SUBSCRIBER_FIELDS, stageOneText, stageOneUrl, unexpectedPlaceholders } from './stage-two-fields.ts';
import { loadTemplateSet, templateAtLine } from './templates.ts';
import { buildTextTemplate } from './text-email.ts';

export type { CompiledIssue } from '../core/compiled-issue.ts';

/** Where the MJML layout and partials live. */
export const TEMPLATES_DIR = path.join(PROJECT_ROOT, 'emails');

/** Gmail clips an HTML body past 102 KB and hides the rest, the footer with the unsubscribe link included. */
export const GMAIL_CLIP_BYTES = 102 * 1024;

/** What compiling needs besides the issue: where it goes and who sends it. */
export interface CompileContext {
  /** The From of the messages. */
  readonly from: Mailbox;
  readonly newsletterName: string;
  readonly publicUrl: string;
  readonly listName: string;
  /** Folder with layout.mjml.hbs and partials/. */
  readonly templatesDir: string;
}

/** What compiling an issue for a list takes from the config: sender, newsletter name, link base, templates. */
export function compileContextFor(config: Config, listName: string): CompileContext {
  return { from: config.mail.from, newsletterName: config.mail.newsletterName, publicUrl: config.publicUrl, listName, templatesDir: TEMPLATES_DIR };
}

/**
 * The values the stage-one templates are rendered with: the issue's content, Markdown already
 * turned into HTML, and every string escaped with its braces encoded, so that no issue text can
 * turn into a per-subscriber placeholder.
 */
export function layoutContext(issue: Issue, context: Omit<CompileContext, 'templatesDir' | 'from'>) {
  const linkView = (link: Issue['papers'][number]['links'][number]) => ({
    url: stageOneUrl(link.url),
    icon: LINK_LABELS[link.type].icon,
    label: stageOneText(link.label ?? LINK_LABELS[link.type].label),
  });
  const dateLine = formatDateLine(issue.volume, issue.dates.from, issue.dates.to);
  const viewInBrowserUrl = `${context.publicUrl}/issues/${issue.id}`;
  return {
    dateLine,
    viewInBrowserUrl,
    values: {
      newsletterName: stageOneText(context.newsletterName),
      listName: stageOneText(context.listName),
      volume: issue.volume,
      title: stageOneText(issue.title),
      preheader: stageOneText(issue.preheader),
      dateLine: stageOneText(dateLine),
      viewInBrowserUrl: stageOneUrl(viewInBrowserUrl),
      introHtml: markdownToHtml(issue.intro.text),
      highlights: issue.intro.highlights.map(stageOneText),
      papers: issue.papers.map((paper) => ({
        number: paper.number,
        title: stageOneText(paper.title),
        organisation: stageOneText(paper.organisation),
        summaryHtml: markdownToHtml(paper.summary),
        links: paper.links.map(linkView),
      })),
      tools: issue.tools.map((tool) => ({
        name: stageOneText(tool.name),
        descriptionHtml: markdownToHtml(tool.description),
        links: tool.links.map(linkView),
      })),
      closingHtml: markdownToHtml(issue.closing),
    },
  };
}

/** The subject line: the issue's own, or "<newsletter> Vol.<n>: <title>". */
export function issueSubject(issue: Issue, newsletterName: string): string {
  return issue.subject ?? `${newsletterName} Vol.${issue.volume}: ${issue.title}`;
}

/** Compiles an issue: content → MJML (strict) → HTML, plus the text part, once per send. */
export async function compileIssue(issue: Issue, context: CompileContext): Promise<CompiledIssue> {
  const templates = await loadTemplateSet(context.templatesDir);
  const { dateLine, viewInBrowserUrl, values } = layoutContext(issue, context);
  const mjmlSource = templates.render(values);

  const htmlTemplate = await mjmlToHtml(mjmlSource);
  const textTemplate = buildTextTemplate(issue, { newsletterName: context.newsletterName, dateLine, viewInBrowserUrl, listName: context.listName });
  const subject = issueSubject(issue, context.newsletterName);
  for (const [label, template] of [
    ['the compiled HTML', htmlTemplate],
    ['the text part', textTemplate],
  ] as const) {
    const unexpected = unexpectedPlaceholders(template);
    if (unexpected.length > 0) {
      throw new TemplateError(
        label,
        undefined,
        `placeholders other than ${[...SUBSCRIBER_FIELDS].join(', ')} would be filled per subscriber: ${unexpected.join('; ')}`,
      );
    }
  }

  const warnings: string[] = [];
  const htmlBytes = Buffer.byteLength(htmlTemplate);
  if (htmlBytes > GMAIL_CLIP_BYTES) {
    warnings.push(`HTML is ${formatKb(htmlBytes)}, over the ${formatKb(GMAIL_CLIP_BYTES)} at which Gmail clips the message (and hides the unsubscribe link).`);
  }
  return {
    issueId: issue.id,
    listName: context.listName,
    from: { name: context.from.name, address: context.from.address },
    newsletterName: context.newsletterName,
    publicUrl: context.publicUrl,
    subject,
    htmlTemplate,
    textTemplate,
    viewInBrowserUrl,
    contentHash: createHash('sha256').update(subject).update('\0').update(htmlTemplate).update('\0').update(textTemplate).digest('hex'),
    warnings,
  };
}

interface MjmlValidationError {
  readonly line?: number;
  readonly tagName?: string;
  readonly message?: string;
}

async function mjmlToHtml(mjmlSource: string): Promise<string> {
  let result: Awaited<ReturnType<typeof mjml2html>>;
  try {
    // fonts: {} keeps MJML from adding a Google Fonts <link>: no third-party request when a subscriber opens the email.
    result = await mjml2html(mjmlSource, {
      validationLevel: 'strict',
      keepComments: false,
      fonts: {},
      minify: true,
      minifyOptions: { minifyCss: false },
    } as Parameters<typeof mjml2html>[1]);
  } catch (error) {
    const details = (error as { errors?: MjmlValidationError[] }).errors;
    const first = details?.[0];
    if (!first) throw new TemplateError('layout.mjml.hbs', undefined, `MJML: ${(error as Error).message}`);
    const template = first.line === undefined ? 'layout.mjml.hbs' : templateAtLine(mjmlSource, first.line);
    const more = details.length > 1 ? ` (and ${details.length - 1} more)` : '';
    throw new TemplateError(template, first.tagName, `MJML: ${first.message ?? 'invalid'}${more}`);
  }
  return result.html;
}

function formatKb(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB`;
}
