import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';
import { loadIssue, parseIssueSource } from '../../src/content/load-issue.ts';
import { IssueContentError, UnknownIssueError } from '../../src/core/errors.ts';
import { buildIssuePreview } from '../../src/app/preview.ts';
import { testConfig } from '../support/test-config.ts';

const ISSUES_DIR = path.join(PROJECT_ROOT, 'emails/issues');
/** A verbatim copy of shared/content/ir-weekly-vol-138.txt, the newsletter as its author published it. */
const SOURCE_FILE = path.join(PROJECT_ROOT, 'tests/fixtures/ir-weekly-vol-138.txt');

describe('the vol-138 issue file', () => {
  let source: string;
  let html: string;
  let text: string;

  beforeAll(async () => {
    source = await readFile(SOURCE_FILE, 'utf8');
    ({ html, text } = await buildIssuePreview(testConfig('content'), 'vol-138', 'weekly'));
  });

  it('is finished, with ten papers, one tool and the dates of the source', async () => {
    const issue = await loadIssue(ISSUES_DIR, 'vol-138');
    expect(issue).toMatchObject({ id: 'vol-138', status: 'finished', volume: 138, dates: { from: '2026-01-05', to: '2026-01-11' } });
    expect(issue.papers.map((paper) => paper.number)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(issue.tools).toHaveLength(1);
  });

  it('carries every paper title of the source into both parts of the compiled email', () => {
    const titles = [...source.matchAll(/^\[(\d+)\] (.+)$/gm)].map((match) => match[2]!.trim());
    expect(titles).toHaveLength(10);
    for (const title of titles) {
      expect(text).toContain(title);
      expect(html).toContain(escapeHtml(title));
    }
  });

  it('carries every link of the source into both parts of the compiled email', () => {
    const links = [...source.matchAll(/https?:\/\/\S+/g)].map((match) => match[0]);
    expect(links.length).toBeGreaterThanOrEqual(19);
    for (const link of links) {
      expect(text).toContain(link);
      expect(html).toContain(`href="${link}"`);
    }
  });

  it('loses no word of the source: the text part holds them all, in order', () => {
    // Emoji link markers are re-rendered by the template as labelled links; every other token must survive.
    const tokens = (value: string) => value.split(/\s+/).filter((token) => /[\p{L}\p{N}]/u.test(token));
    const expected = tokens(source);
    const actual = tokens(text);
    let position = 0;
    const missing: string[] = [];
    for (const token of expected) {
      const found = actual.indexOf(token, position);
      if (found === -1) missing.push(token);
      else position = found + 1;
    }
    expect(missing).toEqual([]);
    expect(expected.length).toBeGreaterThan(2000);
  });
});

describe('issue validation', () => {
  it('loads the draft sample as a draft', async () => {
    expect((await loadIssue(ISSUES_DIR, 'draft-sample')).status).toBe('draft');
  });

  it('names an unknown issue and lists the known ones', async () => {
    const error = await loadIssue(ISSUES_DIR, 'vol-999').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnknownIssueError);
    expect((error as Error).message).toMatch(/Unknown issue "vol-999".*Known issues: .*vol-138/);
  });

  it('names the file, the field and the reason for an invalid issue', async () => {
    const valid = await readFile(path.join(ISSUES_DIR, 'draft-sample.yaml'), 'utf8');
    const broken = valid
      .replace('status: draft', 'status: ready')
      .replace(/type: code/, 'type: video')
      .replace(/^volume: .*$/m, 'volume: -3');
    const error = (() => {
      try {
        parseIssueSource(broken, 'emails/issues/broken.yaml');
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(IssueContentError);
    const fields = (error as IssueContentError).problems.map((problem) => problem.field);
    expect(fields).toEqual(expect.arrayContaining(['status', 'volume', expect.stringMatching(/^papers\[\d\]\.links\[\d\]\.type$/)]));
    expect((error as Error).message).toContain('emails/issues/broken.yaml');
  });

  it('reports a YAML syntax error with its line', () => {
    expect(() => parseIssueSource('id: x\ntitle: [unclosed\n', 'bad.yaml')).toThrow(/bad\.yaml[\s\S]*line \d+: YAML syntax/);
  });

  it('requires links to be http(s) URLs', () => {
    expect(() =>
      parseIssueSource(
        'id: x\nstatus: draft\nvolume: 1\ntitle: T\ndates: {from: 2026-01-01, to: 2026-01-02}\npreheader: P\nintro: {text: I, highlights: [H]}\npapers:\n  - {number: 1, title: T, organisation: O, summary: S, links: [{type: paper, url: "javascript:alert(1)"}]}\nclosing: C\n',
        'x.yaml',
      ),
    ).toThrow(/papers\[0\]\.links\[0\]\.url: must be an http\(s\) URL/);
  });
});

function escapeHtml(value: string): string {
  return value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;').replaceAll("'", '&#x27;');
}
