import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readBounce } from '../src/mail/bounce.ts';
import { classifyText } from '../src/mail/bounce-rules.ts';
import { findCommand, isAutomatic } from '../src/mail/commands.ts';
import { mimeDigest, plainDigest } from '../src/mail/digest.ts';
import { policyOf } from '../src/mail/dmarc.ts';
import { headerFields, splitMessage } from '../src/mail/header-block.ts';
import { memberCopy, prepareCopy, type CopyOptions } from '../src/mail/list-copy.ts';
import { parse } from '../src/mail/parse.ts';
import { decide, type PostFacts } from '../src/core/moderation-rules.ts';

const now = new Date('2026-11-02T10:00:00Z');

function facts(over: { policy?: PostFacts['list']['postPolicy']; member?: PostFacts['sender']['memberStatus']; rules?: PostFacts['senderRules']; size?: number; max?: number; subject?: string; headers?: Record<string, string> } = {}): PostFacts {
  return {
    list: { address: 'dev@lists.example.org', listId: '<dev.lists.example.org>', postPolicy: over.policy ?? 'members', maxMessageSize: over.max ?? 0 },
    sender: { email: 'alice@example.org', envelopeFrom: 'alice@example.org', memberStatus: over.member === undefined ? 'active' : over.member },
    senderRules: over.rules ?? [],
    message: {
      size: over.size ?? 1000,
      subject: over.subject ?? 'Release planning',
      headers: new Map(Object.entries(over.headers ?? {}).map(([k, v]) => [k, [v]])),
    },
    now,
  };
}

describe('moderation rules', () => {
  it('accepts a member post to a members-only list', () => {
    expect(decide(facts())).toMatchObject({ action: 'accept', rule: 'default' });
  });

  it('holds a stranger on a members-only list and says why', () => {
    const d = decide(facts({ member: null }));
    expect(d).toMatchObject({ action: 'hold', rule: 'members-only' });
    expect(d.reason).toContain('alice@example.org is not a member');
  });

  it('lets a member disabled by bounces still post', () => {
    expect(decide(facts({ member: 'disabled' })).action).toBe('accept');
  });

  it('holds every post on a moderated list, members included', () => {
    expect(decide(facts({ policy: 'moderated' }))).toMatchObject({ action: 'hold', rule: 'moderated' });
  });

  it('accepts anyone on an open list', () => {
    expect(decide(facts({ policy: 'open', member: null })).action).toBe('accept');
  });

  it('lets an allowed sender past members-only and moderation', () => {
    const rules = [{ kind: 'allow' as const, email: 'alice@example.org', expiresAt: null }];
    expect(decide(facts({ policy: 'moderated', member: null, rules }))).toMatchObject({ action: 'accept', rule: 'allowed' });
  });

  it('drops a banned sender silently, even a member', () => {
    const rules = [{ kind: 'ban' as const, email: 'alice@example.org', expiresAt: null }];
    expect(decide(facts({ rules }))).toMatchObject({ action: 'discard', rule: 'banned' });
  });

  it('ignores a ban once it has expired', () => {
    const rules = [{ kind: 'ban' as const, email: 'alice@example.org', expiresAt: new Date('2026-11-01T00:00:00Z') }];
    expect(decide(facts({ rules })).action).toBe('accept');
  });

  it('ignores an expired allow rule', () => {
    const rules = [{ kind: 'allow' as const, email: 'alice@example.org', expiresAt: new Date('2026-11-01T00:00:00Z') }];
    expect(decide(facts({ member: null, rules })).action).toBe('hold');
  });

  it('lets a rule on the exact address win over one on the domain', () => {
    const rules = [
      { kind: 'allow' as const, email: 'alice@example.org', expiresAt: null },
      { kind: 'ban' as const, email: '@example.org', expiresAt: null },
    ];
    expect(decide(facts({ member: null, rules })).action).toBe('accept');
  });

  it('holds a message over the size limit, even from an allowed sender', () => {
    const rules = [{ kind: 'allow' as const, email: 'alice@example.org', expiresAt: null }];
    const d = decide(facts({ size: 200_000, max: 100_000, rules }));
    expect(d).toMatchObject({ action: 'hold', rule: 'size' });
    expect(d.reason).toContain('200000 bytes');
  });

  it('discards our own copy coming back by List-Id', () => {
    expect(decide(facts({ headers: { 'list-id': 'Dev <dev.lists.example.org>' } }))).toMatchObject({ action: 'discard', rule: 'loop' });
  });

  it('discards a message carrying our X-Loop', () => {
    expect(decide(facts({ headers: { 'x-loop': 'dev@lists.example.org' } })).rule).toBe('loop');
  });

  it('passes a post that came through another list', () => {
    expect(decide(facts({ headers: { 'list-id': '<users.other.example>' } })).action).toBe('accept');
  });

  it('holds "unsubscribe" sent to the whole list', () => {
    expect(decide(facts({ subject: 'unsubscribe' }))).toMatchObject({ action: 'hold', rule: 'administrivia' });
  });
});

const bounce = (name: string) => fs.readFileSync(path.join(import.meta.dirname, 'fixtures/bounces', name));
async function report(name: string) {
  const raw = bounce(name);
  const p = await parse(raw);
  return readBounce({ raw, text: p.text, headers: p.headers });
}

describe('bounce classification on real DSN samples', () => {
  it('reads a Postfix DSN for an unknown user as a hard bounce', async () => {
    expect(await report('postfix-user-unknown.eml')).toEqual([expect.objectContaining({ recipient: 'bob@example.net', status: '5.1.1', kind: 'hard', category: 'no_such_user', failed: true })]);
  });

  it('reads a Gmail DSN for a missing account as a hard bounce', async () => {
    expect((await report('gmail-no-such-user.eml'))[0]).toMatchObject({ recipient: 'carol.nonexistent@gmail.com', status: '5.1.1', kind: 'hard' });
  });

  it('reads an Exchange NDR (5.1.10 RecipientNotFound) as a hard bounce', async () => {
    expect((await report('exchange-recipient-not-found.eml'))[0]).toMatchObject({ recipient: 'carol@contoso.example', status: '5.1.10', kind: 'hard' });
  });

  it('reads an Exim DSN for a full mailbox as a soft bounce despite its generic 5.0.0', async () => {
    expect((await report('exim-mailbox-full.eml'))[0]).toMatchObject({ recipient: 'erin@example.com', kind: 'soft', category: 'mailbox_full' });
  });

  it('reads a classic plain-text Exim bounce', async () => {
    expect((await report('exim-plain-user-unknown.eml'))[0]).toMatchObject({ recipient: 'dave@example.com', status: '5.1.1', kind: 'hard' });
  });

  it('reads a plain-text qmail bounce', async () => {
    expect((await report('qmail-plain-no-mailbox.eml'))[0]).toMatchObject({ recipient: 'grace@example.info', kind: 'hard' });
  });

  it('classifies a DMARC rejection as policy', async () => {
    expect((await report('gmail-dmarc-policy.eml'))[0]).toMatchObject({ status: '5.7.26', kind: 'policy', category: 'dmarc' });
  });

  it('classifies a block-list rejection as policy', async () => {
    expect((await report('postfix-spamhaus-policy.eml'))[0]).toMatchObject({ status: '5.7.1', kind: 'policy' });
  });

  it('does not take a delay warning for a failure', async () => {
    expect((await report('postfix-delayed-warning.eml'))[0]).toMatchObject({ action: 'delayed', failed: false });
  });

  it('does not take an out-of-office reply for a bounce', async () => {
    expect((await report('vacation-auto-reply.eml'))[0]).toMatchObject({ failed: false, category: 'auto_reply' });
  });

  it('classifies SMTP answers met while sending', () => {
    expect(classifyText(null, '550 5.1.1 <x@y>: Recipient address rejected: User unknown')).toMatchObject({ kind: 'hard' });
    expect(classifyText(null, '552 5.2.2 Mailbox full')).toMatchObject({ kind: 'soft' });
    expect(classifyText(null, '550 5.7.1 Message rejected as spam')).toMatchObject({ kind: 'policy' });
    expect(classifyText(null, '554 Message refused: listed on a block list')).toMatchObject({ kind: 'policy' });
    expect(classifyText(null, '554 <m@x.example>: Relay access denied')).toMatchObject({ kind: 'policy', category: 'relay' });
  });
});

describe('mail commands', () => {
  it('finds a command in the subject, then in the first body lines', () => {
    expect(findCommand('subscribe', '')).toEqual({ name: 'subscribe', mode: null });
    expect(findCommand('Re: unsubscribe', '')).toEqual({ name: 'unsubscribe' });
    expect(findCommand('', '\nsubscribe digest\n')).toEqual({ name: 'subscribe', mode: 'digest' });
    expect(findCommand('question', 'help\n')).toEqual({ name: 'help' });
    expect(findCommand('question', 'How do I post?\n')).toBeNull();
  });

  it('recognises mail sent by machines', () => {
    const h = (o: Record<string, string>) => new Map(Object.entries(o).map(([k, v]) => [k, [v]]));
    expect(isAutomatic(h({}), null)).toBe(true);
    expect(isAutomatic(h({ 'auto-submitted': 'auto-replied' }), 'a@b.c')).toBe(true);
    expect(isAutomatic(h({ precedence: 'bulk' }), 'a@b.c')).toBe(true);
    expect(isAutomatic(h({ 'auto-submitted': 'no' }), 'a@b.c')).toBe(false);
    expect(isAutomatic(h({}), 'a@b.c')).toBe(false);
  });
});

describe('DMARC policies', () => {
  it('rewrites only for reject or quarantine, with sp= for subdomains', () => {
    expect(policyOf('v=DMARC1; p=reject; rua=mailto:x@y', false)).toBe('reject');
    expect(policyOf('v=DMARC1; p=none', false)).toBe('none');
    expect(policyOf('v=DMARC1; p=reject; sp=none', true)).toBe('none');
    expect(policyOf('v=DMARC1; p=quarantine; pct=0', false)).toBe('none');
    expect(policyOf(null, false)).toBe('none');
  });
});

const RAW = Buffer.from([
  'From: Alice <alice@example.org>',
  'To: dev@lists.example.org',
  'Subject: =?UTF-8?Q?=C3=9Cber_die_Planung?=',
  'Date: Mon, 02 Nov 2026 10:00:00 +0000',
  'Message-ID: <plan/1+x@example.org>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello, list.',
  '',
].join('\r\n'));

function options(over: Partial<CopyOptions> = {}): CopyOptions {
  return {
    list: { address: 'dev@lists.example.org', path: 'dev', publicUrl: 'https://lists.example.org', name: 'dev' },
    messageId: 'plan/1+x@example.org', subject: 'Über die Planung', fromName: 'Alice', fromEmail: 'alice@example.org',
    subjectPrefix: '', footer: '', replyTo: { policy: 'none', address: null }, mungeFrom: false, ...over,
  };
}

describe('list copies', () => {
  it('adds the DESIGN §6 headers on top and leaves the original bytes untouched', () => {
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
    const parsed = await parse(memberCopy(prepareCopy(RAW, options({ mungeFrom: true })), 't'));
    expect(parsed.fromEmail).toBe('dev@lists.example.org');
    expect(parsed.fromName).toBe('Alice via dev');
    expect(parsed.headers.get('reply-to')).toEqual(['Alice <alice@example.org>']);
    expect(parsed.headers.get('from')).toHaveLength(1);
  });

  it('sets Reply-To to the list when the list asks for it', async () => {
    const parsed = await parse(memberCopy(prepareCopy(RAW, options({ replyTo: { policy: 'list', address: null } })), 't'));
    expect(parsed.headers.get('reply-to')).toEqual(['<dev@lists.example.org>']);
  });
});

describe('digests', () => {
  const info = { list: { address: 'dev@lists.example.org', path: 'dev', publicUrl: 'https://lists.example.org', name: 'dev', domain: 'lists.example.org' }, volume: 1, issue: 7, date: now };
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

  it('builds an RFC 1153 plain digest', () => {
    const text = plainDigest(info, messages).toString();
    expect(text).toContain(`\r\n${'-'.repeat(70)}\r\n`);
    expect(text).toContain(`Message: 2\r\nDate: `);
    expect(text).toContain(`Agreed.\r\n\r\n${'-'.repeat(30)}\r\n`);
    expect(text).toContain('End of dev Digest, Vol 1, Issue 7');
  });
});
