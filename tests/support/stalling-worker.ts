/**
 * A real send worker process whose event loop stalls: once the SMTP server has accepted its first
 * message, the process blocks its main thread for a while before it can record the acceptance, as
 * a long garbage collection or a CPU-starved host would. Everything else is the production worker.
 * Run by tests with: node --import tsx tests/support/stalling-worker.ts <stall ms>, and the usual
 * environment; it prints "stalling for <ms> ms after <address> was accepted".
 */
import type { Transporter } from 'nodemailer';
import { loadConfig } from '../../config/index.ts';
import { startSendWorker } from '../../src/workers/send.ts';

const stallMs = Number(process.argv[2]);
if (!Number.isInteger(stallMs) || stallMs <= 0) throw new Error('usage: stalling-worker.ts <stall ms>');

function stallAfterAcceptance(transport: Transporter): Transporter {
  let stalled = false;
  return new Proxy(transport, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (property !== 'sendMail' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
      return async (mail: { envelope?: { to?: string | string[] } }) => {
        const info: unknown = await (value as (mail: unknown) => Promise<unknown>).call(target, mail);
        if (!stalled) {
          stalled = true;
          console.log(`stalling for ${stallMs} ms after ${String(mail.envelope?.to ?? '?')} was accepted`);
          const until = Date.now() + stallMs;
          // Busy: timers, I/O and BullMQ's lock renewal all wait. The heartbeat thread does not.
          while (Date.now() < until);
          console.log('stall over');
        }
        return info;
      };
    },
  });
}

const config = await loadConfig();
const handle = await startSendWorker(config, { wrapDeps: (deps) => ({ ...deps, transport: stallAfterAcceptance(deps.transport) }) });
console.log(`worker ${process.pid} running`);
await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
await handle.close();
