/**
 * Benchmark: `subscribers import` of a large CSV (default 1,000,000 rows) into a private Redis.
 * Prints rows/s and the importing process's peak RSS, to show the file is streamed, not loaded.
 * Run with `npm run bench:import -- [--rows N]`.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { connectRedis } from '../src/store/connection.ts';
import { startPrivateRedis } from '../src/dev/private-redis.ts';
import { importSubscribersCsv } from '../src/app/import-csv.ts';
import { SubscriberStore } from '../src/store/subscriber-store.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '1000000' } } });
const rows = Number(values.rows);
if (!Number.isInteger(rows) || rows < 1) throw new Error(`--rows must be a whole number ≥ 1, not "${values.rows}"`);

const dir = await mkdtemp(path.join(tmpdir(), 'nl-bench-import-'));
const redis = await startPrivateRedis();
try {
  const file = path.join(dir, 'subscribers.csv');
  const out = createWriteStream(file);
  out.write('email,name,company\n');
  for (let n = 0; n < rows; n += 1) {
    if (!out.write(`reader${n}@example.org,Reader ${n},Company ${n % 97}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  const fileMb = (await stat(file)).size / 1024 / 1024;

  const connection = await connectRedis(redis.url);
  const store = new SubscriberStore(connection, 'bench');
  const rssBeforeMb = process.memoryUsage().rss / 1024 / 1024;
  // Sampled during the import only: the process-wide peak would include writing the file above.
  let peakRssMb = rssBeforeMb;
  const sampler = setInterval(() => (peakRssMb = Math.max(peakRssMb, process.memoryUsage().rss / 1024 / 1024)), 50);
  const started = performance.now();
  const report = await importSubscribersCsv(store, file, 'weekly');
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  connection.disconnect();

  console.log(`subscribers import of ${rows} rows (${fileMb.toFixed(1)} MB CSV)`);
  console.log(`  imported ${report.imported}, updated ${report.updated}, invalid ${report.invalidCount}`);
  console.log(`  time        ${seconds.toFixed(1)} s → ${Math.round(rows / seconds)} rows/s`);
  console.log(`  memory      RSS ${rssBeforeMb.toFixed(0)} MB before the import, peak ${peakRssMb.toFixed(0)} MB during it (file: ${fileMb.toFixed(0)} MB)`);
  console.log(
    JSON.stringify({
      rows,
      fileMb: Number(fileMb.toFixed(1)),
      seconds: Number(seconds.toFixed(2)),
      rowsPerSecond: Math.round(rows / seconds),
      rssBeforeMb: Math.round(rssBeforeMb),
      peakRssMb: Math.round(peakRssMb),
    }),
  );
} finally {
  await redis.stop();
  await rm(dir, { recursive: true, force: true });
}
