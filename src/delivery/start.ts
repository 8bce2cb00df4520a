import type { Config } from '../config.ts';
import type { Database } from '../db/database.ts';

/** Starts the delivery worker role. The outbound queue arrives with the delivery issue. */
export async function startDeliveryWorker(_db: Database, _cfg: Config): Promise<{ name: string; stop(): Promise<void> }> {
  return { name: 'worker', stop: async () => undefined };
}
