// The launcher's compiled copy of src/: plain JavaScript that node loads without tsx.
//
// tsx compiles each module as it is loaded, through module hooks that run on a thread of their
// own. That thread and its messages cost every listkeeper process about 35 MB and a CLI command
// about half a second (docs/operations.md "Memory", docs/command-line.md). So the launcher keeps
// a copy of src/ compiled by esbuild (the compiler tsx itself uses) under
// node_modules/.cache/listkeeper/KEY, where KEY follows the checkout, every source file (path,
// size, times, inode), tsconfig.json, esbuild's version and this file: an edited, pulled or
// upgraded source tree gets a new copy at its first run, and there is still no build step to
// forget. When the copy cannot be made (a folder it may not write, a source esbuild refuses), the
// launcher says why on stderr and runs the sources through tsx as before.
//
// LISTKEEPER_COMPILE_CACHE names another folder (an absolute path) for the copies; `off` always
// uses tsx, silently.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Copies are removed once unused for this long, beyond the newest few. A copy's folder time is
// its last use: each start sets it, and a running process sets it again every day, so the copy a
// server reads its views and templates through is never taken from under it.
const KEEP_NEWEST = 3;
const KEEP_UNUSED_MS = 30 * 24 * 3600_000;
const IN_USE_EVERY_MS = 24 * 3600_000;
// Folders a build or a removal left behind.
const LEFTOVER_MS = 3600_000;

/**
 * The file: URL of the compiled src/main.js for the checkout at `root`, made now if this source
 * tree has none yet; null when it cannot be made (the caller then runs the sources through tsx).
 * @param {string} root
 * @param {string | undefined} cacheDir
 * @param {(line: string) => void} note where the reason for running through tsx goes
 * @returns {Promise<URL | null>}
 */
export async function compiledEntry(
  root,
  cacheDir = process.env.LISTKEEPER_COMPILE_CACHE,
  note = (line) => process.stderr.write(`${line}\n`),
) {
  if (cacheDir === 'off') return null;
  root = path.resolve(root);
  let copy;
  try {
    if (cacheDir && !path.isAbsolute(cacheDir)) throw new Error(`LISTKEEPER_COMPILE_CACHE must be an absolute path (got "${cacheDir}")`);
    const dir = cacheDir || path.join(root, 'node_modules', '.cache', 'listkeeper');
    const owners = [process.getuid?.() ?? 0, 0, fs.statSync(root).uid];
    copy = path.join(dir, sourceKey(root));
    if (fs.existsSync(copy)) {
      trusted(dir, owners);
      trusted(copy, owners);
      markUsed(copy);
    } else {
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      trusted(dir, owners);
      fs.accessSync(dir, fs.constants.W_OK);
      await makeCopy(root, dir, copy);
      // Copies pile up only as new ones are made: the old ones are looked at then.
      try {
        pruneCopies(dir, copy);
      } catch {
        // Another process is pruning too; what is left goes next time.
      }
    }
  } catch (err) {
    note(
      `listkeeper: running the TypeScript sources through tsx (slower to start, ~35 MB more per process): ${reason(err)}. See docs/command-line.md#start-up-time; LISTKEEPER_COMPILE_CACHE=off says nothing.`,
    );
    return null;
  }
  const inUse = copy;
  setInterval(() => markUsed(inUse), IN_USE_EVERY_MS).unref();
  return pathToFileURL(path.join(copy, 'src', 'main.js'));
}

/** @param {unknown} err */
function reason(err) {
  const e = /** @type {{ code?: string, path?: string, message?: string, errors?: { text: string }[] }} */ (err);
  if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS') return `cannot write ${e.path ?? 'the cache folder'} (${e.code})`;
  if (Array.isArray(e.errors) && e.errors.length > 0) return `esbuild: ${e.errors[0].text}`;
  return e.message ?? String(err);
}

/**
 * Code in the folder will run as this user: it must be a real folder (not a link), belong to one
 * of `owners` (this user, root, the checkout's owner, who may change the sources anyway), and not
 * be writable by everyone.
 * @param {string} p
 * @param {number[]} owners
 */
function trusted(p, owners) {
  const st = fs.lstatSync(p);
  if (!st.isDirectory()) throw new Error(`${p} is not a folder`);
  if (!owners.includes(st.uid)) throw new Error(`${p} belongs to another user (uid ${st.uid})`);
  if ((st.mode & 0o002) !== 0) throw new Error(`${p} may be written by anyone (mode ${(st.mode & 0o777).toString(8)})`);
}

/** The folder's time is its last start (for pruning); a folder this user may not touch keeps its own. @param {string} copy */
function markUsed(copy) {
  try {
    const now = new Date();
    fs.utimesSync(copy, now, now);
  } catch {
    // read-only: fine
  }
}

/**
 * A key for the source tree: where it is, every file under src/ by path, size, modification and
 * change times and inode (a change time cannot be set back, so an edit that keeps size and
 * modification time still makes a new key), and what shapes the output: tsconfig.json, esbuild's
 * version, this file.
 * @param {string} root
 * @returns {string}
 */
export function sourceKey(root) {
  // The root too: a copy links to its checkout's views/, sql/ and node_modules/.
  const hash = createHash('sha256').update(`${path.resolve(root)}\n`);
  for (const file of [
    path.join(root, 'tsconfig.json'),
    path.join(root, 'node_modules', 'esbuild', 'package.json'),
    fileURLToPath(import.meta.url),
  ]) {
    hash.update(`${file}\0`);
    try {
      hash.update(fs.readFileSync(file));
    } catch {
      hash.update('absent');
    }
  }
  for (const file of sourceFiles(path.join(root, 'src'))) {
    const st = fs.statSync(file, { bigint: true });
    hash.update(`${path.relative(root, file)}\0${st.size}\0${st.mtimeNs}\0${st.ctimeNs}\0${st.ino}\n`);
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
 * esbuild compiles each file alone (every import left to node), and its resolver, not a pattern
 * over the output, gives each relative import its compiled name: ./x.ts becomes ./x.js. An import
 * node could not load from the copy (JSON, another extension) fails the build instead.
 * @type {import('esbuild').Plugin}
 */
const eachFileAlone = {
  name: 'each-file-alone',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind === 'entry-point') return undefined;
      if (!/^\.\.?\//.test(args.path)) return { path: args.path, external: true };
      if (args.path.endsWith('.ts')) return { path: `${args.path.slice(0, -3)}.js`, external: true };
      if (/\.m?js$/.test(args.path)) return { path: args.path, external: true };
      return {
        errors: [{ text: `${args.importer}: "${args.path}" cannot be imported from the compiled copy (only .ts, .js and .mjs files)` }],
      };
    });
  },
};

/**
 * Compiles src/ into a new folder and renames it to `copy`, so a copy is whole or absent; two
 * processes making the same copy at once each build their own and the second rename gives way.
 * @param {string} root
 * @param {string} dir
 * @param {string} copy
 */
async function makeCopy(root, dir, copy) {
  const esbuild = await import('esbuild');
  const tmp = path.join(dir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    fs.mkdirSync(tmp, { mode: 0o755 });
    const src = path.join(root, 'src');
    const files = sourceFiles(src);
    await esbuild.build({
      entryPoints: files.filter((f) => f.endsWith('.ts')),
      outdir: path.join(tmp, 'src'),
      outbase: src,
      bundle: true,
      plugins: [eachFileAlone],
      format: 'esm',
      platform: 'node',
      target: 'node20',
      sourcemap: 'linked',
      sourcesContent: false,
      logLevel: 'silent',
    });
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
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
    // esbuild's service is a child process that would otherwise live as long as this one.
    await esbuild.stop();
  }
}

/**
 * Removes copies unused for a month beyond the newest few, and what builds and removals left. A
 * copy is first renamed away, so no process finds it half removed under its key.
 * @param {string} dir
 * @param {string} current
 */
function pruneCopies(dir, current) {
  const now = Date.now();
  const folders = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (!e.isDirectory() || p === current) continue;
    try {
      folders.push({ p, name: e.name, mtime: fs.statSync(p).mtimeMs });
    } catch {
      // removed meanwhile by another process
    }
  }
  const leftover = (f) => f.name.startsWith('.tmp-') || f.name.startsWith('.gone-');
  const copies = folders.filter((f) => !leftover(f)).sort((a, b) => b.mtime - a.mtime);
  const stale = [
    ...folders.filter((f) => leftover(f) && now - f.mtime > LEFTOVER_MS),
    ...copies.slice(KEEP_NEWEST - 1).filter((f) => now - f.mtime > KEEP_UNUSED_MS),
  ];
  for (const f of stale) {
    const gone = leftover(f) ? f.p : path.join(dir, `.gone-${randomBytes(4).toString('hex')}`);
    try {
      if (gone !== f.p) fs.renameSync(f.p, gone);
      fs.rmSync(gone, { recursive: true, force: true });
    } catch {
      // another process took it
    }
  }
}
