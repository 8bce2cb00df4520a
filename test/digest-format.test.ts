import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { mimeDigest, plainDigest } from '../src/mail/digest.ts';
import { parse } from '../src/mail/parse.ts';
import { hasEightBit, toSevenBit } from '../src/mail/seven-bit.ts';
import { SAMPLE_POST } from './helpers/sample-post.ts';

/** Building digests (src/mail/digest.ts): MIME (multipart/digest) and RFC 1153 plain text. */

const now = new Date('2026-11-02T10:00:00Z');

const RAW = SAMPLE_POST;

describe('digests', () => {
  const info = { list: { address: 'dev@lists.example.org', key: 'dev', publicUrl: 'https://lists.example.org', name: 'dev', domain: 'lists.example.org' }, volume: 1, issue: 7, date: now };
  const messages = [
    { messageId: 'a@x', raw: RAW, subject: 'Über die Planung', fromName: 'Alice', fromEmail: 'alice@example.org', date: now, text: 'Hello, list.\n' },
    { messageId: 'b@x', raw: Buffer.from('From: bob@example.net\r\nSubject: Re: plan\r\nMessage-ID: <b@x>\r\n\r\nAgreed.\r\n'), subject: 'Re: plan', fromName: '', fromEmail: 'bob@example.net', date: now, text: 'Agreed.\n' },
  ];

  it('writes a list on an international domain in A-labels in both digests\' header', () => {
    const intl = { ...info, list: { ...info.list, address: 'dev@bücher.example', domain: 'bücher.example' } };
    for (const raw of [mimeDigest(intl, [messages[1]]), plainDigest(intl, [messages[1]])]) {
      const head = raw.subarray(0, raw.indexOf('\r\n\r\n'));
      expect(head.every((b) => b < 0x80)).toBe(true);
      expect(head.toString()).toMatch(/^From: .*<dev-request@xn--bcher-kva\.example>\r$/m);
      expect(head.toString()).toMatch(/^To: dev@xn--bcher-kva\.example\r$/m);
      expect(head.toString()).toMatch(/^Message-ID: <[^>]+@xn--bcher-kva\.example>\r$/m);
    }
  });

  it('builds a MIME digest with each post as a message/rfc822 part, byte for byte', async () => {
    const raw = mimeDigest(info, messages);
    const parsed = await parse(raw);
    expect(parsed.subject).toBe('dev Digest, Vol 1, Issue 7');
    expect(parsed.headers.get('list-id')).toEqual(['<dev.lists.example.org>']);
    expect(raw.includes(RAW)).toBe(true);
    expect(raw.toString()).toContain('Content-Type: multipart/digest');
    expect(parsed.text).toContain('1. Über die Planung (Alice <alice@example.org>)');
  });

  it('names the list in From as one mailbox, whatever punctuation its name holds', async () => {
    for (const name of ['PostgreSQL: hackers, (EU)', 'Evil <ceo@bank.example>,']) {
      const odd = { ...info, list: { ...info.list, name } };
      for (const raw of [mimeDigest(odd, messages), plainDigest(odd, messages)]) {
        const parsed = await simpleParser(raw);
        expect(parsed.from?.value, name).toEqual([{ address: 'dev-request@lists.example.org', name: `${name} list` }]);
      }
    }
  });

  it('writes the From of a list whose name is 200 CJK characters in lines of at most 998 octets, the name whole', async () => {
    // In encoded words the name is some 1,000 octets: the From line was 1,027 octets on every issue.
    const name = '開発者のためのメーリングリスト'.repeat(14).slice(0, 200);
    const wide = { ...info, list: { ...info.list, name } };
    for (const raw of [mimeDigest(wide, messages), plainDigest(wide, messages)]) {
      const head = raw.toString('latin1').split('\r\n\r\n')[0];
      expect(Math.max(...head.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(998);
      expect((await simpleParser(raw)).from?.value).toEqual([{ address: 'dev-request@lists.example.org', name: `${name} list` }]);
    }
  });

  it('sends text with lines past 998 octets as base64, whole', async () => {
    const long = { ...messages[1], subject: `Re: ${'a long subject '.repeat(80)}`, text: `${'one paragraph on one line '.repeat(200)}\n` };
    for (const raw of [mimeDigest(info, [long]), plainDigest(info, [long])]) {
      const text = raw.toString('latin1');
      expect(Math.max(...text.split('\r\n').map((l) => l.length))).toBeLessThanOrEqual(998);
      const parsed = await parse(raw);
      expect(parsed.text).toContain(long.subject.trim());
    }
    expect((await parse(plainDigest(info, [long]))).text).toContain('one paragraph on one line '.repeat(200).trim());
  });

  it('builds an RFC 1153 plain digest', () => {
    const text = plainDigest(info, messages).toString();
    expect(text).toContain(`\r\n${'-'.repeat(70)}\r\n`);
    expect(text).toContain(`Message: 2\r\nDate: `);
    expect(text).toContain(`Agreed.\r\n\r\n${'-'.repeat(30)}\r\n`);
    expect(text).toContain('End of dev Digest, Vol 1, Issue 7');
  });
});

/**
 * Hostile posts in an RFC 1153 digest. An RFC 934 burster (nmh's burst, Emacs's undigest when the
 * strict RFC 1153 reading fails) takes every line that starts with "-" and no space for a boundary,
 * so a post could split itself in two, or forge a message of its own with the From and Subject
 * it likes. Such lines are stuffed with "- " (RFC 934 §2), which bursters take off again.
 */
describe('digests of hostile posts', () => {
  const info = { list: { address: 'dev@lists.example.org', key: 'dev', publicUrl: 'https://lists.example.org', name: 'dev', domain: 'lists.example.org' }, volume: 1, issue: 7, date: now };
  const post = (over: Partial<{ subject: string; fromName: string; fromEmail: string; text: string }>) => ({
    messageId: 'm@x', raw: Buffer.from('From: m@example.net\r\nSubject: x\r\n\r\nx\r\n'), subject: 'plan', fromName: 'Mallory', fromEmail: 'm@example.net', date: now, text: 'x\n', ...over,
  });
  /** The enclosed messages as an RFC 934 burster sees them: split at lines "-" + not a space, unstuffed. */
  const burst = (digest: Buffer) => {
    const body = (digest.toString('utf8').split('\r\n\r\n').slice(1).join('\r\n\r\n'));
    return body.split(/\r\n-[^ \r\n][^\r\n]*\r\n/).slice(1).map((m) => m.replace(/^- /gm, ''));
  };

  it('keeps a post whose body forges a separator and a message as one message, in an RFC 934 burster too', () => {
    const forged = 'Read this.\n\n-----------------------------\n\nFrom: CEO <ceo@bank.example>\nSubject: wire the money\n\nNow.\n------------------------------\n\nEnd of dev Digest, Vol 1, Issue 7\n********\n-- \nMallory\n';
    const digest = plainDigest(info, [post({ text: forged }), post({ subject: 'second', text: 'Two.\n' })]);
    const parts = burst(digest);
    expect(parts).toHaveLength(3); // the two posts, then the trailer
    expect(parts[0]).toContain('From: Mallory <m@example.net>');
    expect(parts[0]).toContain(forged.replace(/\n/g, '\r\n').trimEnd());
    expect(parts[1]).toContain('Subject: second');
    expect(parts[2]).toMatch(/^\r\nEnd of dev Digest, Vol 1, Issue 7\r\n/);
    for (const line of digest.toString().split('\r\n')) expect(line === '-'.repeat(30) || line === '-'.repeat(70) || !line.startsWith('-') || line.startsWith('- ')).toBe(true);
  });

  it('keeps a subject or name stored with line breaks on one line', () => {
    const evil = '\n\n------------------------------\n\nMessage: 9\nFrom: CEO <ceo@bank.example>\nSubject: wire the money';
    for (const p of [post({ subject: `hi${evil}` }), post({ fromName: `Mallory${evil}` })]) {
      const digest = plainDigest(info, [p]);
      expect(burst(digest)).toHaveLength(2);
      expect(digest.toString()).not.toMatch(/\r\nFrom: CEO/);
      expect(mimeDigest(info, [p]).toString()).not.toMatch(/\r\n *From: CEO|\r\nSubject: wire/);
    }
  });
});

describe('MIME digests of 8-bit posts', () => {
  const info = { list: { address: 'dev@lists.example.org', key: 'dev', publicUrl: 'https://lists.example.org', name: 'dev', domain: 'lists.example.org' }, volume: 1, issue: 7, date: now };
  const ascii = { messageId: 'a@x', raw: Buffer.from('From: a@example.net\r\nSubject: plain\r\n\r\nplain\r\n'), subject: 'plain', fromName: '', fromEmail: 'a@example.net', date: now, text: 'plain\n' };
  const eight = { ...ascii, messageId: 'b@x', raw: Buffer.from('From: b@example.net\r\nSubject: latin\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße aus Köln\r\n'), subject: 'latin', text: 'Grüße aus Köln\n' };
  const labels = (raw: Buffer) => [...raw.toString('latin1').matchAll(/^Content-Transfer-Encoding: (\S+)\r$/gim)].map((m) => m[1]);

  it('labels a post with 8-bit bytes, and the multiparts around it, 8bit (RFC 2046 §5.2.1), and a 7-bit copy of it reads the same', async () => {
    const raw = mimeDigest(info, [ascii, eight]);
    const head = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1');
    expect(head).toMatch(/^Content-Transfer-Encoding: 8bit$/m);
    expect(raw.toString('latin1')).toMatch(/Content-Type: multipart\/digest; boundary="[^"]+"\r\nContent-Transfer-Encoding: 8bit\r\n/);
    expect(raw.toString('latin1')).toMatch(/Content-Type: message\/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\nFrom: b@example.net/);
    expect(raw.toString('latin1')).toMatch(/Content-Type: message\/rfc822\r\n\r\nFrom: a@example.net/);
    const seven = toSevenBit(raw)!;
    expect(hasEightBit(seven)).toBe(false);
    expect(labels(seven)).not.toContain('8bit');
    const parsed = await simpleParser(seven);
    expect((await simpleParser(parsed.attachments[1].content)).text).toContain('Grüße aus Köln');
  });

  it('labels only what has 8-bit bytes: none in a digest of 7-bit posts, the digest itself when its topics are 8-bit', () => {
    expect(labels(mimeDigest(info, [ascii]))).toEqual(['7bit']); // the topics part only
    // a subject written in encoded words is 8-bit in the topics: the digest around it says so
    expect(labels(mimeDigest(info, [{ ...ascii, subject: 'Grüße' }]))).toEqual(['8bit', '8bit']);
  });
});
