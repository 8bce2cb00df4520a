/*
 * A deterministic mailing-list corpus: the same seed and size always give the same bytes.
 *
 * Realistic in the ways that matter to archives: words follow a Zipf distribution over a large
 * vocabulary (a few very common words, a long tail of rare ones); thread sizes follow a power law
 * (most threads are a message or three, a few run long, and one has exactly 300 messages);
 * replies quote part of their parent and answer the latest message more often than older ones;
 * authors post with a Zipf distribution too; some messages are HTML or carry an attachment.
 * Messages come out in date order, as an archive's mbox would hold them.
 */

import fs from 'node:fs';
import { mboxrdEntry } from '../src/mail/mbox.ts';

export interface CorpusOptions {
  messages: number;
  seed?: number;
  list?: string;
}

export interface CorpusMessage {
  raw: Buffer;
  messageId: string;
  from: string;
  date: Date;
  threadNo: number;
}

export interface CorpusInfo {
  /** words that occur in only a few messages */
  rareWords: string[];
  /** frequent words that are not stop words */
  commonWords: string[];
  /** two-word phrases that occur in the corpus */
  phrases: string[];
  /** two-word phrases of words that are not stop words (search engines that keep stop words and those that drop them find the same) */
  contentPhrases: string[];
  /** two words from one message, not adjacent, neither a stop word (an AND query) */
  wordPairs: string[];
  /** full names of senders, from the most to the least prolific */
  authorNames: string[];
  /** Message-ID of the first message of the 300-message thread, if the corpus is big enough */
  bigThreadRoot: string | null;
}

const START = Date.UTC(2021, 0, 1);
const SPAN = 3 * 365 * 24 * 3600 * 1000;
const BIG_THREAD = 300;

function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COMMON = (
  'the of and to a in is that it for on with as be this are not was by but or have from at an which you we can if will ' +
  'would there their more when what so all one do about some they no has been also other time into only new use should ' +
  'query index table postgres server data patch function performance version database release planner memory vacuum ' +
  'transaction replication backup commit lock schema column value result test build error issue support change problem ' +
  'option file system user case point work need think make way because like just still really'
).split(' ');
const SYLLABLES = 'ka lo mi ne ru sa te vo zi pa qu ri do fe gu ha ji ko lu ma no pe ro su ta ve wi xo ya ze bar cor den fal gim hox'.split(' ');
const FIRST = 'Alice Bruno Chen Dana Emeka Farah Goran Hana Ivan Julia Kenji Lena Marco Nadia Omar Priya Quentin Rosa Sven Tara Umar Vera Wei Ximena Yusuf Zoe'.split(' ');
const LAST = 'Anders Brook Castro Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lopez Moreau Novak Okafor Petrov Quinn Rossi Silva Tanaka Ueda Varga Weber Xu Young Zimmer'.split(' ');

class Vocabulary {
  readonly words: string[];
  private cumulative: Float64Array;
  constructor(size: number, rand: () => number) {
    const seen = new Set(COMMON);
    this.words = [...COMMON];
    while (this.words.length < size) {
      const n = 2 + Math.floor(rand() * 3);
      let w = '';
      for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
      if (!seen.has(w)) {
        seen.add(w);
        this.words.push(w);
      }
    }
    this.cumulative = new Float64Array(size);
    let sum = 0;
    for (let i = 0; i < size; i++) this.cumulative[i] = sum += 1 / Math.pow(i + 1, 1.05);
    for (let i = 0; i < size; i++) this.cumulative[i] /= sum;
  }
  pick(rand: () => number): string {
    const x = rand();
    let lo = 0;
    let hi = this.cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.cumulative[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return this.words[lo];
  }
}

interface Skeleton {
  threadNo: number;
  k: number;
  parent: number; // index within the thread, -1 for the root
  author: number;
  date: number;
  seed: number;
  kind: 'text' | 'html' | 'attachment';
}

export class Corpus {
  readonly info: CorpusInfo;
  private vocab: Vocabulary;
  private threads: Skeleton[][] = [];
  private order: Skeleton[] = [];
  private authors: { name: string; email: string }[] = [];
  private list: string;

  constructor(private opts: CorpusOptions) {
    const rand = prng(opts.seed ?? 42);
    this.list = opts.list ?? 'dev@lists.example.org';
    this.vocab = new Vocabulary(40_000, rand);
    for (let i = 0; i < 3000; i++) {
      const first = FIRST[Math.floor(rand() * FIRST.length)];
      const last = LAST[Math.floor(rand() * LAST.length)];
      this.authors.push({ name: `${first} ${last}`, email: `${first}.${last}${i}@example${i % 40}.org`.toLowerCase() });
    }
    let total = 0;
    const big = opts.messages >= 2 * BIG_THREAD ? 1 : 0;
    while (total < opts.messages) {
      const threadNo = this.threads.length;
      let size = threadNo === 7 && big ? BIG_THREAD : Math.max(1, Math.floor(Math.pow(1 - rand(), -1 / 1.2)));
      size = Math.min(size, threadNo === 7 && big ? BIG_THREAD : 120, opts.messages - total);
      const start = START + rand() * SPAN;
      const thread: Skeleton[] = [];
      let date = start;
      for (let k = 0; k < size; k++) {
        const parent = k === 0 ? -1 : rand() < 0.6 ? k - 1 : Math.floor(rand() * k);
        date += k === 0 ? 0 : rand() * (size > 100 ? 2 : 12) * 3600 * 1000;
        const r = rand();
        thread.push({
          threadNo, k, parent, date: Math.floor(date / 1000) * 1000,
          author: Math.min(2999, Math.floor(Math.pow(rand(), 2.5) * 3000)),
          seed: Math.floor(rand() * 2 ** 31), kind: r < 0.05 ? 'html' : r < 0.07 ? 'attachment' : 'text',
        });
      }
      this.threads.push(thread);
      total += size;
    }
    this.order = this.threads.flat().sort((a, b) => a.date - b.date || a.threadNo - b.threadNo || a.k - b.k);
    this.info = this.describe(rand, big ? this.messageId(this.threads[7][0]) : null);
  }

  get size(): number {
    return this.order.length;
  }

  *messages(): Generator<CorpusMessage> {
    for (const s of this.order) yield this.build(s);
  }

  /** The corpus as an mboxrd file. */
  writeMbox(file: string): number {
    const fd = fs.openSync(file, 'w');
    let bytes = 0;
    try {
      const parts: Buffer[] = [];
      let pending = 0;
      for (const m of this.messages()) {
        const entry = mboxrdEntry(m.raw, m.from, m.date);
        parts.push(entry);
        pending += entry.length;
        if (pending > 1 << 22) {
          bytes += fs.writeSync(fd, Buffer.concat(parts));
          parts.length = 0;
          pending = 0;
        }
      }
      bytes += fs.writeSync(fd, Buffer.concat(parts));
    } finally {
      fs.closeSync(fd);
    }
    return bytes;
  }

  private messageId(s: Skeleton): string {
    return `${s.threadNo}.${s.k}.${(s.seed % 100000).toString(36)}@corpus.example.org`;
  }

  private newText(seed: number): string[] {
    const rand = prng(seed);
    const lines: string[] = [];
    const n = 4 + Math.floor(rand() * 14);
    for (let i = 0; i < n; i++) {
      const words: string[] = [];
      const w = 6 + Math.floor(rand() * 9);
      for (let j = 0; j < w; j++) words.push(this.vocab.pick(rand));
      lines.push(words.join(' '));
      if (rand() < 0.15) lines.push('');
    }
    return lines;
  }

  private subject(s: Skeleton): string {
    const root = this.threads[s.threadNo][0];
    const rand = prng(root.seed ^ 0x5bd1e995);
    const words: string[] = [];
    const n = 3 + Math.floor(rand() * 5);
    for (let i = 0; i < n; i++) words.push(this.vocab.pick(rand));
    const text = words.join(' ');
    return (s.k === 0 ? '' : 'Re: ') + text[0].toUpperCase() + text.slice(1);
  }

  private build(s: Skeleton): CorpusMessage {
    const thread = this.threads[s.threadNo];
    const author = this.authors[s.author];
    const date = new Date(s.date);
    const id = this.messageId(s);
    const text = this.newText(s.seed);
    let body: string[] = [];
    const headers = [
      `From: ${author.name} <${author.email}>`,
      `To: ${this.list}`,
      `Subject: ${this.subject(s)}`,
      `Date: ${date.toUTCString().replace('GMT', '+0000')}`,
      `Message-ID: <${id}>`,
    ];
    if (s.parent >= 0) {
      const parent = thread[s.parent];
      const chain: string[] = [];
      for (let p: Skeleton | undefined = parent; p; p = p.parent >= 0 ? thread[p.parent] : undefined) chain.unshift(this.messageId(p));
      const refs = chain.length > 10 ? [chain[0], ...chain.slice(-9)] : chain;
      headers.push(`In-Reply-To: <${this.messageId(parent)}>`, `References: ${refs.map((r) => `<${r}>`).join('\n ')}`);
      const quoted = this.newText(parent.seed).slice(0, 2 + (s.seed % 6));
      body.push(`On ${new Date(parent.date).toUTCString()}, ${this.authors[parent.author].name} wrote:`, ...quoted.map((l) => (l ? `> ${l}` : '>')), '');
    }
    body.push(...text);
    if (s.seed % 3 === 0) body.push('', '-- ', author.name);
    body = body.map((l) => (l.startsWith('From ') ? ` ${l}` : l));
    const plain = body.join('\n') + '\n';
    headers.push('MIME-Version: 1.0');
    let content: string;
    if (s.kind === 'html') {
      const boundary = `alt-${s.seed}`;
      const html = `<html><body>${body.map((l) => `<p>${l.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</p>`).join('')}</body></html>`;
      headers.push(`Content-Type: multipart/alternative; boundary="${boundary}"`);
      content = `--${boundary}\nContent-Type: text/plain; charset=utf-8\n\n${plain}\n--${boundary}\nContent-Type: text/html; charset=utf-8\n\n${html}\n--${boundary}--\n`;
    } else if (s.kind === 'attachment') {
      const boundary = `mix-${s.seed}`;
      const data = Buffer.from(this.newText(s.seed ^ 7).join('\n')).toString('base64').replace(/.{76}/g, '$&\n');
      headers.push(`Content-Type: multipart/mixed; boundary="${boundary}"`);
      content = `--${boundary}\nContent-Type: text/plain; charset=utf-8\n\n${plain}\n--${boundary}\nContent-Type: text/plain; name="notes-${s.threadNo}.txt"\nContent-Disposition: attachment; filename="notes-${s.threadNo}.txt"\nContent-Transfer-Encoding: base64\n\n${data}\n--${boundary}--\n`;
    } else {
      headers.push('Content-Type: text/plain; charset=utf-8');
      content = plain;
    }
    return { raw: Buffer.from(`${headers.join('\n')}\n\n${content}`), messageId: id, from: author.email, date, threadNo: s.threadNo };
  }

  private describe(rand: () => number, bigThreadRoot: string | null): CorpusInfo {
    const stop = new Set('the of and to a in is that it for on with as be this are not was by but or have from at an which you we can if will would there their more when what so all one do about some they no has been also other into only should'.split(' '));
    const commonWords = this.vocab.words.slice(0, 160).filter((w) => !stop.has(w)).slice(0, 20);
    const rareWords: string[] = [];
    for (let i = 0; i < 20; i++) rareWords.push(this.vocab.words[8000 + Math.floor(rand() * 20000)]);
    const phrases: string[] = [];
    for (let i = 0; i < 20 && this.order.length > 0; i++) {
      const s = this.order[Math.floor(rand() * this.order.length)];
      const words = this.newText(s.seed)[0].split(' ');
      const at = Math.floor(rand() * (words.length - 1));
      phrases.push(`${words[at]} ${words[at + 1]}`);
    }
    // Drawn after the sets above so that those stay as they were for the same seed.
    const contentPhrases: string[] = [];
    const wordPairs: string[] = [];
    for (let tries = 0; (contentPhrases.length < 20 || wordPairs.length < 20) && tries < 10_000 && this.order.length > 0; tries++) {
      const words = this.newText(this.order[Math.floor(rand() * this.order.length)].seed)[0].split(' ');
      const at = Math.floor(rand() * (words.length - 1));
      const other = Math.floor(rand() * words.length);
      if (contentPhrases.length < 20 && !stop.has(words[at]) && !stop.has(words[at + 1]) && words[at] !== words[at + 1]) contentPhrases.push(`${words[at]} ${words[at + 1]}`);
      if (wordPairs.length < 20 && Math.abs(other - at) > 1 && !stop.has(words[at]) && !stop.has(words[other]) && words[at] !== words[other]) wordPairs.push(`${words[at]} ${words[other]}`);
    }
    // Authors post with a Zipf distribution over their index: spread the picks over it.
    const authorNames = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2000, 2500, 2999].map((i) => this.authors[i].name);
    return { rareWords, commonWords, phrases, contentPhrases, wordPairs, authorNames, bigThreadRoot };
  }
}

// Standalone: `npx tsx bench/corpus.ts FILE [MESSAGES]` writes the corpus as an mbox.
if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2] ?? 'corpus.mbox';
  const n = Number(process.argv[3] ?? 100_000);
  const corpus = new Corpus({ messages: n });
  const bytes = corpus.writeMbox(file);
  console.log(`wrote ${corpus.size} messages (${(bytes / 1048576).toFixed(1)} MB) to ${file}`);
}
