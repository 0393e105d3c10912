import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChainableCommander, Redis } from 'ioredis';
import { z } from 'zod';
import { parseRecord } from './records.ts';

/** Where the .lua files are: one script each, with a header naming its KEYS and ARGV. */
const SCRIPTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scripts');

interface ScriptSpec {
  readonly file: string;
  /** The names of KEYS[1..n], as the script's header lists them. */
  readonly keys: readonly string[];
  readonly argv: readonly string[];
  /** Takes more keys after the named ones (the header ends its KEYS line with "..."). */
  readonly variadicKeys?: boolean;
  /** Takes more arguments after the named ones (the header ends its ARGV line with "..."). */
  readonly variadicArgv?: boolean;
  /** What the script returns (its header's "Returns" line), parsed, never cast. */
  readonly reply: z.ZodType;
}

const outcome = <T extends string>(...outcomes: [T, ...T[]]) => z.tuple([z.enum(outcomes), z.string()]);

/**
 * Every Lua script of the store. The names here must match each file's `-- KEYS:` and `-- ARGV:`
 * header (checked when the scripts load), so the call sites below name every key and argument.
 */
export const SCRIPTS = {
  createSend: {
    file: 'create-send.lua',
    keys: ['listSends', 'issueSends', 'send', 'artifact', 'fanOutLease'],
    argv: ['expectedCount', 'sendId', 'issueId', 'list', 'resend', 'now', 'artifact', 'contentHash', 'leaseToken', 'leaseMs'],
    reply: outcome('created', 'exists', 'retry'),
  },
  markRecipient: {
    file: 'mark-recipient.lua',
    keys: ['send', 'recipients', 'failures', 'queuedJobs', 'claims', 'progress', 'domains'],
    argv: ['subscriberId', 'state', 'now', 'failure', 'reason', 'bucket', 'domain', 'onlyIfJob'],
    reply: z.string(),
  },
  claimRecipient: {
    file: 'claim-recipient.lua',
    keys: ['send', 'recipients', 'queuedJobs', 'claims', 'heldDomains'],
    argv: ['subscriberId', 'jobId', 'claim', 'domain', 'takeOver'],
    reply: outcome('claimed', 'done', 'superseded', 'paused', 'cancelled', 'held', 'claimed-by'),
  },
  releaseClaim: { file: 'release-claim.lua', keys: ['claims'], argv: ['subscriberId', 'claim'], reply: z.union([z.literal(0), z.literal(1)]) },
  setSendControl: {
    file: 'set-send-control.lua',
    keys: ['send', 'recipients', 'heldDomains'],
    argv: ['action', 'reason', 'now', 'armed'],
    variadicKeys: true,
    reply: outcome('changed', 'unchanged', 'finished', 'cancelled', 'missing'),
  },
  cancelRecipients: {
    file: 'cancel-recipients.lua',
    keys: ['send', 'recipients', 'queuedJobs', 'claims', 'progress', 'domains'],
    argv: ['now', 'bucket'],
    variadicArgv: true,
    reply: z.array(z.string()),
  },
  addRecipients: {
    file: 'add-recipients.lua',
    keys: ['send', 'recipients'],
    argv: [],
    variadicArgv: true,
    reply: z.union([z.literal(0), z.literal(1)]),
  },
  breakerCount: {
    file: 'breaker-count.lua',
    keys: ['send', 'heldDomains'],
    argv: ['domain', 'sample', 'kind', 'ttlSeconds'],
    variadicKeys: true,
    reply: z.tuple([z.string(), z.number().int()]).rest(z.number().int()),
  },
  holdDomain: { file: 'hold-domain.lua', keys: ['send', 'heldDomains'], argv: ['domain', 'reason', 'armed'], reply: z.union([z.literal(0), z.literal(1)]) },
  reserveSlot: {
    file: 'reserve-slot.lua',
    keys: ['global', 'domain'],
    argv: ['globalIntervalMs', 'domainIntervalMs', 'reservedAt', 'maxWaitMs'],
    reply: z.tuple([z.enum(['wait', 'delay']), z.number().int(), z.number().int()]),
  },
  slowDown: { file: 'slow-down.lua', keys: ['domain', 'backoffs'], argv: ['domainName', 'baseMs'], reply: z.number().int() },
  fanOutDone: { file: 'fan-out-done.lua', keys: ['send', 'recipients'], argv: ['now'], reply: z.literal(1) },
  requeueFailed: {
    file: 'requeue-failed.lua',
    keys: ['send', 'recipients', 'failures', 'pending', 'progress', 'domains'],
    argv: ['round', 'bucket'],
    variadicArgv: true,
    reply: z.tuple([z.number().int().nonnegative(), z.array(z.string())]),
  },
  upsertSubscribers: {
    file: 'upsert-subscribers.lua',
    keys: ['byEmail', 'list', 'listCounts', 'lists'],
    argv: ['listName', 'now'],
    variadicKeys: true,
    variadicArgv: true,
    reply: z.array(z.union([z.string(), z.number()])),
  },
  changeStatus: {
    file: 'change-status.lua',
    keys: ['subscriber', 'lists'],
    argv: ['subscriberId', 'fromStatuses', 'toStatus', 'now', 'listCount'],
    variadicKeys: true,
    reply: outcome('changed', 'unchanged', 'missing', 'retry'),
  },
  applySubscriberEvent: {
    file: 'apply-subscriber-event.lua',
    keys: ['subscriber', 'lists', 'eventIds', 'recentEvents', 'softBounces'],
    argv: [
      'subscriberId',
      'eventId',
      'event',
      'nowMs',
      'now',
      'idHorizonMs',
      'recentLimit',
      'softMember',
      'softAtMs',
      'softWindowMs',
      'softLimit',
      'suppressTo',
      'fromStatuses',
      'leaveLists',
      'listCount',
    ],
    variadicKeys: true,
    reply: z.tuple([z.enum(['applied', 'duplicate', 'missing', 'retry']), z.string(), z.string()]),
  },
  applySendEvent: {
    file: 'apply-send-event.lua',
    keys: ['send', 'eventIds', 'eventKinds', 'reported', 'domains'],
    argv: ['subscriberId', 'eventId', 'kind', 'counter', 'rank', 'event', 'domain'],
    reply: z.union([z.literal(0), z.literal(1)]),
  },
  assignJobs: {
    file: 'assign-jobs.lua',
    keys: ['recipients', 'queuedJobs'],
    argv: [],
    variadicArgv: true,
    reply: z.array(z.union([z.literal(0), z.literal(1)])),
  },
  finishMigration: {
    file: 'finish-migration.lua',
    keys: ['lock', 'schemaVersion', 'inProgress'],
    argv: ['token', 'version'],
    variadicKeys: true,
    reply: z.union([z.literal(0), z.literal(1)]),
  },
  releaseLock: { file: 'release-lock.lua', keys: ['lock'], argv: ['token'], reply: z.union([z.literal(0), z.literal(1)]) },
  renewLock: { file: 'renew-lock.lua', keys: ['lock'], argv: ['token', 'ms'], reply: z.union([z.literal(0), z.literal(1)]) },
  saveScheduleRun: {
    file: 'save-schedule-run.lua',
    keys: ['schedules', 'due', 'claim'],
    argv: ['scheduleId', 'dueMs', 'token', 'record', 'next'],
    reply: z.union([z.literal(0), z.literal(1)]),
  },
} as const satisfies Record<string, ScriptSpec>;

/** One of SCRIPTS. */
export type ScriptName = keyof typeof SCRIPTS;
type KeysOf<N extends ScriptName> = Readonly<Record<(typeof SCRIPTS)[N]['keys'][number], string>>;
type ArgsOf<N extends ScriptName> = Readonly<Record<(typeof SCRIPTS)[N]['argv'][number], string | number>>;
/** What a script returns, as its spec's reply schema parses it. */
export type ReplyOf<N extends ScriptName> = z.infer<(typeof SCRIPTS)[N]['reply']>;

const commandName = (name: ScriptName) => `nl_${name}`;

/** Reads a script, checks its header against its spec, and puts the library functions it uses in front. */
function loadSource(name: ScriptName): string {
  const spec: ScriptSpec = SCRIPTS[name];
  const source = readFileSync(path.join(SCRIPTS_DIR, spec.file), 'utf8');
  const header = (label: string) => source.match(new RegExp(`^-- ${label}:(.*)$`, 'm'))?.[1]?.trim() ?? '';
  const names = (line: string) => line.replace(/\(.*$/, '').replace('(none)', '').split(/\s+/).filter(Boolean);
  const keysLine = header('KEYS');
  const problems: string[] = [];
  if (names(keysLine).join(' ') !== spec.keys.join(' ')) problems.push(`KEYS header "${keysLine}" ≠ ${spec.keys.join(' ')}`);
  if (keysLine.endsWith('...') !== (spec.variadicKeys ?? false)) problems.push('variadic KEYS mismatch');
  const argvLine = header('ARGV');
  if (names(argvLine).join(' ') !== spec.argv.join(' ')) problems.push(`ARGV header "${argvLine}" ≠ ${spec.argv.join(' ')}`);
  if (argvLine.endsWith('...') !== (spec.variadicArgv ?? false)) problems.push('variadic ARGV mismatch');
  if (problems.length > 0) throw new Error(`Redis script ${spec.file}: ${problems.join('; ')}`);
  const libraries = names(header('USES')).map((lib) => readFileSync(path.join(SCRIPTS_DIR, 'lib', `${lib}.lua`), 'utf8'));
  return [...libraries, source].join('\n');
}

const SOURCES = new Map((Object.keys(SCRIPTS) as ScriptName[]).map((name) => [name, loadSource(name)]));

/** Makes every script callable on this connection (and its pipelines); once per connection. */
export function defineScripts(redis: Redis): void {
  for (const [name, lua] of SOURCES) {
    if (!(commandName(name) in redis)) redis.defineCommand(commandName(name), { lua });
  }
}

/** More keys and arguments after the named ones, for a variadic script. */
export interface ScriptExtras {
  readonly keys?: readonly string[];
  readonly argv?: readonly (string | number)[];
}

function argumentsOf<N extends ScriptName>(name: N, keys: KeysOf<N>, args: ArgsOf<N>, extras: ScriptExtras): (string | number)[] {
  const spec: ScriptSpec = SCRIPTS[name];
  const keyList = [...spec.keys.map((key) => (keys as Record<string, string>)[key] as string), ...(extras.keys ?? [])];
  return [keyList.length, ...keyList, ...spec.argv.map((arg) => (args as Record<string, string | number>)[arg] as string | number), ...(extras.argv ?? [])];
}

type ScriptCommand = (...args: (string | number)[]) => Promise<unknown>;

/** Runs a script and parses its reply; `extras` go after the named keys and arguments of a variadic script. */
export async function runScript<N extends ScriptName>(redis: Redis, name: N, keys: KeysOf<N>, args: ArgsOf<N>, extras: ScriptExtras = {}): Promise<ReplyOf<N>> {
  defineScripts(redis);
  const command = (redis as unknown as Record<string, ScriptCommand>)[commandName(name)] as ScriptCommand;
  return parseReply(name, await command.apply(redis, argumentsOf(name, keys, args, extras)));
}

/** Parses a reply of a script queued on a pipeline. */
export function parseReply<N extends ScriptName>(name: N, reply: unknown): ReplyOf<N> {
  return parseRecord(SCRIPTS[name].reply as unknown as z.ZodType<ReplyOf<N>>, reply, `The reply of ${SCRIPTS[name].file}`);
}

/** Adds a script call to a pipeline (whose connection ran defineScripts). */
export function queueScript<N extends ScriptName>(pipeline: ChainableCommander, name: N, keys: KeysOf<N>, args: ArgsOf<N>, extras: ScriptExtras = {}): void {
  const command = (pipeline as unknown as Record<string, ScriptCommand>)[commandName(name)] as ScriptCommand;
  void command.apply(pipeline, argumentsOf(name, keys, args, extras));
}
