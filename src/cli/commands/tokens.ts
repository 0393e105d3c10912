import { createToken, listTokens, revokeToken } from '../../app/accounts.ts';
import type { Role } from '../../core/roles.ts';
import type { CliContext } from '../context.ts';

/** `newsletter tokens create --name NAME --role ROLE`: creates an API token and prints it, once. */
export async function tokensCreateCommand(cli: CliContext, options: { name: string; role: Role }): Promise<void> {
  const { token, view } = await cli.withServices((services) => createToken(services, options));
  cli.io.out(`created API token ${view.id} "${view.name}" (${view.role})`);
  cli.io.out(`token: ${token}`);
  cli.io.out("This token is shown only once and won't be shown again: store it now (only its hash is kept).");
  cli.io.out(`Use it as the header  Authorization: Bearer <token>`);
}

/** `newsletter tokens list [--json]`: the API tokens not revoked, with role and last use; never a token. */
export async function tokensListCommand(cli: CliContext, options: { json?: boolean }): Promise<void> {
  const tokens = await cli.withServices((services) => listTokens(services));
  if (options.json) {
    cli.io.out(
      JSON.stringify(
        tokens.map((token) => ({ ...token, lastUsedAt: token.lastUsedAt ?? null })),
        null,
        2,
      ),
    );
    return;
  }
  if (tokens.length === 0) {
    cli.io.out('no API tokens (newsletter tokens create --name NAME --role ROLE)');
    return;
  }
  const width = Math.max(...tokens.map((token) => token.name.length));
  for (const token of tokens)
    cli.io.out(`${token.id}  ${token.name.padEnd(width)}  ${token.role.padEnd(6)}  created ${token.createdAt}  last used ${token.lastUsedAt ?? 'never'}`);
}

/** `newsletter tokens revoke <id-or-name>`: the token authenticates nothing from now on. */
export async function tokensRevokeCommand(cli: CliContext, idOrName: string): Promise<void> {
  await cli.withServices((services) => revokeToken(services, idOrName));
  cli.io.out(`revoked API token ${idOrName.trim()}`);
}
