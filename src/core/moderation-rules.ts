/*
 * Whether a post goes to the list, waits for a moderator, or is dropped: an ordered table of
 * rules over plain data (Mailman 3's chains in miniature). The first rule that has an opinion
 * decides. Pure: the caller gathers the facts (membership, sender rules) beforehand.
 */

import { automaticMark, type AutomaticMark } from '../mail/automatic.ts';
import { roleCandidates, splitAddress } from '../mail/address.ts';
import { sameDomain } from '../mail/dmarc.ts';
import type { AuthPolicy, PostPolicy } from '../list-policies.ts';
import type { AuthChecks, SpamChecks } from '../mail/post-checks.ts';

export type Action = 'accept' | 'hold' | 'reject' | 'discard';

export interface Decision {
  action: Action;
  /** the rule that decided */
  rule: string;
  /** for people: shown to moderators, and to the sender on rejection */
  reason: string;
  /** for a rejection: the enhanced status code of the SMTP refusal (RFC 3463); 5.7.1 when not given */
  smtpStatus?: string;
}

export interface SenderRuleFact {
  kind: 'allow' | 'ban';
  /** the address or '@domain' the rule names */
  email: string;
  expiresAt: Date | null;
}

export interface PostFacts {
  list: {
    address: string;
    /** `<dev.lists.example.org>` */
    listId: string;
    postPolicy: PostPolicy;
    /** bytes; 0 means no limit */
    maxMessageSize: number;
    /** spam score from which a post is held / refused; null: that threshold is off */
    spamHoldScore: number | null;
    spamRejectScore: number | null;
    /** what a post that fails authentication gets (sql/0026) */
    authPolicy: AuthPolicy;
  };
  sender: {
    /** the From address, or the envelope sender when From has none */
    email: string;
    /** the SMTP envelope sender (MAIL FROM); null for the null reverse-path <> of delivery reports */
    envelopeFrom: string | null;
    /** the sender's membership status on this list, or null for a stranger */
    memberStatus: 'active' | 'pending' | 'disabled' | 'unsubscribed' | null;
  };
  /** rules matching the sender: the exact address first, then the domain */
  senderRules: SenderRuleFact[];
  message: {
    size: number;
    subject: string;
    /** header values by lower-case name */
    headers: Map<string, string[]>;
  };
  /** the spam scanner's verdict (core/spam-check.ts); absent when there is no scanner or it did not answer */
  spam?: SpamChecks | null;
  /** how the post authenticated as it arrived (core/post-authentication.ts); null when it was not checked */
  auth: AuthChecks | null;
  now: Date;
}

type Rule = { name: string; check: (f: PostFacts) => Omit<Decision, 'rule'> | null };

// A rule on the exact address beats one on the domain: an allowed address on a banned domain posts.
const firstLive = (f: PostFacts) => f.senderRules.find((r) => r.expiresAt === null || r.expiresAt.getTime() > f.now.getTime());

const COMMAND = /^\s*(?:re:\s*)?(?:subscribe|unsubscribe|help|remove|join|leave|signoff|set\s+\w+)\s*$/i;

/**
 * True when `email` is one of this list's own addresses: the list itself (From of a copy whose
 * From was rewritten for DMARC), LIST-request@ and LIST-owner@ (notices), LIST-bounces+…@ (the
 * envelope sender of every copy and notice), and the other role addresses.
 */
function isListOwnAddress(email: string | null, listAddress: string): boolean {
  if (!email) return false;
  const list = splitAddress(listAddress);
  const address = email.trim().replace(/^<|>$/g, '').toLowerCase();
  // Most senders are on another domain: that answers without looking at the local part.
  if (!list || !address.endsWith(`@${list.domain}`)) return false;
  const a = splitAddress(address);
  return a !== null && roleCandidates(a.local).some((c) => c.localPart === list.local);
}

/** The automatic-mail evidence of one post, read once for the two rules that ask. */
const marks = new WeakMap<PostFacts, AutomaticMark | null>();
function markOf(f: PostFacts): AutomaticMark | null {
  if (!marks.has(f)) marks.set(f, automaticMark(f.message.headers, f.sender.envelopeFrom, f.sender.email));
  return marks.get(f)!;
}

/** The verdict as people read it: "spam score 9.2 ≥ 6 (symbols: A, B, …)", the highest-scoring symbols first. */
export function spamReason(spam: SpamChecks, threshold: number): string {
  const shown = spam.symbols.slice(0, SYMBOLS_SHOWN).join(', ') + (spam.symbols.length > SYMBOLS_SHOWN ? ', …' : '');
  return `spam score ${spam.score} ≥ ${threshold}${shown ? ` (symbols: ${shown})` : ''}`;
}
const SYMBOLS_SHOWN = 8;
const isMember = (f: PostFacts) => f.sender.memberStatus === 'active' || f.sender.memberStatus === 'disabled';

/**
 * Why the post's authentication fails the list's test, or null: From's domain publishes a DMARC
 * policy that asks receivers to act (reject, quarantine) and the post fails it; or From is a
 * member and neither SPF nor DKIM passes for a domain aligned with From, which is what a forged
 * member address looks like (members-only lists would otherwise take anyone who types one); on
 * a list whose auth_policy is reject, any From that neither SPF nor DKIM proves, member or not.
 * A domain with p=none asked for nothing, and an unsigned post on an open list, a member's or a
 * stranger's, proves nothing a stranger could not do anyway: those are left to the other rules.
 */
function authFailure(f: PostFacts): string | null {
  const a = f.auth;
  if (!a) return null;
  const from = a.fromDomain ?? '(no domain)';
  const forged = dmarcForgery(a);
  if (forged) return forged;
  // On an open list a member's address opens nothing a stranger's does not: anyone may post, so
  // an unsigned member post is taken as a stranger's is (it was held, and the README's first post
  // with it).
  if (f.list.postPolicy === 'open') return null;
  // Where the list refuses what fails, the refusal is the SMTP answer, and whoever forges a From
  // reads it: refused for a member's address and taken (held) for anyone else's, it told a
  // stranger who is on a list whose roster is not theirs to see. So every unproven From is
  // refused alike, member or not, with words that do not mention membership.
  if (f.list.authPolicy === 'reject') {
    if (!a.aligned) return `From is not authenticated: neither SPF nor DKIM passes for ${from}`;
    if (!sameDomain(a.fromDomain, splitAddress(f.sender.email)?.domain ?? null)) return `From is not authenticated: the authenticated From domain (${from}) is not the sender's`;
    return null;
  }
  if (isMember(f) && !a.aligned) return `From is a member but neither SPF nor DKIM passes for ${from}`;
  // The membership was looked up for sender.email (our parser's From, or the envelope sender when
  // it found none); the alignment is mailauth's, for the From it read. Where the two readings
  // differ ("From: <>, <x@signed.example>", "From : x@…", no From), the pass is not the member's.
  if (isMember(f) && !sameDomain(a.fromDomain, splitAddress(f.sender.email)?.domain ?? null)) {
    return `From is a member but the authenticated From domain (${from}) is not the member's`;
  }
  return null;
}

/** "From D fails DMARC (p=…)" when From's own domain says mail like this is forged (reject, quarantine); else null. */
export function dmarcForgery(a: AuthChecks): string | null {
  // A From of several addresses has no one domain: the one whose verdict this is is named.
  if (a.dmarc === 'fail' && (a.dmarcPolicy === 'reject' || a.dmarcPolicy === 'quarantine')) return `From ${a.fromDomain ?? a.dmarcDomain ?? '(no domain)'} fails DMARC (p=${a.dmarcPolicy})`;
  return null;
}

/**
 * Whether the checks prove that `sender` (the From address we read) sent the mail: SPF or DKIM
 * passed for a domain aligned with From, From's domain is the sender's own (several From
 * domains, or a From our parser read otherwise, prove nothing), and DMARC does not call it
 * forged. What moderation by mail asks of a moderator's reply (moderation-mail.ts), and what makes
 * a request to the command addresses the mailbox's own (stranger-mail.ts).
 */
export function provesFrom(a: AuthChecks, sender: string): boolean {
  return !dmarcForgery(a) && a.aligned && sameDomain(a.fromDomain, splitAddress(sender)?.domain ?? null);
}

/**
 * Why the checks' verdict is open (post-authentication.ts decides which temporary errors could
 * have changed it); for checks stored before it said so, any temperror.
 */
export function unsureAuth(a: AuthChecks): NonNullable<AuthChecks['unsure']> | null {
  if (a.unsure !== undefined) return a.unsure;
  return [a.spf, a.dkim, a.dmarc].includes('temperror') ? { result: 'temperror', reason: 'a DNS lookup failed for the time being (temperror): the checks could not finish' } : null;
}

const ADDRESSES = /[^\s<>,;:"'()[\]]+@[^\s<>,;:"'()[\]]+/g;

export const RULES: readonly Rule[] = [
  {
    // Our own copies and notices coming back (a member's forward, another list that has us as
    // member and rewrote List-Id, an owner whose address leads back here): never sent round again.
    name: 'loop',
    check: (f) => {
      const ids = f.message.headers.get('list-id') ?? [];
      const loops = (f.message.headers.get('x-loop') ?? []).flatMap((v) => v.match(ADDRESSES) ?? []);
      const why = ids.some((v) => v.toLowerCase().includes(f.list.listId.toLowerCase()))
        ? `it carries this list's List-Id ${f.list.listId}`
        : loops.some((a) => isListOwnAddress(a, f.list.address))
          ? `it carries this list's X-Loop`
          : isListOwnAddress(f.sender.email, f.list.address)
            ? `it comes from this list's own address ${f.sender.email}`
            : isListOwnAddress(f.sender.envelopeFrom, f.list.address)
              ? `its envelope sender ${f.sender.envelopeFrom} is this list's own`
              : null;
      return why ? { action: 'discard', reason: `the message already went through this list (mail loop): ${why}` } : null;
    },
  },
  {
    name: 'banned',
    check: (f) => (firstLive(f)?.kind === 'ban' ? { action: 'discard', reason: `the sender ${f.sender.email} is banned from this list` } : null),
  },
  {
    // A bounce or delivery report sent to the posting address (backscatter of forged mail, a
    // misconfigured server): nothing for the members, nothing a moderator could approve. Never
    // answered either, so no report can breed another.
    name: 'delivery-report',
    check: (f) => {
      const mark = markOf(f);
      return mark?.kind === 'delivery-report' ? { action: 'discard', reason: `a delivery report, not a post: ${mark.evidence}` } : null;
    },
  },
  {
    // After the three discards: a loop, a ban and a delivery report are dropped whoever sent them
    // (refusing them would only breed bounces). Before everything that accepts or merely holds:
    // 'allowed' names an address, and an address is exactly what a forger copies, so an allow rule
    // must not let a forgery through; and before 'automatic', 'size', 'moderated' and
    // 'members-only' so that auth_policy=reject refuses a forgery outright instead of queueing it,
    // and a held one shows the moderator the reason that matters most: who sent it is in doubt.
    name: 'authentication',
    check: (f) => {
      if (f.list.authPolicy === 'accept') return null;
      const unsure = f.auth ? unsureAuth(f.auth) : null;
      // Checks that cannot give a verdict at all (a From of more domains than are checked): never
      // taken as authenticated, whatever the domains checked would say, and never refused either.
      if (unsure?.result === 'permerror') return { action: 'hold', reason: `the sender cannot be authenticated: ${unsure.reason}` };
      const why = authFailure(f);
      if (!why) return null;
      // A lookup that failed for now, where its answer could have changed the verdict, proves
      // nothing either way: a person decides, nobody is refused for it.
      if (unsure) return { action: 'hold', reason: `${why}, but ${unsure.reason}` };
      return f.list.authPolicy === 'reject' ? { action: 'reject', reason: why, smtpStatus: '5.7.26' } : { action: 'hold', reason: why };
    },
  },
  {
    // The spam scanner's score against the list's thresholds. Before the allowlist: an allowed
    // address is easily forged, and spam under it must not reach the members.
    name: 'spam',
    check: (f) => {
      const { spam } = f;
      if (!spam) return null;
      const { spamRejectScore: reject, spamHoldScore: hold } = f.list;
      if (reject !== null && spam.score >= reject) return { action: 'reject', reason: spamReason(spam, reject) };
      if (hold !== null && spam.score >= hold) return { action: 'hold', reason: spamReason(spam, hold) };
      return null;
    },
  },
  {
    // Mail a program sent: auto-replies, vacation notices, bulk mail. Distributed, it would answer
    // every member's auto-responder in turn (a mail loop); held on every list, allowlist or not,
    // so that a person decides.
    name: 'automatic',
    check: (f) => {
      const mark = markOf(f);
      return mark ? { action: 'hold', reason: `the message was sent by a program (${mark.evidence}); automatic mail is never distributed without a moderator` } : null;
    },
  },
  {
    name: 'size',
    check: (f) =>
      f.list.maxMessageSize > 0 && f.message.size > f.list.maxMessageSize
        ? { action: 'hold', reason: `the message is ${f.message.size} bytes, more than the list's limit of ${f.list.maxMessageSize}` }
        : null,
  },
  {
    // "unsubscribe" sent to the whole list instead of the -request address.
    name: 'administrivia',
    check: (f) => (COMMAND.test(f.message.subject) ? { action: 'hold', reason: 'the subject looks like a command for the -request address' } : null),
  },
  {
    name: 'allowed',
    check: (f) => (firstLive(f)?.kind === 'allow' ? { action: 'accept', reason: `the sender ${f.sender.email} is on the allowlist` } : null),
  },
  {
    name: 'moderated',
    check: (f) => (f.list.postPolicy === 'moderated' ? { action: 'hold', reason: 'the list is moderated: every post is approved by a moderator' } : null),
  },
  {
    name: 'members-only',
    check: (f) =>
      f.list.postPolicy === 'members' && !isMember(f)
        ? { action: 'hold', reason: `the sender ${f.sender.email || '(unknown)'} is not a member of the list` }
        : null,
  },
];

export function decide(f: PostFacts, rules: readonly Rule[] = RULES): Decision {
  for (const rule of rules) {
    const d = rule.check(f);
    if (d) return { ...d, rule: rule.name };
  }
  return { action: 'accept', rule: 'default', reason: 'the post meets the list policy' };
}

