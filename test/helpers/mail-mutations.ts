/*
 * Ways to damage a real message, for the SMTP fuzz run: each takes the bytes and a random
 * source and returns new bytes and a short note of what it did (printed with any failure, so
 * the input can be rebuilt). They work on bytes (latin1), never on decoded text.
 */

import type { Random } from './random.ts';

export interface Mutated {
  raw: Buffer;
  detail: string;
}

export type Mutation = (raw: Buffer, rnd: Random) => Mutated;

/** Mutations that make megabytes or tens of thousands of parts: picked a quarter as often. */
export const HEAVY = new Set(['tsvector-overflow', 'many-references', 'many-parts', 'deep-multipart', 'long-header-line']);

const latin1 = (b: Buffer) => b.toString('latin1');
const bytes = (s: string) => Buffer.from(s, 'latin1');

/** The header section and the rest, split at the first empty line (CRLF or LF). */
export function splitHead(raw: Buffer): { head: string; sep: string; body: string; eol: string } {
  const s = latin1(raw);
  const m = /\r?\n\r?\n/.exec(s);
  if (!m) return { head: s, sep: '', body: '', eol: s.includes('\r\n') ? '\r\n' : '\n' };
  const head = s.slice(0, m.index);
  return { head, sep: m[0], body: s.slice(m.index + m[0].length), eol: m[0].startsWith('\r\n') ? '\r\n' : '\n' };
}

/** Header fields with their folded continuation lines, line ends not included. */
function fields(head: string): string[] {
  const out: string[] = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && out.length) out[out.length - 1] += `\n${line}`;
    else out.push(line);
  }
  return out;
}

function join(f: string[], eol: string): string {
  return f.map((x) => x.replace(/\r?\n/g, eol)).join(eol);
}

function rebuild(f: string[], p: ReturnType<typeof splitHead>): Buffer {
  return bytes(join(f, p.eol) + (p.sep || p.eol + p.eol) + p.body);
}

const nameOf = (field: string) => field.slice(0, Math.max(0, field.indexOf(':'))).toLowerCase();

/** Gives the message this Message-ID: the existing field is replaced, or one is added at the end of the header section. */
export function withMessageId(raw: Buffer, id: string): Buffer {
  const p = splitHead(raw);
  const f = fields(p.head);
  const i = f.findIndex((x) => nameOf(x) === 'message-id');
  if (i >= 0) f[i] = `Message-ID: <${id}>`;
  else f.push(`Message-ID: <${id}>`);
  return rebuild(f, p);
}

function setField(raw: Buffer, name: string, value: string): Buffer {
  const p = splitHead(raw);
  const f = fields(p.head).filter((x) => nameOf(x) !== name.toLowerCase());
  f.push(`${name}: ${value}`);
  return rebuild(f, p);
}

const randomBytes = (rnd: Random, n: number, min = 0, max = 255) => Buffer.from(Array.from({ length: n }, () => rnd.int(min, max)));

const WORD = () => 'abcdefghijklmnopqrstuvwxyz';

export const MUTATIONS: Record<string, Mutation> = {
  'as-is': (raw) => ({ raw, detail: '' }),

  'byte-flips': (raw, rnd) => {
    const out = Buffer.from(raw);
    const n = rnd.int(1, 8);
    const at: number[] = [];
    for (let k = 0; k < n && out.length; k++) {
      const i = rnd.int(0, out.length - 1);
      out[i] ^= 1 << rnd.int(0, 7);
      at.push(i);
    }
    return { raw: out, detail: `bits flipped at ${at.join(',')}` };
  },

  truncated: (raw, rnd) => {
    const at = rnd.int(1, Math.max(1, raw.length - 1));
    return { raw: raw.subarray(0, at), detail: `cut at byte ${at} of ${raw.length}` };
  },

  'duplicated-header': (raw, rnd) => {
    const p = splitHead(raw);
    const f = fields(p.head);
    const i = rnd.int(0, f.length - 1);
    const copies = rnd.int(1, 3);
    f.splice(i, 0, ...Array.from({ length: copies }, () => f[i]));
    return { raw: rebuild(f, p), detail: `"${nameOf(f[i])}" ${copies + 1} times` };
  },

  'missing-header': (raw, rnd) => {
    const p = splitHead(raw);
    const f = fields(p.head);
    const wanted = ['from', 'date', 'message-id', 'content-type', 'mime-version', 'subject', 'content-transfer-encoding'];
    const present = f.map(nameOf).filter((n) => wanted.includes(n));
    const gone = present.length ? present[rnd.int(0, present.length - 1)] : nameOf(f[0]);
    return { raw: rebuild(f.filter((x) => nameOf(x) !== gone), p), detail: `without "${gone}"` };
  },

  'nul-in-header': (raw, rnd) => {
    const name = ['Message-ID', 'In-Reply-To', 'References', 'From', 'Subject', 'To', 'Content-Type'][rnd.int(0, 6)];
    const p = splitHead(raw);
    const f = fields(p.head);
    const i = f.findIndex((x) => nameOf(x) === name.toLowerCase());
    const value = i >= 0 ? f[i].slice(f[i].indexOf(':') + 1) : ` <nul@fuzz.example>`;
    const at = rnd.int(1, Math.max(1, value.length - 1));
    const field = `${name}:${value.slice(0, at)}\u0000${value.slice(at)}`;
    if (i >= 0) f[i] = field;
    else f.push(field);
    return { raw: rebuild(f, p), detail: `NUL in ${name}` };
  },

  'long-header-line': (raw, rnd) => {
    const length = [2_000, 20_000, 200_000][rnd.int(0, 2)];
    const name = ['Subject', 'X-Long', 'Received', 'To'][rnd.int(0, 3)];
    const value = Array.from({ length: Math.ceil(length / 8) }, () => WORD().slice(rnd.int(0, 20), 26).slice(0, 7)).join(' ').slice(0, length);
    return { raw: setField(raw, name, value), detail: `${name} of ${length} characters on one line` };
  },

  'long-from': (raw, rnd) => {
    // Random letters: a repeated one compresses so well that the index row stays small.
    const length = rnd.int(1_000, 6_000);
    const local = Array.from({ length }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[rnd.int(0, 35)]).join('');
    return { raw: setField(raw, 'From', `Someone <${local}@fuzz.example>`), detail: `From address of ${length} characters` };
  },

  'many-references': (raw, rnd) => {
    const count = [1_000, 5_000, 20_000][rnd.int(0, 2)];
    const refs = Array.from({ length: count }, (_, k) => `<ref-${k}-${rnd.int(0, 1e6)}@fuzz.example>`).join('\r\n ');
    return { raw: setField(raw, 'References', refs), detail: `${count} References` };
  },

  'huge-message-id': (raw, rnd) => {
    const length = [901, 5_000, 100_000][rnd.int(0, 2)];
    const id = Array.from({ length }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[rnd.int(0, 35)]).join('');
    return { raw: setField(raw, 'Message-ID', `<${id}@fuzz.example>`), detail: `Message-ID of ${length} characters` };
  },

  'bare-lf': (raw) => ({ raw: bytes(latin1(raw).replace(/\r\n/g, '\n')), detail: 'CRLF made LF' }),

  crlf: (raw) => ({ raw: bytes(latin1(raw).replace(/\r?\n/g, '\r\n')), detail: 'LF made CRLF' }),

  'mixed-line-ends': (raw, rnd) => ({ raw: bytes(latin1(raw).replace(/\r?\n/g, () => ['\n', '\r\n', '\r\n', '\r'][rnd.int(0, 3)])), detail: 'LF, CRLF and bare CR mixed' }),

  'eight-bit-junk': (raw, rnd) => {
    const out: Buffer[] = [];
    let last = 0;
    const at = Array.from({ length: rnd.int(1, 6) }, () => rnd.int(0, raw.length)).sort((a, b) => a - b);
    for (const i of at) {
      out.push(raw.subarray(last, i), randomBytes(rnd, rnd.int(1, 12), 0x80, 0xff));
      last = i;
    }
    out.push(raw.subarray(last));
    return { raw: Buffer.concat(out), detail: `8-bit bytes inserted at ${at.join(',')}` };
  },

  'no-body-separator': (raw) => {
    const p = splitHead(raw);
    return { raw: bytes(p.head + p.eol + p.body), detail: 'empty line between header and body removed' };
  },

  'header-only': (raw) => ({ raw: bytes(splitHead(raw).head), detail: 'body and separator removed' }),

  'dot-lines': (raw, rnd) => {
    const p = splitHead(raw);
    const dots = ['.', '..', '...', '. ', '.\r', '.x', '..\u0000', ''];
    const lines = p.body.split(/\r?\n/);
    const n = rnd.int(1, 5);
    for (let k = 0; k < n; k++) lines.splice(rnd.int(0, lines.length), 0, dots[rnd.int(0, dots.length - 1)]);
    const end = ['', '.', '\n.', '\r\n.', '\r\n.\r\n.'][rnd.int(0, 4)];
    return { raw: bytes(p.head + (p.sep || p.eol + p.eol) + lines.join(p.eol) + end), detail: `${n} lines of dots, ending ${JSON.stringify(end)}` };
  },

  'starts-with-dot': (raw) => ({ raw: Buffer.concat([bytes('.'), raw]), detail: 'a dot before the first header' }),

  'encoded-word-junk': (raw, rnd) => {
    const words = ['=?utf-8?b?!!!?=', '=?x-unknown?q?abc?=', '=?utf-8?q?=FF=FE?=', '=?utf-8?b?' + 'QUFB'.repeat(2000) + '?=', '=?iso-2022-jp?b?GyRCJCIbKEI?=', '=??='];
    const w = words[rnd.int(0, words.length - 1)];
    return { raw: setField(raw, rnd.next() < 0.5 ? 'Subject' : 'From', `${w} <enc@fuzz.example>`), detail: `encoded word ${w.slice(0, 40)}` };
  },

  'deep-multipart': (raw, rnd) => {
    const depth = [20, 200, 2_000][rnd.int(0, 2)];
    const open = Array.from({ length: depth }, (_, k) => `Content-Type: multipart/mixed; boundary="b${k}"\r\n\r\n--b${k}\r\n`).join('');
    const close = Array.from({ length: depth }, (_, k) => `\r\n--b${depth - 1 - k}--`).join('');
    const p = splitHead(raw);
    const f = fields(p.head).filter((x) => nameOf(x) !== 'content-type' && nameOf(x) !== 'mime-version');
    f.push('MIME-Version: 1.0');
    return { raw: bytes(`${join(f, '\r\n')}\r\n${open}Content-Type: text/plain\r\n\r\nbottom${close}\r\n`), detail: `multipart nested ${depth} deep` };
  },

  'many-parts': (raw, rnd) => {
    const parts = [500, 5_000][rnd.int(0, 1)];
    const p = splitHead(raw);
    const f = fields(p.head).filter((x) => nameOf(x) !== 'content-type' && nameOf(x) !== 'content-transfer-encoding');
    f.push('MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="P"');
    const body = Array.from({ length: parts }, (_, k) => `--P\r\nContent-Type: text/plain\r\n\r\npart ${k}\r\n`).join('') + '--P--\r\n';
    return { raw: bytes(`${join(f, '\r\n')}\r\n\r\n${body}`), detail: `${parts} parts` };
  },

  'tsvector-overflow': (raw, rnd) => {
    // Distinct words until the search vector passes its 1 MB limit: the body is indexed up to
    // 200,000 characters and the subject whole, so most of them go in a folded Subject (kept
    // under the MIME parser's 1 MB limit for a header section).
    const word = (k: number) => `w${k.toString(36)}${WORD().slice(rnd.int(0, 10), 20)}`;
    const words = (from: number, n: number) => Array.from({ length: n }, (_, k) => word(from + k));
    const p = splitHead(raw);
    const f = fields(p.head).filter((x) => !['subject', 'content-type', 'content-transfer-encoding'].includes(nameOf(x)));
    f.push(`Subject: ${words(0, 45_000).join(' ').replace(/(\S+ ){10}/g, '$&\n ')}`, 'Content-Type: text/plain; charset=us-ascii');
    const body = words(45_000, 15_000).join(' ').replace(/(\S+ ){10}/g, `$&${p.eol}`);
    return { raw: bytes(`${join(f, p.eol)}${p.eol}${p.eol}${body}${p.eol}`), detail: '60,000 distinct words, 45,000 of them in the Subject' };
  },

  'not-a-message': (_raw, rnd) => ({ raw: randomBytes(rnd, rnd.int(1, 3000)), detail: 'random bytes' }),
};
