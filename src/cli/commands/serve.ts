import { startBackgroundDuties } from '../../app/background.ts';
import { buildHttpApp } from '../../http/server.ts';
import type { CliContext } from '../context.ts';

/**
 * `newsletter serve`: the one HTTP app on HTTP_HOST:HTTP_PORT (public pages, webhooks, the console,
 * the API, the queue dashboard, /metrics), plus the shared duties: the scheduler, the outgoing
 * webhooks and this process's metrics report.
 */
export async function serveCommand(cli: CliContext): Promise<void> {
  await cli.withServices(async (services) => {
    const { config } = services;
    const app = await buildHttpApp(services);
    await app.listen({ host: config.http.host, port: config.http.port });
    const duties = startBackgroundDuties(services, 'server');
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.http.port;
    const base = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${port}`;
    cli.io.out(`serving ${config.publicUrl} on ${base}: console ${base}/admin, API ${base}/api, metrics ${base}/metrics`);
    await cli.untilStop();
    try {
      await app.close();
    } finally {
      await duties.stop();
    }
  });
}
