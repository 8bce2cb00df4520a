/*
 * The sign that a PostgreSQL upgrade is under way: the file DATA_DIR/upgrade-in-progress. The
 * upgrade of the embedded cluster at start-up (embedded-upgrade.ts) writes it, with a line saying
 * what it does, before it starts the old cluster for the copy, and removes it once the new one has
 * passed its check; a failed upgrade leaves it, saying why. Until it is gone, readiness
 * (/healthz?ready) answers 503 and `listkeeper doctor` fails. This module is the one place both
 * sides take the name from. With an external DATABASE_URL nothing upgrades, and there is no file.
 */

import fs from 'node:fs/promises';
import path from 'node:path';

export function upgradeMarkerFile(dataDir: string): string {
  return path.join(dataDir, 'upgrade-in-progress');
}

/** What the marker says (its first line, or a placeholder when it is empty), or null when no upgrade is under way. */
export async function upgradeInProgress(dataDir: string): Promise<string | null> {
  try {
    const text = await fs.readFile(upgradeMarkerFile(dataDir), 'utf8');
    return text.split('\n')[0].trim() || 'an upgrade is under way';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
