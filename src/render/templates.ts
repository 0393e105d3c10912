import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import Handlebars from 'handlebars';
import { TemplateError } from '../core/errors.ts';

/** The stage-one template set: the layout plus its partials, ready to render with issue content. */
export interface TemplateSet {
  /** Renders the MJML source of one send. */
  render(context: object): string;
}

const LAYOUT_FILE = 'layout.mjml.hbs';
const PARTIALS_DIR = 'partials';
const PARTIAL_SUFFIX = '.mjml.hbs';

/**
 * Marks where each template's output starts and ends inside the combined MJML, so an MJML error on
 * line N can be traced back to the template file that produced it. MJML drops comments from the
 * output (keepComments: false), so the markers never reach a subscriber.
 */
export const TEMPLATE_MARKER = /<!--(\/?)nl-template:([^>]+?)-->/g;

/** Loads the layout and partials from a folder and checks their Handlebars syntax, naming the bad file. */
export async function loadTemplateSet(templatesDir: string): Promise<TemplateSet> {
  const handlebars = Handlebars.create();
  const partialFiles = (await readdir(path.join(templatesDir, PARTIALS_DIR))).filter((file) => file.endsWith(PARTIAL_SUFFIX));
  for (const file of partialFiles) {
    const name = file.slice(0, -PARTIAL_SUFFIX.length);
    const label = `${PARTIALS_DIR}/${file}`;
    const source = await readTemplate(templatesDir, label);
    handlebars.registerPartial(name, compileChecked(handlebars, label, `<!--nl-template:${label}-->\n${source}\n<!--/nl-template:${label}-->`));
  }
  const layout = compileChecked(handlebars, LAYOUT_FILE, await readTemplate(templatesDir, LAYOUT_FILE));
  return {
    render(context) {
      try {
        return layout(context);
      } catch (error) {
        // Handlebars names the field and the line but not the partial; "in [object Object]" is noise.
        throw new TemplateError(`${LAYOUT_FILE} or a partial`, undefined, (error as Error).message.replace(/ in \[object Object\]/, ''));
      }
    },
  };
}

async function readTemplate(templatesDir: string, label: string): Promise<string> {
  try {
    return await readFile(path.join(templatesDir, label), 'utf8');
  } catch (error) {
    throw new TemplateError(label, undefined, `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

function compileChecked(handlebars: typeof Handlebars, label: string, source: string): Handlebars.TemplateDelegate {
  try {
    // parse() throws on syntax errors now; compile() alone would defer them to the first render.
    handlebars.parse(source);
  } catch (error) {
    throw new TemplateError(label, undefined, `Handlebars syntax: ${(error as Error).message.split('\n')[0]}`);
  }
  // strict: a field the template names but the content lacks is an error, not an empty string.
  return handlebars.compile(source, { strict: true });
}

/**
 * Finds which template produced a line of the combined MJML source, using the markers that wrap
 * each partial. Lines outside every partial belong to the layout.
 */
export function templateAtLine(mjmlSource: string, line: number): string {
  const open: string[] = [];
  const lines = mjmlSource.split('\n');
  for (let index = 0; index < Math.min(line, lines.length); index += 1) {
    // One line can close a partial and open the next one.
    for (const match of (lines[index] ?? '').matchAll(TEMPLATE_MARKER)) {
      if (match[1] === '/') open.pop();
      else open.push(match[2] ?? LAYOUT_FILE);
    }
  }
  return open.at(-1) ?? LAYOUT_FILE;
}
