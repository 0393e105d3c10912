import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { addUser, createToken, LastAdminError, listTokens, listUsers, removeUser, revokeToken, UnknownUserError, UserExistsError } from '../../app/accounts.ts';
import { UserFacingError } from '../../core/errors.ts';
import { isRole, ROLES, type Role } from '../../core/roles.ts';
import type { Services } from '../../services.ts';
import { csrfGuard, requirePermission } from '../auth.ts';
import { escape } from '../public/page.ts';
import { actorName, csrfField, formField, notice, problem, selectOptions, timeTag } from './editor-pages.ts';
import { sendConsolePage } from './layout.ts';

/** What each role may do, in the words of the add forms. */
const ROLE_HINTS: Readonly<Record<Role, string>> = {
  admin: 'everything, users and tokens included',
  editor: 'preview, test send, send and schedule issues',
  ops: 'run the sends and the queues: pause, resume, cancel, retry, metrics',
};

/** Notices after a redirect, by the `done` query value: fixed texts, so nothing typed is echoed into the page. */
const DONE_NOTICES: Readonly<Record<string, string>> = {
  'user-removed': 'The user was removed; their sessions end with their next request.',
  'token-revoked': 'The API token was revoked; it authenticates nothing from now on.',
};

/**
 * Users and API tokens (users.manage: the admin role). A new user's generated password and a new
 * token are shown once, on the page that answers the POST (never redirected to: a secret must not
 * travel in a URL or sit in a cookie), with caching off; only their hashes are stored.
 */
export function registerUserPages(scope: FastifyInstance, services: Services): void {
  const guarded = { preHandler: [requirePermission('users.manage'), csrfGuard(scope)] };

  scope.get('/admin/users', { preHandler: requirePermission('users.manage') }, async (request, reply) => {
    const done = DONE_NOTICES[formField(request.query, 'done')];
    return sendUsersPage(reply, request, services, { status: 200, before: done ? notice(done) : '' });
  });

  scope.post('/admin/users', guarded, async (request, reply) => {
    const email = formField(request.body, 'email');
    const role = formField(request.body, 'role');
    try {
      if (!isRole(role)) throw new UserFacingError(`"${role}" is not a role: one of ${ROLES.join(', ')}.`);
      const { user, generatedPassword } = await addUser(services, { email, role });
      request.log.info({ user: user.email, role: user.role, by: actorName(request) }, 'console user added');
      return sendConsolePage(reply, request, {
        status: 201,
        title: 'User added',
        body:
          notice(`${user.email} can now log in as ${user.role}.`) +
          (generatedPassword
            ? `<p>Their password, shown this once (only its hash is kept): give it to them over a channel you trust.</p><p><code class="secret">${escape(generatedPassword)}</code></p>`
            : '') +
          `<p><a href="/admin/users">Back to the users</a></p>`,
      });
    } catch (error) {
      if (!(error instanceof UserFacingError)) throw error;
      // A duplicate is a state that refuses (409, as the API answers it); anything else is the input: 400.
      const status = error instanceof UserExistsError ? 409 : 400;
      return sendUsersPage(reply, request, services, { status, before: problem(error.message), typed: { email, role } });
    }
  });

  scope.post('/admin/users/delete', guarded, async (request, reply) => {
    const email = formField(request.body, 'email');
    try {
      await removeUser(services, email);
    } catch (error) {
      if (!(error instanceof UserFacingError)) throw error;
      // No such user: 404. The user is there but may not go (the last admin): 409.
      const status = error instanceof UnknownUserError ? 404 : error instanceof LastAdminError ? 409 : 400;
      return sendUsersPage(reply, request, services, { status, before: problem(error.message) });
    }
    request.log.info({ user: email, by: actorName(request) }, 'console user removed');
    return reply.redirect('/admin/users?done=user-removed', 303);
  });

  scope.post('/admin/tokens', guarded, async (request, reply) => {
    const name = formField(request.body, 'name');
    const role = formField(request.body, 'role');
    try {
      if (!isRole(role)) throw new UserFacingError(`"${role}" is not a role: one of ${ROLES.join(', ')}.`);
      const { token, view } = await createToken(services, { name, role });
      request.log.info({ tokenId: view.id, name: view.name, role: view.role, by: actorName(request) }, 'API token created');
      return sendConsolePage(reply, request, {
        status: 201,
        title: 'API token created',
        body:
          notice(`Token ${view.name} (${view.role}) created.`) +
          `<p>The token, shown this once (only its hash is kept). Send it as <code>Authorization: Bearer &lt;token&gt;</code>:</p>` +
          `<p><code class="secret">${escape(token)}</code></p><p><a href="/admin/users">Back to the users and tokens</a></p>`,
      });
    } catch (error) {
      if (!(error instanceof UserFacingError)) throw error;
      return sendUsersPage(reply, request, services, { status: 400, before: problem(error.message), typed: { tokenName: name, tokenRole: role } });
    }
  });

  scope.post('/admin/tokens/:id/revoke', guarded, async (request, reply) => {
    const id = (request.params as { id: string }).id;
    try {
      await revokeToken(services, id);
    } catch (error) {
      if (!(error instanceof UserFacingError)) throw error;
      return sendUsersPage(reply, request, services, { status: 404, before: problem(error.message) });
    }
    request.log.info({ tokenId: id, by: actorName(request) }, 'API token revoked');
    return reply.redirect('/admin/users?done=token-revoked', 303);
  });
}

/** What was typed into the add forms, shown again when it was refused. */
interface TypedAccount {
  readonly email?: string;
  readonly role?: string;
  readonly tokenName?: string;
  readonly tokenRole?: string;
}

async function sendUsersPage(
  reply: FastifyReply,
  request: FastifyRequest,
  services: Services,
  options: { readonly status: number; readonly before: string; readonly typed?: TypedAccount },
): Promise<FastifyReply> {
  const [users, tokens] = await Promise.all([listUsers(services), listTokens(services)]);
  const typed = options.typed ?? {};
  const self = request.actor?.kind === 'user' ? request.actor.id : undefined;
  const roleHints = `<ul class="hint">${ROLES.map((role) => `<li><b>${role}</b>: ${escape(ROLE_HINTS[role])}</li>`).join('')}</ul>`;
  const usersTable =
    `<div class="table-wrap"><table class="users"><thead><tr><th>Email</th><th>Role</th><th>Added</th><th></th></tr></thead><tbody>` +
    users
      .map(
        (user) =>
          `<tr><td>${escape(user.email)}${user.email.toLowerCase() === self ? ' <small>(you)</small>' : ''}</td><td>${escape(user.role)}</td><td>${timeTag(user.createdAt)}</td>` +
          `<td><form method="post" action="/admin/users/delete" class="inline">${csrfField(reply)}<input type="hidden" name="email" value="${escape(user.email)}">` +
          `<button type="submit" class="danger">Remove</button></form></td></tr>`,
      )
      .join('') +
    `</tbody></table></div>`;
  const tokensTable =
    tokens.length === 0
      ? '<p>No API tokens.</p>'
      : `<div class="table-wrap"><table class="tokens"><thead><tr><th>Name</th><th>Id</th><th>Role</th><th>Created</th><th>Last used</th><th></th></tr></thead><tbody>` +
        tokens
          .map(
            (token) =>
              `<tr><td>${escape(token.name)}</td><td><code>${escape(token.id)}</code></td><td>${escape(token.role)}</td><td>${timeTag(token.createdAt)}</td><td>${timeTag(token.lastUsedAt)}</td>` +
              `<td><form method="post" action="/admin/tokens/${encodeURIComponent(token.id)}/revoke" class="inline">${csrfField(reply)}<button type="submit" class="danger">Revoke</button></form></td></tr>`,
          )
          .join('') +
        `</tbody></table></div>`;
  const body =
    options.before +
    `<h2>Users</h2>` +
    usersTable +
    `<h3>Add a user</h3><form method="post" action="/admin/users" class="stack">${csrfField(reply)}` +
    `<label>Email <input type="email" name="email" required autocomplete="off" value="${escape(typed.email ?? '')}"></label>` +
    `<label>Role <select name="role" required>${selectOptions(ROLES, typed.role ?? 'editor')}</select></label>` +
    roleHints +
    `<p class="hint">A password is generated and shown once on the next page.</p>` +
    `<button type="submit">Add user</button></form>` +
    `<h2>API tokens</h2>` +
    tokensTable +
    `<h3>Create an API token</h3><form method="post" action="/admin/tokens" class="stack">${csrfField(reply)}` +
    `<label>Name <input type="text" name="name" required placeholder="ci-deploy" autocomplete="off" value="${escape(typed.tokenName ?? '')}"></label>` +
    `<label>Role <select name="role" required>${selectOptions(ROLES, typed.tokenRole ?? 'editor')}</select></label>` +
    `<button type="submit">Create token</button></form>`;
  return sendConsolePage(reply, request, { status: options.status, title: 'Users and API tokens', body });
}
