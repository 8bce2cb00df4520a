/*
 * Parsed messages for the web, kept in memory: a message page with attachments, or HTML, needs a
 * MIME parse, and a 10 MB message with 25 attachments costs about a second of CPU to parse. So
 * each message is parsed once, and its text, HTML, headers and attachments are kept in a
 * least-recently-used cache bounded in bytes (MESSAGE_CACHE_MB per web process). Readers who ask
 * for a message while it is being parsed wait for that parse instead of starting their own.
 *
 * Messages over IN_PROCESS_MAX bytes are read and parsed in a worker thread (parse-thread.ts), so
 * that other requests go on while it works; smaller ones cost a few milliseconds and are parsed
 * here. Raw bytes are read from the database only when a parse is needed, so a page view of a
 * large message that is already parsed reads none of them.
 *
 * An entry is keyed by the message's row id and its arrival time: archived bytes never change.
 * Hiding is per list and decided before a page asks for the content (permalink.ts), so a hidden
 * message's parse is never shown; it leaves the cache as it ages out. Failures that are the
 * message's fault are kept too, for FAILURE_TTL_MS, so that a message the parser chokes on is not
 * parsed again on every view.
 */

import { messageRaw } from '../../db/message-raw.ts';
import type { Queryable } from '../../db/pool.ts';
import { NotFound, RejectedMessage } from '../../errors.ts';
import { parse } from '../../mail/parse.ts';
import { messageParses, parsedMessageRequests } from '../web-metrics.ts';
import { ParseThread, type MessageContent } from './parse-thread.ts';

export type { MessageContent } from './parse-thread.ts';

const IN_PROCESS_MAX = 256 * 1024;
const FAILURE_TTL_MS = 10 * 60 * 1000;
/** Per entry, besides its strings and attachments. */
const OVERHEAD_BYTES = 1024;

/** The parts of an archived message row that name its content. */
export interface StoredMessage {
  id: number;
  size: number;
  received_at: Date;
  /** the raw bytes, when the query that found the message read them */
  raw: Buffer | null;
}

type Entry = { content: MessageContent; bytes: number } | { error: unknown; bytes: number; until: number };

export class ParsedMessages {
  // Map order is insertion order: the first key is the least recently used.
  private entries = new Map<string, Entry>();
  private bytes = 0;
  private inFlight = new Map<string, Promise<MessageContent>>();
  private thread: ParseThread;

  /**
   * `maxBytes` 0 keeps nothing (every view parses; concurrent views still share a parse).
   * `databaseUrls`: where the parse thread reads large messages, in order (the read server, then the primary).
   */
  constructor(private maxBytes: number, databaseUrls: string[]) {
    this.thread = new ParseThread(databaseUrls);
  }

  async stop(): Promise<void> {
    await this.thread.stop();
    this.entries.clear();
    this.bytes = 0;
  }

  /** The message's content, parsed once; its raw bytes are read with `db` when they must be. */
  content(db: Queryable, m: StoredMessage): Promise<MessageContent> {
    const key = `${m.id}:${m.received_at.getTime()}`;
    const kept = this.entries.get(key);
    if (kept && ('content' in kept || kept.until > performance.now())) {
      parsedMessageRequests.inc({ result: 'hit' });
      this.entries.delete(key);
      this.entries.set(key, kept);
      return 'content' in kept ? Promise.resolve(kept.content) : Promise.reject(kept.error);
    }
    const running = this.inFlight.get(key);
    if (running) {
      parsedMessageRequests.inc({ result: 'shared' });
      return running;
    }
    parsedMessageRequests.inc({ result: 'miss' });
    const load = async () => {
      const raw = m.raw ?? (await messageRaw(db, m.id));
      if (!raw) throw new NotFound('This message is no longer archived.', 'no_such_message');
      return raw;
    };
    const inThread = m.size > IN_PROCESS_MAX;
    messageParses.inc({ where: inThread ? 'thread' : 'process' });
    const parsing = inThread
      ? this.thread.parse(m.raw ? { raw: m.raw } : { messageRowId: m.id }, m.received_at)
      : load().then((raw) => parse(raw, m.received_at));
    const done = parsing.then(
      (content) => {
        this.keep(key, { content, bytes: sizeOf(content) });
        return content;
      },
      (error) => {
        if (messageAtFault(error)) this.keep(key, { error, bytes: OVERHEAD_BYTES, until: performance.now() + FAILURE_TTL_MS });
        throw error;
      },
    );
    this.inFlight.set(key, done);
    const forget = () => this.inFlight.delete(key);
    done.then(forget, forget);
    return done;
  }

  private keep(key: string, entry: Entry) {
    // One message may not take more than half the cache: it would empty it for itself.
    if (entry.bytes > this.maxBytes / 2) return;
    const old = this.entries.get(key);
    if (old) this.bytes -= old.bytes;
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.bytes += entry.bytes;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= e.bytes;
    }
  }
}

/**
 * Whether a failed parse says something about the message (it cannot be parsed, the parser ran
 * past its deadline or died on it), rather than about the server (busy, stopping, a fault of ours).
 */
export function messageAtFault(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return err instanceof RejectedMessage || code === 'parse_timeout' || code === 'parse_crashed';
}

/** Memory an entry holds, roughly: attachment bytes, and two bytes per character of text. */
function sizeOf(c: MessageContent): number {
  let n = OVERHEAD_BYTES + 2 * (c.text.length + (c.html?.length ?? 0));
  for (const a of c.attachments) n += a.content.length + 2 * ((a.filename?.length ?? 0) + a.contentType.length) + 64;
  for (const [name, values] of c.headers) for (const v of values) n += 2 * (name.length + v.length) + 32;
  return n;
}
