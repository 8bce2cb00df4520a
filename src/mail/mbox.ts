/*
 * mbox files, read as a stream and written as mboxrd.
 *
 * Reading accepts what archives hold in practice: mboxrd (">From " quoting reversible), mboxo as
 * written by Python's mailbox module (Mailman 3 / HyperKitty exports) and Mailman 2 pipermail
 * monthly archives ("From alice at example.org  Thu Jan  1 …"), with LF or CRLF line ends.
 * A message starts at a "From " line that opens the file or follows an empty line and looks like
 * a real From_ line (a sender and a time of day); quoted ">From " lines lose one ">".
 * Memory is bounded by the largest single message, never by the file, and a message larger than
 * MAX_MESSAGE_BYTES is not kept: it is passed over to the next From_ line and yielded empty, with
 * the reason in `skipped`.
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
  /** why the message was passed over (raw is then empty) */
  skipped?: string;
}

/** The largest message read (64 MiB): past it, a message is skipped, not held in memory. */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
// A message longer than this moves out of the window that is searched for From_ lines, into a
// list of pieces joined once at its end: growing one buffer chunk by chunk copied it each time
// (a 128 MiB message took 100 s).
const SPILL_BYTES = 1 << 20;

export class NotAnMbox extends Error {}

const LF = 0x0a;
const CR = 0x0d;
const FROM_ = Buffer.from('\nFrom ');
// "From sender date": a sender token, then somewhere a time of day.
const FROM_LINE = /^From \S+.*\d{1,2}:\d{2}/;
// How much of a From_ line is read to tell it from a body line.
const FROM_LINE_BYTES = 300;

/**
 * Yields the messages of an mbox stream in order. `startOffset` / `startIndex` say where the stream
 * begins in the file when resuming (the stream must then start at a From_ line).
 */
export async function* readMbox(
  source: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
  opts: { startOffset?: number; startIndex?: number; maxMessageBytes?: number } = {},
): AsyncGenerator<MboxMessage> {
  const max = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  let buf: Buffer = Buffer.alloc(0);
  let base = opts.startOffset ?? 0; // file offset of buf[0]
  let index = opts.startIndex ?? 0;
  let start = -1; // position in buf of the current message's From_ line (0 when it began in `head`), -1 before the first
  let scan = 0;
  let offset = 0; // file offset of the current message's From_ line
  // The current message's bytes before buf[0] when it outgrew the window (dropped past `max`).
  let head: Buffer[] = [];
  let headBytes = 0;
  let headFromLine: string | null = null;

  const emit = (sepEnd: number, contentEnd: number): MboxMessage => {
    const size = headBytes + contentEnd - start;
    const whole = size > max ? null : head.length ? Buffer.concat([...head, buf.subarray(start, contentEnd)]) : buf.subarray(start, contentEnd);
    const nl = whole ? whole.indexOf(LF) : -1;
    const fromLine = headFromLine ?? fromLineOf(whole ?? buf.subarray(start, Math.min(contentEnd, start + 1000)));
    const msg: MboxMessage = { raw: whole ? unquote(whole.subarray(nl < 0 ? whole.length : nl + 1)) : Buffer.alloc(0), index: index++, offset, end: base + sepEnd, fromLine };
    if (!whole) msg.skipped = `larger than ${mib(max)} MB (${mib(size)} MB), the most a message may be`;
    [head, headBytes, headFromLine] = [[], 0, null];
    return msg;
  };
  // Moves what is behind the search (all but the few bytes a From_ line's test looks back at) out of the window.
  const spill = () => {
    const cut = scan - 2;
    if (start < 0 || cut - start < SPILL_BYTES) return;
    headFromLine ??= fromLineOf(buf.subarray(start, Math.min(cut, start + 1000)));
    headBytes += cut - start;
    // Past the limit the message is only counted, so memory stays bounded.
    head = headBytes > max ? [] : [...head, buf.subarray(start, cut)];
    buf = buf.subarray(cut);
    base += cut;
    scan -= cut;
    start = 0;
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
        offset = base + start;
      }
      const i = buf.indexOf(FROM_, scan);
      if (i < 0) {
        scan = Math.max(start, buf.length - FROM_.length);
        break;
      }
      const blankBefore = buf[i - 1] === LF ? 1 : buf[i - 1] === CR && buf[i - 2] === LF ? 2 : 0;
      if (blankBefore === 0) {
        scan = i + 1;
        continue;
      }
      // Only the line's first FROM_LINE_BYTES are tested, so only they are waited for: waiting for
      // its end held a line with none (a long base64 line after "From ") whole in the window, past
      // the message limit and copied with every chunk (300 MB took a minute and 1.2 GB).
      const lineEnd = buf.indexOf(LF, i + 1);
      if (lineEnd < 0 && buf.length - (i + 1) < FROM_LINE_BYTES) {
        scan = i;
        break;
      }
      const line = buf.subarray(i + 1, Math.min(lineEnd < 0 ? buf.length : lineEnd, i + FROM_LINE_BYTES)).toString('latin1');
      if (!FROM_LINE.test(line)) {
        scan = i + 1;
        continue;
      }
      // The blank line before the separator belongs to the mbox, not to the message.
      yield emit(i + 1, blankBefore === 1 ? i : i - 1);
      start = i + 1;
      scan = start;
      offset = base + start;
      // Drop what is behind us so the buffer holds at most one message and a chunk.
      if (start > 1 << 20) {
        buf = buf.subarray(start);
        base += start;
        scan -= start;
        start = 0;
      }
    }
    spill();
  }
  if (start < 0) {
    if (buf.toString('latin1').trim() === '') return;
    throw new NotAnMbox('not an mbox file: it does not start with a "From " line');
  }
  let end = buf.length;
  if (buf[end - 1] === LF && buf[end - 2] === LF) end -= 1;
  else if (buf[end - 1] === LF && buf[end - 2] === CR && buf[end - 3] === LF) end -= 2;
  if (headBytes === 0 && buf.indexOf(LF, start) < 0) return; // a bare From_ line with nothing after it
  yield emit(buf.length, end);
}

function fromLineOf(b: Buffer): string {
  const nl = b.indexOf(LF);
  return b.subarray(0, nl < 0 ? b.length : nl).toString('latin1').replace(/\r$/, '');
}

const mib = (n: number) => Math.round(n / 1048576);

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

// The date of a From_ line: asctime ("Thu Jan  1 10:00:00 2009"), seconds optional, a zone
// (numeric or a name) before or after the year as some MTAs wrote it. The sender before it may
// hold spaces (pipermail's "alice at example.org"), so the date is found, not split off.
const FROM_LINE_DATE = /\s(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat)\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(?:([+-]\d{4}|[A-Z]{1,5})\s+)?(\d{4})(?:\s+([+-]\d{4}))?\s*$/;

/**
 * When the message was delivered into the mbox, by its From_ line (UTC unless the line gives an
 * offset); null when the line holds no date that exists.
 */
export function fromLineDate(line: string): Date | null {
  const m = FROM_LINE_DATE.exec(line);
  if (!m) return null;
  const [, mon, day, hour, minute, second, zoneBefore, year, zoneAfter] = m;
  const month = MONTHS.indexOf(mon);
  const [y, d, h, mi, s] = [Number(year), Number(day), Number(hour), Number(minute), Number(second ?? 0)];
  if (d < 1 || h > 23 || mi > 59 || s > 60) return null;
  const t = Date.UTC(y, month, d, h, mi, Math.min(s, 59));
  if (new Date(t).getUTCDate() !== d) return null; // Feb 30
  const zone = [zoneBefore, zoneAfter].find((z) => z !== undefined && /^[+-]\d{4}$/.test(z));
  const offset = zone ? (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3))) : 0;
  return new Date(t - offset * 60_000);
}

/** "From alice@example.org Mon Nov  2 10:00:00 2026": the envelope line, date in asctime form, UTC. */
export function fromLine(sender: string, date: Date): string {
  const who = /^[^\s@\u0000-\u001f\u007f]+@[^\s@\u0000-\u001f\u007f]+$/.test(sender) ? sender : 'MAILER-DAEMON';
  const d = Number.isNaN(date.getTime()) ? new Date(0) : date;
  const pad = (n: number) => String(n).padStart(2, '0');
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return `From ${who} ${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} ${d.getUTCFullYear()}`;
}

/**
 * One message as an mboxrd entry: From_ line, quoted bytes, a line end if missing, a blank line.
 * The From_ line is UTF-8 (an international sender as its From has it): as latin1 each character
 * lost all but its low byte, and a From address of "\u0a0a\u0a0aFrom\u0a20…" (characters a
 * parser takes as letters) became blank lines and a From_ line of the sender's choosing, the
 * start of a forged message in every reader's mail program. In UTF-8 only ASCII makes bytes
 * below 0x80, and fromLine() lets no white space or control character through.
 */
export function mboxrdEntry(raw: Buffer, sender: string, date: Date): Buffer {
  const body = quote(raw);
  const endsWithNewline = body.length > 0 && body[body.length - 1] === LF;
  return Buffer.concat([Buffer.from(`${fromLine(sender, date)}\n`, 'utf8'), body, Buffer.from(endsWithNewline ? '\n' : '\n\n', 'latin1')]);
}
