/*
 * `npm run bench`: every benchmark in turn, each printing its own figures. Pick some with
 * `npm run bench -- ingest archive`.
 */

const all = ['ingest', 'delivery', 'archive', 'search-compare'];
const chosen = process.argv.slice(2).length ? process.argv.slice(2) : all;
for (const name of chosen) {
  let mod: { run(): Promise<void> };
  try {
    mod = await import(`./${name}.ts`);
  } catch (err) {
    console.log(`\n== ${name}: not available (${(err as Error).message})`);
    continue;
  }
  console.log(`\n== ${name}`);
  await mod.run();
}
