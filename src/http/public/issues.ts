import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Config } from '../../../config/index.ts';
import type { IssueArchive } from '../../app/issue-archive.ts';
import { escape, sendHtml, sendPage } from './page.ts';

/** The email's own markup: its inline styles, and images from anywhere on https; still no scripts, frames or forms. */
const ISSUE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";
/** Short enough that a corrected resend shows up soon; the ETag makes revalidation cheap. */
const ISSUE_CACHE = 'public, max-age=300';
const INDEX_CACHE = 'public, max-age=60';

const DATE_FORMAT = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' });

/**
 * The web archive: GET /issues lists the sent issues, GET /issues/<id> is the "View in browser"
 * page of every email, the issue as compiled for its latest send.
 */
export function registerIssueRoutes(app: FastifyInstance, deps: { readonly config: Config; readonly archive: IssueArchive }): void {
  const { config, archive } = deps;
  const name = config.mail.newsletterName;

  const notFound = (reply: FastifyReply) =>
    sendPage(
      reply,
      404,
      'Issue not found',
      `<p>No issue of ${escape(name)} has been published at this address.</p><p><a href="${escape(`${config.publicUrl}/issues`)}">All issues</a></p>`,
    );

  app.get('/issues', async (_request, reply) => {
    const issues = await archive.index();
    const items = issues.map(
      (issue) =>
        `<li><a href="${escape(issue.webUrl)}">${escape(issue.subject)}</a><time datetime="${escape(issue.sentAt)}">${escape(DATE_FORMAT.format(new Date(issue.sentAt)))}</time></li>`,
    );
    const body = items.length > 0 ? `<ol>${items.join('')}</ol>` : '<p>No issues have been sent yet.</p>';
    return sendPage(reply, 200, `${name}: all issues`, body, INDEX_CACHE);
  });

  app.get<{ Params: { id: string } }>('/issues/:id', async (request, reply) => {
    const version = await archive.webVersion(request.params.id);
    if (!version) return notFound(reply);
    const etag = `"${version.contentHash}"`;
    if (matchesEtag(request.headers['if-none-match'], etag)) {
      return reply.code(304).header('etag', etag).header('cache-control', ISSUE_CACHE).send();
    }
    return sendHtml(reply, 200, await version.render(), { cacheControl: ISSUE_CACHE, csp: ISSUE_CSP, etag });
  });
}

/** If-None-Match (RFC 9110 §13.1.2): a list of tags, compared weakly, or "*". */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}
