// Entry of the parse thread (parse-thread.ts): the thread runs the TypeScript sources through tsx,
// as bin/listkeeper.js does for the main one.
import { register } from 'tsx/esm/api';

register();
await import('./parse-worker.ts');
