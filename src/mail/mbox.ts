/*
 * mbox files, read as a stream and written as mboxrd.
 *
 * Reading accepts what archives hold in practice: mboxrd (">From " quoting reversible), mboxo as
 * written by Python's mailbox module (Mailman 3 / HyperKitty exports) and Mailman 2 pipermail
 * monthly archives ("From alice at example.org  Thu Jan  1 …"), with LF or CRLF line ends.
 * A message starts at a "From " line that opens the file or follows an empty line and looks like
 * a real From_ line (a sender and a time of day); quoted ">From " lines lose one ">".
 * Memory is bounded by the largest single message, never by the file.
 */

export interface MboxMessage {
  /** the message bytes, unquoted, without its From_ line and the blank line that closes it */
  raw: Buffer;
  /** position of the message in the file, from 0 */
  index: number;
  /** byte offset of its From_ line */
  offset: number;
  /** byte offset just after it: where the next message's From_ line starts */
  end: number;
  fromLine: string;
}

export class NotAnMbox extends Error {}

const LF = 0x0a;
const CR = 0x0d;
const FROM_ = Buffer.from('\nFrom ');
// "From sender date": a sender token, then somewhere a time of day.
const FROM_LINE = /^From \S+.*\d{1,2}:\d{2}/;

/**
 * Yields the messages of an mbox stream in order. `startOffset` / `startIndex` say where the stream
 * begins in the file when resuming (the stream must then start at a From_ line).
 */
export async function* readMbox(source: AsyncIterable<Buffer | string> | Iterable<Buffer | string>, opts: { startOffset?: number; startIndex?: number } = {}): AsyncGenerator<MboxMessage> {
  let buf: Buffer = Buffer.alloc(0);
  let base = opts.startOffset ?? 0; // file offset of buf[0]
  let index = opts.startIndex ?? 0;
  let start = -1; // position in buf of the current message's From_ line, -1 before the first
  let scan = 0;

  const emit = (sepEnd: number, contentEnd: number): MboxMessage => {
    const nl = buf.indexOf(LF, start);
    const fromLine = buf.subarray(start, nl).toString('latin1').replace(/\r$/, '');
    const msg = { raw: unquote(buf.subarray(nl + 1, contentEnd)), index: index++, offset: base + start, end: base + sepEnd, fromLine };
    return msg;
  };

  for await (const chunk of source) {
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    buf = buf.length === 0 ? data : Buffer.concat([buf, data]);
    for (;;) {
      if (start < 0) {
        const first = firstFromLine(buf, base);
        if (first === 'more') break;
        start = first;
        scan = start;
      }
      const i = buf.indexOf(FROM_, scan);
      if (i < 0) {
        scan = Math.max(start, buf.length - FROM_.length);
        break;
      }
      const lineEnd = buf.indexOf(LF, i + 1);
      if (lineEnd < 0) {
        scan = i;
        break;
      }
      const blankBefore = buf[i - 1] === LF ? 1 : buf[i - 1] === CR && buf[i - 2] === LF ? 2 : 0;
      const line = buf.subarray(i + 1, Math.min(lineEnd, i + 300)).toString('latin1');
      if (blankBefore === 0 || !FROM_LINE.test(line)) {
        scan = i + 1;
        continue;
      }
      // The blank line before the separator belongs to the mbox, not to the message.
      yield emit(i + 1, blankBefore === 1 ? i : i - 1);
      start = i + 1;
      scan = start;
      // Drop what is behind us so the buffer holds at most one message and a chunk.
      if (start > 1 << 20) {
        buf = buf.subarray(start);
        base += start;
        scan -= start;
        start = 0;
      }
    }
  }
  if (start < 0) {
    if (buf.toString('latin1').trim() === '') return;
    throw new NotAnMbox('not an mbox file: it does not start with a "From " line');
  }
  let end = buf.length;
  if (buf[end - 1] === LF && buf[end - 2] === LF) end -= 1;
  else if (buf[end - 1] === LF && buf[end - 2] === CR && buf[end - 3] === LF) end -= 2;
  if (buf.indexOf(LF, start) < 0) return; // a bare From_ line with nothing after it
  yield emit(buf.length, end);
}

/** Position of the first From_ line, skipping blank lines at the start; 'more' when undecided. */
function firstFromLine(buf: Buffer, base: number): number | 'more' {
  let p = 0;
  while (p < buf.length && (buf[p] === LF || buf[p] === CR || buf[p] === 0x20 || buf[p] === 0x09)) p++;
  if (buf.length - p < 5) return 'more';
  if (buf.toString('latin1', p, p + 5) !== 'From ') {
    throw new NotAnMbox(base === 0 ? 'not an mbox file: it does not start with a "From " line' : `no "From " line at byte ${base + p} where the import was to resume`);
  }
  return p;
}

/** mboxrd unquoting: ">From " becomes "From ", ">>From " becomes ">From ". */
export function unquote(raw: Buffer): Buffer {
  if (raw.indexOf('>From ') < 0) return raw;
  const s = raw.toString('latin1');
  const out = s.replace(/^>(>*From )/gm, '$1');
  return out === s ? raw : Buffer.from(out, 'latin1');
}

/** mboxrd quoting: every line that reads "From " after any number of ">" gets one more ">". */
export function quote(raw: Buffer): Buffer {
  if (raw.indexOf('From ') < 0) return raw;
  const s = raw.toString('latin1');
  const out = s.replace(/^(>*From )/gm, '>$1');
  return out === s ? raw : Buffer.from(out, 'latin1');
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "From alice@example.org Mon Nov  2 10:00:00 2026": the envelope line, date in asctime form, UTC. */
export function fromLine(sender: string, date: Date): string {
  const who = /^[^\s@]+@[^\s@]+$/.test(sender) ? sender : 'MAILER-DAEMON';
  const d = Number.isNaN(date.getTime()) ? new Date(0) : date;
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return `From ${who} ${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} ${d.getUTCFullYear()}`;
}

/** One message as an mboxrd entry: From_ line, quoted bytes, a line end if missing, a blank line. */
export function mboxrdEntry(raw: Buffer, sender: string, date: Date): Buffer {
  const body = quote(raw);
  const endsWithNewline = body.length > 0 && body[body.length - 1] === LF;
  return Buffer.concat([Buffer.from(`${fromLine(sender, date)}\n`, 'latin1'), body, Buffer.from(endsWithNewline ? '\n' : '\n\n', 'latin1')]);
}
