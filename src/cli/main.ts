import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../../config/index.ts';
import { UserFacingError } from '../core/errors.ts';
import { ROLES, type Role } from '../core/roles.ts';
import { DEFAULT_LIST, LIST_NAME_SHAPE, SUPPRESSION_REASONS } from '../core/subscriber.ts';
import { shellContext, type CliContext } from './context.ts';

function listName(value: string): string {
  if (!LIST_NAME_SHAPE.test(value)) throw new InvalidArgumentError('a list name is lower-case letters, digits, - and _ (e.g. weekly)');
  return value;
}

function positiveNumber(value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new InvalidArgumentError('a whole number greater than 0');
  return number;
}

/**
 * The `newsletter` command: only registration here; each command is a named function in
 * commands/<command>.ts. Command modules are imported when their command runs, so a worker
 * process doesn't load MJML, the YAML parser or the CSV parser it never uses (~40 MB of memory).
 */
export function buildProgram(cli: CliContext): Command {
  const program = new Command('newsletter')
    .description('Newsletter delivery pipeline: build an issue, manage subscribers, send, and watch the send.')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (text) => cli.io.out(text.trimEnd()), writeErr: (text) => cli.io.err(text.trimEnd()) });

  program
    .command('build')
    .description('Compile an issue and write <issue>.html and <issue>.txt filled for a sample subscriber')
    .argument('<issue>', 'issue id, e.g. vol-138 (a file emails/issues/<issue>.yaml)')
    .option('--out <dir>', 'output folder', 'out')
    .option('--list <name>', 'list the footer names', listName, DEFAULT_LIST)
    .action(async (issueId: string, options: { out: string; list: string }) => (await import('./commands/build.ts')).buildCommand(cli, issueId, options));

  const subscribers = program.command('subscribers').description('Import, add, count and inspect subscribers');
  subscribers
    .command('import')
    .description('Import a CSV (header row; "email" required, "name" optional, other columns become attributes)')
    .argument('<file>', 'CSV file')
    .option('--list <name>', 'list to add them to', listName, DEFAULT_LIST)
    .action(async (file: string, options: { list: string }) => (await import('./commands/subscribers-import.ts')).subscribersImportCommand(cli, file, options));
  subscribers
    .command('add')
    .description('Add one subscriber, or merge into the existing one with that address (in any case)')
    .argument('<email>')
    .option('--name <name>', 'display name')
    .option('--list <name>', 'list to add them to', listName, DEFAULT_LIST)
    .action(async (email: string, options: { name?: string; list: string }) =>
      (await import('./commands/subscribers-add.ts')).subscribersAddCommand(cli, email, options),
    );
  subscribers
    .command('count')
    .description('Count the subscribers of a list, by status')
    .option('--list <name>', 'list', listName, DEFAULT_LIST)
    .action(async (options: { list: string }) => (await import('./commands/subscribers-count.ts')).subscribersCountCommand(cli, options));
  subscribers
    .command('show')
    .description('Show one subscriber: status, lists, attributes')
    .argument('<email>')
    .option('--json', 'print JSON')
    .action(async (email: string, options: { json?: boolean }) => (await import('./commands/subscribers-show.ts')).subscribersShowCommand(cli, email, options));
  subscribers
    .command('suppress')
    .description('Suppress an address by hand: it is never mailed again until lifted')
    .argument('<email>')
    .addOption(new Option('--reason <reason>', 'recorded as the status').choices(SUPPRESSION_REASONS).default('unsubscribed'))
    .action(async (email: string, options: { reason: (typeof SUPPRESSION_REASONS)[number] }) =>
      (await import('./commands/subscribers-suppress.ts')).subscribersSuppressCommand(cli, email, options),
    );
  subscribers
    .command('lift')
    .description('Lift a suppression explicitly, so the address is mailed again')
    .argument('<email>')
    .action(async (email: string) => (await import('./commands/subscribers-lift.ts')).subscribersLiftCommand(cli, email));

  program
    .command('send')
    .description('Send a finished issue to a list: records the send and queues one job per active subscriber')
    .argument('<issue>', 'issue id, e.g. vol-138')
    .option('--list <name>', 'list to send to', listName, DEFAULT_LIST)
    .option('--resend', 'send again although this issue already went to this list')
    .option('--retry-failed', 'requeue the recipients of the latest send whose attempts ran out on temporary errors, and repair a stuck send')
    .option(
      '--watch',
      'then watch the send until it ends: a progress bar on a terminal (rate and ETA), plain lines otherwise; Ctrl-C stops watching, not the send',
    )
    .action(async (issueId: string, options: { list: string; resend?: boolean; retryFailed?: boolean; watch?: boolean }) =>
      (await import('./commands/send.ts')).sendCommand(cli, issueId, options),
    );

  program
    .command('test-send')
    .description('Send an issue (drafts too) to a few addresses, outside the send queue, with [TEST] before its subject')
    .argument('<issue>', 'issue id, e.g. vol-138')
    .requiredOption('--to <addresses>', 'comma-separated addresses, at most 10; may be repeated', (value: string, previous: string[] | undefined) => [
      ...(previous ?? []),
      ...value
        .split(',')
        .map((address) => address.trim())
        .filter((address) => address !== ''),
    ])
    .option('--list <name>', 'the list whose footer the message shows', listName, DEFAULT_LIST)
    .action(async (issueId: string, options: { to: string[]; list: string }) =>
      (await import('./commands/test-send.ts')).testSendCommand(cli, issueId, options),
    );

  const controlled = (name: string, description: string, withReason: boolean) => {
    const command = program
      .command(name)
      .description(description)
      .argument('<issue>', 'issue id, e.g. vol-138')
      .option('--list <name>', 'the send to this list (default: the latest send of the issue)', listName);
    if (withReason) command.option('--reason <text>', 'why, shown by status and the console');
    return command;
  };
  controlled('pause', 'Pause a running send: no new message starts until resume; other sends go on', true).action(
    async (issueId: string, options: { list?: string; reason?: string }) => (await import('./commands/pause.ts')).pauseCommand(cli, issueId, options),
  );
  controlled('resume', 'Resume a paused send where it stopped; releases domains held by a breaker and re-arms the breakers', false).action(
    async (issueId: string, options: { list?: string }) => (await import('./commands/resume.ts')).resumeCommand(cli, issueId, options),
  );
  controlled('cancel', 'Cancel a send for good: recipients not yet sent are skipped (reason cancelled)', true).action(
    async (issueId: string, options: { list?: string; reason?: string }) => (await import('./commands/cancel.ts')).cancelCommand(cli, issueId, options),
  );

  const schedule = program.command('schedule').description('Send an issue at a given time, or every week the newest finished issue not yet sent to a list');
  schedule
    .command('add')
    .description('Add a schedule: --issue <id> --at <ISO time> (once), or --weekly <day> --at <HH:MM> --tz <zone> (every week)')
    .option('--list <name>', 'list to send to', listName, DEFAULT_LIST)
    .option('--issue <id>', 'a one-off schedule: the issue to send, e.g. vol-138')
    .option('--weekly <day>', 'a weekly schedule: the day, e.g. monday')
    .option('--at <time>', 'once: an ISO 8601 time with its zone (2026-12-01T08:00:00Z); weekly: HH:MM in --tz')
    .option('--tz <zone>', 'weekly: an IANA time zone, e.g. Europe/Berlin (the time follows its DST changes)')
    .action(async (options: { list: string; issue?: string; weekly?: string; at?: string; tz?: string }) =>
      (await import('./commands/schedule.ts')).scheduleAddCommand(cli, options),
    );
  schedule
    .command('list')
    .description('List the schedules: next run, and how the last run ended (sent, nothing-new, refused, missed)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => (await import('./commands/schedule.ts')).scheduleListCommand(cli, options));
  schedule
    .command('remove')
    .description('Remove a schedule')
    .argument('<id>', 'schedule id, as schedule list shows it')
    .action(async (id: string) => (await import('./commands/schedule.ts')).scheduleRemoveCommand(cli, id));

  program
    .command('worker')
    .description('Run a send worker until SIGTERM or SIGINT; run several processes to send faster')
    .action(async () => (await import('./commands/worker.ts')).workerCommand(cli));

  program
    .command('status')
    .description('Show how a send of an issue stands: state, total, accepted, failed, skipped, pending')
    .argument('<issue>', 'issue id')
    .option('--list <name>', 'the send to this list (default: the latest send of the issue)', listName)
    .option('--json', 'print one JSON object')
    .option('--failures', 'list every recipient that failed, bounced, was blocked or complained, with the diagnostic and its source')
    .action(async (issueId: string, options: { list?: string; json?: boolean; failures?: boolean }) =>
      (await import('./commands/status.ts')).statusCommand(cli, issueId, options),
    );

  const bounces = program.command('bounces').description('Take in bounce and complaint reports, and inspect the ones that could not be attributed');
  bounces
    .command('ingest')
    .description('Read one raw email (a DSN, an ARF complaint or an MTA bounce) and apply it; an MTA can pipe into it')
    .argument('[file]', 'the message; - or nothing for standard input')
    .option('--to <address>', 'the envelope recipient the message was delivered to (what an MTA pipe passes, e.g. ${recipient})')
    .option('--json', 'print what was applied as JSON')
    .action(async (file: string | undefined, options: { to?: string; json?: boolean }) =>
      (await import('./commands/bounces-ingest.ts')).bouncesIngestCommand(cli, file, options),
    );
  bounces
    .command('unmatched')
    .description('List the reports that could not be attributed to a subscriber, newest first')
    .option('--limit <n>', 'how many to show', positiveNumber, 20)
    .option('--json', 'print JSON, with each report as received')
    .action(async (options: { limit: number; json?: boolean }) => (await import('./commands/bounces-unmatched.ts')).bouncesUnmatchedCommand(cli, options));

  program
    .command('bounce-server')
    .description('Receive bounce and complaint reports over SMTP on BOUNCE_SMTP_HOST:BOUNCE_SMTP_PORT, for the domain of BOUNCE_ADDRESS')
    .action(async () => (await import('./commands/bounce-server.ts')).bounceServerCommand(cli));

  program
    .command('serve')
    .description('Serve on HTTP_HOST:HTTP_PORT: unsubscribe links, the web version of sent issues, and the bounce webhooks')
    .action(async () => (await import('./commands/serve.ts')).serveCommand(cli));

  const users = program.command('users').description('Console users, each with a role (admin, editor, ops): add, list, remove');
  users
    .command('add')
    .description('Add a console user; the password comes from standard input with --password-stdin, else one is generated and printed once')
    .argument('<email>')
    .addOption(new Option('--role <role>', 'what the user may do').choices(ROLES).makeOptionMandatory())
    .option('--password-stdin', 'read the password from standard input (one trailing newline is dropped)')
    .action(async (email: string, options: { role: Role; passwordStdin?: boolean }) =>
      (await import('./commands/users.ts')).usersAddCommand(cli, email, options),
    );
  users
    .command('list')
    .description('List the console users and their roles')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => (await import('./commands/users.ts')).usersListCommand(cli, options));
  users
    .command('remove')
    .description('Remove a console user (never the last admin)')
    .argument('<email>')
    .action(async (email: string) => (await import('./commands/users.ts')).usersRemoveCommand(cli, email));

  const tokens = program.command('tokens').description('API tokens (Authorization: Bearer <token>), each with a role: create, list, revoke');
  tokens
    .command('create')
    .description('Create an API token and print it once; only its hash is stored')
    .requiredOption('--name <name>', 'a name to tell it by, e.g. ci-deploy (unique)')
    .addOption(new Option('--role <role>', 'what the token may do').choices(ROLES).makeOptionMandatory())
    .action(async (options: { name: string; role: Role }) => (await import('./commands/tokens.ts')).tokensCreateCommand(cli, options));
  tokens
    .command('list')
    .description('List the API tokens not revoked, with role and last use (never the token)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => (await import('./commands/tokens.ts')).tokensListCommand(cli, options));
  tokens
    .command('revoke')
    .description('Revoke an API token, by id or name')
    .argument('<id-or-name>')
    .action(async (idOrName: string) => (await import('./commands/tokens.ts')).tokensRevokeCommand(cli, idOrName));

  program
    .command('doctor')
    .description('Check the config, Redis (eviction, persistence, memory), SMTP (connect, EHLO, STARTTLS, AUTH) and the issues; exit 1 on a failure')
    .option('--json', 'print the checks as JSON')
    .action(async (options: { json?: boolean }) => (await import('./commands/doctor.ts')).doctorCommand(cli, options));

  program
    .command('demo')
    .description('Send vol-138 to ~50 sample subscribers through a local capture SMTP server (outbox/ in the project)')
    .option('--outbox <dir>', 'where the capture server writes the messages (default: outbox/ in the project)')
    .action(async (options: { outbox?: string }) => (await import('./commands/demo.ts')).demoCommand(cli, options));

  return program;
}

/**
 * Runs one command line and returns its exit code. User-facing errors print one line and give 1;
 * anything else is a bug and throws, keeping its stack.
 */
export async function runCli(argv: readonly string[], cli: CliContext): Promise<number> {
  try {
    await buildProgram(cli).parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (error instanceof UserFacingError || error instanceof ConfigError) {
      cli.io.err(`error: ${error.message}`);
      return error instanceof UserFacingError ? error.exitCode : 1;
    }
    throw error;
  }
}

/** The `newsletter` process: argv as node gives it. */
export async function main(argv: readonly string[]): Promise<void> {
  process.exitCode = await runCli(argv.slice(2), shellContext());
}
