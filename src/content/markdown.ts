import { Marked, type Token, type Tokens } from 'marked';

const markdown = new Marked({ gfm: true, async: false });

/**
 * Stage-two placeholders (`{{name}}`) are filled per subscriber by Handlebars, so editor text
 * must never contain live braces. Encoding `{` keeps "{{" in a summary from becoming a template tag.
 */
function neutraliseBracesForHtml(html: string): string {
  return html.replaceAll('{', '&#123;').replaceAll('}', '&#125;');
}

/** Renders editor Markdown to HTML for the email body. */
export function markdownToHtml(source: string): string {
  return neutraliseBracesForHtml(markdown.parse(source, { async: false }).trim());
}

/**
 * Renders editor Markdown to readable plain text: paragraphs separated by blank lines, bullets as
 * "- ", and every link written out as "text (url)" so the text part carries every URL.
 */
export function markdownToText(source: string): string {
  return blocksToText(markdown.lexer(source)).trim();
}

function blocksToText(tokens: readonly Token[]): string {
  const blocks: string[] = [];
  for (const token of tokens) {
    switch (token.type) {
      case 'space':
      case 'def':
        break;
      case 'paragraph':
      case 'heading':
        blocks.push(inlineToText((token as Tokens.Paragraph).tokens));
        break;
      case 'list': {
        const list = token as Tokens.List;
        const start = typeof list.start === 'number' ? list.start : 1;
        blocks.push(
          list.items
            .map((item, index) => {
              const bullet = list.ordered ? `${start + index}.` : '-';
              const body = blocksToText(item.tokens).replace(/\n/g, '\n   ');
              return `${bullet} ${body}`;
            })
            .join('\n'),
        );
        break;
      }
      case 'blockquote':
        blocks.push(blocksToText((token as Tokens.Blockquote).tokens).replace(/^/gm, '> '));
        break;
      case 'code':
        blocks.push((token as Tokens.Code).text);
        break;
      case 'hr':
        blocks.push('----');
        break;
      case 'text': {
        const text = token as Tokens.Text;
        blocks.push(text.tokens ? inlineToText(text.tokens) : text.text);
        break;
      }
      default:
        blocks.push('raw' in token ? String(token.raw).trim() : '');
    }
  }
  return blocks.filter((block) => block !== '').join('\n\n');
}

function inlineToText(tokens: readonly Token[] | undefined): string {
  if (!tokens) return '';
  return tokens
    .map((token) => {
      switch (token.type) {
        case 'text': {
          const text = token as Tokens.Text;
          return text.tokens ? inlineToText(text.tokens) : decodeEntities(text.text);
        }
        case 'escape':
          return (token as Tokens.Escape).text;
        case 'link': {
          const link = token as Tokens.Link;
          const label = inlineToText(link.tokens);
          return label === link.href ? link.href : `${label} (${link.href})`;
        }
        case 'strong':
        case 'em':
        case 'del':
          return inlineToText((token as Tokens.Strong).tokens);
        case 'codespan':
          // marked leaves code text as written: `&amp;` in code is those five characters.
          return (token as Tokens.Codespan).text;
        case 'br':
          return '\n';
        default:
          return 'raw' in token ? String(token.raw) : '';
      }
    })
    .join('');
}

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };

function decodeEntities(text: string): string {
  return text.replace(/&(?:amp|lt|gt|quot|#39);/g, (entity) => ENTITIES[entity] ?? entity);
}
