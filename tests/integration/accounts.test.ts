import { describe, expect, it, onTestFinished } from 'vitest';
import type { Config } from '../../config/index.ts';
import { actorOfUser, addUser, authenticateToken, listTokens, listUsers, removeUser, verifyLogin } from '../../src/app/accounts.ts';
import { openServices, type Services } from '../../src/services.ts';
import { cliEnv, runCliInProcess, spawnCli } from '../support/cli.ts';
import { testConfig } from '../support/test-config.ts';

/** A config of the test's own (a fresh key prefix) and services over it, closed when the test finishes. */
async function accountsFixture(label: string): Promise<{ config: Config; services: Services }> {
  const config = testConfig(label);
  const services = await openServices(config);
  onTestFinished(() => services.close());
  return { config, services };
}

/** Every value stored under the prefix, as text: what a leak of the Redis data would give away. */
async function everythingStored(services: Services): Promise<string> {
  const texts: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await services.redis.scan(cursor, 'MATCH', `${services.config.redis.prefix}:*`, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const type = await services.redis.type(key);
      if (type === 'hash') texts.push(key, JSON.stringify(await services.redis.hgetall(key)));
      else if (type === 'set') texts.push(key, JSON.stringify(await services.redis.smembers(key)));
      else if (type === 'string') texts.push(key, (await services.redis.get(key)) ?? '');
      else texts.push(key, `(${type})`);
    }
  } while (cursor !== '0');
  return texts.join('\n');
}

const ADMIN_PASSWORD = 'correct horse battery staple';
const OPS_PASSWORD = 'ops-password-0123';

describe('console users', () => {
  it('adds users of each role, with the password from stdin or generated and printed once, and verifies logins', async () => {
    const { config, services } = await accountsFixture('accounts-users');

    // echo adds a newline: exactly one trailing newline is not part of the password.
    const admin = await runCliInProcess(['users', 'add', 'Ada@Example.org', '--role', 'admin', '--password-stdin'], config, { stdin: `${ADMIN_PASSWORD}\n` });
    expect(admin).toMatchObject({ code: 0, err: '' });
    expect(admin.out).toBe('added user Ada@example.org (admin)');

    const ops = await runCliInProcess(['users', 'add', 'ops@example.org', '--role', 'ops', '--password-stdin'], config, { stdin: OPS_PASSWORD });
    expect(ops.code).toBe(0);

    const editor = await runCliInProcess(['users', 'add', 'editor@example.org', '--role', 'editor'], config);
    expect(editor.code).toBe(0);
    const generated = /^password: (\S+)$/m.exec(editor.out)?.[1];
    expect(generated).toBeDefined();
    expect(generated!.length).toBeGreaterThanOrEqual(20);
    expect(editor.out.split(generated!).length - 1).toBe(1);
    expect(editor.out).toMatch(/won't be shown again/);

    // The address in any case logs in; the actor's id is the lower-cased address, its name the address as given.
    expect(await verifyLogin(services, 'ada@example.org', ADMIN_PASSWORD)).toEqual({
      kind: 'user',
      id: 'ada@example.org',
      name: 'Ada@example.org',
      role: 'admin',
    });
    expect(await verifyLogin(services, 'ops@example.org', OPS_PASSWORD)).toMatchObject({ role: 'ops' });
    expect(await verifyLogin(services, 'editor@example.org', generated!)).toMatchObject({ kind: 'user', role: 'editor' });
    expect(await verifyLogin(services, 'ada@example.org', `${ADMIN_PASSWORD}\n`)).toBeUndefined();
    expect(await verifyLogin(services, 'ada@example.org', 'wrong password, long')).toBeUndefined();
    expect(await verifyLogin(services, 'nobody@example.org', ADMIN_PASSWORD)).toBeUndefined();
    expect(await verifyLogin(services, 'not an address', ADMIN_PASSWORD)).toBeUndefined();

    const list = await runCliInProcess(['users', 'list'], config);
    expect(list.code).toBe(0);
    expect(list.out.split('\n')).toEqual([
      expect.stringMatching(/^Ada@example\.org\s+admin\s+added \d{4}-/),
      expect.stringMatching(/^editor@example\.org\s+editor\s+added /),
      expect.stringMatching(/^ops@example\.org\s+ops\s+added /),
    ]);
    const json = await runCliInProcess(['users', 'list', '--json'], config);
    const users = JSON.parse(json.out) as Record<string, unknown>[];
    expect(users.map((user) => Object.keys(user).sort())).toEqual(Array.from({ length: 3 }, () => ['createdAt', 'email', 'role']));
    for (const output of [list.out, json.out]) {
      expect(output).not.toContain('scrypt');
      expect(output).not.toContain(generated!);
    }

    const stored = await everythingStored(services);
    expect(stored).toContain('scrypt$32768$8$1$');
    for (const secret of [ADMIN_PASSWORD, OPS_PASSWORD, generated!]) expect(stored).not.toContain(secret);
  });

  it('reads the password from the real standard input of a `newsletter` process', async () => {
    const { config, services } = await accountsFixture('accounts-stdin');
    const spawned = spawnCli(['users', 'add', 'ada@example.org', '--role', 'admin', '--password-stdin'], { env: cliEnv(config) });
    spawned.child.stdin.end(`${ADMIN_PASSWORD}\n`);
    expect(await spawned.exited).toBe(0);
    expect(spawned.stdout()).toBe('added user ada@example.org (admin)\n');
    expect(await verifyLogin(services, 'ada@example.org', ADMIN_PASSWORD)).toMatchObject({ role: 'admin' });
  });

  it('refuses a duplicate (in any case), a bad role, a short or empty password and a malformed address, each with its own message', async () => {
    const { config } = await accountsFixture('accounts-refusals');
    expect((await runCliInProcess(['users', 'add', 'ada@example.org', '--role', 'admin', '--password-stdin'], config, { stdin: ADMIN_PASSWORD })).code).toBe(0);

    const duplicate = await runCliInProcess(['users', 'add', 'ADA@example.org', '--role', 'editor', '--password-stdin'], config, { stdin: OPS_PASSWORD });
    expect(duplicate).toMatchObject({ code: 1, err: 'error: a user with the address ADA@example.org already exists' });

    const badRole = await runCliInProcess(['users', 'add', 'bob@example.org', '--role', 'root'], config);
    expect(badRole.code).toBe(1);
    expect(badRole.err).toMatch(/argument 'root' is invalid\. Allowed choices are admin, editor, ops/);

    const short = await runCliInProcess(['users', 'add', 'bob@example.org', '--role', 'ops', '--password-stdin'], config, { stdin: 'short\n' });
    expect(short).toMatchObject({ code: 1, err: 'error: a password needs at least 12 characters; this one has 5' });

    const empty = await runCliInProcess(['users', 'add', 'bob@example.org', '--role', 'ops', '--password-stdin'], config, { stdin: '\n' });
    expect(empty.code).toBe(1);
    expect(empty.err).toMatch(/^error: --password-stdin: standard input was empty/);

    const malformed = await runCliInProcess(['users', 'add', 'bob at example.org', '--role', 'ops'], config);
    expect(malformed).toMatchObject({ code: 1, err: 'error: "bob at example.org" is not a valid email address' });

    const noRole = await runCliInProcess(['users', 'add', 'bob@example.org'], config);
    expect(noRole.code).toBe(1);
    expect(noRole.err).toMatch(/required option '--role <role>' not specified/);

    // None of the refused users was stored.
    const users = JSON.parse((await runCliInProcess(['users', 'list', '--json'], config)).out) as { email: string }[];
    expect(users.map((user) => user.email)).toEqual(['ada@example.org']);
  });

  it('removes users, but never the last admin; a removed user no longer logs in or keeps a session', async () => {
    const { config, services } = await accountsFixture('accounts-remove');
    for (const [email, role] of [
      ['ada@example.org', 'admin'],
      ['eve@example.org', 'editor'],
    ] as const)
      expect((await runCliInProcess(['users', 'add', email, '--role', role, '--password-stdin'], config, { stdin: ADMIN_PASSWORD })).code).toBe(0);

    expect(await actorOfUser(services, 'EVE@example.org')).toEqual({ kind: 'user', id: 'eve@example.org', name: 'eve@example.org', role: 'editor' });
    expect(await runCliInProcess(['users', 'remove', 'Eve@Example.org'], config)).toMatchObject({ code: 0, out: 'removed user Eve@Example.org' });
    expect(await verifyLogin(services, 'eve@example.org', ADMIN_PASSWORD)).toBeUndefined();
    expect(await actorOfUser(services, 'eve@example.org')).toBeUndefined();

    expect(await runCliInProcess(['users', 'remove', 'eve@example.org'], config)).toMatchObject({
      code: 1,
      err: 'error: no user with the address eve@example.org',
    });

    const lastAdmin = await runCliInProcess(['users', 'remove', 'ada@example.org'], config);
    expect(lastAdmin).toMatchObject({ code: 1, err: 'error: ada@example.org is the last admin; add another admin first, so someone can still manage users' });
    expect(await verifyLogin(services, 'ada@example.org', ADMIN_PASSWORD)).toMatchObject({ role: 'admin' });

    // With a second admin, the first can go.
    expect((await runCliInProcess(['users', 'add', 'bob@example.org', '--role', 'admin', '--password-stdin'], config, { stdin: OPS_PASSWORD })).code).toBe(0);
    expect((await runCliInProcess(['users', 'remove', 'ada@example.org'], config)).code).toBe(0);
    expect((await listUsers(services)).map((user) => user.email)).toEqual(['bob@example.org']);
  });

  it('lets only one of two admins removed at the same time go, so one admin always remains (each of several rounds)', async () => {
    const { services } = await accountsFixture('accounts-remove-race');
    await addUser(services, { email: 'ada@example.org', role: 'admin', password: ADMIN_PASSWORD });
    for (let round = 0; round < 3; round += 1) {
      // Two admins each round: the one left from the round before, and a new one.
      await addUser(services, { email: `bob-${round}@example.org`, role: 'admin', password: ADMIN_PASSWORD });
      const admins = (await listUsers(services)).map((user) => user.email);
      expect(admins).toHaveLength(2);
      const outcomes = await Promise.allSettled(admins.map((email) => removeUser(services, email)));
      expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
      const refused = outcomes.find((outcome) => outcome.status === 'rejected');
      expect(String(refused?.reason)).toMatch(/^LastAdminError: \S+ is the last admin/);
      expect((await listUsers(services)).filter((user) => user.role === 'admin')).toHaveLength(1);
    }
  });

  it('adds only one of two users with the same address (in any case) added at the same time', async () => {
    const { services } = await accountsFixture('accounts-add-race');
    const outcomes = await Promise.allSettled(
      ['eve@example.org', 'EVE@example.org'].map((email) => addUser(services, { email, role: 'editor', password: ADMIN_PASSWORD })),
    );
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
    expect(String(outcomes.find((outcome) => outcome.status === 'rejected')?.reason)).toMatch(/already exists/);
    expect(await listUsers(services)).toHaveLength(1);
  });

  it('does the same scrypt work for an unknown address as for a wrong password, so timing does not tell which addresses have an account', async () => {
    const { services } = await accountsFixture('accounts-timing');
    await addUser(services, { email: 'ada@example.org', role: 'admin', password: ADMIN_PASSWORD });
    const medianMs = async (login: () => Promise<unknown>) => {
      const times: number[] = [];
      for (let index = 0; index < 5; index += 1) {
        const started = performance.now();
        expect(await login()).toBeUndefined();
        times.push(performance.now() - started);
      }
      return times.sort((a, b) => a - b)[2]!;
    };
    const wrongPassword = await medianMs(() => verifyLogin(services, 'ada@example.org', 'not the password'));
    const unknownAddress = await medianMs(() => verifyLogin(services, 'nobody@example.org', 'not the password'));
    const malformedAddress = await medianMs(() => verifyLogin(services, 'nobody', 'not the password'));
    // Loose bounds (a loaded machine varies): without the work an unknown address answers in about a millisecond, not tens.
    expect(wrongPassword).toBeGreaterThan(5);
    expect(unknownAddress).toBeGreaterThan(wrongPassword / 3);
    expect(malformedAddress).toBeGreaterThan(wrongPassword / 3);
  });
});

describe('API tokens', () => {
  it('prints a token once that authenticates with its role, lists it without the token, and revokes it', async () => {
    const { config, services } = await accountsFixture('accounts-tokens');

    const created = await runCliInProcess(['tokens', 'create', '--name', 'ci-deploy', '--role', 'ops'], config);
    expect(created).toMatchObject({ code: 0, err: '' });
    const token = /^token: (nlt_\S+)$/m.exec(created.out)?.[1];
    const id = /^created API token ([0-9a-f]+) "ci-deploy" \(ops\)$/m.exec(created.out)?.[1];
    expect(token).toBeDefined();
    expect(id).toBeDefined();
    expect(created.out).toMatch(/won't be shown again/);

    const listedBefore = await listTokens(services);
    expect(listedBefore).toEqual([{ id, name: 'ci-deploy', role: 'ops', createdAt: expect.any(String), lastUsedAt: undefined }]);

    expect(await authenticateToken(services, token!)).toEqual({ kind: 'token', id, name: 'ci-deploy', role: 'ops' });
    const firstUse = (await listTokens(services))[0]?.lastUsedAt;
    expect(firstUse).toMatch(/^\d{4}-\d\d-\d\dT/);
    // Used again within the minute: lastUsedAt is not written again.
    expect(await authenticateToken(services, token!)).toMatchObject({ role: 'ops' });
    expect((await listTokens(services))[0]?.lastUsedAt).toBe(firstUse);

    // Altered, truncated or foreign tokens authenticate nothing.
    const tampered = `${token!.slice(0, -1)}${token!.endsWith('A') ? 'B' : 'A'}`;
    for (const bad of [tampered, token!.slice(0, -4), token!.slice(4), `Bearer ${token!}`, '', 'nlt_'])
      expect(await authenticateToken(services, bad)).toBeUndefined();

    const list = await runCliInProcess(['tokens', 'list'], config);
    expect(list.out).toMatch(new RegExp(`^${id}  ci-deploy  ops\\s+created \\S+  last used ${firstUse}$`));
    const json = await runCliInProcess(['tokens', 'list', '--json'], config);
    expect(JSON.parse(json.out)).toEqual([{ id, name: 'ci-deploy', role: 'ops', createdAt: expect.any(String), lastUsedAt: firstUse }]);
    const secret = token!.slice(`nlt_${id}_`.length);
    for (const output of [list.out, json.out]) {
      expect(output).not.toContain(token!);
      expect(output).not.toContain(secret);
    }

    const stored = await everythingStored(services);
    expect(stored).toContain(id!);
    expect(stored).not.toContain(token!);
    expect(stored).not.toContain(secret);

    expect(await runCliInProcess(['tokens', 'revoke', 'ci-deploy'], config)).toMatchObject({ code: 0, out: 'revoked API token ci-deploy' });
    expect(await authenticateToken(services, token!)).toBeUndefined();
    expect((await runCliInProcess(['tokens', 'list'], config)).out).toBe('no API tokens (newsletter tokens create --name NAME --role ROLE)');
    expect(await runCliInProcess(['tokens', 'revoke', 'ci-deploy'], config)).toMatchObject({
      code: 1,
      err: 'error: no API token with the id or name "ci-deploy" (see newsletter tokens list)',
    });
    // Nothing of the revoked token is left behind.
    expect(await everythingStored(services)).not.toContain(id!);
  });

  it('revokes by id; refuses a taken name, a malformed name and an unknown role', async () => {
    const { config, services } = await accountsFixture('accounts-token-refusals');
    const first = await runCliInProcess(['tokens', 'create', '--name', 'grafana', '--role', 'admin'], config);
    const editorToken = await runCliInProcess(['tokens', 'create', '--name', 'editor.bot', '--role', 'editor'], config);
    expect([first.code, editorToken.code]).toEqual([0, 0]);

    const taken = await runCliInProcess(['tokens', 'create', '--name', 'grafana', '--role', 'ops'], config);
    expect(taken).toMatchObject({
      code: 1,
      err: 'error: a token named "grafana" exists already; revoke it first (newsletter tokens revoke grafana) or pick another name',
    });
    const malformed = await runCliInProcess(['tokens', 'create', '--name', 'has space', '--role', 'ops'], config);
    expect(malformed.code).toBe(1);
    expect(malformed.err).toMatch(/^error: "has space" is not a token name/);
    const badRole = await runCliInProcess(['tokens', 'create', '--name', 'x', '--role', 'owner'], config);
    expect(badRole.code).toBe(1);
    expect(badRole.err).toMatch(/Allowed choices are admin, editor, ops/);

    const id = /^created API token (\S+)/.exec(first.out)?.[1];
    const token = /^token: (\S+)$/m.exec(first.out)?.[1];
    expect(await authenticateToken(services, token!)).toMatchObject({ role: 'admin', name: 'grafana' });
    expect((await runCliInProcess(['tokens', 'revoke', id!], config)).code).toBe(0);
    expect(await authenticateToken(services, token!)).toBeUndefined();
    // The other token is untouched, and the name is free again.
    expect(await authenticateToken(services, /^token: (\S+)$/m.exec(editorToken.out)![1]!)).toMatchObject({ role: 'editor', name: 'editor.bot' });
    expect((await runCliInProcess(['tokens', 'create', '--name', 'grafana', '--role', 'ops'], config)).code).toBe(0);
    expect((await listTokens(services)).map((view) => `${view.name}:${view.role}`)).toEqual(['editor.bot:editor', 'grafana:ops']);
  });
});
