/*
 * Joining and leaving a list through its addresses and links: double opt-in by mail or by link, with the list's
 * subscribe policy (open and confirm: the address confirms; approve: the address confirms, then an
 * owner approves). Every request made by mail or on the web is confirmed by the address, whatever
 * the policy: a From line and a form field can name anyone, and "open" means that no owner has to
 * approve, not that nobody has to confirm. Only an administrator's add takes effect at once, and a
 * logged-in person's subscription of one of their verified addresses (subscribeVerifiedAddress).
 * Nothing here ever tells a requester whether an address is subscribed: the same answer and the
 * same mail go out either way, and only the mailbox owner can act on it.
 */

import crypto from 'node:crypto';
import type pg from 'pg';
import { hashToken } from '../auth/credentials.ts';
import { Conflict, InvalidInput, NotFound } from '../errors.ts';
import { recordAudit } from '../db/audit.ts';
import { getListById, keepList, type ListRow } from '../db/lists.ts';
import { addMember, findMember, findMemberByToken, reenableMember, removeMember, unsubscribeByToken, type AddOutcome, type MemberRow } from '../db/members.ts';
import type { DeliveryMode } from '../list-policies.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { allowHit } from '../db/rate-limits.ts';
import {
  awaitsApproval, insertRequest, requestById, requestByToken, requestForConfirmation, requestsAwaitingApproval, setRequestState,
  type RequestAction, type SubscriptionRequestRow,
} from '../db/subscription-requests.ts';
import { mailboxKey, normalizeEmail, roleAddress } from '../mail/address.ts';
import { confirmationText, goodbye, welcome } from './member-notices.ts';
import { noticeToOwners, sendNotice } from './notices.ts';
import type { CoreSettings } from './settings.ts';
import { mayMailStranger, ownKey, type Requester } from './stranger-mail.ts';

export interface RequestOptions {
  name?: string;
  mode?: DeliveryMode;
  via: 'web' | 'mail' | 'admin';
  /**
   * `itself` for mail whose From is proven (provesFrom()): its limits and daily budget are apart
   * from the ones strangers can spend in the address's name (stranger-mail.ts). A stranger's by default.
   */
  by?: Requester;
  /** PUBLIC_URL (the base of the links put in mail) and how long a confirmation link lasts */
  settings: Pick<CoreSettings, 'publicUrl' | 'confirmTokenHours'>;
}

/** What the requester may be told. `pending`: a confirmation mail went to the address (or would have). */
export type RequestOutcome = 'pending' | 'subscribed';

// A stranger can make us write to an address: a few confirmations per address and list an hour,
// and a few more per address across the site a day. Per list alone, one mail to the -subscribe
// addresses of 40 lists, sent three times, queued 100 confirmations for one address in a minute.
// The address's own authenticated requests count apart (ownKey()): a stranger who spends these
// limits in its name does not keep its owner from joining.
const PER_ADDRESS_PER_HOUR = 3;
const PER_ADDRESS_PER_DAY = 10;

export async function requestSubscription(pool: pg.Pool, list: ListRow, email: string, opts: RequestOptions): Promise<RequestOutcome> {
  const address = checkedEmail(email);
  const mode = opts.mode ?? 'each';
  if (opts.via === 'admin') {
    await withTransaction(pool, async (tx) => {
      const outcome = await addMember(tx, list.id, address, mode, opts.name ?? null);
      if (outcome === 'added' || outcome === 'reactivated') await welcome(tx, list, address, opts.settings.publicUrl);
    });
    return 'subscribed';
  }
  await startRequest(pool, list, address, 'subscribe', opts);
  return 'pending';
}

/**
 * A subscription asked for on the web (this form, or an owner's "send a confirmation request"):
 * always double opt-in. A list whose policy is "open" takes members without an owner's approval,
 * but an address typed into a web form is still confirmed by its owner first; otherwise the form
 * would subscribe strangers' addresses at will.
 */
export async function requestWebSubscription(pool: pg.Pool, list: ListRow, email: string, opts: { name?: string; mode: DeliveryMode; settings: RequestOptions['settings'] }): Promise<void> {
  const policy = list.subscribe_policy === 'open' ? 'confirm' : list.subscribe_policy;
  await requestSubscription(pool, { ...list, subscribe_policy: policy }, email, { ...opts, via: 'web' });
}

export async function requestUnsubscription(pool: pg.Pool, list: ListRow, email: string, opts: RequestOptions): Promise<RequestOutcome> {
  const address = checkedEmail(email);
  await startRequest(pool, list, address, 'unsubscribe', opts);
  return 'pending';
}

async function startRequest(pool: pg.Pool, list: ListRow, email: string, action: RequestAction, opts: RequestOptions) {
  const mailbox = mailboxKey(email);
  const by = opts.via === 'mail' ? opts.by ?? 'stranger' : 'stranger';
  if (!(await allowHit(pool, ownKey(`confirm-mail:${list.id}:${mailbox}`, by), PER_ADDRESS_PER_HOUR, 3600))) return;
  if (!(await allowHit(pool, ownKey(`confirm-mail:site:${mailbox}`, by), PER_ADDRESS_PER_DAY, 86_400))) return;
  if (!(await mayMailStranger(pool, email, by))) return;
  const token = crypto.randomBytes(16).toString('hex');
  const { publicUrl, confirmTokenHours } = opts.settings;
  await withTransaction(pool, async (tx) => {
    await insertRequest(tx, {
      listId: list.id, email, name: opts.name ?? null, mode: opts.mode ?? 'each', action, via: opts.via,
      tokenHash: hashToken(token), state: 'confirm', expiresInHours: confirmTokenHours,
    });
    await sendNotice(tx, {
      to: email,
      list,
      subject: `confirm ${token}`,
      replyTo: roleAddress(list.address, 'confirm', token),
      text: await confirmationText(tx, list, { email, action, token, publicUrl, hours: confirmTokenHours }),
    });
  });
}

export interface ConfirmResult {
  action: RequestAction;
  /** done: the change is made; approval: an owner has to approve the subscription now */
  state: 'done' | 'approval';
  list: ListRow;
  email: string;
}

/**
 * Confirms a request by its token (a reply to LIST-confirm+TOKEN@ or the web link). Idempotent. A
 * member who joins or leaves by it is audited (self.subscribe, self.unsubscribe, the address as
 * the actor, `confirmed` with the request's id and how it was asked: mail or web); a confirmation
 * that changes nothing (already a member, already gone) records nothing.
 */
export async function confirm(pool: pg.Pool, token: string, settings: Pick<CoreSettings, 'publicUrl'>): Promise<ConfirmResult> {
  if (!/^[a-f0-9]{32}$/i.test(token)) throw new NotFound('this confirmation link is not valid', 'unknown_token');
  const tokenHash = hashToken(token.toLowerCase());
  return withTransaction(pool, async (tx) => {
    // The list before the request, in the order a deletion of the list locks them (keepList).
    const peek = await requestByToken(tx, tokenHash);
    const req = peek && (await keepList(tx, peek.list_id)) ? await requestForConfirmation(tx, tokenHash) : null;
    if (!req) throw new NotFound('this confirmation link is not valid, or was already used long ago', 'unknown_token');
    const list = await getListById(tx, req.list_id);
    if (req.state === 'done' || req.state === 'approval') return { action: req.action, state: req.state, list, email: req.email };
    if (req.state === 'rejected') throw new Conflict('this request was declined by the list owner', 'request_rejected');
    if (req.expired) throw new InvalidInput('this confirmation link has expired: please ask again', 'token_expired');
    const confirmed = { request: req.id, via: req.via, confirmed: true };
    if (req.action === 'unsubscribe') {
      if (await removeMember(tx, list.id, req.email)) {
        await goodbye(tx, list, req.email, settings.publicUrl);
        await recordAudit(tx, { actor: req.email, action: 'self.unsubscribe', list, target: req.email, detail: confirmed });
      }
      await setRequestState(tx, req.id, 'done', null);
      return { action: req.action, state: 'done', list, email: req.email };
    }
    if (list.subscribe_policy === 'approve') {
      // A second confirmed request for an address already waiting is queued, but not told again.
      const told = await awaitsApproval(tx, list.id, req.email);
      await setRequestState(tx, req.id, 'approval', null);
      if (!told) await askOwners(tx, list, req.email);
      return { action: req.action, state: 'approval', list, email: req.email };
    }
    if ((await subscribeNow(tx, list, req, settings.publicUrl)) !== 'unchanged') {
      await recordAudit(tx, { actor: req.email, action: 'self.subscribe', list, target: req.email, detail: { ...confirmed, mode: req.mode } });
    }
    await setRequestState(tx, req.id, 'done', null);
    return { action: req.action, state: 'done', list, email: req.email };
  });
}

/**
 * A logged-in person subscribing one of their verified addresses (the account page's proof that
 * it is theirs stands for the confirmation mail): subscribed at once ('subscribed', or
 * 'unchanged' when it already was), or, on a list whose policy is "approve", a request waiting
 * for an owner ('approval') as after a confirmed one. Audited as self.subscribe under `actor`.
 */
export async function subscribeVerifiedAddress(pool: pg.Pool, list: ListRow, email: string, opts: { name?: string; mode: DeliveryMode; actor: string; settings: Pick<CoreSettings, 'publicUrl' | 'confirmTokenHours'> }): Promise<'subscribed' | 'unchanged' | 'approval'> {
  const address = checkedEmail(email);
  return withTransaction(pool, async (tx) => {
    // Already on the list: nothing to ask the owners (a mode change is the account page's).
    if ((await findMember(tx, list.id, address))?.status === 'active') return 'unchanged';
    const state = list.subscribe_policy === 'approve' ? 'approval' : 'done';
    // Asked again (a second click, a reload) while the first ask waits: the owners were told once.
    if (state === 'approval' && (await awaitsApproval(tx, list.id, address))) return 'approval';
    // A request row all the same: the owners' queue and the history read it, as for any request.
    const req = await insertRequest(tx, {
      listId: list.id, email: address, name: opts.name ?? null, mode: opts.mode, action: 'subscribe', via: 'web',
      tokenHash: hashToken(crypto.randomBytes(16).toString('hex')), state, expiresInHours: opts.settings.confirmTokenHours,
    });
    await recordAudit(tx, { actor: opts.actor, action: 'self.subscribe', list, target: address, detail: { request: req.id, mode: opts.mode, verified: true } });
    if (state === 'approval') {
      await askOwners(tx, list, address);
      return 'approval';
    }
    return (await subscribeNow(tx, list, req, opts.settings.publicUrl)) === 'unchanged' ? 'unchanged' : 'subscribed';
  });
}

async function askOwners(tx: Queryable, list: ListRow, email: string) {
  await noticeToOwners(tx, list, `Subscription request for ${list.address} needs approval`,
    `${email} asked to join ${list.address} and confirmed the address.\n\nApprove or decline it in the list's admin pages.\n`);
}

/** Subscription requests waiting for an owner. */
export async function pendingApprovals(db: Queryable, listId: number): Promise<SubscriptionRequestRow[]> {
  return requestsAwaitingApproval(db, listId);
}

/** An owner's decision on a confirmed subscription request. */
/** An owner's or moderator's decision on a request awaiting approval, audited in its transaction; `actor` is their account. */
export async function decideSubscription(pool: pg.Pool, requestId: number, decision: 'approve' | 'reject', actor: string, settings: Pick<CoreSettings, 'publicUrl'>): Promise<void> {
  await withTransaction(pool, async (tx) => {
    // The list before the request, in the order a deletion of the list locks them (keepList).
    const peek = await requestById(tx, requestId);
    const req = peek && (await keepList(tx, peek.list_id)) ? await requestById(tx, requestId, { forUpdate: true }) : null;
    if (!req) throw new NotFound(`no subscription request ${requestId}`, 'no_such_request');
    if (req.state !== 'approval') throw new Conflict(`subscription request ${requestId} is not waiting for approval (it is ${req.state})`, 'already_decided');
    const list = await getListById(tx, req.list_id);
    if (decision === 'approve') {
      await subscribeNow(tx, list, req, settings.publicUrl);
      await setRequestState(tx, req.id, 'done', actor);
    } else {
      await setRequestState(tx, req.id, 'rejected', actor);
      await sendNotice(tx, { to: req.email, list, subject: `Your request to join ${list.address}`, text: `Your request to join ${list.address} was declined by the list owner.\n` });
    }
    await recordAudit(tx, { actor, action: `subscription.${decision}`, list, target: req.email, detail: { request: req.id, mode: req.mode } });
  });
}

/** What a member's link did: the member as it is now, its list, and whether anything changed. */
export interface LinkResult {
  member: MemberRow;
  list: ListRow;
  changed: boolean;
}

/**
 * A member leaving by the link in their copies (`POST /u/TOKEN`, RFC 8058 one-click, a mailbox
 * provider's button): at once, audited as self.unsubscribe in the change's transaction, the
 * member's address as the actor (the token in their mail is their proof) and `via: one-click`.
 * A second post finds the member gone already and records nothing. Null for a token of nobody,
 * or of a list being deleted.
 */
export async function unsubscribeByLink(pool: pg.Pool, token: string): Promise<LinkResult | null> {
  return withTransaction(pool, async (tx) => {
    // The list first, in the order its deletion locks them (keepList), then the member.
    const peek = await findMemberByToken(tx, token);
    if (!peek || !(await keepList(tx, peek.list_id))) return null;
    const left = await unsubscribeByToken(tx, token);
    const member = left ?? (await findMemberByToken(tx, token));
    if (!member) return null;
    const list = await getListById(tx, member.list_id);
    if (left) await recordAudit(tx, { actor: member.email, action: 'self.unsubscribe', list, target: member.email, detail: { via: 'one-click' } });
    return { member, list, changed: left !== null };
  });
}

/**
 * A member disabled by bounces turning delivery back on from their link's page (`POST
 * /u/TOKEN/reenable`): audited as self.reenable (`via: link`) when the member was disabled or had
 * a bounce score to clear (an active member with none: nothing changed, nothing recorded); a
 * member who left is not brought back. Null for a token of nobody.
 */
export async function reenableByLink(pool: pg.Pool, token: string): Promise<LinkResult | null> {
  return withTransaction(pool, async (tx) => {
    const member = await findMemberByToken(tx, token);
    if (!member || !(await keepList(tx, member.list_id))) return null;
    const list = await getListById(tx, member.list_id);
    if (member.status === 'unsubscribed') return { member, list, changed: false };
    const changed = (member.status === 'disabled' || member.bounce_score > 0) && (await reenableMember(tx, list.id, member.email));
    if (changed) await recordAudit(tx, { actor: member.email, action: 'self.reenable', list, target: member.email, detail: { via: 'link' } });
    return { member, list, changed };
  });
}

async function subscribeNow(tx: Queryable, list: ListRow, req: SubscriptionRequestRow, publicUrl: string): Promise<AddOutcome> {
  const outcome = await addMember(tx, list.id, req.email, req.mode, req.name);
  // A member disabled by bounces who subscribes again gets delivery back with a clean score.
  await reenableMember(tx, list.id, req.email);
  // Welcomed when it joins (or comes back), as addMembers and an admin's add welcome: not for a
  // mode changed on a row that was already active, such as one an admin's add made a moment ago.
  if (outcome === 'added' || outcome === 'reactivated') await welcome(tx, list, req.email, publicUrl);
  return outcome;
}

function checkedEmail(email: string): string {
  const address = normalizeEmail(email);
  if (!address) throw new InvalidInput(`"${email}" is not an e-mail address`, 'invalid_email');
  return address;
}
