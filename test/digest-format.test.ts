import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { digestPart, mimeDigest, plainDigest } from '../src/mail/digest.ts';
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

describe('what a post carries into a MIME digest', () => {
  const info = { list: { address: 'dev@lists.example.org', key: 'dev', publicUrl: 'https://lists.example.org', name: 'dev', domain: 'lists.example.org' }, volume: 1, issue: 7, date: now };
  // A post as the archive keeps it: the trace of its way here, its signatures and the results
  // that judged them, programs' X- fields (one with 8-bit bytes), and the fields a reader needs.
  const kept = [
    'From: Alice <alice@example.org>',
    'To: dev@lists.example.org',
    'Cc: bob@example.net,\r\n carol@example.net',
    'Subject: Re: plan',
    'Date: Mon, 02 Nov 2026 10:00:00 +0000',
    'Message-ID: <c@x>',
    'In-Reply-To: <b@x>',
    'References: <a@x>\r\n <b@x>',
    'Reply-To: alice@example.org',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
  ];
  const dropped = [
    'Return-Path: <alice@example.org>',
    'Received: from mail.example.org (mail.example.org [198.51.100.7])\r\n\tby mx.lists.example.org with ESMTPS; Mon, 02 Nov 2026 10:00:01 +0000',
    'Received: from [10.1.2.3] (home.dsl.example [203.0.113.9])\r\n\tby mail.example.org; Mon, 02 Nov 2026 10:00:00 +0000',
    'DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from:to:subject;\r\n\tbh=abc=; b=def=',
    'ARC-Seal: i=1; a=rsa-sha256; d=example.org; s=s1; cv=none; b=xyz=',
    'Authentication-Results: mx.lists.example.org; spf=pass smtp.mailfrom=example.org',
    'X-Originating-IP: [203.0.113.9]',
    'X-Mailer: Gerät 1.0',
    'Delivered-To: dev@lists.example.org',
  ];
  // The fields mixed, as a real post has them (trace first, the rest in any order).
  const head = [...dropped.slice(0, 4), kept[0], dropped[4], ...kept.slice(1, 6), dropped[5], ...kept.slice(6), ...dropped.slice(6)];
  const body = 'Agreed; see you there.\r\n-- \r\nAlice\r\n';
  const post = { messageId: 'c@x', raw: Buffer.from(`${head.join('\r\n')}\r\n\r\n${body}`), subject: 'Re: plan', fromName: 'Alice', fromEmail: 'alice@example.org', date: now, text: 'Agreed.\n' };

  it('keeps only the fields a reader needs (as Mailman does), as written and in their order, and the body byte for byte', async () => {
    const raw = mimeDigest(info, [post]);
    const text = raw.toString('latin1');
    const start = text.indexOf('Content-Type: message/rfc822\r\n\r\n') + 'Content-Type: message/rfc822\r\n\r\n'.length;
    expect(text.slice(start, text.indexOf('--=_posts_', start))).toBe(`${kept.join('\r\n')}\r\n\r\n${body}`);
    for (const field of ['Received', 'Return-Path', 'DKIM-Signature', 'ARC-Seal', 'Authentication-Results', 'X-Originating-IP', 'X-Mailer', 'Delivered-To', '203.0.113.9']) {
      expect(text).not.toContain(field);
    }
    // The only 8-bit bytes were in X-Mailer: nothing is labelled 8bit.
    expect(hasEightBit(raw)).toBe(false);
    const parsed = await simpleParser(raw);
    const inner = await simpleParser(parsed.attachments[0].content);
    expect([inner.messageId, inner.inReplyTo, inner.references, inner.subject]).toEqual(['<c@x>', '<b@x>', ['<a@x>', '<b@x>'], 'Re: plan']);
    expect(inner.text).toContain('Agreed; see you there.\n-- \nAlice');
    expect(inner.cc).toMatchObject({ value: [{ address: 'bob@example.net' }, { address: 'carol@example.net' }] });
  });

  it('keeps a post with bare newlines, and one without a body, whole in what it keeps', () => {
    const bare = { ...post, raw: Buffer.from(`${head.join('\n').replace(/\r/g, '')}\n\nHi.\n`) };
    expect(digestPart(bare.raw).toString()).toBe(`${kept.join('\n').replace(/\r/g, '')}\n\nHi.\n`);
    expect(digestPart(Buffer.from('From: a@example.net\r\nReceived: by x\r\nSubject: only\r\n')).toString()).toBe('From: a@example.net\r\nSubject: only\r\n\r\n');
    expect(digestPart(SAMPLE_POST)).toBe(SAMPLE_POST);
  });
});
