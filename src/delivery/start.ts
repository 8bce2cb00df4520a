import type { Config } from '../config.ts';
import type { Database } from '../db/database.ts';
import { DeliveryWorker } from './worker.ts';

/** Starts the delivery worker role (`listkeeper serve --worker`); stop() drains the batch in flight. */
export async function startDeliveryWorker(db: Database, cfg: Config): Promise<{ name: string; stop(): Promise<void> }> {
  const worker = new DeliveryWorker(db.pool, db.directUrl ?? db.url, cfg);
  await worker.start();
  return { name: 'worker', stop: () => worker.stop() };
}
