/*
 * The thread that parses large messages for the web (parse-thread.ts starts it): the MIME parse of
 * a 10 MB message costs about a second of CPU, and reading its bytes from PostgreSQL (20 MB of
 * hex to decode) a good part of another, which would stall every other request of the web
 * process. So the thread reads the bytes itself, on its own connection, and answers each job with
 * what a message page shows; attachment bytes are handed over, not copied.
 */

import pg from 'pg';
import { parentPort, workerData } from 'node:worker_threads';
import { messageRaw } from '../../db/message-raw.ts';
import { isConnectionLoss, LOCK_TIMEOUT_MS } from '../../db/pool.ts';
import { isAppError } from '../../errors.ts';
import { parse } from '../../mail/parse.ts';

export interface ThreadData {
  /**
   * where archived messages are read, in order: DATABASE_READ_URL then the primary (a replica
   * that is down, or has not replayed the message yet, leaves the read to the primary), or the
   * primary alone
   */
  databaseUrls: string[];
}

export interface ParseJob {
  id: number;
  /** the bytes, when the caller has them; else they are read by row id */
  raw: Uint8Array | null;
  messageRowId: number;
  receivedAt: number;
}

export interface WireAttachment {
  filename: string | null;
  contentType: string;
  size: number;
  content: Uint8Array;
  contentId: string | null;
  inline: boolean;
}

export type ParseReply =
  | { id: number; ok: true; text: string; html: string | null; headers: [string, string[]][]; attachments: WireAttachment[] }
  | { id: number; ok: false; message: string; code: string | null };

const CONNECT_TIMEOUT_MS = 10_000;
/** a server that could not be reached is left alone this long (as db/read-pool.ts does) */
const RETRY_MS = 5_000;
const clients = new Map<string, pg.Client>();
const downUntil = new Map<string, number>();

/** The thread's connection to one server, opened on first use and again after it fails. */
async function connection(url: string): Promise<pg.Client> {
  const open = clients.get(url);
  if (open) return open;
  const c = new pg.Client({ connectionString: url, application_name: `listkeeper:${process.pid}:parse`, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  c.on('error', () => {
    if (clients.get(url) === c) clients.delete(url);
  });
  await c.connect();
  // As serve's pools: a table locked by an operator fails the read in time (a 503), not never.
  await c.query(`set lock_timeout = ${LOCK_TIMEOUT_MS}`).catch((err: Error) => {
    c.end().catch(() => undefined);
    throw err;
  });
  clients.set(url, c);
  return c;
}

async function rawOf(job: ParseJob): Promise<Buffer | null> {
  if (job.raw) return Buffer.from(job.raw.buffer, job.raw.byteOffset, job.raw.byteLength);
  const urls = (workerData as ThreadData).databaseUrls;
  const usable = urls.filter((u) => (downUntil.get(u) ?? 0) <= performance.now());
  const tries = usable.length > 0 ? usable : urls.slice(-1);
  for (const [i, url] of tries.entries()) {
    const last = i === tries.length - 1;
    let c: pg.Client | undefined;
    try {
      c = await connection(url);
      const raw = await messageRaw(c, job.messageRowId);
      // Not there: perhaps not replayed yet. The next server (the primary) has the last word.
      if (raw || last) return raw;
    } catch (err) {
      if (c && clients.get(url) === c) clients.delete(url);
      c?.end().catch(() => undefined);
      if (last || !isConnectionLoss(err)) throw err;
      downUntil.set(url, performance.now() + RETRY_MS);
    }
  }
  return null;
}

const port = parentPort;
if (port) {
  port.on('message', async (job: ParseJob | 'stop') => {
    if (job === 'stop') {
      // Ends the connection cleanly; with the port closed, the thread has nothing left and ends.
      await Promise.all([...clients.values()].map((c) => c.end().catch(() => undefined)));
      port.close();
      return;
    }
    try {
      const raw = await rawOf(job);
      if (!raw) {
        port.postMessage({ id: job.id, ok: false, message: 'This message is no longer archived.', code: 'no_such_message' } satisfies ParseReply);
        return;
      }
      const p = await parse(raw, new Date(job.receivedAt));
      // Each attachment in an ArrayBuffer of its own, so that it can be transferred (a Buffer may
      // be a view into a shared pool, which must not be handed away).
      const attachments = p.attachments.map((a): WireAttachment => ({ ...a, content: new Uint8Array(a.content) }));
      const reply: ParseReply = { id: job.id, ok: true, text: p.text, html: p.html, headers: [...p.headers], attachments };
      port.postMessage(reply, attachments.map((a) => a.content.buffer as ArrayBuffer));
    } catch (err) {
      const reply: ParseReply = { id: job.id, ok: false, message: (err as Error).message ?? String(err), code: isAppError(err) ? err.code : null };
      port.postMessage(reply);
    }
  });
  // Loaded and listening: from now on, a death of this thread is the fault of what it was parsing.
  port.postMessage('ready');
}
