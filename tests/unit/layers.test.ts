import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../config/index.ts';

/**
 * The layers of architecture.md, bottom first. A module may import its own layer and the ones
 * below; entry points (CLI commands, HTTP routes, workers, the demo) sit on top.
 */
const LAYERS: readonly (readonly [string, (file: string) => boolean])[] = [
  ['config', (file) => file.startsWith('config/')],
  ['core', (file) => file.startsWith('src/core/')],
  ['content', (file) => file.startsWith('src/content/')],
  ['render', (file) => file.startsWith('src/render/')],
  ['logger', (file) => file === 'src/logger.ts'],
  ['store', (file) => file.startsWith('src/store/')],
  ['delivery', (file) => file.startsWith('src/delivery/')],
  ['intake', (file) => file.startsWith('src/intake/')],
  ['app', (file) => file.startsWith('src/app/')],
  ['services', (file) => file === 'src/services.ts'],
  ['entry points', (file) => /^(src\/(cli|http|workers|demo)\/|workers\/)/.test(file)],
];
const DEV = 'src/dev/';

function layerOf(file: string): number {
  const index = LAYERS.findIndex(([, belongs]) => belongs(file));
  if (index === -1) throw new Error(`${file} is in no layer of architecture.md; add it to LAYERS`);
  return index;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(PROJECT_ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => path.relative(PROJECT_ROOT, path.join(entry.parentPath, entry.name)));
}

function importsOf(file: string): string[] {
  const source = readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
  return [...source.matchAll(/(?:from\s+|import\()['"](\.{1,2}\/[^'"]+)['"]/g)].map((match) =>
    path.relative(PROJECT_ROOT, path.resolve(PROJECT_ROOT, path.dirname(file), match[1]!)),
  );
}

describe('the layers', () => {
  const files = ['config', 'src', 'workers'].flatMap(sourceFiles);

  it('only import downwards: core imports nothing of ours, render never reaches delivery or the store', () => {
    const upward = files
      .filter((file) => !file.startsWith(DEV))
      .flatMap((file) =>
        importsOf(file)
          .filter((target) => !target.startsWith(DEV) && layerOf(target) > layerOf(file))
          .map((target) => `${file} → ${target}`),
      );
    expect(upward).toEqual([]);
    const coreImports = files
      .filter((file) => file.startsWith('src/core/'))
      .flatMap((file) => importsOf(file).filter((target) => !target.startsWith('src/core/')));
    expect(coreImports).toEqual([]);
  });

  it('keep src/dev (private Redis, capture SMTP) out of production code: only the demo uses it', () => {
    const users = files.filter((file) => !file.startsWith(DEV) && importsOf(file).some((target) => target.startsWith(DEV)));
    expect(users).toEqual(['src/demo/run-demo.ts']);
  });
});
