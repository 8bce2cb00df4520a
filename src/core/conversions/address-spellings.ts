/*
 * address-spellings: addresses stored before sql/0074 with their domain in A-labels
 * (`bob@xn--bcher-kva.example`) get the spelling normalizeEmail gives every mailbox now, the
 * U-label one (`bob@bücher.example`), everywhere an address is a member, a request, a role, a
 * sender rule, an account or one of its addresses, a login link, a held post's sender, a
 * bounce's recipient or a list's Reply-To address (sql/0077).
 *
 * Where both spellings are stored for one thing, the two rows become one, and the merge is written
 * in the audit log (actor `conversion:address-spellings`, with both rows as they were):
 *
 * - a list's two members: the stronger subscription stays (active, then disabled by bounces, then
 *   pending, then unsubscribed), the older of two equals; the other's bounces move to it and its
 *   name fills a missing one. Nobody who was subscribed under either spelling is left out;
 * - a list's two sender rules: of one kind, the longer-lasting stays (no end date first); of two
 *   kinds, the later decision, as setting a rule on an address again replaces the earlier one;
 * - a role both spellings had on a list: one stays;
 * - two accounts: the older stays, and takes the other's addresses, sessions, links in flight,
 *   site administration, and password if it had none.
 *
 * A spelling that is no valid A-label (`xn--zz`, or one that does not read back as itself) names
 * no domain normalizeEmail takes: it is left as it is, and reported.
 *
 * The cursor counts batches: each batch looks for up to `limit` spellings still stored, and what
 * it handles is not found again (every statement finds rows by the exact spelling the search
 * found); the job is done when a search finds none. Its report is the address_spellings table.
 */

import { accountsOwning, mergeAccount, respellAccountAddresses } from '../../db/account-merge.ts';
import {
  countSpellingsToConvert, membersSpelled, mergeMember, mergeRule, recordSpelling, respell, respellMember, respellRoles, respellRule, rulesSpelled, spellingsToConvert,
  type SpelledMember, type SpelledRule, type SpellingTable,
} from '../../db/address-spellings.ts';
import { recordAudit } from '../../db/audit.ts';
import { isRowFailure } from '../../db/pg-errors.ts';
import type { Queryable } from '../../db/pool.ts';
import { normalizeEmail } from '../../mail/address.ts';

export const ACTOR = 'conversion:address-spellings';

export const addressSpellings = {
  name: 'address-spellings',
  describe: 'one spelling per mailbox: addresses stored with A-labels (xn--) get their U-labels, duplicates merged',
  estimate: (db: Queryable) => countSpellingsToConvert(db),
  // The cursor counts batches (above): the next one is there while a spelling is left.
  nextKey: async (db: Queryable, afterKey: number) => ((await spellingsToConvert(db, 1)).length > 0 ? afterKey + 1 : null),
  async batch(tx: Queryable, afterKey: number, limit: number) {
    const found = await spellingsToConvert(tx, limit);
    let changed = 0;
    const failed = new Set<string>();
    for (const { tbl, email } of found) {
      const canonical = canonicalSpelling(email);
      if (canonical === null) {
        await recordSpelling(tx, tbl, email, null, 'not a valid A-label: left as it is', 0);
        continue;
      }
      // Each spelling under a savepoint: one that cannot be converted (a constraint the merge
      // trips on) is reported and left as it is, so that the next batch does not find it again.
      // Batches are found by search, not by key, and skipping a key (core/conversions.ts) would
      // skip nothing here.
      await tx.query('savepoint spelling');
      try {
        const { rows, outcome } = await HANDLERS[tbl](tx, email, canonical);
        await tx.query('release savepoint spelling');
        await recordSpelling(tx, tbl, email, canonical, outcome, rows);
        changed += rows;
      } catch (err) {
        // Only a failure that is the spelling's own (a value or constraint refused) is reported
        // and left; one that any spelling would meet (a lost connection, a table not there, two
        // spellings failing alike) fails the batch, to be tried again, and leaves nothing marked.
        const message = (err as Error)?.message ?? String(err);
        if (!isRowFailure(err) || failed.has(message)) throw err;
        failed.add(message);
        await tx.query('rollback to savepoint spelling');
        await recordSpelling(tx, tbl, email, null, `not converted: ${message}`, 0);
      }
    }
    return { lastKey: found.length > 0 ? afterKey + 1 : null, seen: found.length, changed };
  },
};

/** An address, or a sender rule's '@domain', as normalizeEmail spells it; null when it is none or already is. */
export function canonicalSpelling(stored: string): string | null {
  const canonical = stored.startsWith('@') ? normalizeEmail(`x${stored}`)?.slice(1) ?? null : normalizeEmail(stored);
  return canonical === stored ? null : canonical;
}

type Handler = (tx: Queryable, spelling: string, canonical: string) => Promise<{ rows: number; outcome: string }>;

const respelled = (rows: number) => ({ rows, outcome: `respelled (${rows} row${rows === 1 ? '' : 's'})` });

const HANDLERS: Record<SpellingTable, Handler> = {
  members: convertMembers,
  subscription_requests: async (tx, s, c) => respelled(await respell(tx, 'subscription_requests', s, c)),
  list_roles: convertRoles,
  sender_rules: convertRules,
  accounts: convertAccounts,
  login_tokens: async (tx, s, c) => respelled(await respell(tx, 'login_tokens', s, c)),
  held_messages: async (tx, s, c) => respelled(await respell(tx, 'held_messages', s, c)),
  bounces: async (tx, s, c) => respelled(await respell(tx, 'bounces', s, c)),
  lists: async (tx, s, c) => respelled(await respell(tx, 'lists', s, c)),
};

const STATUS_RANK: Record<SpelledMember['status'], number> = { active: 3, disabled: 2, pending: 1, unsubscribed: 0 };

/** Of one list's two rows of one mailbox, the one that stays: the stronger subscription, else the older. */
export function strongerMember<M extends Pick<SpelledMember, 'id' | 'status' | 'created_at'>>(a: M, b: M): M {
  const rank = STATUS_RANK[b.status] - STATUS_RANK[a.status];
  if (rank !== 0) return rank > 0 ? b : a;
  const age = a.created_at.getTime() - b.created_at.getTime();
  if (age !== 0) return age < 0 ? a : b;
  return a.id < b.id ? a : b;
}

/** Of one list's two sender rules for one sender, the one that stays. */
export function strongerRule<R extends Pick<SpelledRule, 'kind' | 'expires_at' | 'created_at'>>(a: R, b: R): R {
  if (a.kind !== b.kind) return a.created_at.getTime() >= b.created_at.getTime() ? a : b;
  const end = (r: R) => r.expires_at?.getTime() ?? Infinity;
  if (end(a) !== end(b)) return end(a) > end(b) ? a : b;
  return a.created_at.getTime() <= b.created_at.getTime() ? a : b;
}

const memberDetail = (m: SpelledMember) => ({ id: m.id, email: m.email, status: m.status, mode: m.mode, name: m.name, created_at: m.created_at.toISOString() });
const ruleDetail = (r: SpelledRule) => ({ email: r.email, kind: r.kind, expires: r.expires_at?.toISOString() ?? null, created_by: r.created_by, created_at: r.created_at.toISOString() });

async function convertMembers(tx: Queryable, spelling: string, canonical: string) {
  let rows = 0;
  let merged = 0;
  for (const group of byList(await membersSpelled(tx, spelling, canonical))) {
    const old = group.find((m) => m.email === spelling);
    if (!old) continue;
    const twin = group.find((m) => m.email === canonical);
    if (!twin) {
      await respellMember(tx, old.id, canonical);
      rows++;
      continue;
    }
    const keep = strongerMember(old, twin);
    const drop = keep === old ? twin : old;
    await mergeMember(tx, keep.id, drop.id, canonical);
    await recordAudit(tx, {
      actor: ACTOR, action: 'member.merge', list: { id: old.list_id, address: old.list_address }, target: canonical,
      detail: { kept: memberDetail(keep), removed: memberDetail(drop), why: 'two spellings of one address (A-labels and U-labels)' },
    });
    rows += 2;
    merged++;
  }
  return { rows, outcome: merged > 0 ? `respelled, ${merged} list${merged === 1 ? '' : 's'} had both spellings: merged (audit member.merge)` : 'respelled' };
}

async function convertRules(tx: Queryable, spelling: string, canonical: string) {
  let rows = 0;
  let merged = 0;
  for (const group of byList(await rulesSpelled(tx, spelling, canonical))) {
    const old = group.find((r) => r.email === spelling);
    if (!old) continue;
    const twin = group.find((r) => r.email === canonical);
    if (!twin) {
      await respellRule(tx, old.list_id, spelling, canonical);
      rows++;
      continue;
    }
    const keep = strongerRule(old, twin);
    const drop = keep === old ? twin : old;
    await mergeRule(tx, old.list_id, keep.email, drop.email, canonical);
    await recordAudit(tx, {
      actor: ACTOR, action: 'sender.merge', list: { id: old.list_id, address: old.list_address }, target: canonical,
      detail: { kept: ruleDetail(keep), removed: ruleDetail(drop), why: 'two spellings of one sender (A-labels and U-labels)' },
    });
    rows += 2;
    merged++;
  }
  return { rows, outcome: merged > 0 ? `respelled, ${merged} list${merged === 1 ? '' : 's'} had both spellings: merged (audit sender.merge)` : 'respelled' };
}

async function convertRoles(tx: Queryable, spelling: string, canonical: string) {
  const { respelled: n, merged } = await respellRoles(tx, spelling, canonical);
  for (const r of merged) {
    await recordAudit(tx, {
      actor: ACTOR, action: 'role.merge', list: { id: r.list_id, address: r.list_address }, target: canonical,
      detail: { role: r.role, removed: spelling, why: `${canonical} has the same role: two spellings of one address` },
    });
  }
  return { rows: n + merged.length, outcome: merged.length > 0 ? `respelled, ${merged.length} duplicate role${merged.length === 1 ? '' : 's'} removed (audit role.merge)` : 'respelled' };
}

async function convertAccounts(tx: Queryable, spelling: string, canonical: string) {
  const [keep, ...others] = await accountsOwning(tx, spelling, canonical);
  for (const other of others) {
    const addresses = await mergeAccount(tx, keep.id, other.id);
    await recordAudit(tx, {
      actor: ACTOR, action: 'account.merge', target: canonical,
      detail: {
        kept: { id: keep.id, email: keep.email, created_at: keep.created_at.toISOString() },
        removed: { id: other.id, email: other.email, created_at: other.created_at.toISOString(), site_admin: other.is_site_admin, password: other.has_password },
        addresses, why: 'two accounts for two spellings of one address (A-labels and U-labels)',
      },
    });
  }
  const rows = await respellAccountAddresses(tx, spelling, canonical);
  return { rows: rows + others.length, outcome: others.length > 0 ? `respelled, ${others.length + 1} accounts merged into #${keep.id} (audit account.merge)` : 'respelled' };
}

function byList<T extends { list_id: number }>(rows: T[]): T[][] {
  const groups = new Map<number, T[]>();
  for (const r of rows) groups.set(r.list_id, [...(groups.get(r.list_id) ?? []), r]);
  return [...groups.values()];
}
