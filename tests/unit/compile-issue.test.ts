import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { loadIssue } from '../../src/content/load-issue.ts';
import type { Issue } from '../../src/content/issue-schema.ts';
import { prepareMessageComposer } from '../../src/delivery/compose-message.ts';
import { TemplateError } from '../../src/core/errors.ts';
import { compileIssue, GMAIL_CLIP_BYTES, type CompiledIssue } from '../../src/render/compile-issue.ts';

const TEMPLATES_DIR = path.join(PROJECT_ROOT, 'emails');
const context = {
  from: { name: 'IR Research Weekly', address: 'weekly@example.org' },
  newsletterName: 'IR Research Weekly',
  publicUrl: 'https://newsletter.example.org',
  listName: 'weekly',
  templatesDir: TEMPLATES_DIR,
};
const identity = { sendId: 'vol-138.weekly.1', appSecret: 'unit-test-secret-0123456789abcdef0123456789' };

let issue: Issue;
let compiled: CompiledIssue;
beforeAll(async () => {
  issue = await loadIssue(path.join(PROJECT_ROOT, 'emails/issues'), 'vol-138');
  compiled = await compileIssue(issue, context);
});

describe('compiling an issue', () => {
  it('leaves exactly the per-subscriber fields as placeholders', () => {
    const placeholders = new Set(compiled.htmlTemplate.match(/\{\{[^}]*\}\}/g));
    expect([...placeholders].sort()).toEqual(['{{#if email}}', '{{#if name}}', '{{/if}}', '{{else}}', '{{email}}', '{{name}}', '{{unsubscribeUrl}}']);
    expect(compiled.textTemplate).toContain('{{unsubscribeUrl}}');
  });

  it('produces a responsive 600 px layout under the Gmail clipping size, with no warning', () => {
    expect(compiled.htmlTemplate).toContain('max-width:600px');
    expect(compiled.htmlTemplate).toContain('@media only screen');
    expect(Buffer.byteLength(compiled.htmlTemplate)).toBeLessThan(GMAIL_CLIP_BYTES);
    expect(compiled.warnings).toEqual([]);
    expect(compiled.htmlTemplate).not.toContain('nl-template:');
  });

  it('makes no third-party request when opened: no web fonts, stylesheets or remote images', () => {
    expect(compiled.htmlTemplate).not.toMatch(/<link\b|@import|<img\b|fonts\.googleapis/i);
  });

  it('warns when the HTML goes over the 102 KB at which Gmail clips', async () => {
    const long = { ...issue, papers: issue.papers.map((paper) => ({ ...paper, summary: `${paper.summary}\n\n${'Long text. '.repeat(1200)}` })) };
    const big = await compileIssue(long, context);
    expect(Buffer.byteLength(big.htmlTemplate)).toBeGreaterThan(GMAIL_CLIP_BYTES);
    expect(big.warnings).toEqual([expect.stringMatching(/over the 102\.0 KB at which Gmail clips/)]);
  });

  it('keeps "{{" in any issue field as text: titles, highlights, names, links', async () => {
    const braces: Issue = {
      ...issue,
      title: 'Prompt templates like {{name}} and {{topic}}, or \\{{email}} escaped',
      intro: { ...issue.intro, highlights: ['Why {{email}} leaks, from {{org}}'] },
      papers: [
        {
          ...issue.papers[0]!,
          organisation: '{{unsubscribeUrl}} Labs',
          links: [{ type: 'other', url: 'https://example.org/{{name}}', label: 'See {{name}}' }],
        },
      ],
      tools: [{ ...issue.tools[0]!, name: 'Tool {{#if name}}x{{/if}}' }],
    };
    const composer = await prepareMessageComposer(await compileIssue(braces, context), identity);
    const parts = composer.renderParts({ id: '7', email: 'ada@example.org', name: 'Ada' });
    expect(parts.text).not.toContain('ada@example.org escaped');
    for (const literal of [
      'Prompt templates like {{name}} and {{topic}}, or \\{{email}} escaped',
      'Why {{email}} leaks, from {{org}}',
      '{{unsubscribeUrl}} Labs',
      'See {{name}}: https://example.org/{{name}}',
      'Tool {{#if name}}x{{/if}}',
    ]) {
      expect(parts.text).toContain(literal);
    }
    expect(parts.html).toContain('Prompt templates like &#123;&#123;name&#125;&#125; and &#123;&#123;topic&#125;&#125;');
    expect(parts.html).toContain('href="https://example.org/%7B%7Bname%7D%7D"');
    expect(parts.html).not.toContain('Ada Labs');
  });

  it('refuses a template that leaves a placeholder other than the subscriber fields', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nl-stage-two-'));
    try {
      await cp(TEMPLATES_DIR, dir, { recursive: true });
      const footer = path.join(dir, 'partials/footer.mjml.hbs');
      await writeFile(footer, (await readFile(footer, 'utf8')).replace('Unsubscribe</a>', 'Unsubscribe</a> \\{{topic}}'));
      await expect(compileIssue(issue, { ...context, templatesDir: dir })).rejects.toThrow(
        /the compiled HTML: placeholders other than name, email, unsubscribeUrl.*\{\{topic\}\}/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps "{{" in editor text as text, not as a template tag', async () => {
    const braces = { ...issue, closing: 'Reply with {{name}} or {{{unsubscribeUrl}}} in the subject.' };
    const composer = await prepareMessageComposer(await compileIssue(braces, context), identity);
    const parts = composer.renderParts({ id: '7', email: 'ada@example.org', name: 'Ada' });
    expect(parts.text).toContain('Reply with {{name}} or {{{unsubscribeUrl}}} in the subject.');
    expect(parts.html).toContain('Reply with &#123;&#123;name&#125;&#125;');
  });
});

describe('filling the placeholders', () => {
  it('greets by name, or with a fallback when there is none', async () => {
    const composer = await prepareMessageComposer(compiled, identity);
    const named = composer.renderParts({ id: '1', email: 'zoe@example.org', name: 'Zoë Martín' });
    expect(named.html).toContain('Hi Zoë Martín,');
    expect(named.text).toContain('Hi Zoë Martín,');
    const anonymous = composer.renderParts({ id: '2', email: 'anon@example.org', name: '' });
    expect(anonymous.html).toContain('Hi there,');
    expect(anonymous.text).toContain('Hi there,');
    expect(anonymous.html).toContain('anon@example.org is subscribed to the weekly list');
  });

  it('escapes subscriber text in the HTML part and keeps it on one line', async () => {
    const composer = await prepareMessageComposer(compiled, identity);
    const parts = composer.renderParts({ id: '3', email: 'eve@example.org', name: 'Eve\r\nBcc: x@y.z <script>alert("x")</script>' });
    expect(parts.html).not.toMatch(/<script>alert/);
    expect(parts.html).toContain('Hi Eve Bcc: x@y.z &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;,');
    expect(parts.text).toContain('Hi Eve Bcc: x@y.z <script>alert("x")</script>,');
  });

  it('gives each subscriber their own signed unsubscribe link', async () => {
    const composer = await prepareMessageComposer(compiled, identity);
    const a = composer.compose({ id: '1', email: 'a@example.org', name: 'A' });
    const b = composer.compose({ id: '2', email: 'b@example.org', name: 'B' });
    const unsubscribe = (raw: Buffer) => /^List-Unsubscribe: <(https:\/\/newsletter\.example\.org\/unsubscribe\?token=[\w.-]+)>$/m.exec(raw.toString())?.[1];
    expect(unsubscribe(a.raw)).toBeDefined();
    expect(unsubscribe(a.raw)).not.toBe(unsubscribe(b.raw));
    expect(a.messageId).toBe('<vol-138.weekly.1.1@example.org>');
  });
});

describe('composing the message', () => {
  it.each([
    ['a non-ASCII name', 'Zoë Martín-李 <b>&amp;</b> "Q"'],
    ['no name', ''],
  ])('decodes to exactly the rendered parts for %s', async (_label, name) => {
    const composer = await prepareMessageComposer(compiled, identity);
    const recipient = { id: '9', email: 'zoe@example.org', name };
    const mail = await simpleParser(composer.compose(recipient).raw);
    const expected = composer.renderParts(recipient);
    expect(mail.html).toBe(expected.html);
    expect(mail.text?.replace(/\r\n/g, '\n').trimEnd()).toBe(expected.text.replace(/\r\n/g, '\n').trimEnd());
    expect(
      composer
        .compose(recipient)
        .raw.toString()
        .match(/Content-Transfer-Encoding: [\w-]+/g),
    ).toEqual(['Content-Transfer-Encoding: quoted-printable', 'Content-Transfer-Encoding: quoted-printable']);
  });

  it('keeps every line within the 76 characters RFC 2045 allows, whatever the name and address', async () => {
    const composer = await prepareMessageComposer({ ...compiled, newsletterName: 'IR: Weekly, "best"' }, identity);
    for (let length = 60; length <= 80; length += 1) {
      const raw = composer.compose({ id: String(length), email: `${'l'.repeat(64)}@example.org`, name: 'N'.repeat(length) }).raw.toString();
      const body = raw.slice(raw.indexOf('\r\n\r\n'));
      const longest = Math.max(...body.split('\r\n').map((line) => line.length));
      expect(longest).toBeLessThanOrEqual(76);
    }
    const mail = await simpleParser(composer.compose({ id: '1', email: 'a@example.org', name: 'A' }).raw);
    expect(mail.headers.get('list')).toMatchObject({ id: { name: 'IR: Weekly, "best"', id: 'weekly.newsletter.example.org' } });
  });

  it('falls back to rendering each message whole when a template uses a field in a way the splice cannot reproduce', async () => {
    const unusual: CompiledIssue = { ...compiled, htmlTemplate: '<p>{{{name}}}</p><a href="{{unsubscribeUrl}}">x</a>' };
    const composer = await prepareMessageComposer(unusual, identity);
    const recipient = { id: '9', email: 'zoe@example.org', name: 'Zoë <b>bold</b>' };
    const raw = composer.compose(recipient).raw;
    expect(raw.toString()).toContain('Content-Transfer-Encoding: base64');
    expect((await simpleParser(raw)).html).toBe(composer.renderParts(recipient).html);
  });
});

describe('a broken template', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'nl-templates-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function templatesWith(file: string, edit: (source: string) => string): Promise<string> {
    const copy = await mkdtemp(path.join(dir, 'set-'));
    await cp(TEMPLATES_DIR, copy, { recursive: true });
    const target = path.join(copy, file);
    await writeFile(target, edit(await readFile(target, 'utf8')));
    return copy;
  }

  it('names the partial and the element MJML rejects', async () => {
    const templatesDir = await templatesWith('partials/paper-card.mjml.hbs', (source) =>
      source.replace('<mj-text font-size="13px"', '<mj-text font-size="huge"'),
    );
    const error = await compileIssue(issue, { ...context, templatesDir }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TemplateError);
    expect(error).toMatchObject({ template: 'partials/paper-card.mjml.hbs', element: 'mj-text' });
    expect((error as Error).message).toMatch(/partials\/paper-card\.mjml\.hbs, element <mj-text>: MJML: .*font-size/);
  });

  it('names the template with a Handlebars syntax error', async () => {
    const templatesDir = await templatesWith('partials/footer.mjml.hbs', (source) => `${source}\n{{#if listName}}never closed`);
    await expect(compileIssue(issue, { ...context, templatesDir })).rejects.toThrow(/Template partials\/footer\.mjml\.hbs: Handlebars syntax/);
  });

  it('names the layout for an unknown MJML element outside any partial', async () => {
    const templatesDir = await templatesWith('layout.mjml.hbs', (source) => source.replace('{{> closing}}', '<mj-sektion></mj-sektion>\n    {{> closing}}'));
    const error = await compileIssue(issue, { ...context, templatesDir }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ template: 'layout.mjml.hbs' });
    expect((error as Error).message).toMatch(/mj-sektion/);
  });
});
