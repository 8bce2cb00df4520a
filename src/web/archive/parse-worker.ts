import { parentPort } from 'node:worker_threads';
import { isAppError } from '../../errors.ts';
import { parse } from '../../mail/parse.ts';

/**
 * The thread that parses large messages for the web (parse-thread.ts starts it): the MIME parse of
 * a 10 MB message costs about a second of CPU, which would stall every other request of the web
 * process. It answers each job with what a message page shows; attachment bytes are handed over,
 * not copied.
 */

export interface ParseJob {
  id: number;
  raw: Uint8Array;
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

const port = parentPort;
if (port) {
  port.on('message', async (job: ParseJob) => {
    try {
      const p = await parse(Buffer.from(job.raw.buffer, job.raw.byteOffset, job.raw.byteLength), new Date(job.receivedAt));
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
}
