import { describe, expect, it } from 'vitest';
import { decide, type PostFacts } from '../src/core/moderation-rules.ts';
import type { AuthChecks } from '../src/mail/post-checks.ts';

/** The moderation rules of src/core/moderation-rules.ts: a pure decision over plain facts, one rule table. */

const now = new Date('2026-11-02T10:00:00Z');
const PASSED: AuthChecks = { spf: 'pass', dkim: 'none', dmarc: 'none', arc: 'none', arcInstance: 0, fromDomain: 'example.org', aligned: true, dmarcPolicy: null, header: 'lists.example.org; spf=pass' };
const FORGED: Partial<AuthChecks> = { spf: 'fail', aligned: false };

function facts(over: { spam?: PostFacts['spam']; hold?: number | null; reject?: number | null; policy?: PostFacts['list']['postPolicy']; member?: PostFacts['sender']['memberStatus']; rules?: PostFacts['senderRules']; size?: number; max?: number; subject?: string; headers?: Record<string, string>; auth?: Partial<AuthChecks> | null; authPolicy?: PostFacts['list']['authPolicy'] } = {}): PostFacts {
  return {
    list: {
      address: 'dev@lists.example.org', listId: '<dev.lists.example.org>', postPolicy: over.policy ?? 'members', maxMessageSize: over.max ?? 0,
      spamHoldScore: over.hold === undefined ? 6 : over.hold, spamRejectScore: over.reject === undefined ? 15 : over.reject, authPolicy: over.authPolicy ?? 'hold',
    },
    sender: { email: 'alice@example.org', envelopeFrom: 'alice@example.org', memberStatus: over.member === undefined ? 'active' : over.member },
    senderRules: over.rules ?? [],
    message: {
      size: over.size ?? 1000,
      subject: over.subject ?? 'Release planning',
      headers: new Map(Object.entries(over.headers ?? {}).map(([k, v]) => [k, [v]])),
    },
    spam: over.spam,
    // By default the post authenticated: SPF passed for example.org, aligned with From.
    auth: over.auth === null ? null : { ...PASSED, ...over.auth },
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

  describe('spam scores (rspamd) against the list\'s thresholds', () => {
    const verdict = (score: number, symbols = ['BAYES_SPAM', 'RBL_SPAMHAUS', 'MIME_GOOD']) => ({ score, action: 'add header', symbols });

    it('holds a post at the hold threshold and names the score and the symbols', () => {
      expect(decide(facts({ spam: verdict(6) }))).toEqual({ action: 'hold', rule: 'spam', reason: 'spam score 6 ≥ 6 (symbols: BAYES_SPAM, RBL_SPAMHAUS, MIME_GOOD)' });
    });

    it('rejects a post at the reject threshold, ahead of holding it', () => {
      expect(decide(facts({ spam: verdict(15.5) }))).toMatchObject({ action: 'reject', rule: 'spam', reason: 'spam score 15.5 ≥ 15 (symbols: BAYES_SPAM, RBL_SPAMHAUS, MIME_GOOD)' });
    });

    it('accepts a score under the hold threshold', () => {
      expect(decide(facts({ spam: verdict(5.99) }))).toMatchObject({ action: 'accept', rule: 'default' });
    });

    it('decides nothing when a threshold is off or the post was not scanned', () => {
      expect(decide(facts({ spam: verdict(40), hold: null, reject: null }))).toMatchObject({ action: 'accept' });
      expect(decide(facts({ spam: verdict(40), reject: null }))).toMatchObject({ action: 'hold', rule: 'spam' });
      expect(decide(facts({ spam: null }))).toMatchObject({ action: 'accept' });
    });

    it('holds spam from an allowed sender (an address is easily forged)', () => {
      const rules = [{ kind: 'allow' as const, email: 'alice@example.org', expiresAt: null }];
      expect(decide(facts({ spam: verdict(9), rules }))).toMatchObject({ action: 'hold', rule: 'spam' });
    });

    it('shows at most eight symbols, the highest-scoring ones as given', () => {
      const symbols = Array.from({ length: 12 }, (_, i) => `SYM_${i}`);
      expect(decide(facts({ spam: verdict(9, symbols) })).reason).toBe(`spam score 9 ≥ 6 (symbols: ${symbols.slice(0, 8).join(', ')}, …)`);
    });
  });
});

describe('authentication rule', () => {
  it('holds a member address that neither SPF nor DKIM vouches for, and says why', () => {
    const d = decide(facts({ auth: FORGED }));
    expect(d).toMatchObject({ action: 'hold', rule: 'authentication' });
    expect(d.reason).toBe('From is a member but neither SPF nor DKIM passes for example.org');
  });

  it('takes a member post no check vouches for on an open list, as a stranger\'s, and still holds it on a moderated one', () => {
    expect(decide(facts({ auth: FORGED, policy: 'open' }))).toMatchObject({ action: 'accept', rule: 'default' });
    expect(decide(facts({ auth: FORGED, policy: 'open', member: null }))).toMatchObject({ action: 'accept', rule: 'default' });
    expect(decide(facts({ auth: FORGED, policy: 'moderated' }))).toMatchObject({ action: 'hold', rule: 'authentication' });
    // A DMARC forgery is held on an open list all the same.
    expect(decide(facts({ auth: { ...FORGED, dmarc: 'fail', dmarcPolicy: 'reject' }, policy: 'open' }))).toMatchObject({ action: 'hold', rule: 'authentication' });
  });

  it('refuses it with 5.7.26 when the list says reject, and only records it when the list says accept', () => {
    expect(decide(facts({ auth: FORGED, authPolicy: 'reject' }))).toMatchObject({ action: 'reject', rule: 'authentication', smtpStatus: '5.7.26' });
    expect(decide(facts({ auth: FORGED, authPolicy: 'accept' }))).toMatchObject({ action: 'accept', rule: 'default' });
  });

  it('lets a member whose DKIM signature aligns post', () => {
    expect(decide(facts({ auth: { spf: 'fail', dkim: 'pass', aligned: true } })).action).toBe('accept');
  });

  it('does not let an allow rule on the address admit a forgery of it', () => {
    const allow = [{ kind: 'allow' as const, email: 'alice@example.org', expiresAt: null }];
    expect(decide(facts({ auth: FORGED, rules: allow })).rule).toBe('authentication');
    expect(decide(facts({ member: null, policy: 'moderated', auth: FORGED, rules: allow })).rule).toBe('allowed');
  });

  it('holds a post whose From domain fails DMARC with p=reject or p=quarantine, member or not', () => {
    const failing = { dmarc: 'fail', dmarcPolicy: 'reject', aligned: false, fromDomain: 'strict.example' };
    const d = decide(facts({ member: null, policy: 'open', auth: failing }));
    expect(d).toMatchObject({ action: 'hold', rule: 'authentication', reason: 'From strict.example fails DMARC (p=reject)' });
    expect(decide(facts({ member: null, policy: 'open', auth: { ...failing, dmarcPolicy: 'quarantine' } })).reason).toContain('(p=quarantine)');
    // p=none asks receivers for nothing: a stranger on an open list goes through.
    expect(decide(facts({ member: null, policy: 'open', auth: { ...failing, dmarcPolicy: 'none' } })).action).toBe('accept');
  });

  it('leaves a stranger on an open list alone when nothing authenticates (they could post anyway)', () => {
    expect(decide(facts({ member: null, policy: 'open', auth: { spf: 'none', aligned: false } })).action).toBe('accept');
  });

  it('holds, never refuses, when a DNS lookup failed for now', () => {
    const d = decide(facts({ auth: { spf: 'temperror', dkim: 'temperror', dmarc: 'temperror', aligned: false }, authPolicy: 'reject' }));
    expect(d).toMatchObject({ action: 'hold', rule: 'authentication' });
    expect(d.reason).toContain('temperror');
  });

  it('decides a refusal before a hold for size or moderation, but after the silent drops', () => {
    expect(decide(facts({ auth: FORGED, authPolicy: 'reject', policy: 'moderated', size: 200_000, max: 1000 })).action).toBe('reject');
    expect(decide(facts({ auth: FORGED, authPolicy: 'reject', rules: [{ kind: 'ban', email: 'alice@example.org', expiresAt: null }] })).rule).toBe('banned');
    expect(decide(facts({ auth: FORGED, authPolicy: 'reject', headers: { 'list-id': '<dev.lists.example.org>' } })).rule).toBe('loop');
  });

  it('has no opinion on a post that was not checked (imported, or held before the checks existed)', () => {
    expect(decide(facts({ auth: null })).action).toBe('accept');
  });
});
