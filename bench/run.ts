/*
 * `npm run bench`: every benchmark in turn, each printing its own figures. Pick some with
 * `npm run bench -- ingest archive`, or some rows of one with `npm run bench -- ingest:per-connection`
 * (the benchmark names its rows; one that has none runs whole).
 */

const all = ['ingest', 'delivery', 'archive', 'search-compare'];
const chosen = process.argv.slice(2).length ? process.argv.slice(2) : all;
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
