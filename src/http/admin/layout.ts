import type { FastifyReply, FastifyRequest } from 'fastify';
import { can, type Permission } from '../../core/roles.ts';
import { escape, sendHtml } from '../public/page.ts';

/**
 * The console's own pages load nothing from outside the server: one stylesheet and one script of
 * ours, images as data: URLs or inline SVG, frames from us only (the previews).
 */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; " +
  "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'";

/** One page of the console. */
export interface ConsolePage {
  readonly title: string;
  /** HTML whose every value the caller escaped. */
  readonly body: string;
  readonly status?: number;
  /** Scripts of ours (paths under /admin/assets/) the page enhances itself with; it works without them. */
  readonly scripts?: readonly string[];
}

/** The menu: each entry shows only to those who may open it. */
const NAVIGATION: readonly { readonly href: string; readonly label: string; readonly permission: Permission }[] = [
  { href: '/admin/issues', label: 'Issues', permission: 'issues.read' },
  { href: '/admin/sends', label: 'Sends', permission: 'sends.read' },
  { href: '/admin/schedules', label: 'Schedules', permission: 'schedules.read' },
  { href: '/admin/queues', label: 'Queues', permission: 'queues.read' },
  { href: '/admin/users', label: 'Users', permission: 'users.manage' },
];

/** Sends a console page: the menu and the logged-in user on top, the CSRF token for the logout form. */
export function sendConsolePage(reply: FastifyReply, request: FastifyRequest, page: ConsolePage): FastifyReply {
  const actor = request.actor;
  const csrf = actor?.kind === 'user' ? reply.generateCsrf() : '';
  const menu = actor
    ? `<nav aria-label="Console"><a class="brand" href="/admin">Newsletter</a>` +
      NAVIGATION.filter((entry) => can(actor.role, entry.permission))
        .map((entry) => `<a href="${entry.href}">${entry.label}</a>`)
        .join('') +
      `<span class="who">${escape(actor.name)} (${escape(actor.role)})</span>` +
      `<form method="post" action="/admin/logout" class="inline"><input type="hidden" name="_csrf" value="${escape(csrf)}"><button type="submit" class="link">Log out</button></form></nav>`
    : `<nav aria-label="Console"><a class="brand" href="/admin">Newsletter</a></nav>`;
  const scripts = (page.scripts ?? []).map((src) => `<script src="${escape(src)}" defer></script>`).join('');
  return sendHtml(
    reply,
    page.status ?? 200,
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
      `<meta name="csrf-token" content="${escape(csrf)}"><link rel="icon" href="data:,">` +
      `<title>${escape(page.title)} · Newsletter console</title><link rel="stylesheet" href="/admin/assets/console.css">${scripts}</head>` +
      `<body><header>${menu}</header><main><h1>${escape(page.title)}</h1>${page.body}</main></body></html>`,
    { cacheControl: 'no-store', csp: CONSOLE_CSP },
  );
}
