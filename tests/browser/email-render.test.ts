import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../config/index.ts';
import { buildIssuePreview, SAMPLE_RECIPIENT } from '../../src/app/preview.ts';
import { UNSUBSCRIBE_PURPOSE, verifyToken } from '../../src/core/tokens.ts';
import { testConfig } from '../support/test-config.ts';

/**
 * The real vol-138 issue, compiled as a send would and filled for the sample subscriber, rendered in
 * headless Chromium at a phone width and a desktop width: what a subscriber actually sees.
 */

const CHROMIUM_PATH = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
const PHONE = 375;
const DESKTOP = 1024;
const COLUMN_WIDTH = 600;
const LIST = 'weekly';
/** Screenshots go outside the repository; the path is printed when a page is opened. */
const SCREENSHOT_DIR = path.join(tmpdir(), 'newsletter-email-render');
/**
 * The email's column: MJML renders each mj-section as a centred `div` (max-width 600px) straight under
 * the role="article" wrapper; the 600px-wide tables are for Outlook only, inside conditional comments.
 */
const COLUMN_SECTIONS = '[role="article"] > div';

/** The little of the browser's globals the in-page functions below use (tsconfig has no DOM lib). */
interface InPageRect {
  readonly left: number;
  readonly right: number;
  readonly width: number;
  readonly height: number;
}
interface InPageElement {
  readonly tagName: string;
  readonly textContent: string | null;
  getBoundingClientRect(): InPageRect;
}
interface InPageGlobals {
  readonly innerWidth: number;
  readonly document: {
    readonly documentElement: { readonly scrollWidth: number };
    readonly body: { readonly scrollWidth: number; readonly innerText: string };
    querySelectorAll(selector: string): Iterable<InPageElement>;
  };
}

let config: Config;
let preview: Awaited<ReturnType<typeof buildIssuePreview>>;
let browser: Browser | undefined;
const pages = new Map<number, Promise<Page>>();
/** Every request the email tried to make; all are refused, the test runs offline. */
const blockedRequests: string[] = [];

async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is not installed: ${CHROMIUM_PATH} is missing. The email rendering tests need it; ` +
        'install it with: apt-get update && apt-get install -y chromium',
    );
  }
  browser ??= await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  return browser;
}

/** The filled email loaded in a page of the given viewport width, with a screenshot saved. */
function pageAt(width: number): Promise<Page> {
  let page = pages.get(width);
  if (!page) {
    page = (async () => {
      const opened = await (await launchBrowser()).newPage({ viewport: { width, height: 900 } });
      // No network: the email's remote resources (MJML adds a Google Fonts stylesheet for Roboto) are refused.
      await opened.route('**/*', (route) => {
        blockedRequests.push(route.request().url());
        return route.abort();
      });
      await opened.setContent(preview.html, { waitUntil: 'load' });
      await mkdir(SCREENSHOT_DIR, { recursive: true });
      await opened.screenshot({ path: path.join(SCREENSHOT_DIR, `vol-138-${width}px-top.png`) });
      await opened.screenshot({ path: path.join(SCREENSHOT_DIR, `vol-138-${width}px-full.png`), fullPage: true });
      return opened;
    })();
    pages.set(width, page);
  }
  return page;
}

async function columnBoxes(page: Page) {
  const sections = await page.locator(COLUMN_SECTIONS).all();
  expect(sections.length, 'MJML sections in the email body').toBeGreaterThan(3);
  const boxes = [];
  for (const section of sections) {
    const box = await section.boundingBox();
    expect(box, 'every section is rendered').not.toBeNull();
    boxes.push(box!);
  }
  return boxes;
}

beforeAll(async () => {
  config = testConfig('browser');
  preview = await buildIssuePreview(config, 'vol-138', LIST);
});

afterAll(async () => {
  await browser?.close();
  if (pages.size > 0) console.info(`email screenshots in ${SCREENSHOT_DIR}; blocked requests: ${[...new Set(blockedRequests)].join(', ') || 'none'}`);
});

describe('vol-138 rendered in Chromium', () => {
  it.each([PHONE, DESKTOP])('has no horizontal overflow at %i px', async (width) => {
    const page = await pageAt(width);
    const measured = await page.evaluate(() => {
      const { document, innerWidth } = globalThis as unknown as InPageGlobals;
      // Anything sticking out sideways, even inside a box that clips it: text or a button cut off.
      const outside: string[] = [];
      for (const element of document.querySelectorAll('[role="article"] *')) {
        const rect = element.getBoundingClientRect();
        if (rect.width === 0 || rect.height === 0) continue;
        if (rect.left < -0.5 || rect.right > innerWidth + 0.5) {
          outside.push(`${element.tagName} [${Math.round(rect.left)}, ${Math.round(rect.right)}] ${(element.textContent ?? '').trim().slice(0, 60)}`);
        }
      }
      return { innerWidth, html: document.documentElement.scrollWidth, body: document.body.scrollWidth, outside };
    });
    expect(measured.innerWidth).toBe(width);
    expect(measured.html, 'document scrollWidth').toBeLessThanOrEqual(measured.innerWidth);
    expect(measured.body, 'body scrollWidth').toBeLessThanOrEqual(measured.innerWidth);
    expect(measured.outside, 'elements reaching past the viewport edges').toEqual([]);
  });

  it(`centres a ${COLUMN_WIDTH}px column at ${DESKTOP} px`, async () => {
    const page = await pageAt(DESKTOP);
    for (const box of await columnBoxes(page)) {
      expect(Math.abs(box.width - COLUMN_WIDTH), `column width ${box.width}`).toBeLessThanOrEqual(10);
      const left = box.x;
      const right = DESKTOP - (box.x + box.width);
      expect(left, 'left margin').toBeGreaterThan(100);
      expect(Math.abs(left - right), `left margin ${left}, right margin ${right}`).toBeLessThanOrEqual(3);
    }
  });

  it(`fits the column into the screen at ${PHONE} px`, async () => {
    const page = await pageAt(PHONE);
    for (const box of await columnBoxes(page)) {
      expect(box.width).toBeLessThanOrEqual(PHONE);
      expect(box.x).toBeGreaterThanOrEqual(0);
      // It uses the screen rather than shrinking to a strip.
      expect(box.width).toBeGreaterThanOrEqual(PHONE - 10);
    }
  });

  it.each([PHONE, DESKTOP])('shows the subscriber every paper, a button for every link and a working unsubscribe link at %i px', async (width) => {
    const page = await pageAt(width);
    const visibleText = await page.evaluate(() => (globalThis as unknown as InPageGlobals).document.body.innerText);

    // Personalised, with no placeholder left unfilled.
    expect(visibleText).toContain(`Hi ${SAMPLE_RECIPIENT.name},`);
    expect(visibleText).toContain(`${SAMPLE_RECIPIENT.email} is subscribed`);
    expect(visibleText).not.toMatch(/\{\{|\}\}/);

    const lastSection = (await columnBoxes(page)).at(-1)!;
    let lastTitleBottom = 0;
    for (const paper of preview.issue.papers) {
      const heading = page.getByText(`[${paper.number}] ${paper.title}`, { exact: true });
      expect(await heading.count(), `paper ${paper.number} title`).toBe(1);
      expect(await heading.isVisible(), `paper ${paper.number} title is visible`).toBe(true);
      const box = (await heading.boundingBox())!;
      expect(box.height, `paper ${paper.number} title has height`).toBeGreaterThan(10);
      lastTitleBottom = Math.max(lastTitleBottom, box.y + box.height);
    }
    for (const tool of preview.issue.tools) {
      expect(await page.getByText(tool.name).first().isVisible(), `tool ${tool.name}`).toBe(true);
    }

    // Every paper and tool link is a visible button, fully on screen, at least finger-sized.
    const links = [...preview.issue.papers.flatMap((paper) => paper.links), ...preview.issue.tools.flatMap((tool) => tool.links)];
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) {
      const button = page.locator(`[role="article"] a[href="${link.url}"]`).first();
      expect(await button.isVisible(), `button for ${link.url}`).toBe(true);
      const box = (await button.boundingBox())!;
      expect(box.x, `button for ${link.url} starts on screen`).toBeGreaterThanOrEqual(0);
      expect(box.x + box.width, `button for ${link.url} ends on screen`).toBeLessThanOrEqual(width);
      expect(box.height, `button for ${link.url} height`).toBeGreaterThanOrEqual(20);
      expect((await button.innerText()).trim().length, `button for ${link.url} has a label`).toBeGreaterThan(0);
    }

    // The unsubscribe link: in the footer (the last section, below every paper), visible, and signed for this subscriber.
    const unsubscribe = page.getByRole('link', { name: 'Unsubscribe', exact: true });
    expect(await unsubscribe.count()).toBe(1);
    expect(await unsubscribe.isVisible()).toBe(true);
    const unsubscribeBox = (await unsubscribe.boundingBox())!;
    expect(unsubscribeBox.y).toBeGreaterThan(lastTitleBottom);
    expect(unsubscribeBox.y).toBeGreaterThanOrEqual(lastSection.y);
    expect(unsubscribeBox.y + unsubscribeBox.height).toBeLessThanOrEqual(lastSection.y + lastSection.height);
    const href = new URL((await unsubscribe.getAttribute('href'))!);
    expect(`${href.origin}${href.pathname}`).toBe(`${config.publicUrl}/unsubscribe`);
    const payload = verifyToken(config.appSecret, UNSUBSCRIBE_PURPOSE, href.searchParams.get('token') ?? '');
    expect(payload).toMatchObject({ s: SAMPLE_RECIPIENT.id, l: LIST });
  });
});
