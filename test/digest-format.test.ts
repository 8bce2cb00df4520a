import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { mimeDigest, plainDigest } from '../src/mail/digest.ts';
import { parse } from '../src/mail/parse.ts';
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
