import { startBounceServer } from '../../workers/bounce-smtp.ts';
import type { CliContext } from '../context.ts';

/** `newsletter bounce-server`: takes bounce and complaint reports over SMTP until told to stop. */
export async function bounceServerCommand(cli: CliContext): Promise<void> {
  await cli.withServices(async (services) => {
    const server = await startBounceServer(services);
    cli.io.out(`bounce server on ${services.config.bounces.smtpHost}:${server.port}, taking reports for @${server.domain}`);
    const reason = await cli.untilStop();
    cli.io.out(`${reason}: closing the bounce server`);
    await server.close();
  });
}
