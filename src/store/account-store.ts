import type { ChainableCommander, Redis } from 'ioredis';
import { z } from 'zod';
import { ROLES } from '../core/roles.ts';
import { parseRecord } from './records.ts';
import { RedisStore } from './redis-store.ts';

const role = z.enum(ROLES, { error: (issue) => `unknown role ${JSON.stringify(issue.input ?? '')}` });

/** A console user as stored. The password is only ever kept as its scrypt hash (see app/accounts.ts). */
const userHashSchema = z.object({
  email: z.string().min(3),
  emailKey: z.string().min(3),
  role,
  passwordHash: z.string().min(1),
  createdAt: z.string().min(1),
  /**
   * Random, in every session cookie of this user: a session whose value differs is over. Replaced
   * at logout, so a copied cookie stops working (the cookie itself is stateless).
   */
  sessionNonce: z.string().min(16),
});
/** One console user. */
export type StoredUser = z.infer<typeof userHashSchema>;

/** An API token as stored: its sha256, never the token. */
const tokenHashSchema = z.object({
  id: z.string().min(1),
  name: z.string().min(1),
  role,
  hash: z.string().regex(/^[0-9a-f]{64}$/, 'not a sha256 in hex'),
  createdAt: z.string().min(1),
  lastUsedAt: z.string().min(1).optional(),
});
/** One API token. */
export type StoredToken = z.infer<typeof tokenHashSchema>;

/** What a change to the accounts needs to know before it writes, and what it then writes (nothing: it is refused). */
interface TransactionStep<T> {
  readonly outcome: T;
  readonly writes?: (multi: ChainableCommander) => void;
}

/** The fields of a record that have a value (Redis would store an undefined one as ""). */
function definedFields(record: Readonly<Record<string, string | undefined>>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** How often a change to the accounts is tried again when another one changed what it read. */
const MAX_TRANSACTION_ROUNDS = 10;

/**
 * Console users and API tokens in Redis. Every key shares the `{accounts}` hash tag, so the
 * transactions below work on Redis Cluster too.
 */
export class AccountStore extends RedisStore {
  /** Adds a user, unless one with the same emailKey exists. */
  async addUser(user: StoredUser): Promise<'added' | 'exists'> {
    const key = this.keys.accountUser(user.emailKey);
    return this.transaction(async (connection) => {
      await connection.watch(key);
      if ((await connection.exists(key)) === 1) return { outcome: 'exists' };
      return {
        outcome: 'added',
        writes: (multi) => multi.hset(key, user).sadd(this.keys.accountUsers, user.emailKey),
      };
    });
  }

  /** One user by emailKey, or undefined. */
  async user(emailKey: string): Promise<StoredUser | undefined> {
    const hash = await this.redis.hgetall(this.keys.accountUser(emailKey));
    return Object.keys(hash).length === 0 ? undefined : parseRecord(userHashSchema, hash, `user ${emailKey}`);
  }

  /** Every user, in no particular order (a console has a handful). */
  async users(): Promise<StoredUser[]> {
    return this.readUsers(this.redis, await this.redis.smembers(this.keys.accountUsers));
  }

  /**
   * Removes a user. Refused when it would leave no admin, so nobody can lock everyone out of user
   * management: the check and the removal are one transaction, so two removals at once can't both pass.
   */
  async removeUser(emailKey: string): Promise<'removed' | 'missing' | 'last-admin'> {
    return this.transaction(async (connection) => {
      await connection.watch(this.keys.accountUsers);
      const userKeys = await connection.smembers(this.keys.accountUsers);
      if (userKeys.length > 0) await connection.watch(...userKeys.map((userKey) => this.keys.accountUser(userKey)));
      const users = await this.readUsers(connection, userKeys);
      const user = users.find((candidate) => candidate.emailKey === emailKey);
      if (!user) return { outcome: 'missing' };
      if (user.role === 'admin' && !users.some((other) => other.role === 'admin' && other.emailKey !== emailKey)) return { outcome: 'last-admin' };
      return {
        outcome: 'removed',
        writes: (multi) => multi.del(this.keys.accountUser(emailKey)).srem(this.keys.accountUsers, emailKey),
      };
    });
  }

  /** Gives a user a new session nonce, ending every session they have; false when the user is gone. */
  async replaceSessionNonce(emailKey: string, nonce: string): Promise<boolean> {
    const key = this.keys.accountUser(emailKey);
    return this.transaction(async (connection) => {
      await connection.watch(key);
      if ((await connection.exists(key)) === 0) return { outcome: false };
      return { outcome: true, writes: (multi) => multi.hset(key, 'sessionNonce', nonce) };
    });
  }

  /** The failed logins counted in the current window, from this client address and for this account. */
  async loginFailures(client: string, emailKey: string): Promise<{ readonly client: number; readonly user: number }> {
    const [byClient, byUser] = await this.redis.mget(this.keys.accountLoginFailuresByClient(client), this.keys.accountLoginFailuresByUser(emailKey));
    return { client: Number(byClient ?? 0), user: Number(byUser ?? 0) };
  }

  /** Counts one failed login for the client address and for the account; each count lapses windowMs after its first failure. */
  async recordLoginFailure(client: string, emailKey: string, windowMs: number): Promise<void> {
    const byClient = this.keys.accountLoginFailuresByClient(client);
    const byUser = this.keys.accountLoginFailuresByUser(emailKey);
    await this.redis.multi().incr(byClient).pexpire(byClient, windowMs, 'NX').incr(byUser).pexpire(byUser, windowMs, 'NX').exec();
  }

  /** Adds a token, unless a token not revoked has the same name. */
  async addToken(token: StoredToken): Promise<'added' | 'name-taken'> {
    return this.transaction(async (connection) => {
      await connection.watch(this.keys.accountTokenNames);
      if ((await connection.hexists(this.keys.accountTokenNames, token.name)) === 1) return { outcome: 'name-taken' };
      return {
        outcome: 'added',
        writes: (multi) =>
          multi
            .hset(this.keys.accountToken(token.id), definedFields(token))
            .hset(this.keys.accountTokenNames, token.name, token.id)
            .hset(this.keys.accountTokenByHash, token.hash, token.id),
      };
    });
  }

  /** One token by id, or undefined (never created, or revoked). */
  async token(id: string): Promise<StoredToken | undefined> {
    const hash = await this.redis.hgetall(this.keys.accountToken(id));
    return Object.keys(hash).length === 0 ? undefined : parseRecord(tokenHashSchema, hash, `API token ${id}`);
  }

  /** The id of the token with this sha256 (hex), or undefined. */
  async tokenIdByHash(hash: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.accountTokenByHash, hash)) ?? undefined;
  }

  /** The id of the token with this name, or undefined. */
  async tokenIdByName(name: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.accountTokenNames, name)) ?? undefined;
  }

  /** Every token not revoked, in no particular order. */
  async tokens(): Promise<StoredToken[]> {
    const ids = Object.values(await this.redis.hgetall(this.keys.accountTokenNames));
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.accountToken(id));
    const replies = ids.length === 0 ? [] : ((await pipeline.exec()) ?? []);
    return replies.flatMap(([error, hash], index) => {
      if (error) throw error;
      // A token revoked between the two reads is simply gone.
      if (!hash || Object.keys(hash).length === 0) return [];
      return [parseRecord(tokenHashSchema, hash, `API token ${ids[index]}`)];
    });
  }

  /** Revokes a token: its record and both lookups go, so the token authenticates nothing any more. */
  async revokeToken(id: string): Promise<boolean> {
    const key = this.keys.accountToken(id);
    return this.transaction(async (connection) => {
      await connection.watch(key, this.keys.accountTokenNames);
      const hash = await connection.hgetall(key);
      if (Object.keys(hash).length === 0) return { outcome: false };
      const token = parseRecord(tokenHashSchema, hash, `API token ${id}`);
      const nameHolder = await connection.hget(this.keys.accountTokenNames, token.name);
      return {
        outcome: true,
        writes: (multi) => {
          multi.del(key).hdel(this.keys.accountTokenByHash, token.hash);
          if (nameHolder === id) multi.hdel(this.keys.accountTokenNames, token.name);
        },
      };
    });
  }

  /** Records when a token was last used. */
  async touchToken(id: string, at: string): Promise<void> {
    const key = this.keys.accountToken(id);
    const replies = await this.redis.multi().hset(key, 'lastUsedAt', at).hexists(key, 'hash').exec();
    // A revoke that landed between the caller's read and this write would leave a record of only
    // lastUsedAt behind: take it away again. (Ids are random, so no new token reuses this key.)
    if (replies?.[1]?.[1] === 0) await this.redis.del(key);
  }

  private async readUsers(connection: Redis, userKeys: readonly string[]): Promise<StoredUser[]> {
    if (userKeys.length === 0) return [];
    const pipeline = connection.pipeline();
    for (const userKey of userKeys) pipeline.hgetall(this.keys.accountUser(userKey));
    const replies = (await pipeline.exec()) ?? [];
    return replies.flatMap(([error, hash], index) => {
      if (error) throw error;
      // A user removed between the two reads is simply gone (a transaction then finds its WATCH broken and reads again).
      if (!hash || Object.keys(hash).length === 0) return [];
      return [parseRecord(userHashSchema, hash, `user ${userKeys[index]}`)];
    });
  }

  /**
   * Optimistic transaction (WATCH, read, MULTI/EXEC, again if a watched key changed). It runs on a
   * connection of its own: WATCH is state of the connection, and the shared one carries other
   * requests' commands in between. Account changes are rare (a CLI command, an admin's click), so
   * the extra connection costs nothing that matters.
   */
  private async transaction<T>(attempt: (connection: Redis) => Promise<TransactionStep<T>>): Promise<T> {
    const connection = this.redis.duplicate();
    // Failures reject the commands below, which is where they surface; this keeps ioredis from
    // also printing them as an unhandled 'error' event.
    connection.on('error', () => undefined);
    try {
      for (let round = 0; round < MAX_TRANSACTION_ROUNDS; round += 1) {
        const step = await attempt(connection);
        // A refusal runs an empty MULTI/EXEC too: it fails like a write when what the refusal was
        // judged on changed meanwhile, so it is judged again on a consistent reading.
        const multi = connection.multi();
        step.writes?.(multi);
        const replies = await multi.exec();
        if (replies === null) continue;
        const failed = replies.find(([error]) => error);
        if (failed) throw failed[0];
        return step.outcome;
      }
      throw new Error(`the accounts kept changing under a transaction (${MAX_TRANSACTION_ROUNDS} tries); try again`);
    } finally {
      connection.disconnect();
    }
  }
}
