import { Worker } from 'node:worker_threads';
import { NotFound, RejectedMessage, TemporaryFailure } from '../../errors.ts';
import { log } from '../../log.ts';
import type { ParsedMessage } from '../../mail/parse.ts';
import type { ParseJob, ParseReply, ThreadData } from './parse-worker.ts';

/** What a message page and its attachments need from a MIME parse. */
export type MessageContent = Pick<ParsedMessage, 'text' | 'html' | 'attachments' | 'headers'>;

/**
 * MIME parses off the web process's event loop: one worker thread (started on first use, restarted
 * after a crash) takes one message at a time, reading its bytes on a connection of its own unless
 * the caller has them, so a large message costs another core's time, not every other reader's.
 * Each job has a deadline (reading and parsing); a job that passes it is stopped by ending the
 * thread. Waiting jobs are few and bounded: beyond MAX_WAITING the caller gets a 503 at once
 * rather than a request that waits behind a queue nobody can see.
 */
const PARSE_DEADLINE_MS = 30_000;
const MAX_WAITING = 16;
const STOP_TIMEOUT_MS = 2000;

// The worker runs as the rest of the program does: from the launcher's compiled copy (this module
// is then a .js file beside parse-worker.js), or from the TypeScript sources, whose entry
// registers tsx first.
const ENTRY = import.meta.url.endsWith('.ts')
  ? new URL('./parse-worker-boot.mjs', import.meta.url)
  : new URL('./parse-worker.js', import.meta.url);

/** A message to parse: its bytes, or its row id for the thread to read them. */
export type ParseSource = { raw: Buffer } | { messageRowId: number };

interface Job {
  source: ParseSource;
  receivedAt: Date;
  resolve: (c: MessageContent) => void;
  reject: (err: unknown) => void;
}

export class ParseThread {
  private worker: Worker | null = null;
  /** threads that finished loading (a thread that dies before it is ready is our fault, not a message's) */
  private ready = new WeakSet<Worker>();
  private waiting: Job[] = [];
  private current: { id: number; job: Job; timer: NodeJS.Timeout; worker?: Worker } | null = null;
  private nextId = 1;
  private stopped = false;

  /** `databaseUrls`: where the thread reads archived messages, in order (the read server, then the primary). */
  constructor(
    private databaseUrls: string[],
    private limits: { deadlineMs: number; maxWaiting: number } = { deadlineMs: PARSE_DEADLINE_MS, maxWaiting: MAX_WAITING },
  ) {}

  parse(source: ParseSource, receivedAt: Date): Promise<MessageContent> {
    if (this.stopped) return Promise.reject(new TemporaryFailure('The web server is stopping.', 'stopping'));
    if (this.waiting.length >= this.limits.maxWaiting) {
      return Promise.reject(new TemporaryFailure('The archive is busy reading other large messages; try again in a moment.', 'parse_busy'));
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ source, receivedAt, resolve, reject });
      this.pump();
    });
  }

  /** Ends the thread (its connection closed cleanly when it can); jobs in flight or waiting fail with a 503. */
  async stop(): Promise<void> {
    this.stopped = true;
    const gone = new TemporaryFailure('The web server is stopping.', 'stopping');
    for (const job of this.waiting.splice(0)) job.reject(gone);
    this.finish(gone);
    const worker = this.worker;
    this.worker = null;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage('stop');
    const timer = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private pump() {
    if (this.current || this.stopped) return;
    const job = this.waiting.shift();
    if (!job) return;
    const id = this.nextId++;
    const timer = setTimeout(() => this.timedOut(id), this.limits.deadlineMs);
    timer.unref();
    const worker = this.thread();
    this.current = { id, job, timer, worker };
    const message: ParseJob = {
      id,
      // Copied, not handed over: the caller may still hold these bytes (a memcpy, once per parse).
      raw: 'raw' in job.source ? job.source.raw : null,
      messageRowId: 'messageRowId' in job.source ? job.source.messageRowId : 0,
      receivedAt: job.receivedAt.getTime(),
    };
    worker.postMessage(message);
  }

  private thread(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(ENTRY, { workerData: { databaseUrls: this.databaseUrls } satisfies ThreadData });
    worker.unref();
    worker.on('message', (reply: ParseReply | 'ready') => (reply === 'ready' ? this.ready.add(worker) : this.answer(reply)));
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
      const err = reply.code === 'no_such_message' ? new NotFound(reply.message, reply.code) : reply.code ? new RejectedMessage(reply.message, reply.code) : new Error(reply.message);
      return this.finish(err, reply.id);
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
    log.error({ deadlineMs: this.limits.deadlineMs }, 'message parse passed its deadline; restarting the parse thread');
    const worker = this.worker;
    this.worker = null;
    void worker?.terminate();
    this.finish(new TemporaryFailure('Reading this message took too long.', 'parse_timeout'), id);
  }

  /**
   * The thread died (a crash, running out of memory): the job it had fails, and the next job
   * starts a new thread. A message that kills a thread that was ready is the message's fault, like
   * one that passes the deadline (the cache keeps both answers for a while); a thread that could
   * not even load is ours (a 500, and nothing kept).
   */
  private lost(worker: Worker, err: unknown) {
    if (this.worker === worker) this.worker = null;
    if (this.current?.worker !== worker) return;
    if (!this.ready.has(worker)) return this.finish(new Error(`the message parse thread could not start: ${(err as Error).message ?? err}`));
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
