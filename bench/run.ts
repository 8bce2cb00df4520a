/*
 * `npm run bench`: every benchmark in turn, each printing its own figures. Pick some with
 * `npm run bench -- ingest archive`, or some rows of one with `npm run bench -- ingest:per-connection`
 * (the benchmark names its rows; one that has none runs whole). `npm run bench -- --scale 1m`
 * runs bench/scale.ts at a million messages.
 */

const all = ['ingest', 'delivery', 'archive', 'search-compare'];
const argv = process.argv.slice(2);
const scaleAt = argv.indexOf('--scale');
if (scaleAt >= 0) argv.splice(scaleAt, 2, `scale:${argv[scaleAt + 1] ?? ''}`);
const chosen = argv.length ? argv : all;
for (const arg of chosen) {
  const [name, rows] = arg.split(':');
  let mod: { run(rows?: string[]): Promise<void> };
  try {
    mod = await import(`./${name}.ts`);
  } catch (err) {
    console.log(`\n== ${name}: not available (${(err as Error).message})`);
    continue;
  }
  console.log(`\n== ${name}`);
  await mod.run(rows ? rows.split(',') : undefined);
}
