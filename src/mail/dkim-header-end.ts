/*
 * mailauth reads a message for DKIM (verifying on arrival, signing on delivery) through its
 * MessageParser, whose processChunk() looks for the blank line that ends the header byte by byte
 * and, for every byte, pushes it onto an array and copies the array's last four: a 1 KB post's
 * header cost 30 KB of garbage and the listener's collector a share of its time. This is the same
 * method without the copies: the same state (the last bytes seen, in `stateBytes`), the same
 * split of header and body, the same calls. It replaces mailauth's only where mailauth's is the
 * one it was written against (its text's hash); any other version is left as it is.
 *
 * Both call mailauth's parseHeaders, which joins each continuation line to the field before it by
 * copying that field's lines and splicing the array of lines, and trims the line breaks at the
 * end with /[\r\n]+$/: time quadratic in a folded field (one of 150,000 lines held the ingest
 * listener for 52 s) and in a run of bare CRs. They call parseHeaders() below instead, which gives
 * the same result in linear time, where mailauth's is the one it was written against.
 */

import { createHash } from 'node:crypto';
import { MessageParser } from 'mailauth/lib/dkim/message-parser.js';
import { parseHeaders as mailauthParseHeaders, type HeaderRow } from 'mailauth/lib/tools.js';

/** sha1 of MessageParser.prototype.processChunk.toString() in mailauth 4.13 */
const KNOWN = '5c2eb6ced7c04d7d3fdd1711f9ecf2aed988924d';
/** sha1 of MessageParser.prototype.finish.toString() and of tools.js parseHeaders.toString() in mailauth 4.13 */
const KNOWN_FINISH = '4842f4a6cdbe67844de5fb0515401a524515ccd2';
const KNOWN_PARSE_HEADERS = 'f729f13f29ef7261aa508ca14102abd538d6f59d';
const LF = 0x0a;
const CR = 0x0d;

interface Parser {
  state: 'header' | 'body';
  stateBytes: number[];
  headerChunks: Buffer[];
  headers: unknown;
  messageHeaders(headers: unknown): Promise<void>;
  nextChunk(chunk: Buffer): Promise<void>;
}

const sha1 = (f: { toString(): string }) => createHash('sha1').update(f.toString()).digest('hex');

/** mailauth's parseHeaders (lib/tools.js), the same rows in linear time: each field with its continuation lines. */
export function parseHeaders(buf: Buffer): { parsed: HeaderRow[]; original: Buffer } {
  const text = buf.toString('binary');
  let end = text.length;
  while (end > 0 && (text[end - 1] === '\r' || text[end - 1] === '\n')) end--;
  const fields: string[][] = [];
  for (const line of text.slice(0, end).split(/\r?\n/)) {
    // A line that starts with white space continues the field before it (not the first line).
    if (fields.length > 0 && /^\s/.test(line)) fields[fields.length - 1].push(line);
    else fields.push([line]);
  }
  const parsed = fields.map((lines) => {
    const row = lines.join('\r\n');
    const name = /^[^:]+/.exec(row);
    const casedKey = name ? name[0].trim() : undefined;
    return { key: casedKey === undefined ? null : casedKey.toLowerCase(), casedKey, line: Buffer.from(row, 'binary') };
  });
  return { parsed, original: buf };
}

let result: boolean | undefined;

/** Installs the methods; true when they are in place (false: mailauth is another version). Idempotent. */
export function fasterDkimHeaderScan(): boolean {
  if (result !== undefined) return result;
  const original = MessageParser.prototype.processChunk;
  if (sha1(original) !== KNOWN || sha1(MessageParser.prototype.finish) !== KNOWN_FINISH || sha1(mailauthParseHeaders) !== KNOWN_PARSE_HEADERS) return (result = false);

  MessageParser.prototype.processChunk = async function processChunk(this: Parser, input: Buffer): Promise<void> {
    let chunk = input;
    if (!chunk || !chunk.length) return;
    if (this.state === 'header') {
      const seen = this.stateBytes;
      // The two bytes before the current one (-1: none yet), as mailauth reads them from stateBytes.
      let b1 = seen.length > 0 ? seen[seen.length - 1] : -1;
      let b2 = seen.length > 1 ? seen[seen.length - 2] : -1;
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk[i];
        if (c === LF && (b1 === LF || (b1 === CR && b2 === LF))) {
          this.stateBytes = lastFour(seen, chunk, i + 1);
          this.state = 'body';
          if (i === chunk.length - 1) {
            this.headerChunks.push(chunk);
            this.headers = parseHeaders(Buffer.concat(this.headerChunks));
            await this.messageHeaders(this.headers);
            return;
          }
          this.headerChunks.push(chunk.subarray(0, i + 1));
          this.headers = parseHeaders(Buffer.concat(this.headerChunks));
          await this.messageHeaders(this.headers);
          chunk = chunk.subarray(i + 1);
          break;
        }
        b2 = b1;
        b1 = c;
      }
      if (this.state === 'header') this.stateBytes = lastFour(seen, chunk, chunk.length);
    }
    if (this.state !== 'body') {
      this.headerChunks.push(chunk);
      return;
    }
    await this.nextChunk(chunk);
  };
  // mailauth's finish(), with the parse above for a message that is all header.
  MessageParser.prototype.finish = async function finish(this: Parser & { finalChunk(): Promise<void> }): Promise<void> {
    await this.finalChunk();
    if (!this.headers && this.headerChunks.length) {
      this.headers = parseHeaders(Buffer.concat(this.headerChunks));
      await this.messageHeaders(this.headers);
    }
  };
  return (result = true);
}

/** The last four of `seen` followed by chunk[0, end). */
function lastFour(seen: number[], chunk: Buffer, end: number): number[] {
  const out = end >= 4 ? [] : seen.slice(-(4 - end));
  for (let i = Math.max(0, end - 4); i < end; i++) out.push(chunk[i]);
  return out;
}
