import { simpleParser } from 'mailparser';
import PostalMime from 'postal-mime';
import { describe, expect, it } from 'vitest';
import { needsMitigation, organisationalDomain, policyOf } from '../src/mail/dmarc.ts';
import { headerFields, splitMessage, unfold } from '../src/mail/header-block.ts';
import { rewriteFrom } from '../src/mail/from-rewrite.ts';
import { memberCopy, prepareCopy, type CopyOptions } from '../src/mail/list-copy.ts';
import { SAMPLE_POST } from './helpers/sample-post.ts';

/**
 * DMARC mitigation, pure parts: reading a domain's record (src/mail/dmarc.ts) and the copies the
 * modes make (src/mail/list-copy.ts, src/mail/from-rewrite.ts), by Mailman 3's rules.
 */

describe('DMARC policies', () => {
  it('rewrites only for reject or quarantine, with sp= for subdomains', () => {
    expect(policyOf('v=DMARC1; p=reject; rua=mailto:x@y', false)).toBe('reject');
    expect(policyOf('v=DMARC1; p=none', false)).toBe('none');
    expect(policyOf('v=DMARC1; p=reject; sp=none', true)).toBe('none');
    expect(policyOf('v=DMARC1; p=reject; sp=none', false)).toBe('reject');
    expect(policyOf('v=DMARC1; p=none; sp=quarantine', true)).toBe('quarantine');
    expect(policyOf(null, false)).toBe('none');
    expect(policyOf('v=spf1 -all', false)).toBe('none');
  });

  it('honours pct as RFC 7489 §6.6.4 says: an unselected message gets the next lower policy', () => {
    // p=reject: with pct=0 every message is still quarantined; with any pct some are rejected.
    expect(policyOf('v=DMARC1; p=reject; pct=0', false)).toBe('quarantine');
    expect(policyOf('v=DMARC1; p=reject; pct=30', false)).toBe('reject');
    // p=quarantine: pct=0 means none for every message; pct>0 quarantines some.
    expect(policyOf('v=DMARC1; p=quarantine; pct=0', false)).toBe('none');
    expect(policyOf('v=DMARC1; p=quarantine; pct=1', false)).toBe('quarantine');
    expect(policyOf('v=DMARC1; p=quarantine; pct=100', false)).toBe('quarantine');
    // An invalid pct is ignored (100); DMARCbis' t=y is pct=0.
    expect(policyOf('v=DMARC1; p=quarantine; pct=abc', false)).toBe('quarantine');
    expect(policyOf('v=DMARC1; p=quarantine; pct=250', false)).toBe('quarantine');
    expect(policyOf('v=DMARC1; p=reject; t=y', false)).toBe('quarantine');
    expect(policyOf('v=DMARC1; p=quarantine; t=y', false)).toBe('none');
    expect(['reject', 'quarantine', 'temperror'].map((p) => needsMitigation(p as never))).toEqual([true, true, true]);
    expect(needsMitigation('none')).toBe(false);
  });

  it('finds the organisational domain on the Public Suffix List', () => {
    expect(organisationalDomain('mail.gmx.de')).toBe('gmx.de');
    expect(organisationalDomain('foo.bar.co.uk')).toBe('bar.co.uk');
    expect(organisationalDomain('a.b.c.example.com.au')).toBe('example.com.au');
    expect(organisationalDomain('lists.example.org')).toBe('example.org');
    expect(organisationalDomain('Mail.GMX.de.')).toBe('gmx.de');
    // a public suffix itself, or no domain: its own
    expect(organisationalDomain('co.uk')).toBe('co.uk');
    // the old guess took three labels under any two-letter TLD: gmx.de's subdomains missed it
    expect(organisationalDomain('x.y.gmx.de')).toBe('gmx.de');
  });
});

function options(over: Partial<CopyOptions> = {}): CopyOptions {
  return {
    list: { address: 'dev@lists.example.org', key: 'dev', publicUrl: 'https://lists.example.org', name: 'dev' },
    messageId: 'plan/1+x@example.org', subject: 'Über die Planung', fromName: 'Alice', fromEmail: 'alice@example.org',
    subjectPrefix: '', footer: '', replyTo: { policy: 'none', address: null }, mitigation: 'munge_from', ...over,
  };
}

function post(extra: string[], from = 'Alice <alice@example.org>'): Buffer {
  const raw = SAMPLE_POST.toString('latin1').replace('From: Alice <alice@example.org>', [`From: ${from}`, ...extra].join('\r\n'));
  return Buffer.from(raw, 'latin1');
}

/** A header's values, unfolded, from the raw copy. */
function values(raw: Buffer, name: string): string[] {
  return headerFields(splitMessage(raw).head).filter((f) => f.name === name).map((f) => unfold(f.bytes.toString('latin1').slice(name.length + 1)));
}

function longestLine(raw: Buffer): number {
  return Math.max(...raw.toString('latin1').split('\r\n').map((l) => Buffer.byteLength(l, 'latin1')));
}

describe('munge_from', () => {
  it('puts the author in Reply-To when the list leaves Reply-To alone', () => {
    const copy = memberCopy(prepareCopy(post([]), options()), 't');
    expect(values(copy, 'from')).toEqual(['Alice via dev <dev@lists.example.org>']);
    expect(values(copy, 'reply-to')).toEqual(['Alice <alice@example.org>']);
    expect(values(copy, 'cc')).toEqual([]);
  });

  it("adds the author to the author's own Reply-To, once", () => {
    const copy = memberCopy(prepareCopy(post(['Reply-To: Team <team@example.org>']), options()), 't');
    expect(values(copy, 'reply-to')).toEqual(['Team <team@example.org>, Alice <alice@example.org>']);
    const already = memberCopy(prepareCopy(post(['Reply-To: team@example.org, ALICE@example.org']), options()), 't');
    expect(values(already, 'reply-to')).toEqual(['team@example.org, ALICE@example.org']);
  });

  it('puts the author in Cc, after the Cc already there, when Reply-To goes to the list', () => {
    const copy = memberCopy(prepareCopy(post(['Cc: Bob <bob@example.net>', 'Reply-To: elsewhere@example.org']), options({ replyTo: { policy: 'list', address: null } })), 't');
    expect(values(copy, 'reply-to')).toEqual(['<dev@lists.example.org>']);
    expect(values(copy, 'cc')).toEqual(['Bob <bob@example.net>, Alice <alice@example.org>']);
    expect(values(copy, 'from')).toEqual(['Alice via dev <dev@lists.example.org>']);
    const toAddress = memberCopy(prepareCopy(post([]), options({ replyTo: { policy: 'address', address: 'help@example.org' } })), 't');
    expect(values(toAddress, 'reply-to')).toEqual(['<help@example.org>']);
    expect(values(toAddress, 'cc')).toEqual(['Alice <alice@example.org>']);
  });

  it('keeps an encoded or 8-bit Reply-To byte for byte when adding the author', () => {
    const raw = Buffer.concat([Buffer.from('Reply-To: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>,\r\n Käthe <k@example.org>\r\n', 'utf8'), post([])]);
    const copy = memberCopy(prepareCopy(raw, options()), 't');
    const field = headerFields(splitMessage(copy).head).find((f) => f.name === 'reply-to')!;
    expect(field.bytes.toString('utf8')).toBe('Reply-To: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>,\r\n Käthe <k@example.org>, Alice <alice@example.org>\r\n');
  });

  it('takes the domain off a display name that is an address', () => {
    const copy = memberCopy(prepareCopy(post([], 'bob@example.org'), options({ fromName: '', fromEmail: 'bob@example.org' })), 't');
    expect(values(copy, 'from')).toEqual(['bob via dev <dev@lists.example.org>']);
    const named = memberCopy(prepareCopy(post([], '"bob@example.org" <bob@example.org>'), options({ fromName: 'bob@example.org', fromEmail: 'bob@example.org' })), 't');
    expect(values(named, 'from')).toEqual(['bob via dev <dev@lists.example.org>']);
    expect(named.toString('latin1')).not.toContain('bob@example.org via');
    expect(values(named, 'reply-to')).toEqual(['bob@example.org <bob@example.org>'.replace(/^bob@example.org/, '"bob@example.org"')]);
  });

  it('keeps every header line within 998 octets, with a huge display name and Reply-To', async () => {
    const hugeName = 'A'.repeat(3000);
    const spaced = Array.from({ length: 400 }, (_, i) => `Name${i}`).join(' ');
    const manyReplyTo = `Reply-To: ${Array.from({ length: 150 }, (_, i) => `"Some One ${i}" <someone${i}@example.org>`).join(', ')}`;
    for (const [name, extra] of [[hugeName, [manyReplyTo]], [spaced, []], ['Jörg '.repeat(500).trim(), ['Cc: x@example.net']]] as const) {
      for (const replyTo of [{ policy: 'none', address: null }, { policy: 'list', address: null }] as const) {
        const copy = memberCopy(prepareCopy(post([...extra], `${name.length > 100 ? 'x' : name} <alice@example.org>`), options({ fromName: name, replyTo, subjectPrefix: '[dev]', subject: 'x' })), 't');
        expect(longestLine(copy)).toBeLessThanOrEqual(998);
        const parsed = await simpleParser(copy);
        expect(parsed.from?.value[0].address).toBe('dev@lists.example.org');
        expect(parsed.from?.value[0].name).toBe(`${name} via dev`);
        const reach = replyTo.policy === 'none' ? parsed.replyTo : parsed.cc;
        const reachValue = Array.isArray(reach) ? reach.flatMap((a) => a.value) : reach?.value ?? [];
        expect(reachValue.map((a) => a.address)).toContain('alice@example.org');
        if (extra[0]?.startsWith('Reply-To') && replyTo.policy === 'none') expect(reachValue).toHaveLength(151);
      }
    }
  });

  it('gives way to the author alone when the Reply-To there cannot be folded', () => {
    const copy = memberCopy(prepareCopy(post([`Reply-To: <${'x'.repeat(1200)}@example.org>`]), options()), 't');
    expect(longestLine(copy)).toBeLessThanOrEqual(998);
    expect(values(copy, 'reply-to')).toEqual(['Alice <alice@example.org>']);
  });
});

describe('wrap_message', () => {
  it('sends a message from the list whose one part is the post, byte for byte', async () => {
    const original = post(['Cc: Bob <bob@example.net>', 'In-Reply-To: <earlier@example.org>', 'DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=a; b=xyz']);
    const copy = memberCopy(prepareCopy(original, options({ mitigation: 'wrap_message', subjectPrefix: '[dev]' })), 't');
    expect(values(copy, 'from')).toEqual(['Alice via dev <dev@lists.example.org>']);
    expect(values(copy, 'to')).toEqual(['dev@lists.example.org']);
    expect(values(copy, 'cc')).toEqual(['Bob <bob@example.net>']);
    expect(values(copy, 'reply-to')).toEqual(['Alice <alice@example.org>']);
    expect(values(copy, 'date')).toEqual(['Mon, 02 Nov 2026 10:00:00 +0000']);
    expect(values(copy, 'message-id')).toEqual(['<plan/1+x@example.org>']);
    expect(values(copy, 'in-reply-to')).toEqual(['<earlier@example.org>']);
    expect(values(copy, 'subject')).toEqual(['[dev] =?UTF-8?Q?=C3=9Cber_die_Planung?=']);
    expect(values(copy, 'content-type')).toEqual(['message/rfc822']);
    expect(values(copy, 'dkim-signature')).toEqual([]);
    expect(values(copy, 'list-id')).toEqual(['<dev.lists.example.org>']);
    // The post is the body, every byte of it.
    const { rest } = splitMessage(copy);
    expect(rest.subarray(2).equals(original)).toBe(true);
    const parsed = await PostalMime.parse(copy, { forceRfc822Attachments: true });
    expect(parsed.subject).toBe('[dev] Über die Planung');
    expect(parsed.attachments.map((a) => a.mimeType)).toEqual(['message/rfc822']);
    const inner = Buffer.from(parsed.attachments[0].content as ArrayBuffer).toString();
    expect(inner).toContain('DKIM-Signature: v=1; a=rsa-sha256; d=example.org');
    expect(inner).toContain('Hello, list.');
  });

  it('puts the author in Cc when replies go to the list, and keeps the footer a part of its own', async () => {
    const copy = memberCopy(prepareCopy(post(['Cc: Bob <bob@example.net>']), options({ mitigation: 'wrap_message', footer: 'Dev list footer', replyTo: { policy: 'list', address: null } })), 't');
    expect(values(copy, 'cc')).toEqual(['Bob <bob@example.net>, Alice <alice@example.org>']);
    expect(values(copy, 'reply-to')).toEqual(['<dev@lists.example.org>']);
    const parsed = await PostalMime.parse(copy, { forceRfc822Attachments: true });
    expect(values(copy, 'content-type')[0]).toMatch(/^multipart\/mixed/);
    expect(parsed.attachments.map((a) => a.mimeType)).toEqual(['message/rfc822']);
    expect(parsed.text).toContain('Dev list footer');
  });

  it('marks a wrapped 8-bit post 8bit, as message/rfc822 must be', () => {
    const raw = Buffer.from(SAMPLE_POST.toString('latin1').replace('Hello, list.', 'Grüße'), 'latin1');
    const eight = Buffer.concat([raw.subarray(0, raw.indexOf('Grüße', 0, 'latin1')), Buffer.from('Grüße\r\n', 'utf8')]);
    const copy = memberCopy(prepareCopy(eight, options({ mitigation: 'wrap_message' })), 't');
    expect(values(copy, 'content-transfer-encoding')).toEqual(['8bit']);
    expect(values(memberCopy(prepareCopy(SAMPLE_POST, options({ mitigation: 'wrap_message' })), 't'), 'content-transfer-encoding')).toEqual([]);
  });
});

describe('a display name that reads like an encoded word', () => {
  it('arrives in the rewritten From and Reply-To as the author wrote it, not decoded a second time', async () => {
    // The author's name, decoded, is the text "=?utf-8?b?QmFuayBvZiBBbWVyaWNh?=": written bare,
    // every reader decodes it again, and the copy says it is from "Bank of America via dev".
    const name = '=?utf-8?b?QmFuayBvZiBBbWVyaWNh?=';
    const { fields } = rewriteFrom({ fields: [], fromName: name, fromEmail: 'mallory@evil.example', list: { name: 'dev', address: 'dev@lists.example.org' }, listSetsReplyTo: false, eol: '\r\n' });
    const parsed = await simpleParser(Buffer.concat([...fields, Buffer.from('Subject: x\r\n\r\nbody\r\n')]));
    expect(parsed.from?.value[0]).toMatchObject({ name: `${name} via dev`, address: 'dev@lists.example.org' });
    const replyTo = parsed.replyTo as { value: { name: string; address: string }[] };
    expect(replyTo.value[0]).toMatchObject({ name, address: 'mallory@evil.example' });
  });
});
