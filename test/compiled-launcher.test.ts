import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { compiledEntry, sourceKey } from '../bin/compiled.js';
import { cli, ROOT } from './helpers/cli.ts';

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

/** compiledEntry with its notes kept (what it would print on stderr before running through tsx). */
async function entryOf(root: string, cacheDir?: string): Promise<{ entry: URL | null; notes: string[] }> {
  const notes: string[] = [];
  const entry = await compiledEntry(root, cacheDir, (line) => notes.push(line));
  return { entry, notes };
}

describe('the compiled copy of the sources', () => {
  it('is made under node_modules/.cache and runs as the sources would', async () => {
    const root = project('plain');
    const { entry, notes } = await entryOf(root, '');
    expect(notes).toEqual([]);
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

  it('is reused while the sources stay as they are, and made anew after an edit, even one that keeps size and time', async () => {
    const root = project('edited');
    const cache = path.join(tmp, 'cache-edited');
    const first = (await entryOf(root, cache)).entry!;
    const made = fs.statSync(fileURLToPath(first)).mtimeMs;
    expect((await entryOf(root, cache)).entry!.href).toBe(first.href);
    expect(fs.statSync(fileURLToPath(first)).mtimeMs).toBe(made);

    fs.writeFileSync(path.join(root, 'src/lib/later.ts'), 'export const later = "edited";\n');
    const second = (await entryOf(root, cache)).entry!;
    expect(second.href).not.toBe(first.href);
    expect(run(second).later).toBe('edited');

    // The same size, and the modification time set back (tar, rsync -a, cp -p, touch -r).
    const later = path.join(root, 'src/lib/later.ts');
    const { atime, mtime } = fs.statSync(later);
    fs.writeFileSync(later, 'export const later = "edit2d";\n');
    fs.utimesSync(later, atime, mtime);
    const third = (await entryOf(root, cache)).entry!;
    expect(third.href).not.toBe(second.href);
    expect(run(third).later).toBe('edit2d');
    expect(copies(cache)).toHaveLength(3);
  });

  it('is kept apart for two checkouts of the same sources', async () => {
    const one = project('checkout-one');
    const two = path.join(tmp, 'checkout-two');
    fs.cpSync(one, two, { recursive: true, preserveTimestamps: true });
    fs.writeFileSync(path.join(two, 'views/page.txt'), 'the other view');
    const cache = path.join(tmp, 'cache-shared');
    expect(run((await entryOf(one, cache)).entry!).view).toBe('a view');
    expect(run((await entryOf(two, cache)).entry!).view).toBe('the other view');
    expect(copies(cache)).toEqual([sourceKey(one), sourceKey(two)].sort());
  });

  it('is made once by processes that start together, none of them falling back', async () => {
    const root = project('together');
    const cache = path.join(tmp, 'cache-together');
    const script = `import('${pathToFileURL(path.join(ROOT, 'bin/compiled.js')).href}').then(async (m) => console.log(String((await m.compiledEntry(process.argv[1], process.argv[2]))?.href)))`;
    for (let round = 0; round < 2; round++) {
      if (round === 1) fs.writeFileSync(path.join(root, 'src/lib/later.ts'), 'export const later = "again";\n');
      const outputs = await Promise.all(
        Array.from(
          { length: 8 },
          () =>
            new Promise<{ out: string; err: string }>((resolve, reject) => {
              const child = spawn(process.execPath, ['-e', script, root, cache]);
              let out = '';
              let err = '';
              child.stdout.on('data', (d) => (out += d));
              child.stderr.on('data', (d) => (err += d));
              child.on('close', (code) => (code === 0 ? resolve({ out: out.trim(), err }) : reject(new Error(`exit ${code}: ${err}`))));
            }),
        ),
      );
      expect(outputs.map((o) => o.err).join('')).toBe('');
      expect(new Set(outputs.map((o) => o.out))).toEqual(
        new Set([pathToFileURL(path.join(cache, sourceKey(root), 'src', 'main.js')).href]),
      );
    }
    expect(copies(cache)).toHaveLength(2);
    expect(copies(cache)).toContain(sourceKey(root));
  });

  it('is not used when it cannot be made or trusted, and says why: tsx runs the sources', async () => {
    const root = project('unmade');
    const file = path.join(tmp, 'not-a-folder');
    fs.writeFileSync(file, '');
    const notFolder = await entryOf(root, file);
    expect(notFolder.entry).toBeNull();
    expect(notFolder.notes).toEqual([expect.stringMatching(/^listkeeper: running the TypeScript sources through tsx .*not-a-folder/)]);

    expect(await entryOf(root, 'off')).toEqual({ entry: null, notes: [] });
    expect((await entryOf(root, 'relative/cache')).notes[0]).toContain(
      'LISTKEEPER_COMPILE_CACHE must be an absolute path (got "relative/cache")',
    );

    // A folder anyone may write: someone else could have put the copy there.
    const open = path.join(tmp, 'cache-open');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    const planted = await entryOf(root, open);
    expect(planted.entry).toBeNull();
    expect(planted.notes[0]).toContain('may be written by anyone (mode 777)');

    fs.writeFileSync(path.join(root, 'src/broken.ts'), 'export const = ;\n');
    const cache = path.join(tmp, 'cache-broken');
    const broken = await entryOf(root, cache);
    expect(broken.entry).toBeNull();
    expect(broken.notes[0]).toMatch(/esbuild: /);
    expect(fs.readdirSync(cache)).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)('refuses a copy another user made (as root)', async () => {
    const root = project('planted');
    const cache = path.join(tmp, 'cache-planted');
    const copy = path.join(cache, sourceKey(root));
    fs.mkdirSync(path.join(copy, 'src'), { recursive: true });
    fs.writeFileSync(path.join(copy, 'src', 'main.js'), 'console.log("planted")');
    fs.chownSync(copy, 65534, 65534);
    const planted = await entryOf(root, cache);
    expect(planted.entry).toBeNull();
    expect(planted.notes[0]).toContain('belongs to another user (uid 65534)');
  });

  it('refuses an import node could not load from the copy (JSON), rather than make a copy that fails', async () => {
    const root = project('json');
    fs.writeFileSync(path.join(root, 'src/data.json'), '{"n": 7}');
    fs.writeFileSync(path.join(root, 'src/main.ts'), "import data from './data.json';\nconsole.log(data.n);\n");
    const json = await entryOf(root, path.join(tmp, 'cache-json'));
    expect(json.entry).toBeNull();
    expect(json.notes[0]).toContain('"./data.json" cannot be imported from the compiled copy');
  });

  it('keeps the newest copies and those started within a month; a start counts as use', async () => {
    const root = project('pruned');
    const cache = path.join(tmp, 'cache-pruned');
    const old = (Date.now() - 40 * 24 * 3600_000) / 1000;
    const made = async (name: string, age: number) => {
      fs.mkdirSync(path.join(cache, name), { recursive: true });
      fs.utimesSync(path.join(cache, name), old - age, old - age);
    };
    for (const [name, age] of [
      ['a', 1],
      ['b', 2],
      ['c', 3],
      ['d', 4],
    ] as const)
      await made(name, age);
    fs.mkdirSync(path.join(cache, 'recent'));
    fs.mkdirSync(path.join(cache, '.tmp-1-abcd'));
    fs.utimesSync(path.join(cache, '.tmp-1-abcd'), old, old);
    // A copy of this tree made long ago and started now: its start marks it used.
    const key = sourceKey(root);
    await entryOf(root, cache);
    fs.utimesSync(path.join(cache, key), old, old);
    await entryOf(root, cache);
    expect(fs.statSync(path.join(cache, key)).mtimeMs).toBeGreaterThan(Date.now() - 60_000);
    // the started copy, the recent one and the newest of the old ones (three in all before the age rule)
    expect(copies(cache)).toEqual(['a', 'recent', key].sort());
  });

  it('marks its copy used every day while the process runs', async () => {
    const root = project('running');
    const cache = path.join(tmp, 'cache-running');
    expect((await entryOf(root, cache)).entry).not.toBeNull();
    const copy = path.join(cache, sourceKey(root));
    vi.useFakeTimers({ toFake: ['setInterval', 'Date'] });
    try {
      await entryOf(root, cache);
      const started = fs.statSync(copy).mtimeMs;
      vi.advanceTimersByTime(24 * 3600_000);
      expect(fs.statSync(copy).mtimeMs - started).toBeGreaterThanOrEqual(24 * 3600_000 - 1000);
    } finally {
      vi.useRealTimers();
    }
  });

  it('runs listkeeper itself, and so does tsx', async () => {
    const cache = path.join(tmp, 'cache-listkeeper');
    const compiled = await cli(['--version'], { LISTKEEPER_COMPILE_CACHE: cache });
    const tsx = await cli(['--version'], { LISTKEEPER_COMPILE_CACHE: 'off' });
    expect(compiled).toMatchObject({ code: 0, stderr: '' });
    expect(tsx).toEqual(compiled);
    expect(copies(cache)).toEqual([sourceKey(ROOT)]);
    expect(fs.existsSync(path.join(cache, sourceKey(ROOT), 'src', 'web', 'archive', 'parse-worker.js'))).toBe(true);
    fs.writeFileSync(path.join(tmp, 'a-file'), '');
    const unwritable = await cli(['--version'], { LISTKEEPER_COMPILE_CACHE: path.join(tmp, 'a-file') });
    expect(unwritable.stdout).toBe(compiled.stdout);
    expect(unwritable.stderr).toMatch(/^listkeeper: running the TypeScript sources through tsx/);
  });
});
