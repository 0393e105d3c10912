import { buildHttpApp } from '../../http/server.ts';
import type { CliContext } from '../context.ts';

/** `newsletter serve`: the public pages (unsubscribe, web version of sent issues) on HTTP_HOST:HTTP_PORT. */
export async function serveCommand(cli: CliContext): Promise<void> {
  await cli.withServices(async (services) => {
    const { config } = services;
    const app = await buildHttpApp(services);
    await app.listen({ host: config.http.host, port: config.http.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.http.port;
    cli.io.out(`serving ${config.publicUrl} (unsubscribe, issues, webhooks) on http://${config.http.host}:${port}`);
    await cli.untilStop();
    await app.close();
  });
}
