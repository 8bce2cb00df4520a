/*
 * mailauth's MessageParser.processChunk, replaced by src/mail/dkim-header-end.ts with a version
 * that does not copy an array per header byte, must split every message as mailauth's own does:
 * the same headers, the same body chunks, the same state, however the message is cut into chunks.
 */

import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fasterDkimHeaderScan, parseHeaders } from '../src/mail/dkim-header-end.ts';

const fromMailauth = createRequire(createRequire(import.meta.url).resolve('mailauth'));
const parserPath = fromMailauth.resolve('./dkim/message-parser.js');

type ParserClass = new () => { processChunk(c: Buffer): Promise<void>; state: string; stateBytes: number[]; headers: unknown };

/** mailauth's MessageParser as shipped: a fresh copy of the module, never patched. */
function shipped(): ParserClass {
  const cache = fromMailauth.cache;
  const kept = cache[parserPath];
  delete cache[parserPath];
  try {
    return (fromMailauth(parserPath) as { MessageParser: ParserClass }).MessageParser;
  } finally {
    if (kept) cache[parserPath] = kept;
    else delete cache[parserPath];
  }
}

async function split(Base: ParserClass, message: string, cuts: number[]) {
  const body: Buffer[] = [];
  let headerCalls = 0;
  const Recording = class extends Base {
    async nextChunk(c: Buffer) {
      body.push(Buffer.from(c));
    }
    async messageHeaders() {
      headerCalls++;
    }
  };
  const p = new Recording();
  const bytes = Buffer.from(message, 'binary');
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    await p.processChunk(bytes.subarray(at, cut));
    at = cut;
  }
  return { headers: p.headers, headerCalls, body: Buffer.concat(body).toString('binary'), state: p.state, last: p.stateBytes };
}

const MESSAGES = [
  'From: a@example.org\r\nSubject: Hi\r\n\r\nBody line\r\nmore\r\n',
  'From: a@example.org\nSubject: Hi\n\nBody line\nmore\n',
  'From: a@example.org\r\nSubject: folded\r\n  line\r\n\n\r\nbody after a LF blank line\r\n',
  'From: a@example.org\r\n\r\n',
  'From: a@example.org\r\nSubject: no body and no blank line',
  '\r\n\r\nbody right away',
  '\n\nx',
  'A: 1\r\n\r\n\r\n\r\nblank lines in the body\r\n\r\n',
];

describe('the faster DKIM header scan', () => {
  it('is installed for the mailauth in use', () => {
    expect(fasterDkimHeaderScan()).toBe(true);
  });

  it('splits every message as mailauth does, for every way of cutting it into chunks', async () => {
    fasterDkimHeaderScan();
    const Patched = (fromMailauth('./dkim/message-parser.js') as { MessageParser: ParserClass }).MessageParser;
    const Original = shipped();
    expect(Original.prototype.processChunk).not.toBe(Patched.prototype.processChunk);
    let compared = 0;
    for (const m of MESSAGES) {
      const n = Buffer.byteLength(m, 'binary');
      const cuttings: number[][] = [[]];
      for (let a = 1; a < n; a++) cuttings.push([a]);
      for (let a = 1; a < n; a++) for (let b = a + 1; b < Math.min(n, a + 4); b++) cuttings.push([a, b]);
      for (const size of [1, 2, 3, 5]) cuttings.push(Array.from({ length: Math.ceil(n / size) - 1 }, (_, i) => (i + 1) * size));
      for (const cuts of cuttings) {
        expect(await split(Patched, m, cuts)).toEqual(await split(Original, m, cuts));
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(500);
  });

  it('reads a header section into the same fields as mailauth\'s parseHeaders, whatever its lines', () => {
    const { parseHeaders: mailauths } = fromMailauth('./tools.js') as { parseHeaders: typeof parseHeaders };
    const unit = fc.constantFrom('A', 'b', ':', ' ', '\t', '\r', '\n', '\r\n', 'From: x', '\r\n  folded', '\u00e9');
    fc.assert(fc.property(fc.string({ unit, maxLength: 40 }), (text) => {
      const buf = Buffer.from(text, 'binary');
      expect(parseHeaders(buf)).toEqual(mailauths(buf));
    }), { seed: 1202, numRuns: 2000 });
  });

  it('verifies a post with a field folded over 150,000 lines at once, with and without a body', async () => {
    fasterDkimHeaderScan();
    const { dkimVerify } = fromMailauth('./dkim/verify.js') as { dkimVerify: (m: Buffer, o: object) => Promise<{ headers: { parsed: unknown[] } }> };
    const resolver = async () => {
      throw Object.assign(new Error('no such record'), { code: 'ENOTFOUND' });
    };
    const head = `From: a@example.org\r\nX-Folded: a\r\n${' b\r\n'.repeat(150_000)}Subject: folded\r\n`;
    for (const message of [`${head}\r\nHello\r\n`, head]) {
      // mailauth joined each continuation line by copying the field and splicing an array: 52 s
      // here, past the test's time limit.
      const { headers } = await dkimVerify(Buffer.from(message), { resolver });
      expect(headers.parsed).toHaveLength(3);
    }
  });

  it('leaves DKIM verification as it was: a signed post passes, a changed one does not', async () => {
    fasterDkimHeaderScan();
    const { dkimSign } = fromMailauth('./dkim/sign.js') as { dkimSign: (m: Buffer, o: object) => Promise<{ signatures: string }> };
    const { dkimVerify } = fromMailauth('./dkim/verify.js') as { dkimVerify: (m: Buffer, o: object) => Promise<{ results: { status: { result: string } }[] }> };
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const der = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const resolver = async (name: string, type: string) => {
      if (type === 'TXT' && name === 'sel._domainkey.example.org') return [[`v=DKIM1; k=rsa; p=${der}`]];
      throw Object.assign(new Error('no such record'), { code: 'ENOTFOUND' });
    };
    const message = Buffer.from('From: a@example.org\r\nTo: b@example.net\r\nSubject: signed\r\n\r\nHello\r\n');
    const signed = await dkimSign(message, { signatureData: [{ signingDomain: 'example.org', selector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) }] });
    const good = Buffer.concat([Buffer.from(signed.signatures), message]);
    expect((await dkimVerify(good, { resolver })).results[0].status.result).toBe('pass');
    const changed = Buffer.from(good.toString().replace('Hello', 'Hullo'));
    // mailauth calls a body that no longer matches its hash "neutral" (its own wording, not ours).
    expect((await dkimVerify(changed, { resolver })).results[0].status.result).not.toBe('pass');
  });
});
