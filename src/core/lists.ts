/*
 * A list's life as its administrators change it, from the panel and the command line alike:
 * creating it, its settings, its owners and moderators, deleting it. Each change is written with
 * its audit entry in one transaction; `actor` is the panel's account or `cli:USER`.
 */

import crypto from 'node:crypto';
import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import { addListRole, countOwners, deleteListIn, deletionImpact, lockListRoles, removeListRole, updateCoreSettings, type CoreSettings, type DeletionImpact, type ListRole } from '../db/list-admin.ts';
import { createList as insertList, DELIVERY_SETTING_NAMES, getListById, updateDeliverySettings, type DeliverySettings, type ListRow, type NewList } from '../db/lists.ts';
import { withTransaction } from '../db/pool.ts';
import { Conflict, InvalidInput } from '../errors.ts';
import { listAddressProblem } from '../mail/address.ts';

export interface ListCreation extends Omit<NewList, 'name'> {
  /** defaults to the local part */
  name?: string;
}

/**
 * Why a list's name, description or subject prefix is refused: each is one line, and goes into
 * headers (the Subject, List-Id's phrase) and one-line fields. Headers encode or drop a line break
 * anyway; refused here, it is never stored to surprise a later use.
 */
export function oneLineProblem(v: string): string | null {
  return /[\x00-\x1f\x7f]/.test(v) ? 'one line, without control characters' : null;
}

/** Creates a list; an address without @ takes `mailDomain`. Owners are e-mail addresses, already checked. */
export async function createList(pool: pg.Pool, input: ListCreation, opts: { actor: string; mailDomain: string }): Promise<ListRow> {
  const address = (input.address.includes('@') ? input.address : `${input.address}@${opts.mailDomain}`).toLowerCase();
  const problem = listAddressProblem(address);
  if (problem) throw new InvalidInput(problem);
  for (const [field, value] of [['name', input.name ?? ''], ['description', input.description ?? '']]) {
    const refused = oneLineProblem(value);
    if (refused) throw new InvalidInput(`${field}: must be ${refused} (got ${JSON.stringify(value.slice(0, 60))})`);
  }
  const owners = [...new Set(input.owners)];
  return withTransaction(pool, async (tx) => {
    const list = await insertList(tx, { ...input, address, name: input.name || address.split('@')[0], owners });
    await recordAudit(tx, { actor: opts.actor, action: 'list.create', list, target: list.address, detail: { owners } });
    return list;
  });
}

/**
 * A fingerprint of a list's settings as they are now. The settings form is saved whole, every field
 * as the page showed it: it carries the fingerprint of what it showed, so that a save from a page
 * opened before another owner's save (or a `list set`) is refused instead of putting back, without
 * a word, the fields the other one changed.
 */
export function settingsVersion(list: ListRow): string {
  const names = ['name', 'description', 'post_policy', 'subscribe_policy', 'archive', ...DELIVERY_SETTING_NAMES] as (keyof ListRow)[];
  // The private key counts by its presence only: the fingerprint is put in a page, and nothing
  // derived from a secret is. (The form never writes back a key it did not receive.)
  const values = names.map((n) => (n === 'dkim_private_key' ? !!list.dkim_private_key : (list[n] ?? null)));
  return crypto.createHash('sha256').update(JSON.stringify(values)).digest('base64url').slice(0, 22);
}

/**
 * Saves a list's settings; `changed` (what differs, secrets named but not copied) is the audit
 * entry's detail. With `version` (settingsVersion() of the `list` the values were made from), a
 * Conflict ('settings_changed') when the settings changed since, checked under the list's row lock.
 */
export async function updateListSettings(
  pool: pg.Pool, list: ListRow, settings: { core: CoreSettings; delivery: Partial<DeliverySettings> }, opts: { actor: string; changed: Record<string, unknown>; version?: string },
): Promise<void> {
  await withTransaction(pool, async (tx) => {
    if (opts.version !== undefined && settingsVersion(await getListById(tx, list.id, { forUpdate: true })) !== opts.version) {
      throw new Conflict(`the settings of ${list.address} were changed by someone else meanwhile; nothing was saved`, 'settings_changed');
    }
    await updateCoreSettings(tx, list.id, settings.core);
    await updateDeliverySettings(tx, list.id, settings.delivery);
    if (Object.keys(opts.changed).length > 0) await recordAudit(tx, { actor: opts.actor, action: 'list.settings', list, target: list.address, detail: opts.changed });
  });
}

/** Makes `email` an owner or a moderator of the list; false when it already was. */
export async function addRole(pool: pg.Pool, list: ListRow, email: string, role: ListRole, opts: { actor: string }): Promise<boolean> {
  return withTransaction(pool, async (tx) => {
    const added = await addListRole(tx, list.id, email, role);
    if (added) await recordAudit(tx, { actor: opts.actor, action: 'role.add', list, target: email, detail: { role } });
    return added;
  });
}

/**
 * Takes a role away; false when `email` did not have it. A list keeps at least one owner unless
 * `mayRemoveLastOwner` (a site administrator).
 */
export async function removeRole(pool: pg.Pool, list: ListRow, email: string, role: ListRole, opts: { actor: string; mayRemoveLastOwner?: boolean }): Promise<boolean> {
  return withTransaction(pool, async (tx) => {
    // Two owners removing each other would both count two and leave none: count under the lock.
    if (role === 'owner') await lockListRoles(tx, list.id);
    if (role === 'owner' && !opts.mayRemoveLastOwner && (await countOwners(tx, list.id)) <= 1) {
      throw new Conflict('A list keeps at least one owner: add another owner first.', 'last_owner');
    }
    const removed = await removeListRole(tx, list.id, email, role);
    if (removed) await recordAudit(tx, { actor: opts.actor, action: 'role.remove', list, target: email, detail: { role } });
    return removed;
  });
}

/** Deletes a list and what belonged to it alone; the audit entry keeps its address and what went. */
export async function deleteList(pool: pg.Pool, list: ListRow, opts: { actor: string }): Promise<DeletionImpact> {
  return withTransaction(pool, async (tx) => {
    const impact = await deletionImpact(tx, list.id);
    await deleteListIn(tx, list.id);
    await recordAudit(tx, { actor: opts.actor, action: 'list.delete', list: { id: null, address: list.address }, target: list.address, detail: { ...impact } });
    return impact;
  });
}
