import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { compiledEntry, sourceKey } from '../bin/compiled.js';
import { BIN, cli, ROOT } from './helpers/cli.ts';

/**
 * The launcher's compiled copy of src/ (bin/compiled.js): made once per source tree, with every
 * relative import, path beside src/ and package still found; remade after an edit; made safely by
 * several processes at once; and never used when it cannot be made (tsx then runs the sources).
 */
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-compiled-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A small project shaped like the checkout: src/ with TypeScript, views/ beside it, a package. */
function project(name: string): string {
  const root = path.join(tmp, name);
  const files: Record<string, string> = {
    'package.json': '{"type": "module"}',
    'views/page.txt': 'a view',
    'node_modules/tiny/package.json': '{"name": "tiny", "type": "module", "exports": "./index.js"}',
    'node_modules/tiny/index.js': 'export const tiny = "a package";',
    'src/lib/words.ts': 'export interface Words { n: number }\nexport const word: string = "relative";\n',
    'src/lib/later.ts': 'export const later = "dynamic";\n',
    'src/side.ts': 'globalThis.sideEffect = "side effect";\n',
    'src/worker.mjs': 'export const mjs = "copied";\n',
    'src/main.ts': [
      "import fs from 'node:fs';",
      "import { tiny } from 'tiny';",
      "import './side.ts';",
      "import { word, type Words } from './lib/words.ts';",
      "export * from './lib/words.ts';",
      'const w: Words = { n: 1 };',
      "const { later } = await import('./lib/later.ts');",
      "const { mjs } = await import('./worker.mjs');",
      "const view = fs.readFileSync(new URL('../views/page.txt', import.meta.url), 'utf8');",
      'console.log(JSON.stringify({ word, later, mjs, view, tiny, n: w.n, side: (globalThis as any).sideEffect }));',
    ].join('\n'),
  };
  for (const [file, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  }
  return root;
}

const run = (entry: URL) => JSON.parse(execFileSync(process.execPath, [fileURLToPath(entry)], { encoding: 'utf8' }));
const copies = (dir: string) => fs.readdirSync(dir).sort();

describe('the compiled copy of the sources', () => {
  it('is made under node_modules/.cache and runs as the sources would', async () => {
    const root = project('plain');
    const entry = await compiledEntry(root, '');
    expect(entry).not.toBeNull();
    const file = fileURLToPath(entry!);
    expect(file).toBe(path.join(root, 'node_modules', '.cache', 'listkeeper', sourceKey(root), 'src', 'main.js'));
    expect(fs.readFileSync(file, 'utf8')).not.toMatch(/\.ts"/);
    expect(run(entry!)).toEqual({
      word: 'relative',
      later: 'dynamic',
      mjs: 'copied',
      view: 'a view',
      tiny: 'a package',
      n: 1,
      side: 'side effect',
    });
  });

  it('is reused while the sources stay as they are, and made anew after an edit', async () => {
    const root = project('edited');
    const cache = path.join(tmp, 'cache-edited');
    const first = await compiledEntry(root, cache);
    const made = fs.statSync(fileURLToPath(first!)).mtimeMs;
    expect((await compiledEntry(root, cache))!.href).toBe(first!.href);
    expect(fs.statSync(fileURLToPath(first!)).mtimeMs).toBe(made);

    fs.writeFileSync(path.join(root, 'src/lib/later.ts'), 'export const later = "edited";\n');
    const second = await compiledEntry(root, cache);
    expect(second!.href).not.toBe(first!.href);
    expect(run(second!).later).toBe('edited');
    expect(copies(cache)).toHaveLength(2);
  });

  it('is kept apart for two checkouts of the same sources', async () => {
    const one = project('checkout-one');
    const two = path.join(tmp, 'checkout-two');
    fs.cpSync(one, two, { recursive: true, preserveTimestamps: true });
    fs.writeFileSync(path.join(two, 'views/page.txt'), 'the other view');
    const cache = path.join(tmp, 'cache-shared');
    expect(run((await compiledEntry(one, cache))!).view).toBe('a view');
    expect(run((await compiledEntry(two, cache))!).view).toBe('the other view');
    expect(copies(cache)).toEqual([sourceKey(one), sourceKey(two)].sort());
  });

  it('is made once by processes that start together', async () => {
    const root = project('together');
    const cache = path.join(tmp, 'cache-together');
    const script = `import('${pathToFileURL(path.join(ROOT, 'bin/compiled.js')).href}').then(async (m) => console.log((await m.compiledEntry(process.argv[1], process.argv[2])).href))`;
    const hrefs = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<string>((resolve, reject) => {
            const child = spawn(process.execPath, ['-e', script, root, cache]);
            let out = '';
            child.stdout.on('data', (d) => (out += d));
            child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}`))));
          }),
      ),
    );
    expect(new Set(hrefs).size).toBe(1);
    expect(copies(cache)).toEqual([sourceKey(root)]);
    expect(run(new URL(hrefs[0]))).toMatchObject({ word: 'relative' });
  });

  it('is not used when it cannot be made: tsx runs the sources', async () => {
    const root = project('unmade');
    const file = path.join(tmp, 'not-a-folder');
    fs.writeFileSync(file, '');
    expect(await compiledEntry(root, file)).toBeNull();
    expect(await compiledEntry(root, 'off')).toBeNull();
    fs.writeFileSync(path.join(root, 'src/broken.ts'), 'export const = ;\n');
    const cache = path.join(tmp, 'cache-broken');
    expect(await compiledEntry(root, cache)).toBeNull();
    expect(fs.readdirSync(cache)).toEqual([]);
  });

  it('keeps the newest copies and those under a day old', async () => {
    const root = project('pruned');
    const cache = path.join(tmp, 'cache-pruned');
    const old = (Date.now() - 2 * 24 * 3600_000) / 1000;
    for (const [name, age] of [
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['d', 4],
    ] as const) {
      fs.mkdirSync(path.join(cache, name), { recursive: true });
      fs.utimesSync(path.join(cache, name), old - age, old - age);
    }
    fs.mkdirSync(path.join(cache, 'recent'));
    fs.mkdirSync(path.join(cache, '.tmp-1-abcd'));
    fs.utimesSync(path.join(cache, '.tmp-1-abcd'), old, old);
    await compiledEntry(root, cache);
    // the new copy, the recent one, and the newest of the old ones (three in all before the age rule)
    expect(copies(cache)).toEqual(['a', 'recent', sourceKey(root)].sort());
  });

  it('runs listkeeper itself, and so does tsx', async () => {
    const cache = path.join(tmp, 'cache-listkeeper');
    const compiled = await cli(['--version'], { LISTKEEPER_COMPILE_CACHE: cache });
    const tsx = await cli(['--version'], { LISTKEEPER_COMPILE_CACHE: 'off' });
    expect(compiled).toMatchObject({ code: 0, stderr: '' });
    expect(tsx).toEqual(compiled);
    expect(copies(cache)).toEqual([sourceKey(ROOT)]);
    expect(fs.existsSync(path.join(cache, sourceKey(ROOT), 'src', 'web', 'archive', 'parse-worker.js'))).toBe(true);
    expect(BIN.endsWith('bin/listkeeper.js')).toBe(true);
  });
});
