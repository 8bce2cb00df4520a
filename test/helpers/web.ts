import { parseConfig, type Config } from '../../src/config.ts';
import type { Database } from '../../src/db/database.ts';
import { WebServer } from '../../src/web/server.ts';

export interface RunningWeb {
  url: string;
  cfg: Config;
  stop(): Promise<void>;
}

/** The real web app on an ephemeral port; PUBLIC_URL points at it. `stalledMs`: a shorter idle deadline. */
export async function startWeb(db: Database, env: Record<string, string> = {}, opts: { stalledMs?: number } = {}): Promise<RunningWeb> {
  const cfg0 = parseConfig({ MAIL_DOMAIN: 'lists.example.org', LOG_LEVEL: 'silent', ...env });
  const server = new WebServer(db, cfg0, { host: '127.0.0.1', port: 0, stalledMs: opts.stalledMs });
  const addr = await server.start();
  const url = `http://127.0.0.1:${addr.port}`;
  // Links in pages and mail should point at this very server.
  const cfg = env.PUBLIC_URL ? cfg0 : Object.assign(cfg0, { publicUrl: url });
  return { url, cfg, stop: () => server.stop() };
}
