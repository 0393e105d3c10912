import type { FastifyReply } from 'fastify';
import Handlebars from 'handlebars';

export const escape = Handlebars.escapeExpression;

/** Our own pages load nothing from anywhere: inline styles only, forms post back to us. */
export const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const PAGE_STYLE =
  "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1f2933;line-height:1.5}" +
  'button{font-size:1rem;padding:.6rem 1.2rem}a{color:#1d4ed8}ol{list-style:none;padding:0}li{margin:0 0 1.1rem}time{display:block;color:#4b5563;font-size:.9rem}';

/** How one response is headed; every page is HTML and sends no referrer. */
export interface PageHeaders {
  readonly cacheControl: string;
  readonly csp: string;
  readonly etag?: string;
}

/** Sends a whole HTML document with the headers every public page carries. */
export function sendHtml(reply: FastifyReply, status: number, html: string, headers: PageHeaders): FastifyReply {
  reply
    .code(status)
    .header('content-type', 'text/html; charset=utf-8')
    .header('cache-control', headers.cacheControl)
    .header('referrer-policy', 'no-referrer')
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', headers.csp);
  if (headers.etag) reply.header('etag', headers.etag);
  return reply.send(html);
}

/** A small page of ours: `title` is text, `body` is HTML whose every value the caller escaped. */
export function sendPage(reply: FastifyReply, status: number, title: string, body: string, cacheControl = 'no-store'): FastifyReply {
  return sendHtml(
    reply,
    status,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
      `<title>${escape(title)}</title><style>${PAGE_STYLE}</style></head><body><h1>${escape(title)}</h1>${body}</body></html>`,
    { cacheControl, csp: PAGE_CSP },
  );
}
