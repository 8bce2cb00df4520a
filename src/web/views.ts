import path from 'node:path';
import { fileURLToPath } from 'node:url';
import nunjucks from 'nunjucks';
import { MIN_PASSWORD } from '../auth/credentials.ts';
import * as urls from '../mail/urls.ts';

const VIEWS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../views');

/**
 * The one nunjucks environment. Autoescaping is on: only values passed through `| safe` after our
 * own sanitising (archive HTML) are emitted raw.
 */
export function createViews(): nunjucks.Environment {
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(VIEWS, { noCache: false }), { autoescape: true, throwOnUndefined: false });
  // Password forms check the same minimum in the browser as the server does.
  env.addGlobal('minPassword', MIN_PASSWORD);
  // Links in templates come from the one module of URL shapes: {{ urls.listUrl(key) }}.
  env.addGlobal('urls', urls);
  env.addFilter('isodate', (d: Date | string | null) => (d ? new Date(d).toISOString() : ''));
  env.addFilter('shortdate', (d: Date | string | null) => (d ? new Date(d).toISOString().slice(0, 16).replace('T', ' ') : ''));
  env.addFilter('day', (d: Date | string | null) => (d ? new Date(d).toISOString().slice(0, 10) : ''));
  return env;
}
