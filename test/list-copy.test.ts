import crypto from 'node:crypto';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { describe, expect, it } from 'vitest';
import { headerFields, splitMessage } from '../src/mail/header-block.ts';
import { memberCopy, prepareCopy, signCopies, signedMemberCopy, type CopyOptions } from '../src/mail/list-copy.ts';
import { arcSealFor, headerRows, listKey } from '../src/mail/list-signing.ts';
import type { AuthChecks } from '../src/mail/post-checks.ts';
import { parse } from '../src/mail/parse.ts';
import { SAMPLE_POST } from './helpers/sample-post.ts';

/** Each member's copy of a post (src/mail/list-copy.ts): the list headers on top, the author's bytes kept. */

const RAW = SAMPLE_POST;

function options(over: Partial<CopyOptions> = {}): CopyOptions {
  return {
    list: { address: 'dev@lists.example.org', key: 'dev', publicUrl: 'https://lists.example.org', name: 'dev' },
    messageId: 'plan/1+x@example.org', subject: 'Über die Planung', fromName: 'Alice', fromEmail: 'alice@example.org',
    subjectPrefix: '', footer: '', replyTo: { policy: 'none', address: null }, mitigation: 'none', ...over,
  };
}

describe('list copies', () => {
  it('adds the list headers (RFC 2369, 2919, 8058, Archived-At) on top and leaves the original bytes untouched', () => {
    const copy = memberCopy(prepareCopy(RAW, options()), 'tok123');
    const text = copy.toString();
    expect(text.endsWith(RAW.toString())).toBe(true);
    const added = text.slice(0, text.length - RAW.length).split('\r\n').filter(Boolean);
    expect(added).toEqual([
      'List-Unsubscribe: <mailto:dev-unsubscribe@lists.example.org>, <https://lists.example.org/u/tok123>',
      'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
      'List-Id: <dev.lists.example.org>',
      'List-Post: <mailto:dev@lists.example.org>',
      'List-Help: <mailto:dev-request@lists.example.org?subject=help>',
      'List-Subscribe: <mailto:dev-subscribe@lists.example.org>, <https://lists.example.org/lists/dev/subscribe>',
      'List-Archive: <https://lists.example.org/lists/dev/>',
      'Archived-At: <https://lists.example.org/message-id/plan%2F1%2Bx@example.org>',
      'Precedence: list',
    ]);
  });

  it('drops Authentication-Results written under our authserv-id, keeps other hosts\' ones, and puts ours on top', () => {
    const raw = Buffer.concat([Buffer.from([
      'Authentication-Results: Lists.Example.org (forged);\r\n dkim=pass header.d=example.org',
      'Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.org',
      'Authentication-Results: lists.example.org.evil.example; dkim=pass',
      '',
    ].join('\r\n')), RAW]);
    const ours = 'Authentication-Results: lists.example.org;\r\n spf=pass smtp.mailfrom=alice@example.org';
    const copy = memberCopy(prepareCopy(raw, options({ authservId: 'lists.example.org', trace: [ours] })), 't');
    const results = headerFields(splitMessage(copy).head).filter((f) => f.name === 'authentication-results').map((f) => f.bytes.toString());
    expect(results).toEqual([
      `${ours}\r\n`,
      'Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.org\r\n',
      'Authentication-Results: lists.example.org.evil.example; dkim=pass\r\n',
    ]);
  });

  it('reads a lone CR in the header as the line end the relay makes of it: no field hides behind one', () => {
    // nodemailer sends a lone CR as CRLF: what followed it in the Subject became a field of its own.
    const hidden = 'Subject: wire transfer\rAuthentication-Results: lists.example.org; dmarc=pass header.from=bank.example\rList-Unsubscribe: <https://evil.example/u>\r\n';
    const raw = Buffer.concat([Buffer.from(hidden), RAW]);
    const ours = 'Authentication-Results: lists.example.org;\r\n spf=pass smtp.mailfrom=alice@example.org';
    const copy = memberCopy(prepareCopy(raw, options({ authservId: 'lists.example.org', trace: [ours] })), 't');
    const wire = Buffer.from(copy.toString('latin1').replace(/\r(?!\n)/g, '\r\n'), 'latin1');
    const fields = headerFields(splitMessage(wire).head);
    expect(fields.filter((f) => f.name === 'authentication-results').map((f) => f.bytes.toString())).toEqual([`${ours}\r\n`]);
    expect(fields.filter((f) => f.name === 'list-unsubscribe').map((f) => f.bytes.toString())).toEqual([
      'List-Unsubscribe: <mailto:dev-unsubscribe@lists.example.org>, <https://lists.example.org/u/t>\r\n',
    ]);
    expect(copy.includes('transfer\rAuth')).toBe(false);
    // A post without a lone CR keeps its bytes.
    expect(memberCopy(prepareCopy(RAW, options()), 't').toString().endsWith(RAW.toString())).toBe(true);
  });

  it('folds trace fields with the post\'s own line ending', () => {
    const lf = Buffer.from(RAW.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    const copy = memberCopy(prepareCopy(lf, options({ trace: ['Authentication-Results: lists.example.org;\r\n spf=pass'] })), 't').toString('latin1');
    expect(copy.startsWith('Authentication-Results: lists.example.org;\n spf=pass\n')).toBe(true);
    expect(copy).not.toContain('\r');
  });

  it('replaces list headers another list put on the message', () => {
    const raw = Buffer.concat([Buffer.from('List-Id: <users.other.example>\r\nPrecedence: bulk\r\n'), RAW]);
    const fields = headerFields(splitMessage(memberCopy(prepareCopy(raw, options()), 't')).head);
    expect(fields.filter((f) => f.name === 'list-id')).toHaveLength(1);
    expect(fields.filter((f) => f.name === 'precedence')).toHaveLength(1);
    expect(fields.find((f) => f.name === 'list-id')!.bytes.toString()).toContain('dev.lists.example.org');
  });

  it('puts the subject prefix before the encoded original subject, once', async () => {
    const copy = memberCopy(prepareCopy(RAW, options({ subjectPrefix: '[dev]' })), 't');
    expect((await parse(copy)).subject).toBe('[dev] Über die Planung');
    const again = memberCopy(prepareCopy(RAW, options({ subjectPrefix: '[dev]', subject: 'Re: [dev] Über die Planung' })), 't');
    expect((await parse(again)).subject).toBe('Über die Planung');
  });

  it('adds the footer as its own MIME part and keeps the author text', async () => {
    const copy = memberCopy(prepareCopy(RAW, options({ footer: 'Dev list — https://lists.example.org/lists/dev/' })), 't');
    const parsed = await parse(copy);
    expect(parsed.text).toContain('Hello, list.');
    expect(parsed.text).toContain('Dev list — https://lists.example.org/lists/dev/');
    expect(parsed.headers.get('content-type')![0]).toMatch(/^multipart\/mixed/);
  });

  it('rewrites From to the list and keeps the author in Reply-To for DMARC mitigation', async () => {
    const parsed = await parse(memberCopy(prepareCopy(RAW, options({ mitigation: 'munge_from' })), 't'));
    expect(parsed.fromEmail).toBe('dev@lists.example.org');
    expect(parsed.fromName).toBe('Alice via dev');
    expect(parsed.headers.get('reply-to')).toEqual(['Alice <alice@example.org>']);
    expect(parsed.headers.get('from')).toHaveLength(1);
  });

  it('sets Reply-To to the list when the list asks for it', async () => {
    const parsed = await parse(memberCopy(prepareCopy(RAW, options({ replyTo: { policy: 'list', address: null } })), 't'));
    expect(parsed.headers.get('reply-to')).toEqual(['<dev@lists.example.org>']);
  });

  it('writes a Reply-To address with an international domain in A-labels, as the envelope does', () => {
    // Stored in U-labels (one spelling per mailbox); raw UTF-8 in a header needs SMTPUTF8.
    const copy = memberCopy(prepareCopy(RAW, options({ replyTo: { policy: 'address', address: 'help@bücher.example' } })), 't');
    expect(copy.toString()).toContain('\r\nReply-To: <help@xn--bcher-kva.example>\r\n');
    expect(copy.subarray(0, copy.length - RAW.length).every((b) => b < 0x80)).toBe(true);
    // A local part beyond ASCII has no ASCII spelling: it stays as it is.
    expect(memberCopy(prepareCopy(RAW, options({ replyTo: { policy: 'address', address: 'jörg@bücher.example' } })), 't').toString()).toContain('Reply-To: <jörg@bücher.example>');
  });

  it('writes a list on an international domain in A-labels: its list headers, and From when the author is rewritten', () => {
    const list = { ...options().list, address: 'dev@bücher.example' };
    for (const mitigation of ['none', 'munge_from'] as const) {
      const copy = memberCopy(prepareCopy(RAW, options({ list, mitigation, fromEmail: 'alice@exämple.de', replyTo: { policy: 'list', address: null } })), 't');
      expect(copy.subarray(0, copy.length - RAW.length).every((b) => b < 0x80), mitigation).toBe(true);
      expect(copy.toString()).toContain('\r\nList-Id: <dev.xn--bcher-kva.example>\r\n');
      expect(copy.toString()).toContain('\r\nReply-To: <dev@xn--bcher-kva.example>\r\n');
    }
    const munged = memberCopy(prepareCopy(RAW, options({ list, mitigation: 'munge_from', fromEmail: 'alice@exämple.de' })), 't').toString();
    expect(munged).toMatch(/^From: .* via dev <dev@xn--bcher-kva\.example>\r$/m);
    expect(munged).toMatch(/^Reply-To: Alice <alice@xn--exmple-cua\.de>\r$/m);
  });

  it('offers one-click unsubscribe (List-Unsubscribe-Post) on every copy, with the link PUBLIC_URL makes', () => {
    const plain = memberCopy(prepareCopy(RAW, options({ list: { ...options().list, publicUrl: 'http://127.0.0.1:8080' } })), 'tok123').toString();
    expect(plain).toContain('List-Unsubscribe: <mailto:dev-unsubscribe@lists.example.org>, <http://127.0.0.1:8080/u/tok123>\r\n');
    expect(plain).toContain('List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n');
    const secure = memberCopy(prepareCopy(RAW, options()), 'tok123').toString();
    expect(secure).toContain('List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n');
  });

  it('signs each member\'s copy over its own List-Unsubscribe lines and the shared part, with one ARC set for all', async () => {
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const key = listKey('lists.example.org', 'lists', privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const resolver = async (name: string) => {
      if (name === 'lists._domainkey.lists.example.org') return [[`v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`]];
      throw Object.assign(new Error('nxdomain'), { code: 'ENOTFOUND' });
    };
    const prepared = await signCopies(prepareCopy(RAW, options({ subjectPrefix: '[dev]', footer: 'The footer.' })), key, undefined, new Date());
    const [a, b] = await Promise.all([signedMemberCopy(prepared, 'tok-a'), signedMemberCopy(prepared, 'tok-b')]);
    for (const copy of [a, b]) {
      const dkim = await dkimVerify(copy, { resolver });
      expect(dkim.results.map((r) => [r.signingDomain, r.status.result])).toEqual([['lists.example.org', 'pass']]);
      const h = String((dkim.results[0] as { signingHeaders?: { keys: string } }).signingHeaders?.keys).toLowerCase().split(/:\s*/);
      expect(h).toEqual(expect.arrayContaining(['list-unsubscribe', 'list-unsubscribe-post', 'from', 'subject', 'list-id']));
    }
    const seal = (raw: Buffer) => raw.toString().split('\r\n\r\n')[0].split(/\r\n(?=\S)/).filter((l) => /^ARC-/.test(l));
    expect(seal(a)).toHaveLength(3);
    expect(seal(a)).toEqual(seal(b));
    // The same body hash for both (computed once), different signatures.
    const bh = (raw: Buffer) => /bh=([^;]+)/.exec(raw.toString())![1];
    expect(bh(a)).toBe(bh(b));
    const signature = (raw: Buffer) => raw.toString().split(/\r\n(?=\S)/)[0];
    expect(signature(a)).toMatch(/^DKIM-Signature: /);
    expect(signature(a)).not.toBe(signature(b));
    // A post stored with bare newlines: signed as it goes on the wire (nodemailer sends CRLF).
    const lf = Buffer.from(RAW.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    const lfCopy = await signedMemberCopy(await signCopies(prepareCopy(lf, options({ footer: 'The footer.' })), key, undefined, new Date()), 'tok-c');
    expect(lfCopy.includes('\r\n')).toBe(false);
    const wire = Buffer.from(lfCopy.toString('latin1').replace(/\n/g, '\r\n'), 'latin1');
    expect((await dkimVerify(wire, { resolver })).results.map((r) => r.status.result)).toEqual(['pass']);
    // Without a key, the same copy unsigned.
    expect((await signedMemberCopy(prepareCopy(RAW, options()), 'tok-a')).equals(memberCopy(prepareCopy(RAW, options()), 'tok-a'))).toBe(true);
  });

  it('picks the ARC instance and cv from the arrival checks and the chain the post carries (RFC 8617 §5.1)', () => {
    const auth = (arc: string, arcInstance: number): AuthChecks => ({ spf: 'pass', dkim: 'pass', dmarc: 'pass', arc, arcInstance, fromDomain: 'example.org', aligned: true, header: 'mx.lists.example.org; dkim=pass header.d=example.org' });
    const chain = (...cvs: string[]) => headerRows(Buffer.from(cvs.map((cv, i) => `ARC-Seal: i=${i + 1}; a=rsa-sha256; t=1; cv=${cv};\r\n d=fwd.example; s=s; b=x\r\n`).join('') + 'From: a@example.org\r\n'));
    const none = headerRows(Buffer.from('From: a@example.org\r\n'));
    expect(arcSealFor(undefined, none, 'lists.example.org')).toEqual({ instance: 1, cv: 'none', results: 'lists.example.org; none' });
    expect(arcSealFor(auth('none', 0), none, 'lists.example.org')).toEqual({ instance: 1, cv: 'none', results: 'mx.lists.example.org; dkim=pass header.d=example.org' });
    expect(arcSealFor(auth('pass', 2), chain('none', 'pass'), 'x')).toMatchObject({ instance: 3, cv: 'pass' });
    expect(arcSealFor(auth('fail', 1), chain('none'), 'x')).toMatchObject({ instance: 2, cv: 'fail' });
    // the checks validated another chain than the one the stored post carries: not a pass
    expect(arcSealFor(auth('pass', 1), chain('none', 'pass'), 'x')).toMatchObject({ instance: 3, cv: 'fail' });
    // a chain that ended at an earlier hop, one nobody checked, one at the limit: no set
    expect(arcSealFor(auth('fail', 2), chain('none', 'fail'), 'x')).toBeNull();
    expect(arcSealFor(undefined, chain('none'), 'x')).toBeNull();
    // checks that ran out of time did not validate the chain: no seal, rather than cv=fail ending it
    expect(arcSealFor(auth('temperror', 1), chain('none'), 'x')).toBeNull();
    expect(arcSealFor(auth('pass', 50), chain('none', ...Array(49).fill('pass')), 'x')).toBeNull();
  });
});
