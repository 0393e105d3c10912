import { TEST_SUBJECT_PREFIX, testSend } from '../../app/test-send.ts';
import { UserFacingError } from '../../core/errors.ts';
import type { CliContext } from '../context.ts';
import { printable } from '../format.ts';

/**
 * `newsletter test-send <issue> --to a@x,b@y [--list weekly]`: the issue as a send would make it,
 * to a few addresses, outside the send queue. Exits 1 when any address was not accepted.
 */
export async function testSendCommand(cli: CliContext, issueId: string, options: { to: string[]; list: string }): Promise<void> {
  const result = await cli.withServices((services) => testSend(services, { issueId, to: options.to, list: options.list }));
  cli.io.out(
    `test send of ${issueId} (subject marked ${TEST_SUBJECT_PREFIX.trim()}, outside the send queue): ` +
      `${result.accepted.length} accepted, ${result.rejected.length} rejected`,
  );
  for (const address of result.accepted) cli.io.out(`  accepted  ${address}`);
  for (const { address, reason } of result.rejected) cli.io.out(`  rejected  ${address}: ${printable(reason)}`);
  if (result.rejected.length > 0) {
    const total = result.accepted.length + result.rejected.length;
    const count = result.rejected.length;
    throw new UserFacingError(`${count} of ${total} test message${total === 1 ? '' : 's'} ${count === 1 ? 'was' : 'were'} not accepted by the SMTP server.`);
  }
}
