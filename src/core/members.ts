/*
 * An administrator changing a list's members, from the panel and the command line alike: adding
 * (at once, no confirmation), inviting (a confirmation request), removing, re-enabling delivery,
 * changing the delivery mode. Each change is audited; `actor` is the panel's account or
 * `cli:USER`. Addresses are already checked by the caller.
 */

import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import { getListById, type ListRow } from '../db/lists.ts';
import { activeMembers, addMember, findMember, findMemberById, moveMemberAddress, pauseMember, reenableMember, removeMember, setDigestFormat, setMemberMode, type AddOutcome } from '../db/members.ts';
import type { DeliveryMode, DigestFormat } from '../list-policies.ts';
import { removeMembers } from '../db/member-admin.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { countSlidingHits, lockSlidingCount } from '../db/rate-limits.ts';
import { Conflict, InvalidInput, NotFound } from '../errors.ts';
import type { CoreSettings } from './settings.ts';
import { welcome } from './member-notices.ts';
import { requestWebSubscription } from './subscriptions.ts';
import { resumeDay } from './vacation.ts';

export interface MemberEntry {
  email: string;
  name?: string | null;
  /** the entry's own delivery mode, else the one given for all */
  mode?: DeliveryMode | null;
}

/**
 * The most addresses an owner adds to one list (the panel, the API) in any 24 hours
 * (OWNER_ADDS_PER_DAY, a sliding window): each may be mailed (a welcome, an invitation) and
 * fills the roster, so a hijacked owner account makes the site mail no more strangers than that,
 * not even around midnight of a fixed day. The CLI passes none.
 */
export interface OwnerAddCap {
  perDay: number;
}

/** What a capped add or invitation did: those after the cap was reached are refused, not tried. */
export interface CapReport {
  perDay: number;
  /** addresses counted in the last 24 hours, this request's included */
  used: number;
  /** when enough of them are 24 hours old that more can be added */
  endsAt: Date;
  /** seconds until then, by the database's clock (Retry-After) */
  secondsLeft: number;
}

export interface AddResult {
  done: { email: string; outcome: AddOutcome }[];
  /** the entries from the first one the cap refused to the end, in their order (none without a cap) */
  refused: MemberEntry[];
  cap: CapReport | null;
}

const DAY_SECONDS = 86_400;
const capKey = (list: ListRow) => `owner-adds:list:${list.id}`;

/**
 * Adds members at once, without confirmation, in one transaction with the audit entry: each new
 * or returning member is welcomed when the list welcomes. With a cap, only addresses that become
 * active here count (a member already active is unchanged or updated, and free: a request sent
 * again adds only what it could not), the allowed first part of `entries` is added and the rest
 * is refused whole, with its own audit entry; the count is taken in the same transaction.
 */
export async function addMembers(pool: pg.Pool, list: ListRow, entries: MemberEntry[], opts: { actor: string; mode: DeliveryMode; until?: Date | null; settings: Pick<CoreSettings, 'publicUrl'>; cap?: OwnerAddCap }): Promise<AddResult> {
  if (entries.length === 0) return { done: [], refused: [], cap: null };
  if (opts.until && entries.some((e) => (e.mode ?? opts.mode) !== 'nomail')) throw new InvalidInput('An end date goes only with the "nomail" mode.');
  return withTransaction(pool, async (tx) => {
    // First, so that two owners' adds to one list wait for each other here.
    const used = opts.cap ? await lockSlidingCount(tx, capKey(list), DAY_SECONDS) : 0;
    let left = opts.cap ? Math.max(0, opts.cap.perDay - used) : Infinity;
    const active = opts.cap ? new Set(await activeMembers(tx, list.id, entries.map((e) => e.email))) : new Set<string>();
    const done: { email: string; outcome: AddOutcome }[] = [];
    let counted = 0;
    for (const e of entries) {
      if (left === 0 && !active.has(e.email)) break;
      // A vacation resumes the mode an active member had before it, so that is read first.
      // (A member already paused goes back to the mode it had before that pause.)
      const before = opts.until ? await findMember(tx, list.id, e.email) : null;
      const resumeMode = before?.status !== 'active' ? null : before.mode !== 'nomail' ? before.mode : before.mode_before_nomail;
      let outcome = await addMember(tx, list.id, e.email, e.mode ?? opts.mode, e.name ?? null);
      if (opts.until) {
        const paused = await pauseMember(tx, list.id, e.email, opts.until, resumeMode);
        if (paused && outcome === 'unchanged') outcome = 'updated';
      }
      if (outcome === 'added' || outcome === 'reactivated') {
        await welcome(tx, list, e.email, opts.settings.publicUrl);
        if (opts.cap) {
          counted++;
          left--;
          active.add(e.email);
        }
      }
      done.push({ email: e.email, outcome });
    }
    const refused = entries.slice(done.length);
    const room = opts.cap ? await countSlidingHits(tx, capKey(list), counted, opts.cap.perDay, DAY_SECONDS) : null;
    const cap = opts.cap && room ? { perDay: opts.cap.perDay, used: used + counted, ...room } : null;
    if (done.length > 0) {
      const detail = entriesDetail(entries.slice(0, done.length), opts.mode);
      await recordAudit(tx, { actor: opts.actor, action: 'member.add', list, ...detail, detail: { ...detail.detail, ...(opts.until ? { until: resumeDay(opts.until) } : {}) } });
    }
    if (cap && refused.length > 0) await auditRefusal(tx, list, 'member.add', refused, cap, opts.actor);
    return { done, refused, cap };
  });
}

/**
 * Sends each address a confirmation request, as the web form does: nobody is added until the
 * address agrees. Each request is its own transaction (with its rate limit); the audit entry
 * follows them. With a cap every address counts (each may be mailed), taken before the first
 * mail: the allowed first part is invited, the rest refused.
 */
export async function inviteMembers(pool: pg.Pool, list: ListRow, entries: MemberEntry[], opts: { actor: string; mode: DeliveryMode; settings: Pick<CoreSettings, 'publicUrl' | 'confirmTokenHours'>; cap?: OwnerAddCap }): Promise<{ invited: MemberEntry[]; refused: MemberEntry[]; cap: CapReport | null }> {
  if (entries.length === 0) return { invited: [], refused: [], cap: null };
  const { allowed, cap } = !opts.cap ? { allowed: entries.length, cap: null } : await withTransaction(pool, async (tx) => {
    const used = await lockSlidingCount(tx, capKey(list), DAY_SECONDS);
    const allowed = Math.min(entries.length, Math.max(0, opts.cap!.perDay - used));
    const room = await countSlidingHits(tx, capKey(list), allowed, opts.cap!.perDay, DAY_SECONDS);
    const cap: CapReport = { perDay: opts.cap!.perDay, used: used + allowed, ...room };
    if (allowed < entries.length) await auditRefusal(tx, list, 'member.invite', entries.slice(allowed), cap, opts.actor);
    return { allowed, cap };
  });
  // Counted before the mails go: one that fails leaves its count taken, never a mail uncounted.
  const invited = entries.slice(0, allowed);
  for (const e of invited) await requestWebSubscription(pool, list, e.email, { name: e.name ?? undefined, mode: e.mode ?? opts.mode, settings: opts.settings });
  if (invited.length > 0) await recordAudit(pool, { actor: opts.actor, action: 'member.invite', list, ...entriesDetail(invited, opts.mode) });
  return { invited, refused: entries.slice(allowed), cap };
}

/** The audit entry of addresses an owner's cap refused: how many, the first of them, until when. */
async function auditRefusal(tx: Queryable, list: ListRow, what: 'member.add' | 'member.invite', refused: MemberEntry[], cap: CapReport, actor: string) {
  await recordAudit(tx, {
    actor, action: `${what}.refused`, list, target: refused.length === 1 ? refused[0].email : null,
    detail: { refused: refused.length, per_day: cap.perDay, until: cap.endsAt.toISOString(), addresses: refused.slice(0, 20).map((e) => e.email) },
  });
}

/** The one sentence that says what a cap did: how many were taken, how many refused, when more can be. */
export function capRefusal(list: ListRow, r: { taken: number; added: number; refused: MemberEntry[]; cap: CapReport; invite?: boolean }): string {
  const verb = r.invite ? 'invited' : 'added';
  const given = r.taken + r.refused.length;
  const taken = r.taken === 0 ? 'none was taken'
    : `the first ${r.taken} ${r.taken === 1 ? 'was' : 'were'} ${r.invite ? 'invited' : `taken (${r.added} added or subscribed again, the others already members)`}`;
  return `${list.address} takes at most ${r.cap.perDay} new addresses a day from its owners (OWNER_ADDS_PER_DAY), and that is reached: ` +
    `of the ${given} address${given === 1 ? '' : 'es'} given, ${taken}; ${r.refused.length} refused, from ${r.refused[0].email} on. ` +
    `More can be ${verb} from ${r.cap.endsAt.toISOString().slice(0, 16).replace('T', ' ')} UTC: send the refused ones then` +
    `${r.invite ? '' : ' (or the same request again: those taken are left unchanged)'}. The operator's command line (listkeeper subscribe) has no such limit.`;
}

function entriesDetail(entries: MemberEntry[], mode: DeliveryMode) {
  return {
    target: entries.length === 1 ? entries[0].email : null,
    detail: { count: entries.length, mode, ...(entries.length <= 20 ? { addresses: entries.map((e) => e.email) } : {}) },
  };
}

/** A mode; `until` (with `nomail` only) makes it a vacation that ends that day. */
export type MemberChange = 'remove' | 'reenable' | { mode: DeliveryMode; until?: Date | null };

/**
 * Removes members (they become unsubscribed), re-enables their delivery or sets their mode, in
 * one transaction with the audit entry; for each address in turn, whether it changed.
 */
export async function changeMembers(pool: pg.Pool, list: ListRow, emails: string[], change: MemberChange, opts: { actor: string }): Promise<boolean[]> {
  if (emails.length === 0) return [];
  if (typeof change === 'object' && change.until && change.mode !== 'nomail') throw new InvalidInput('An end date goes only with the "nomail" mode.');
  return withTransaction(pool, async (tx) => {
    const changed: boolean[] = [];
    if (change === 'remove') {
      // One statement however many are selected; an address named twice changed only once.
      const removed = new Set(await removeMembers(tx, list.id, emails));
      for (const email of emails) changed.push(removed.delete(email));
    } else {
      for (const email of emails) {
        changed.push(change === 'reenable' ? await reenableMember(tx, list.id, email)
          : change.until ? await pauseMember(tx, list.id, email, change.until)
          : await setMemberMode(tx, list.id, email, change.mode));
      }
    }
    await recordAudit(tx, {
      actor: opts.actor, action: `member.${typeof change === 'string' ? change : 'mode'}`, list, target: emails.length === 1 ? emails[0] : null,
      detail: { addresses: emails.slice(0, 100), count: emails.length, changed: changed.filter(Boolean).length, ...(typeof change === 'object' ? { mode: change.mode, ...(change.until ? { until: resumeDay(change.until) } : {}) } : {}) },
    });
    return changed;
  });
}

export type OwnChange = { mode: DeliveryMode; digestFormat?: DigestFormat | null; until?: Date | null } | 'unsubscribe' | 'reenable';

/** A logged-in person: their primary address (the audit's actor) and all their verified ones. */
export interface SelfRef {
  email: string;
  emails: string[];
}

/**
 * A member changing their own subscription from their account page: the delivery mode (and digest
 * format), leaving, or turning delivery back on after bounces. Only a subscription of one of
 * `who`'s verified addresses; audited as self.* in the change's transaction. The list, for the answer.
 */
export async function changeOwnSubscription(pool: pg.Pool, memberId: number, who: SelfRef, change: OwnChange): Promise<ListRow> {
  const email = who.email;
  return withTransaction(pool, async (tx) => {
    const member = await findMemberById(tx, memberId);
    // Someone else's subscription is answered as one that does not exist: no way to learn whose an id is.
    if (!member || !who.emails.includes(member.email)) throw new NotFound('No such subscription.');
    const list = await getListById(tx, member.list_id);
    // A subscription left is kept for its history; its mode is no longer the member's to set
    // (a pause set on it would outlive a later subscription).
    if (member.status === 'unsubscribed' && change !== 'unsubscribe') throw new InvalidInput('You have left this list: subscribe again to receive its mail.');
    if (change === 'unsubscribe') {
      await removeMember(tx, list.id, member.email);
      await recordAudit(tx, { actor: email, action: 'self.unsubscribe', list, target: member.email });
    } else if (change === 'reenable') {
      if (member.status !== 'disabled') throw new InvalidInput('This subscription is not disabled.');
      await reenableMember(tx, list.id, member.email);
      await recordAudit(tx, { actor: email, action: 'self.reenable', list, target: member.email });
    } else {
      if (change.until && change.mode !== 'nomail') throw new InvalidInput('An end date goes only with "no mail".');
      if (change.until) await pauseMember(tx, list.id, member.email, change.until);
      else await setMemberMode(tx, list.id, member.email, change.mode);
      if (change.digestFormat) await setDigestFormat(tx, list.id, member.email, change.digestFormat);
      await recordAudit(tx, { actor: email, action: 'self.mode', list, target: member.email, detail: { mode: change.mode, ...(change.until ? { until: resumeDay(change.until) } : {}), ...(change.digestFormat ? { digest_format: change.digestFormat } : {}) } });
    }
    return list;
  });
}

/**
 * Switches one of a member's own subscriptions to another of their verified addresses (the
 * Mailman 3 "subscribe with a different address" of a user): same member row, mode and history.
 * Refused when that address is already on the list. Audited as self.address. The list, for the answer.
 */
export async function switchOwnSubscription(pool: pg.Pool, memberId: number, who: SelfRef, to: string): Promise<ListRow> {
  return withTransaction(pool, async (tx) => {
    const member = await findMemberById(tx, memberId);
    if (!member || member.status === 'unsubscribed' || !who.emails.includes(member.email)) throw new NotFound('No such subscription.');
    if (!who.emails.includes(to)) throw new InvalidInput(`${to} is not one of your verified addresses.`, 'not_verified');
    const list = await getListById(tx, member.list_id);
    if (to === member.email) throw new InvalidInput(`${list.address} already sends to ${to}.`, 'same_address');
    const other = await findMember(tx, list.id, to);
    if (other && other.status !== 'unsubscribed') {
      throw new Conflict(`${to} is already subscribed to ${list.address}: leave one of the two subscriptions first, then switch.`, 'already_subscribed');
    }
    await moveMemberAddress(tx, member.id, list.id, to);
    await recordAudit(tx, { actor: who.email, action: 'self.address', list, target: to, detail: { from: member.email } });
    return list;
  });
}
