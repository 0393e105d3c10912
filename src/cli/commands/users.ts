import { addUser, listUsers, removeUser } from '../../app/accounts.ts';
import { UserFacingError } from '../../core/errors.ts';
import type { Role } from '../../core/roles.ts';
import { readProcessStdin, type CliContext } from '../context.ts';
import { printable } from '../format.ts';

/**
 * `newsletter users add <email> --role ROLE [--password-stdin]`: adds a console user. With
 * --password-stdin the password is what standard input holds (less one trailing newline, as
 * `echo` adds); without it one is generated and printed once.
 */
export async function usersAddCommand(cli: CliContext, email: string, options: { role: Role; passwordStdin?: boolean }): Promise<void> {
  const password = options.passwordStdin ? await passwordFromStdin(cli) : undefined;
  const { user, generatedPassword } = await cli.withServices((services) => addUser(services, { email, role: options.role, password }));
  cli.io.out(`added user ${user.email} (${user.role})`);
  if (generatedPassword === undefined) return;
  cli.io.out(`password: ${generatedPassword}`);
  cli.io.out("This password is shown only once and won't be shown again: store it now (only its hash is kept).");
}

/** `newsletter users list [--json]`: every console user with their role; never a password or its hash. */
export async function usersListCommand(cli: CliContext, options: { json?: boolean }): Promise<void> {
  const users = await cli.withServices((services) => listUsers(services));
  if (options.json) {
    cli.io.out(JSON.stringify(users, null, 2));
    return;
  }
  if (users.length === 0) {
    cli.io.out('no users yet (newsletter users add <email> --role admin)');
    return;
  }
  const width = Math.max(...users.map((user) => user.email.length));
  for (const user of users) cli.io.out(`${printable(user.email).padEnd(width)}  ${user.role.padEnd(6)}  added ${user.createdAt}`);
}

/** `newsletter users remove <email>`: removes a console user (never the last admin). */
export async function usersRemoveCommand(cli: CliContext, email: string): Promise<void> {
  await cli.withServices((services) => removeUser(services, email));
  cli.io.out(`removed user ${printable(email.trim())}`);
}

async function passwordFromStdin(cli: CliContext): Promise<string> {
  const text = await (cli.readStdin ?? readProcessStdin)().catch((error: unknown) => {
    throw new UserFacingError(`cannot read the password from standard input: ${error instanceof Error ? error.message : String(error)}`);
  });
  const password = text.replace(/\r?\n$/, '');
  if (password === '')
    throw new UserFacingError('--password-stdin: standard input was empty; pipe the password in, e.g. printf \'%s\\n\' "$PASSWORD" | newsletter users add …');
  return password;
}
