/*
 * An administrator changing a list's members, from the panel and the command line alike: adding
 * (at once, no confirmation), inviting (a confirmation request), removing, re-enabling delivery,
 * changing the delivery mode. Each change is audited; `actor` is the panel's account or
 * `cli:USER`. Addresses are already checked by the caller.
 */

import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import { getListById, type ListRow } from '../db/lists.ts';
import { addMember, findMember, findMemberById, moveMemberAddress, pauseMember, reenableMember, removeMember, setDigestFormat, setMemberMode, type AddOutcome } from '../db/members.ts';
import type { DeliveryMode, DigestFormat } from '../list-policies.ts';
import { removeMembers } from '../db/member-admin.ts';
import { withTransaction } from '../db/pool.ts';
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
 * Adds members at once, in one transaction with the audit entry; each address with what happened
 * to it. A new (or returning) member is welcomed when the list welcomes (send_welcome), as after a
 * confirmed subscription.
 */
export async function addMembers(pool: pg.Pool, list: ListRow, entries: MemberEntry[], opts: { actor: string; mode: DeliveryMode; until?: Date | null; settings: Pick<CoreSettings, 'publicUrl'> }): Promise<{ email: string; outcome: AddOutcome }[]> {
  if (entries.length === 0) return [];
  if (opts.until && entries.some((e) => (e.mode ?? opts.mode) !== 'nomail')) throw new InvalidInput('An end date goes only with the "nomail" mode.');
  return withTransaction(pool, async (tx) => {
    const done: { email: string; outcome: AddOutcome }[] = [];
    for (const e of entries) {
      // A vacation resumes the mode an active member had before it, so that is read first.
      // (A member already paused goes back to the mode it had before that pause.)
      const before = opts.until ? await findMember(tx, list.id, e.email) : null;
      const resumeMode = before?.status !== 'active' ? null : before.mode !== 'nomail' ? before.mode : before.mode_before_nomail;
      let outcome = await addMember(tx, list.id, e.email, e.mode ?? opts.mode, e.name ?? null);
      if (opts.until) {
        const paused = await pauseMember(tx, list.id, e.email, opts.until, resumeMode);
        if (paused && outcome === 'unchanged') outcome = 'updated';
      }
      if (outcome === 'added' || outcome === 'reactivated') await welcome(tx, list, e.email, opts.settings.publicUrl);
      done.push({ email: e.email, outcome });
    }
    const detail = entriesDetail(entries, opts.mode);
    await recordAudit(tx, { actor: opts.actor, action: 'member.add', list, ...detail, detail: { ...detail.detail, ...(opts.until ? { until: resumeDay(opts.until) } : {}) } });
    return done;
  });
}

/**
 * Sends each address a confirmation request, as the web form does: nobody is added until the
 * address agrees. Each request is its own transaction (with its rate limit); the audit entry
 * follows them.
 */
export async function inviteMembers(pool: pg.Pool, list: ListRow, entries: MemberEntry[], opts: { actor: string; mode: DeliveryMode; settings: Pick<CoreSettings, 'publicUrl' | 'confirmTokenHours'> }): Promise<void> {
  if (entries.length === 0) return;
  for (const e of entries) await requestWebSubscription(pool, list, e.email, { name: e.name ?? undefined, mode: e.mode ?? opts.mode, settings: opts.settings });
  await recordAudit(pool, { actor: opts.actor, action: 'member.invite', list, ...entriesDetail(entries, opts.mode) });
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
