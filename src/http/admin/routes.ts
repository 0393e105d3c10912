import type { FastifyInstance } from 'fastify';
import { can } from '../../core/roles.ts';
import type { Services } from '../../services.ts';
import { requirePermission } from '../auth.ts';
import { registerEditorPages } from './editor-pages.ts';
import { registerOpsPages } from './ops-pages.ts';

/** The console's pages: the editor's (issues, preview, test send, send, schedules, users) and ops' (sends). */
export async function registerAdminRoutes(scope: FastifyInstance, services: Services): Promise<void> {
  // The console's front door: ops land on the sends, the editor on the issues.
  scope.get('/admin', { preHandler: requirePermission('issues.read') }, async (request, reply) =>
    reply.redirect(request.actor && can(request.actor.role, 'sends.read') && request.actor.role !== 'editor' ? '/admin/sends' : '/admin/issues', 303),
  );
  await registerEditorPages(scope, services);
  await registerOpsPages(scope, services);
}
