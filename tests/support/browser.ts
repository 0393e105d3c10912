import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Frame, type Locator, type Page } from 'playwright-core';
import { expect, onTestFinished } from 'vitest';
import { addUser } from '../../src/app/accounts.ts';
import type { Role } from '../../src/core/roles.ts';
import type { Services } from '../../src/services.ts';
import { newPassword, startConsoleApp, type ConsoleApp } from './console.ts';

/**
 * What the console's browser tests share: Chromium, the console app listening on a real port, and
 * a browser context that records every request, console message and page error, refuses every
 * request to another origin, and says at the end of a test whether anything of the kind happened.
 */

export const CHROMIUM_PATH = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  // Chromium's own calls home (component updates, safe browsing, sync) are not the console's requests.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];

/** Headless Chromium, or a message saying how to install it. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is not installed: ${CHROMIUM_PATH} is missing. The console's browser tests need it; install it with: apt-get update && apt-get install -y chromium`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}

/**
 * The host the browser reaches the app at. The session cookie is `Secure`; Chromium keeps a Secure
 * cookie set over plain HTTP only from a potentially trustworthy origin, and http://127.0.0.1 is one
 * (as is http://localhost): the same rule that lets an operator use the console through an SSH tunnel.
 */
export const CONSOLE_HOST = '127.0.0.1';

/** The console app of `newsletter serve` listening on a free loopback port, and its origin. */
export interface ListeningConsole extends ConsoleApp {
  /** "http://127.0.0.1:<port>": the one origin the browser may send requests to. */
  readonly origin: string;
}

/** startConsoleApp (harness, real SMTP sink, app) listening on 127.0.0.1 at a free port; closed when the test finishes. */
export async function startListeningConsole(label: string, options: Parameters<typeof startConsoleApp>[1] = {}): Promise<ListeningConsole> {
  const consoleApp = await startConsoleApp(label, options);
  await consoleApp.app.listen({ host: CONSOLE_HOST, port: 0 });
  const { port } = consoleApp.app.server.address() as AddressInfo;
  return { ...consoleApp, origin: `http://${CONSOLE_HOST}:${port}` };
}

/** A console user's credentials, as typed into the login form. */
export interface Credentials {
  readonly email: string;
  readonly password: string;
}

/** Adds a console user with the role (addUser, as `newsletter users add` does) and gives back what to type. */
export async function addConsoleUser(services: Services, role: Role): Promise<Credentials> {
  const email = `${role}-${randomBytes(3).toString('hex')}@example.org`;
  const password = newPassword();
  await addUser(services, { email, role, password });
  return { email, password };
}

/** A browser context that watches what its pages do. */
export interface WatchedContext {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Every request the pages made, in order ("GET http://…"). */
  readonly requests: readonly string[];
  /** Requests to another origin: refused before they left, and a test failure. */
  readonly outside: readonly string[];
  /** Console errors and warnings, and uncaught page errors, with the page they came from. */
  readonly problems: readonly string[];
  /**
   * Asserts that nothing left the server and the console showed no error or warning, but for the
   * lines matching `allow` (each one the caller justifies where it passes it).
   */
  expectClean(options?: { readonly allow?: readonly RegExp[] }): void;
  /**
   * Waits for the locator to show; when it doesn't, fails with what the pages logged and tried to
   * load, which says why (a refused script, a 404), rather than with a bare timeout.
   */
  waitVisible(locator: Locator, what: string, timeoutMs?: number): Promise<void>;
}

/**
 * A fresh context (no cookies, no cache) at the viewport size, with one page open. Every request is
 * recorded; one to another origin is aborted, so nothing actually leaves the machine, and recorded
 * as a failure. Console errors and warnings of every frame, and uncaught exceptions, are recorded.
 * The context closes when the test finishes.
 */
export async function openWatchedContext(browser: Browser, origin: string, viewport: { width: number; height: number }): Promise<WatchedContext> {
  const context = await browser.newContext({ viewport, baseURL: origin });
  onTestFinished(() => context.close());
  const requests: string[] = [];
  const outside: string[] = [];
  const problems: string[] = [];
  const leaves = (url: string) => {
    // data: URLs (the console's inline images) are not network requests; everything else must be ours.
    if (url.startsWith('data:')) return false;
    return new URL(url).origin !== origin;
  };
  context.on('request', (request) => {
    requests.push(`${request.method()} ${request.url()}`);
    if (leaves(request.url())) outside.push(`${request.method()} ${request.url()} (from ${request.frame().url()})`);
  });
  // Playwright routes no redirect hop; a redirect elsewhere would still show in the request events above.
  await context.route('**/*', (route) => (leaves(route.request().url()) ? route.abort('blockedbyclient') : route.continue()));
  context.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      const location = message.location();
      problems.push(`console ${message.type()} on ${message.page()?.url() ?? '?'} (${location.url}:${location.lineNumber}): ${message.text()}`);
    }
  });
  context.on('weberror', (webError) => problems.push(`uncaught on ${webError.page()?.url() ?? '?'}: ${webError.error().stack ?? webError.error().message}`));
  const page = await context.newPage();
  return {
    context,
    page,
    requests,
    outside,
    problems,
    expectClean({ allow = [] } = {}) {
      expect(outside, 'requests that would have left the server').toEqual([]);
      const unexpected = problems.filter((line) => !allow.some((pattern) => pattern.test(line)));
      expect(unexpected, 'console errors, warnings and page errors').toEqual([]);
    },
    async waitVisible(locator, what, timeoutMs = 10_000) {
      try {
        await locator.waitFor({ state: 'visible', timeout: timeoutMs });
      } catch (error) {
        const lines = [...outside.map((line) => `left the server: ${line}`), ...problems, ...requests.map((line) => `request: ${line}`)];
        throw new Error(`${what} did not show within ${timeoutMs} ms on ${page.url()}:\n${lines.join('\n')}`, { cause: error });
      }
    },
  };
}

/** Fills the login form of the page it is on (GET /admin/login) and submits it; the caller waits for what should follow. */
export async function submitLogin(page: Page, credentials: Credentials): Promise<void> {
  await page.getByLabel('Email').fill(credentials.email);
  await page.getByLabel('Password').fill(credentials.password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

/** Opens /admin/login?next=<path>, logs in and waits for the console page it lands on: the browser carries the session cookie from then on. */
export async function logIn(page: Page, credentials: Credentials, next = '/admin'): Promise<void> {
  await page.goto(`/admin/login?next=${encodeURIComponent(next)}`);
  await submitLogin(page, credentials);
  await page.waitForURL((url) => url.pathname !== '/admin/login');
}

/** The little of the browser's globals the in-page functions use (tsconfig has no DOM lib). */
interface InPageGlobals {
  readonly document: {
    readonly documentElement: { readonly scrollWidth: number; readonly clientWidth: number };
    querySelector(selector: string): { readonly textContent: string | null } | null;
  };
}

/** How wide a page's or frame's document is against its viewport: `scroll > client` means it scrolls sideways. */
export function documentWidth(target: Page | Frame): Promise<{ scroll: number; client: number }> {
  return target.evaluate(() => {
    const { documentElement } = (globalThis as unknown as InPageGlobals).document;
    return { scroll: documentElement.scrollWidth, client: documentElement.clientWidth };
  });
}

/** Waits until the first element matching `selector` reads `text`: a value the page updates by itself (console.js). */
export async function waitForText(page: Page, selector: string, text: string, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    ([wanted, expected]) => (globalThis as unknown as InPageGlobals).document.querySelector(wanted)?.textContent === expected,
    [selector, text] as const,
    { timeout: timeoutMs },
  );
}
