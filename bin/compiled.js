// The launcher's compiled copy of src/: plain JavaScript that node loads without tsx.
//
// tsx compiles each module as it is loaded, through module hooks that run on a thread of their
// own. That thread and its messages cost every listkeeper process about 35 MB and a CLI command
// about half a second (docs/operations.md "Memory", docs/command-line.md). So the launcher keeps
// a copy of src/ compiled by esbuild (the compiler tsx itself uses) under
// node_modules/.cache/listkeeper/KEY, where KEY follows every source file's path, size and mtime:
// an edited, pulled or upgraded source tree gets a new copy at its first run, and there is still
// no build step to forget. Whenever the copy cannot be made (a read-only install, no esbuild), the
// launcher runs the sources through tsx as before.
//
// LISTKEEPER_COMPILE_CACHE names another folder for the copies; `off` always uses tsx.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// Bump when the way a copy is made changes, so old copies are not reused.
const FORMAT = 1;
// Copies beyond the newest few are removed once a day old (a running server may still load
// modules from the copy it started on).
const KEEP_NEWEST = 3;
const KEEP_MS = 24 * 3600_000;

// A relative import of a .ts file, as esbuild prints it: from "./x.ts", import("../y.ts"), import "./z.ts".
const TS_IMPORT = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)"(\.\.?\/[^"\n]+?)\.ts"/g;
const LEFT_TS_IMPORT = /"\.\.?\/[^"\n]+\.ts"/;

/**
 * The file: URL of the compiled src/main.js for the checkout at `root`, made now if this source
 * tree has none yet; null when it cannot be made (the caller then runs the sources through tsx).
 * @param {string} root
 * @param {string | undefined} cacheDir
 * @returns {Promise<URL | null>}
 */
export async function compiledEntry(root, cacheDir = process.env.LISTKEEPER_COMPILE_CACHE) {
  if (cacheDir === 'off') return null;
  root = path.resolve(root);
  const dir = path.resolve(cacheDir || path.join(root, 'node_modules', '.cache', 'listkeeper'));
  try {
    const copy = path.join(dir, sourceKey(root));
    if (!fs.existsSync(copy)) await makeCopy(root, dir, copy);
    return pathToFileURL(path.join(copy, 'src', 'main.js'));
  } catch {
    return null;
  }
}

/**
 * A key for the source tree: where it is, and every file under src/ by path, size and
 * modification time.
 * @param {string} root
 * @returns {string}
 */
export function sourceKey(root) {
  // The root too: a copy links to its checkout's views/, sql/ and node_modules/.
  const hash = createHash('sha256').update(`format ${FORMAT}\n${path.resolve(root)}\n`);
  for (const file of sourceFiles(path.join(root, 'src'))) {
    const st = fs.statSync(file);
    hash.update(`${path.relative(root, file)}\0${st.size}\0${st.mtimeMs}\n`);
  }
  return hash.digest('hex').slice(0, 20);
}

/** @param {string} dir @returns {string[]} every file under dir, sorted */
function sourceFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(p));
    else if (entry.isFile()) out.push(p);
  }
  return out.sort();
}

/**
 * Compiles src/ into a new folder and renames it to `copy`, so a copy is whole or absent; two
 * processes making the same copy at once each build their own and the second rename gives way.
 * @param {string} root
 * @param {string} dir
 * @param {string} copy
 */
async function makeCopy(root, dir, copy) {
  const esbuild = await import('esbuild');
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const src = path.join(root, 'src');
    const files = sourceFiles(src);
    const result = await esbuild.build({
      entryPoints: files.filter((f) => f.endsWith('.ts')),
      outdir: path.join(tmp, 'src'),
      outbase: src,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      sourcemap: 'linked',
      sourcesContent: false,
      logLevel: 'silent',
      write: false,
    });
    for (const out of result.outputFiles) {
      let text = out.text;
      if (out.path.endsWith('.js')) {
        text = text.replace(TS_IMPORT, '$1"$2.js"');
        if (LEFT_TS_IMPORT.test(text)) throw new Error(`${out.path}: an import of a .ts file was left`);
      }
      fs.mkdirSync(path.dirname(out.path), { recursive: true });
      fs.writeFileSync(out.path, text);
    }
    // Files other than TypeScript (a worker's .mjs entry) are copied as they are.
    for (const f of files.filter((f) => !f.endsWith('.ts'))) {
      const to = path.join(tmp, 'src', path.relative(src, f));
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(f, to);
    }
    // Everything beside src/ (views, sql, public, bin, node_modules, package.json with its
    // "type": "module") is linked, so paths the modules take from import.meta.url still hold.
    for (const name of fs.readdirSync(root)) {
      if (name !== 'src' && !name.startsWith('.')) fs.symlinkSync(path.join(root, name), path.join(tmp, name));
    }
    try {
      fs.renameSync(tmp, copy);
    } catch (err) {
      if (!fs.existsSync(copy)) throw err;
    }
    pruneCopies(dir, copy);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    // esbuild's service is a child process that would otherwise live as long as this one.
    await esbuild.stop();
  }
}

/**
 * Removes old copies: all but the newest few, once they are a day old.
 * @param {string} dir
 * @param {string} current
 */
function pruneCopies(dir, current) {
  const now = Date.now();
  const folders = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && path.join(dir, e.name) !== current)
    .map((e) => ({ p: path.join(dir, e.name), tmp: e.name.startsWith('.tmp-'), mtime: fs.statSync(path.join(dir, e.name)).mtimeMs }));
  const copies = folders.filter((f) => !f.tmp).sort((a, b) => b.mtime - a.mtime);
  // Folders a build that died left behind, and copies past the newest few (the current one counted).
  for (const f of [...folders.filter((f) => f.tmp), ...copies.slice(KEEP_NEWEST - 1)]) {
    if (now - f.mtime > KEEP_MS) fs.rmSync(f.p, { recursive: true, force: true });
  }
}
