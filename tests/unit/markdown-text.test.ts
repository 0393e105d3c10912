import path from 'node:path';
import { simpleParser } from 'mailparser';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import type { Issue } from '../../src/content/issue-schema.ts';
import { loadIssue } from '../../src/content/load-issue.ts';
import { markdownToHtml, markdownToText } from '../../src/content/markdown.ts';
import { prepareMessageComposer } from '../../src/delivery/compose-message.ts';
import { compileIssue } from '../../src/render/compile-issue.ts';

// An editor's summary with the constructs the text part must carry faithfully.
const LONG_CODE_LINE = 'results = index.search(query_vector, top_k=100, filters={"lang": "en", "year": 2026}, rerank=True)';
const SUMMARY = [
  'Three steps:',
  '',
  '1. Encode the corpus.',
  '2. Build the index with `faiss.IndexFlatIP(768)`.',
  '3. Query it, see [the docs](https://example.org/docs).',
  '',
  'Continuing the count:',
  '',
  '7. seventh',
  '8. eighth',
  '',
  '> Retrieval is **not** solved.',
  '>',
  '> Second quoted paragraph.',
  '',
  'Inline code keeps its characters: `a < b && c > d`, `{{name}}` and `x * 2`.',
  '',
  '```python',
  'def score(q, d):',
  '    return q @ d.T  # cosine, *not* dot <b>',
  '',
  LONG_CODE_LINE,
  '```',
  '',
  '    indented   code   keeps   its   spaces',
].join('\n');

describe('Markdown in the text part', () => {
  it('numbers an ordered list as written, starting where it starts', () => {
    const text = markdownToText(SUMMARY);
    expect(text).toContain('1. Encode the corpus.\n2. Build the index with faiss.IndexFlatIP(768).\n3. Query it, see the docs (https://example.org/docs).');
    expect(text).toContain('7. seventh\n8. eighth');
  });

  it('marks every line of a blockquote with "> ", its paragraphs kept apart', () => {
    const text = markdownToText(SUMMARY);
    expect(text).toMatch(/^> Retrieval is not solved\.\n> ?\n> Second quoted paragraph\.$/m);
  });

  it('keeps inline code and code blocks verbatim', () => {
    const text = markdownToText(SUMMARY);
    expect(text).toContain('Inline code keeps its characters: a < b && c > d, {{name}} and x * 2.');
    // A fenced block: every line as written, indentation, emphasis markers and angle brackets included.
    expect(text).toContain(['def score(q, d):', '    return q @ d.T  # cosine, *not* dot <b>', '', LONG_CODE_LINE].join('\n'));
    expect(text).toContain('indented   code   keeps   its   spaces');
  });

  // Known defect (reported): markdownToText decodes HTML entities in inline code, but inside a code
  // span "&amp;" is literal text (CommonMark), as the HTML part shows it. The text part prints "&".
  it('keeps an entity-like text in inline code verbatim, as the HTML part does', () => {
    const source = 'Escape it as `&amp;` in XML.';
    expect(markdownToHtml(source)).toBe('<p>Escape it as <code>&amp;amp;</code> in XML.</p>');
    expect(markdownToText(source)).toBe('Escape it as &amp; in XML.');
  });

  it('gives the HTML part a numbered list with its start, a blockquote and code, braces neutralised', () => {
    const html = markdownToHtml(SUMMARY);
    expect(html).toContain('<ol>\n<li>Encode the corpus.</li>');
    expect(html).toContain('<ol start="7">\n<li>seventh</li>');
    expect(html).toMatch(/<blockquote>\n<p>Retrieval is <strong>not<\/strong> solved\.<\/p>\n<p>Second quoted paragraph\.<\/p>\n<\/blockquote>/);
    expect(html).toContain('<code>a &lt; b &amp;&amp; c &gt; d</code>');
    expect(html).toContain('<code>&#123;&#123;name&#125;&#125;</code>');
    expect(html).toContain('<pre><code class="language-python">def score(q, d):\n    return q @ d.T  # cosine, *not* dot &lt;b&gt;');
  });

  describe('in a composed message', () => {
    let text: string;
    beforeAll(async () => {
      const issue = await loadIssue(path.join(PROJECT_ROOT, 'emails/issues'), 'vol-138');
      const [first, ...rest] = issue.papers;
      const edited: Issue = { ...issue, papers: [{ ...first!, summary: SUMMARY }, ...rest] };
      const compiled = await compileIssue(edited, {
        from: { name: 'IR Research Weekly', address: 'weekly@example.org' },
        newsletterName: 'IR Research Weekly',
        publicUrl: 'https://newsletter.example.org',
        listName: 'weekly',
        templatesDir: path.join(PROJECT_ROOT, 'emails'),
      });
      const composer = await prepareMessageComposer(compiled, { sendId: 'vol-138.weekly.1', appSecret: 'unit-test-secret-0123456789abcdef0123456789' });
      const parsed = await simpleParser(composer.compose({ id: '7', email: 'ada@example.org', name: 'Ada' }).raw);
      text = (parsed.text ?? '').replace(/\r\n/g, '\n');
    });

    it('carries the numbers, the quote marks and the code, a long code line unbroken, through quoted-printable', () => {
      expect(text).toContain('1. Encode the corpus.\n2. Build the index with faiss.IndexFlatIP(768).\n3. Query it, see the docs (https://example.org/docs).');
      expect(text).toContain('7. seventh\n8. eighth');
      expect(text).toMatch(/^> Retrieval is not solved\.\n> ?\n> Second quoted paragraph\.$/m);
      expect(text).toContain('    return q @ d.T  # cosine, *not* dot <b>');
      expect(text).toContain(`\n${LONG_CODE_LINE}\n`);
    });

    it('prints "{{name}}" written in the issue as is, not as the subscriber\'s name', () => {
      expect(text).toContain('Inline code keeps its characters: a < b && c > d, {{name}} and x * 2.');
      expect(text).toContain('Hi Ada,');
    });
  });
});
