import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadConfig, type Config } from '../../config/index.ts';
import { UserFacingError } from '../core/errors.ts';
import { openServices, type Services } from '../services.ts';
import { cleanDisplayName, normaliseEmail } from '../core/address.ts';
import { DEFAULT_LIST, LIST_NAME_SHAPE, SUBSCRIBER_STATUSES } from '../store/subscriber-store.ts';
import type { SuppressionReason } from '../app/subscribers.ts';

function listName(value: string): string {
  if (!LIST_NAME_SHAPE.test(value)) throw new InvalidArgumentError('a list name is lower-case letters, digits, - and _ (e.g. weekly)');
  return value;
}

async function withServices<T>(run: (config: Config, services: Services) => Promise<T>): Promise<T> {
  const config = await loadConfig();
  const services = await openServices(config);
  try {
    return await run(config, services);
  } finally {
    await services.close();
  }
}

function requireEmail(rawEmail: string): string {
  const email = normaliseEmail(rawEmail);
  if (!email) throw new UserFacingError(`"${rawEmail}" is not a valid email address`);
  return email;
}

/** Resolves with the name of the first SIGTERM or SIGINT: how long-running commands are told to stop. */
function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
  });
}

function formatBytes(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KB (${bytes} bytes)`;
}

// Command implementations are imported when their command runs, so a worker process doesn't load
// MJML, the YAML parser or the CSV parser it never uses (about 40 MB of resident memory).
const program = new Command('newsletter')
  .description('Newsletter delivery pipeline: build an issue, manage subscribers, send, and watch the send.')
  .showHelpAfterError();

program
  .command('build')
  .description('Compile an issue and write <issue>.html and <issue>.txt filled for a sample subscriber')
  .argument('<issue>', 'issue id, e.g. vol-138 (a file emails/issues/<issue>.yaml)')
  .option('--out <dir>', 'output folder', 'out')
  .option('--list <name>', 'list the footer names', listName, DEFAULT_LIST)
  .action(async (issueId: string, options: { out: string; list: string }) => {
    const config = await loadConfig();
    const { buildIssuePreview } = await import('../app/preview.ts');
    const { GMAIL_CLIP_BYTES } = await import('../render/compile-issue.ts');
    const preview = await buildIssuePreview(config, issueId, options.list);
    const htmlFile = path.join(options.out, `${issueId}.html`);
    const textFile = path.join(options.out, `${issueId}.txt`);
    try {
      await mkdir(options.out, { recursive: true });
      await writeFile(htmlFile, preview.html);
      await writeFile(textFile, preview.text);
    } catch (error) {
      throw new UserFacingError(`Cannot write the preview to ${options.out}: ${(error as Error).message}`);
    }
    const htmlBytes = Buffer.byteLength(preview.html);
    console.log(`${htmlFile}  ${formatBytes(htmlBytes)}  (Gmail clips past ${formatBytes(GMAIL_CLIP_BYTES)})`);
    console.log(`${textFile}  ${formatBytes(Buffer.byteLength(preview.text))}`);
    console.log(`subject: ${preview.compiled.subject}`);
    for (const warning of preview.compiled.warnings) console.warn(`warning: ${warning}`);
    if (preview.issue.status === 'draft') console.warn(`note: issue ${issueId} is a draft; "newsletter send" will refuse it until its status is finished.`);
  });

const subscribers = program.command('subscribers').description('Import, add, count and inspect subscribers');

subscribers
  .command('import')
  .description('Import a CSV (header row; "email" required, "name" optional, other columns become attributes)')
  .argument('<file>', 'CSV file')
  .option('--list <name>', 'list to add them to', listName, DEFAULT_LIST)
  .action(async (file: string, options: { list: string }) => {
    const { importSubscribersCsv } = await import('../app/import-csv.ts');
    const report = await withServices((_, services) => importSubscribersCsv(services.subscribers, file, options.list));
    console.log(`list ${options.list}: ${report.imported} imported, ${report.updated} updated, ${report.invalidCount} invalid`);
    for (const row of report.invalid.slice(0, INVALID_ROWS_SHOWN)) console.log(`  line ${row.line}: ${row.reason}`);
    if (report.invalidCount > INVALID_ROWS_SHOWN) console.log(`  … and ${report.invalidCount - INVALID_ROWS_SHOWN} more invalid rows`);
  });

subscribers
  .command('add')
  .description('Add one subscriber, or merge into the existing one with that address')
  .argument('<email>')
  .option('--name <name>', 'display name')
  .option('--list <name>', 'list to add them to', listName, DEFAULT_LIST)
  .action(async (rawEmail: string, options: { name?: string; list: string }) => {
    const email = requireEmail(rawEmail);
    const result = await withServices((_, services) =>
      services.subscribers.upsert({ email, name: cleanDisplayName(options.name), list: options.list }),
    );
    console.log(`${result.created ? 'added' : 'updated'} ${email} (id ${result.id}) on list ${options.list}`);
  });

subscribers
  .command('count')
  .description('Count the subscribers of a list, by status')
  .option('--list <name>', 'list', listName, DEFAULT_LIST)
  .action(async (options: { list: string }) => {
    const counts = await withServices(async (_, services) => {
      if (!(await services.subscribers.listExists(options.list))) throw new UserFacingError(`There is no list "${options.list}"`);
      return services.subscribers.countList(options.list);
    });
    const parts = Object.entries(counts.byStatus).map(([status, count]) => `${count} ${status}`);
    console.log(`list ${options.list}: ${counts.total} subscribers (${parts.join(', ')})`);
  });

subscribers
  .command('show')
  .description('Show one subscriber: status, lists, attributes')
  .argument('<email>')
  .option('--json', 'print JSON')
  .action(async (rawEmail: string, options: { json?: boolean }) => {
    const email = requireEmail(rawEmail);
    const { requireByEmail } = await import('../app/subscribers.ts');
    const shown = await withServices(async (_, services) => {
      const subscriber = await requireByEmail(services.subscribers, email);
      return { ...subscriber, lists: await services.subscribers.listsOf(subscriber.id) };
    });
    if (options.json) console.log(JSON.stringify(shown, null, 2));
    else {
      console.log(`${shown.email} (id ${shown.id})\n  name: ${shown.name || '(none)'}\n  status: ${shown.status}\n  lists: ${shown.lists.join(', ') || '(none)'}`);
      for (const [key, value] of Object.entries(shown.attributes)) console.log(`  ${key}: ${value}`);
    }
  });

/** Invalid CSV rows printed by `subscribers import`; the rest are counted. */
const INVALID_ROWS_SHOWN = 50;

const SUPPRESSION_REASONS = SUBSCRIBER_STATUSES.filter((status): status is SuppressionReason => status !== 'active');

subscribers
  .command('suppress')
  .description('Suppress an address by hand: it is never mailed again until lifted')
  .argument('<email>')
  .addOption(new Option('--reason <reason>', 'recorded as the status').choices(SUPPRESSION_REASONS).default('unsubscribed'))
  .action(async (rawEmail: string, options: { reason: SuppressionReason }) => {
    const email = requireEmail(rawEmail);
    const { suppressByEmail } = await import('../app/subscribers.ts');
    const { subscriber, changed } = await withServices((_, services) => suppressByEmail(services.subscribers, email, options.reason));
    console.log(changed ? `${subscriber.email} is suppressed (${subscriber.status})` : `${subscriber.email} was already suppressed (${subscriber.status}); lift it first to change the reason`);
  });

subscribers
  .command('lift')
  .description('Lift a suppression explicitly, so the address is mailed again')
  .argument('<email>')
  .action(async (rawEmail: string) => {
    const email = requireEmail(rawEmail);
    const { liftSuppressionByEmail } = await import('../app/subscribers.ts');
    const { subscriber, previous } = await withServices((_, services) => liftSuppressionByEmail(services.subscribers, email));
    console.log(previous === 'active' ? `${subscriber.email} was not suppressed` : `${subscriber.email} is active again (was ${previous})`);
  });

program
  .command('send')
  .description('Send a finished issue to a list: records the send and queues one job per active subscriber')
  .argument('<issue>', 'issue id, e.g. vol-138')
  .option('--list <name>', 'list to send to', listName, DEFAULT_LIST)
  .option('--resend', 'send again although this issue already went to this list')
  .option('--retry-failed', 'requeue the recipients of the latest send whose attempts ran out on temporary errors')
  .action(async (issueId: string, options: { list: string; resend?: boolean; retryFailed?: boolean }) => {
    const { retryFailedRecipients, startSend } = await import('../app/start-send.ts');
    if (options.retryFailed) {
      const retried = await withServices((config, services) => retryFailedRecipients({ config, ...services }, { issueId, list: options.list }));
      console.log(`send ${retried.sendId}: ${retried.requeued} recipients requeued (permanent failures stay failed)`);
      return;
    }
    const result = await withServices(async (config, services) => {
      const started = await startSend({ config, ...services }, { issueId, list: options.list, resend: options.resend === true });
      return { ...started, record: await services.sends.get(started.sendId) };
    });
    for (const warning of result.warnings) console.warn(`warning: ${warning}`);
    console.log(`${result.resumed ? 'resumed send' : 'send'} ${result.sendId}: ${result.record?.total ?? 0} recipients queued`);
    console.log(`follow it with: newsletter status ${issueId} --list ${options.list}`);
    console.log(result.sendId);
  });

program
  .command('worker')
  .description('Run a send worker until SIGTERM or SIGINT; run several processes to send faster')
  .action(async () => {
    const config = await loadConfig();
    const { startSendWorker } = await import('../workers/send.ts');
    const handle = await startSendWorker(config);
    console.log(`worker ${process.pid} running: concurrency ${config.send.workerConcurrency}, SMTP pool ${config.smtp.poolSize}`);
    const signal = await untilStopSignal();
    console.log(`${signal}: finishing the jobs in flight (up to ${config.send.shutdownTimeoutMs} ms)…`);
    const { handedBack } = await handle.close();
    console.log(handedBack ? 'stopped; jobs still in flight were handed back to the queue' : 'stopped cleanly');
  });

program
  .command('status')
  .description('Show how a send of an issue stands: state, total, accepted, failed, skipped, pending')
  .argument('<issue>', 'issue id')
  .option('--list <name>', 'the send to this list (default: the latest send of the issue)', listName)
  .option('--json', 'print one JSON object')
  .action(async (issueId: string, options: { list?: string; json?: boolean }) => {
    const { describeSendStatus, sendStatusReport } = await import('../app/send-report.ts');
    const report = await withServices((config, services) => sendStatusReport(config, services, issueId, options.list));
    console.log(options.json ? JSON.stringify(report, null, 2) : describeSendStatus(report));
  });

program
  .command('serve')
  .description('Serve the unsubscribe links of the emails (GET confirms, POST and RFC 8058 one-click unsubscribe) on HTTP_HOST:HTTP_PORT')
  .action(async () => {
    const config = await loadConfig();
    const { buildHttpApp } = await import('../http/server.ts');
    const services = await openServices(config);
    const app = await buildHttpApp({ config, subscribers: services.subscribers });
    await app.listen({ host: config.http.host, port: config.http.port });
    console.log(`serving ${config.publicUrl}/unsubscribe on http://${config.http.host}:${config.http.port}`);
    await untilStopSignal();
    await app.close();
    await services.close();
  });

program
  .command('demo')
  .description('Send vol-138 to ~50 sample subscribers through a local capture SMTP server (./outbox/)')
  .action(async () => {
    const { runDemo } = await import('../demo/run-demo.ts');
    await runDemo();
  });

/** Runs the CLI; user-facing errors print one line and set exit code 1, anything else is a bug and throws. */
export async function main(argv: readonly string[]): Promise<void> {
  try {
    await program.parseAsync([...argv]);
  } catch (error) {
    if (error instanceof UserFacingError || error instanceof ConfigError) {
      console.error(`error: ${error.message}`);
      process.exitCode = 1;
      return;
    }
    throw error;
  }
}
