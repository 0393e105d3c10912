import { runDemo } from '../../demo/run-demo.ts';
import type { CliContext } from '../context.ts';

/** `newsletter demo`: vol-138 to ~50 sample subscribers through a local capture SMTP server. */
export async function demoCommand(cli: CliContext, options: { outbox?: string }): Promise<void> {
  await runDemo({ io: cli.io, ...(options.outbox ? { outboxDir: options.outbox } : {}) });
}
