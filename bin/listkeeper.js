#!/usr/bin/env -S node --max-semi-space-size=4
// Runs the TypeScript sources, so there is no build step to forget.
//
// Memory (issue 14, docs/operations.md "Memory"): V8 sizes its heap for a machine with memory to
// spare, and a server's heap then holds two or three times what it uses. Two flags keep it near
// what is live, for a few percent of CPU:
// - --max-semi-space-size=4 (above): a young generation of 8 MB instead of up to 32. V8 reads it
//   only when the process starts, so it rides on the #! line (`node bin/listkeeper.js` runs
//   without it; NODE_OPTIONS=--max-semi-space-size=4 gives it back). Web processes forked by
//   `serve` inherit it.
// - --heap-growing-percent=30: after a full collection, the old generation may grow by 30% of
//   what survived before the next, rather than up to 4 times. V8 reads it at each collection, so
//   it is set here, whichever way the process was started.
//
// The sources run from a copy compiled by esbuild when one can be made (bin/compiled.js: it starts
// faster and saves tsx's loader thread), else through tsx.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { compiledEntry } from './compiled.js';

v8.setFlagsFromString('--heap-growing-percent=30');
const entry = await compiledEntry(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));
if (entry) {
  // Stack traces name the TypeScript files and lines, as they do under tsx.
  process.setSourceMapsEnabled(true);
  await import(entry.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
}
