import { Worker } from 'node:worker_threads';
import { RejectedMessage, TemporaryFailure } from '../../errors.ts';
import { log } from '../../log.ts';
import type { ParsedMessage } from '../../mail/parse.ts';
import type { ParseJob, ParseReply } from './parse-worker.ts';

/** What a message page and its attachments need from a MIME parse. */
export type MessageContent = Pick<ParsedMessage, 'text' | 'html' | 'attachments' | 'headers'>;

/**
 * MIME parses off the web process's event loop: one worker thread (started on first use, restarted
 * after a crash) takes one message at a time, so a large message costs another core's time, not
 * every other reader's. Each parse has a deadline; a parse that passes it is stopped by ending the
 * thread. Waiting jobs are few and bounded: beyond MAX_WAITING the caller gets a 503 at once
 * rather than a request that waits behind a queue nobody can see.
 */
const PARSE_DEADLINE_MS = 30_000;
const MAX_WAITING = 16;

// The worker runs TypeScript like the rest of the program: its entry registers tsx first.
const ENTRY = new URL('./parse-worker-boot.mjs', import.meta.url);

interface Job {
  load: () => Promise<Buffer>;
  receivedAt: Date;
  resolve: (c: MessageContent) => void;
  reject: (err: unknown) => void;
}

export class ParseThread {
  private worker: Worker | null = null;
  private waiting: Job[] = [];
  private current: { id: number; job: Job; timer: NodeJS.Timeout; worker?: Worker } | null = null;
  private nextId = 1;
  private stopped = false;

  /** Parses the bytes `load` resolves with; they are read only when the thread is free for them. */
  parse(load: () => Promise<Buffer>, receivedAt: Date): Promise<MessageContent> {
    if (this.stopped) return Promise.reject(new TemporaryFailure('The web server is stopping.', 'stopping'));
    if (this.waiting.length >= MAX_WAITING) {
      return Promise.reject(new TemporaryFailure('The archive is busy reading other large messages; try again in a moment.', 'parse_busy'));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ load, receivedAt, resolve, reject });
      this.pump();
    });
  }

  /** Ends the thread; jobs in flight or waiting fail with a 503. */
  async stop(): Promise<void> {
    this.stopped = true;
    const gone = new TemporaryFailure('The web server is stopping.', 'stopping');
    for (const job of this.waiting.splice(0)) job.reject(gone);
    this.finish(gone);
    const worker = this.worker;
    this.worker = null;
    await worker?.terminate();
  }

  private pump() {
    if (this.current || this.stopped) return;
    const job = this.waiting.shift();
    if (!job) return;
    const id = this.nextId++;
    const timer = setTimeout(() => this.timedOut(id), PARSE_DEADLINE_MS);
    timer.unref();
    this.current = { id, job, timer };
    job.load().then(
      (raw) => {
        if (this.current?.id !== id) return;
        const message: ParseJob = { id, raw, receivedAt: job.receivedAt.getTime() };
        const worker = this.thread();
        this.current.worker = worker;
        // Copied, not handed over: the caller may still hold these bytes (a memcpy, once per parse).
        worker.postMessage(message);
      },
      (err) => this.finish(err, id),
    );
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(ENTRY);
    worker.unref();
    worker.on('message', (reply: ParseReply) => this.answer(reply));
    worker.on('error', (err) => {
      log.error({ err }, 'message parse thread failed');
      this.lost(worker, err);
    });
    worker.on('exit', (code) => this.lost(worker, new Error(`the parse thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private answer(reply: ParseReply) {
    if (this.current?.id !== reply.id) return;
    if (!reply.ok) {
      return this.finish(reply.code ? new RejectedMessage(reply.message, reply.code) : new Error(reply.message), reply.id);
    }
    const job = this.current.job;
    this.finish(null, reply.id);
    job.resolve({
      text: reply.text,
      html: reply.html,
      headers: new Map(reply.headers),
      attachments: reply.attachments.map((a) => ({ ...a, content: Buffer.from(a.content.buffer, a.content.byteOffset, a.content.byteLength) })),
    });
  }

  private timedOut(id: number) {
    if (this.current?.id !== id) return;
    log.error({ deadlineMs: PARSE_DEADLINE_MS }, 'message parse passed its deadline; restarting the parse thread');
    const worker = this.worker;
    this.worker = null;
    void worker?.terminate();
    this.finish(new TemporaryFailure('Reading this message took too long.', 'parse_timeout'), id);
  }

  /**
   * The thread died (a crash, running out of memory): the job it had fails, and the next job
   * starts a new thread. A message that kills the parser is the message's fault, like one that
   * passes the deadline (the cache keeps both answers for a while).
   */
  private lost(worker: Worker, err: unknown) {
    if (this.worker === worker) this.worker = null;
    if (this.current?.worker !== worker) return;
    log.error({ err }, 'message parse thread stopped during a parse');
    this.finish(new TemporaryFailure('This message could not be read.', 'parse_crashed'));
  }

  /** Ends the current job (only job `id`, when given): rejects it unless `err` is null, then starts the next. */
  private finish(err: unknown, id?: number) {
    const cur = this.current;
    if (!cur || (id !== undefined && cur.id !== id)) return;
    clearTimeout(cur.timer);
    this.current = null;
    if (err !== null) cur.job.reject(err);
    setImmediate(() => this.pump());
  }
}
