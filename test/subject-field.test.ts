import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { composeText } from '../src/mail/compose.ts';
import { parse } from '../src/mail/parse.ts';

/**
 * The Subject of mail listkeeper writes (notices, web replies, digests) keeps every line within
 * RFC 5322's 998 octets, whatever the subject: an archived subject may be 1,000 characters with no
 * white space, and "Re: " makes it longer. And a reader gets the same subject back.
 */
const word = fc.oneof(fc.string({ minLength: 1, maxLength: 40 }), fc.constant('x'.repeat(1200)), fc.constant('é'.repeat(700)), fc.constant('日本語'));
const subjects = fc.array(word, { maxLength: 30 }).map((ws) => ws.join(' ').slice(0, 995)); // 995 + "Re: ": within what parse() keeps of a subject (1,000)

describe('the Subject field of mail we write', () => {
  it('keeps every line within 998 octets and reads back as the subject, white space runs made one', async () => {
    await fc.assert(fc.asyncProperty(subjects, async (subject) => {
      const raw = composeText({ from: 'a@example.org', to: 'b@example.org', subject: `Re: ${subject}`, text: 'hi', domain: 'example.org' });
      const head = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString('latin1');
      for (const line of head.split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
      const field = /^Subject:.*(?:\r\n[ \t].*)*/m.exec(head)![0];
      expect(field.split('\r\n').slice(1).every((l) => /^[ \t]/.test(l))).toBe(true);
      const parsed = await parse(raw);
      const squash = (s: string) => s.replace(/[\s\u0000-\u001f]+/g, ' ').trim();
      expect(squash(parsed.subject)).toBe(squash(`Re: ${subject}`));
    }), { numRuns: 150 });
  });

  it('folds a long subject at its spaces rather than encoding it', () => {
    const raw = composeText({ from: 'a@example.org', to: 'b@example.org', subject: `Re: ${'word '.repeat(250)}`, text: 'hi', domain: 'example.org' }).toString();
    expect(raw).toMatch(/^Subject: Re: word word/m);
    expect(raw).not.toContain('=?UTF-8?');
  });
});
