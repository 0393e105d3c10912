import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { emailKey, normaliseEmail } from '../core/address.ts';
import { UserFacingError } from '../core/errors.ts';
import { isRole, ROLES, type Role } from '../core/roles.ts';
import { AccountStore, type StoredToken, type StoredUser } from '../store/account-store.ts';

/** Who is asking: a console user (id = emailKey, name = email) or an API token (its id and name). */
export interface Actor {
  readonly kind: 'user' | 'token';
  readonly id: string;
  readonly name: string;
  readonly role: Role;
}

/** A console user as shown: never the password hash. */
export interface UserView {
  readonly email: string;
  readonly role: Role;
  readonly createdAt: string;
}

/** An API token as shown: never the token, nor its hash. */
export interface TokenView {
  readonly id: string;
  readonly name: string;
  readonly role: Role;
  readonly createdAt: string;
  readonly lastUsedAt: string | undefined;
}

/** What the account use cases need of the services (Services has it). */
export interface AccountDeps {
  readonly redis: Redis;
  readonly config: { readonly redis: { readonly prefix: string } };
}

// ---------------------------------------------------------------------------------------------
// Passwords

/** scrypt's cost for new hashes: N = 2^15, r = 8, p = 1 (OWASP's recommendation), 32 MiB and some 50 ms each. */
export const SCRYPT_COST = { N: 2 ** 15, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Bounds on the cost read from a stored hash, so a damaged record can't make a login take minutes or gigabytes. */
const MAX_COST = { N: 2 ** 20, r: 32, p: 16 } as const;

/** Shortest password accepted: 12 characters (NIST SP 800-63B asks at least 8; a console that can send to everyone asks more). */
export const MIN_PASSWORD_LENGTH = 12;
/** Longest password accepted; longer input is not a password someone types. */
export const MAX_PASSWORD_LENGTH = 1024;
/** Random bytes of a generated password: 18 give 24 base64url characters (144 bits). */
const GENERATED_PASSWORD_BYTES = 18;

/** A stored password hash, `scrypt$N$r$p$salt$hash` (base64url), taken apart. The cost is kept per hash so it can rise later. */
export interface PasswordHash {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

/** The stored form of a password hash. */
export function formatPasswordHash(parts: PasswordHash): string {
  return ['scrypt', parts.N, parts.r, parts.p, parts.salt.toString('base64url'), parts.hash.toString('base64url')].join('$');
}

/** Takes a stored password hash apart; undefined for anything that is not one this code can check. */
export function parsePasswordHash(stored: string): PasswordHash | undefined {
  const [scheme, n, r, p, salt, hash, extra] = stored.split('$');
  if (scheme !== 'scrypt' || extra !== undefined || salt === undefined || hash === undefined) return undefined;
  const cost = [n, r, p].map((text) => (text !== undefined && /^[1-9]\d{0,7}$/.test(text) ? Number(text) : NaN));
  const [N = NaN, R = NaN, P = NaN] = cost;
  const powerOfTwo = N > 1 && (N & (N - 1)) === 0;
  if (!powerOfTwo || N > MAX_COST.N || !(R <= MAX_COST.r) || !(P <= MAX_COST.p)) return undefined;
  if (!/^[A-Za-z0-9_-]+$/.test(salt) || !/^[A-Za-z0-9_-]+$/.test(hash)) return undefined;
  const saltBytes = Buffer.from(salt, 'base64url');
  const hashBytes = Buffer.from(hash, 'base64url');
  if (saltBytes.length < SALT_BYTES || hashBytes.length < 16) return undefined;
  return { N, r: R, p: P, salt: saltBytes, hash: hashBytes };
}

/** scrypt, asynchronous (a login must not hold the server's event loop for 50 ms). */
function deriveKey(password: string, salt: Buffer, cost: { readonly N: number; readonly r: number; readonly p: number }, length: number): Promise<Buffer> {
  // Node refuses more than 32 MiB by default, which N = 2^15, r = 8 needs exactly (128·N·r bytes): allow twice what the cost needs.
  const maxmem = 2 * 128 * cost.N * cost.r * cost.p;
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFC'), salt, length, { N: cost.N, r: cost.r, p: cost.p, maxmem }, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

/** Hashes a password for storage, with a fresh salt, at SCRYPT_COST (or the cost given). */
export async function hashPassword(password: string, cost: { readonly N: number; readonly r: number; readonly p: number } = SCRYPT_COST): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  return formatPasswordHash({ ...cost, salt, hash: await deriveKey(password, salt, cost, KEY_BYTES) });
}

/** Whether a password matches a stored hash; false for a hash this code can't read. Compares in constant time. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = parsePasswordHash(stored);
  if (!parts) return false;
  const derived = await deriveKey(password, parts.salt, parts, parts.hash.length);
  return timingSafeEqual(derived, parts.hash);
}

/** A password as given, checked: a UserFacingError says what is wrong with it. */
export function checkPassword(password: string): string {
  // Characters as a person counts them (grapheme clusters), the same in either Unicode normal form.
  const length = [...new Intl.Segmenter().segment(password)].length;
  if (length < MIN_PASSWORD_LENGTH) throw new UserFacingError(`a password needs at least ${MIN_PASSWORD_LENGTH} characters; this one has ${length}`);
  if (length > MAX_PASSWORD_LENGTH) throw new UserFacingError(`a password has at most ${MAX_PASSWORD_LENGTH} characters; this one has ${length}`);
  // Nobody can type a control character (a tab, a second line) into the login form.
  if (/\p{Cc}/u.test(password)) throw new UserFacingError('a password cannot contain control characters (tabs, line breaks)');
  return password;
}

// ---------------------------------------------------------------------------------------------
// Users

function accountStore(services: AccountDeps): AccountStore {
  return new AccountStore(services.redis, services.config.redis.prefix);
}

function requireRole(role: string): Role {
  if (!isRole(role)) throw new UserFacingError(`unknown role "${role}": a role is one of ${ROLES.join(', ')}`);
  return role;
}

function userView(user: StoredUser): UserView {
  return { email: user.email, role: user.role, createdAt: user.createdAt };
}

function userActor(user: StoredUser): Actor {
  return { kind: 'user', id: user.emailKey, name: user.email, role: user.role };
}

/** An address that already has a console user (in any case): the console and the API answer 409. */
export class UserExistsError extends UserFacingError {
  override readonly name = 'UserExistsError';
}

/** An address with no console user: 404. */
export class UnknownUserError extends UserFacingError {
  override readonly name = 'UnknownUserError';
}

/** The last admin, whom removing would leave nobody to manage users: 409. */
export class LastAdminError extends UserFacingError {
  override readonly name = 'LastAdminError';
}

/**
 * Adds a console user with a role. Without a password one is generated and returned once: only
 * its hash is stored. UserFacingError for a malformed address, an unknown role, a password too
 * short, or an address (in any case) that already has a user.
 */
export async function addUser(
  services: AccountDeps,
  request: { email: string; role: Role; password?: string },
): Promise<{ user: UserView; generatedPassword: string | undefined }> {
  const email = normaliseEmail(request.email);
  if (!email) throw new UserFacingError(`"${request.email}" is not a valid email address`);
  const role = requireRole(request.role);
  const generatedPassword = request.password === undefined ? randomBytes(GENERATED_PASSWORD_BYTES).toString('base64url') : undefined;
  const password = generatedPassword ?? checkPassword(request.password ?? '');
  const user: StoredUser = {
    email,
    emailKey: emailKey(email),
    role,
    passwordHash: await hashPassword(password),
    createdAt: new Date().toISOString(),
    sessionNonce: newSessionNonce(),
  };
  if ((await accountStore(services).addUser(user)) === 'exists') throw new UserExistsError(`a user with the address ${email} already exists`);
  return { user: userView(user), generatedPassword };
}

/** Every console user, by address. */
export async function listUsers(services: AccountDeps): Promise<UserView[]> {
  const users = await accountStore(services).users();
  return users.sort((a, b) => a.emailKey.localeCompare(b.emailKey)).map(userView);
}

/** Removes a console user. UserFacingError for an unknown address, or for the last admin (nobody could manage users after). */
export async function removeUser(services: AccountDeps, email: string): Promise<void> {
  const outcome = await accountStore(services).removeUser(emailKey(email));
  if (outcome === 'missing') throw new UnknownUserError(`no user with the address ${email.trim()}`);
  if (outcome === 'last-admin') throw new LastAdminError(`${email.trim()} is the last admin; add another admin first, so someone can still manage users`);
}

/**
 * The actor a login names, or undefined for a wrong password, an unknown address or a malformed
 * one: the same answer, after the same scrypt work, so neither the answer nor its timing tells
 * whether an address has an account.
 */
export async function verifyLogin(services: AccountDeps, email: string, password: string): Promise<Actor | undefined> {
  const user = normaliseEmail(email) ? await accountStore(services).user(emailKey(email)) : undefined;
  if (!user || password.length > MAX_PASSWORD_LENGTH) {
    await deriveKey(password.slice(0, MAX_PASSWORD_LENGTH), randomBytes(SALT_BYTES), SCRYPT_COST, KEY_BYTES);
    return undefined;
  }
  return (await verifyPassword(password, user.passwordHash)) ? userActor(user) : undefined;
}

/** How many failed logins are allowed, per client address and per account, in one window. */
export interface LoginPolicy {
  readonly perClient: number;
  readonly perAccount: number;
  readonly windowMs: number;
}

/** What a login attempt came to. A throttled attempt is refused before any password is checked. */
export type LoginOutcome =
  | { readonly outcome: 'logged-in'; readonly actor: Actor; readonly sessionNonce: string }
  | { readonly outcome: 'wrong' }
  | { readonly outcome: 'throttled' };

function newSessionNonce(): string {
  return randomBytes(16).toString('base64url');
}

/**
 * The console's login: only failed attempts count, per client address (a guesser) and per account
 * (guessers spread over many addresses), so a user who types their password right is never held
 * up by someone else's failures from another address. The per-account allowance is larger than the
 * per-client one: an attacker who knows an address can hold that one account up, nothing more.
 */
export async function logIn(
  services: AccountDeps,
  request: { readonly email: string; readonly password: string; readonly client: string },
  policy: LoginPolicy,
): Promise<LoginOutcome> {
  const store = accountStore(services);
  const userKey = emailKey(request.email);
  const failures = await store.loginFailures(request.client, userKey);
  if (failures.client >= policy.perClient || failures.user >= policy.perAccount) return { outcome: 'throttled' };
  const actor = await verifyLogin(services, request.email, request.password);
  const user = actor ? await store.user(actor.id) : undefined;
  if (!actor || !user) {
    await store.recordLoginFailure(request.client, userKey, policy.windowMs);
    return { outcome: 'wrong' };
  }
  return { outcome: 'logged-in', actor, sessionNonce: user.sessionNonce };
}

/** The actor of a session: undefined once the user is removed or logged out (their nonce replaced), the current role otherwise. */
export async function actorOfSession(services: AccountDeps, email: string, sessionNonce: string): Promise<Actor | undefined> {
  const user = await accountStore(services).user(emailKey(email));
  return user && user.sessionNonce === sessionNonce ? userActor(user) : undefined;
}

/** Logs a user out everywhere: every session cookie of theirs stops working, copies included. */
export async function endSessions(services: AccountDeps, email: string): Promise<void> {
  await accountStore(services).replaceSessionNonce(emailKey(email), newSessionNonce());
}

/** The actor of a user as stored now (a session's check on each request): undefined once removed, the current role otherwise. */
export async function actorOfUser(services: AccountDeps, email: string): Promise<Actor | undefined> {
  const user = await accountStore(services).user(emailKey(email));
  return user ? userActor(user) : undefined;
}

// ---------------------------------------------------------------------------------------------
// API tokens

/** What every API token starts with, so one is recognised in a config file or a leaked log (and by secret scanners). */
export const TOKEN_PREFIX = 'nlt_';
/** Longer than any token createToken makes; anything longer is refused before it is hashed. */
const MAX_TOKEN_LENGTH = 128;
/** Token names: short, printable everywhere, no spaces (they are typed in `tokens revoke`). */
const TOKEN_NAME_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** lastUsedAt is written at most this often per token, so a busy API client costs no write per request. */
const LAST_USED_RESOLUTION_MS = 60_000;

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function tokenView(token: StoredToken): TokenView {
  return { id: token.id, name: token.name, role: token.role, createdAt: token.createdAt, lastUsedAt: token.lastUsedAt };
}

/**
 * Creates an API token `nlt_<id>_<secret>` (a 256-bit secret) and returns it once: only its sha256
 * is stored. A sha256 is enough here, unlike for passwords: the secret is random, not guessable.
 * UserFacingError for a malformed name, an unknown role, or a name another token has.
 */
export async function createToken(services: AccountDeps, request: { name: string; role: Role }): Promise<{ token: string; view: TokenView }> {
  const name = request.name.trim();
  if (!TOKEN_NAME_SHAPE.test(name))
    throw new UserFacingError(
      `"${request.name}" is not a token name: up to 64 letters, digits, ".", "_" and "-", starting with a letter or digit (e.g. ci-deploy)`,
    );
  const role = requireRole(request.role);
  const id = randomBytes(6).toString('hex');
  const token = `${TOKEN_PREFIX}${id}_${randomBytes(32).toString('base64url')}`;
  const stored: StoredToken = { id, name, role, hash: sha256(token), createdAt: new Date().toISOString() };
  if ((await accountStore(services).addToken(stored)) === 'name-taken')
    throw new UserFacingError(`a token named "${name}" exists already; revoke it first (newsletter tokens revoke ${name}) or pick another name`);
  return { token, view: tokenView(stored) };
}

/** Every API token not revoked, oldest first. */
export async function listTokens(services: AccountDeps): Promise<TokenView[]> {
  const tokens = await accountStore(services).tokens();
  return tokens.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name)).map(tokenView);
}

/** Revokes an API token by id or name: it authenticates nothing from now on. UserFacingError when no token has that id or name. */
export async function revokeToken(services: AccountDeps, idOrName: string): Promise<void> {
  const store = accountStore(services);
  const wanted = idOrName.trim();
  const id = (await store.token(wanted)) ? wanted : await store.tokenIdByName(wanted);
  if (id === undefined || !(await store.revokeToken(id)))
    throw new UserFacingError(`no API token with the id or name "${wanted}" (see newsletter tokens list)`);
}

/** The actor of a bearer token, or undefined for one that is malformed, unknown or revoked. Notes when it was used (once a minute at most). */
export async function authenticateToken(services: AccountDeps, bearer: string): Promise<Actor | undefined> {
  const token = bearer.trim();
  if (!token.startsWith(TOKEN_PREFIX) || token.length > MAX_TOKEN_LENGTH) return undefined;
  const hash = sha256(token);
  const store = accountStore(services);
  const id = await store.tokenIdByHash(hash);
  const stored = id === undefined ? undefined : await store.token(id);
  if (!stored || stored.hash !== hash) return undefined;
  const now = Date.now();
  const lastUsed = stored.lastUsedAt === undefined ? NaN : Date.parse(stored.lastUsedAt);
  if (!(now - lastUsed < LAST_USED_RESOLUTION_MS)) await store.touchToken(stored.id, new Date(now).toISOString());
  return { kind: 'token', id: stored.id, name: stored.name, role: stored.role };
}
