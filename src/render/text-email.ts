import type { Issue, IssueLink } from '../content/issue-schema.ts';
import { markdownToText } from '../content/markdown.ts';
import { LINK_LABELS } from './link-labels.ts';
import { RAW_HELPER } from './stage-two-fields.ts';

/** What the text part needs besides the issue; the same values the HTML layout gets. */
export interface TextEmailContext {
  readonly newsletterName: string;
  readonly dateLine: string;
  readonly viewInBrowserUrl: string;
  readonly listName: string;
}

const RULE = '='.repeat(60);
const THIN_RULE = '-'.repeat(60);

/**
 * Builds the plain-text part as a Handlebars template (compile with noEscape): the issue's content
 * laid out for reading, every link written out, and the per-subscriber placeholders left in.
 */
export function buildTextTemplate(issue: Issue, context: TextEmailContext): string {
  const lines: string[] = [];
  const push = (...more: string[]) => lines.push(...more);

  push(literal(issue.title), literal(`${context.newsletterName} · ${context.dateLine}`), '', literal(issue.preheader), '');
  push(`View this issue in your browser: ${literal(context.viewInBrowserUrl)}`, '', RULE, '');
  push('{{#if name}}Hi {{name}},{{else}}Hi there,{{/if}}', '');
  push(literal(markdownToText(issue.intro.text)), '');
  for (const highlight of issue.intro.highlights) push(`  - ${literal(highlight)}`);
  push('');

  for (const paper of issue.papers) {
    push(RULE, '', `[${paper.number}] ${literal(paper.title)}`, `from ${literal(paper.organisation)}`, '');
    push(literal(markdownToText(paper.summary)), '');
    push(...linkLines(paper.links), '');
  }

  if (issue.tools.length > 0) {
    push(RULE, '', 'Extras: Tools', '');
    for (const tool of issue.tools) {
      push(`🛠️ ${literal(tool.name)}`, '', literal(markdownToText(tool.description)), '', ...linkLines(tool.links), '');
    }
  }

  push(RULE, '', literal(markdownToText(issue.closing)), '', THIN_RULE);
  push(`You get this email because {{email}} is subscribed to the ${literal(context.listName)} list of ${literal(context.newsletterName)}.`);
  push('Unsubscribe: {{unsubscribeUrl}}', '');
  return lines.join('\n');
}

function linkLines(links: readonly IssueLink[]): string[] {
  return links.map((link) => {
    const { icon, label } = LINK_LABELS[link.type];
    return `  ${icon} ${literal(link.label ?? label)}: ${literal(link.url)}`;
  });
}

/** Editor text is data, not template: "{{" in it must print as is. Every interpolated value goes through here. */
function literal(text: string): string {
  return text.includes('{{') ? `{{{{${RAW_HELPER}}}}}${text}{{{{/${RAW_HELPER}}}}}` : text;
}
