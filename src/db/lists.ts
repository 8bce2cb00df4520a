/* A row of `lists`: identity and policies, the sending options, and digest/notice state. */

import { Conflict, InvalidInput, NotFound } from '../errors.ts';
import { roleCandidates, splitAddress, type Role } from '../mail/address.ts';
import type { ArchivePolicy, AuthPolicy, DmarcMitigation, PostPolicy, ReplyToPolicy, RosterVisibility, SubscribePolicy, SynchronousCommit } from '../list-policies.ts';
import { LIST_KEY } from './list-key.ts';
import type { Queryable } from './pool.ts';

export interface ListRow extends DeliverySettings {
  id: number;
  address: string;
  local_part: string;
  domain: string;
  name: string;
  description: string;
  post_policy: PostPolicy;
  subscribe_policy: SubscribePolicy;
  archive: ArchivePolicy;
  created_at: Date;
  digest_volume: number;
  digest_issue: number;
  digest_last_sent_at: Date | null;
  held_notified_at: Date | null;
}

export interface NewList {
  address: string;
  name: string;
  description: string;
  postPolicy: PostPolicy;
  subscribePolicy: SubscribePolicy;
  archive: ArchivePolicy;
  owners: string[];
}

export async function createList(db: Queryable, list: NewList): Promise<ListRow> {
  const parts = splitAddress(list.address)!;
  const { rows } = await db.query<ListRow>(
    `with l as (
       insert into lists (address, local_part, domain, name, description, post_policy, subscribe_policy, archive)
       values ($1, $2, $3, $4, $5, $6, $7, $8)
       on conflict do nothing returning *),
     o as (insert into list_roles (list_id, email, role) select l.id, unnest($9::text[]), 'owner' from l)
     select * from l`,
    [list.address, parts.local, parts.domain, list.name, list.description, list.postPolicy, list.subscribePolicy, list.archive, list.owners],
  );
  if (!rows[0]) throw new Conflict(`list ${list.address} already exists`, 'list_exists');
  return rows[0];
}

/**
 * A list by full address, or by local part when that is unique (the command line's LIST). With
 * `mailDomain` (an ADDRESS without @ takes MAIL_DOMAIN), a local part names the list
 * of that domain first, and only without one a list of another domain that is alone in having it.
 */
export async function findList(db: Queryable, ref: string, opts: { mailDomain?: string } = {}): Promise<ListRow> {
  const key = ref.trim().toLowerCase();
  if (!key) throw new InvalidInput('no list given');
  const preferred = !key.includes('@') && opts.mailDomain ? `${key}@${opts.mailDomain.toLowerCase()}` : null;
  const { rows } = await db.query<ListRow>(
    `select * from lists where address = $1 or ($2 and local_part = $1) order by address = $3 desc, id limit 2`,
    [key, !key.includes('@'), preferred],
  );
  if (rows.length === 0) throw new NotFound(`no list ${ref}`, 'no_such_list');
  if (preferred && rows[0].address === preferred) return rows[0];
  if (rows.length > 1) throw new InvalidInput(`"${ref}" names more than one list: give the full address (${rows.map((r) => r.address).join(', ')})`, 'ambiguous_list');
  return rows[0];
}

export async function allLists(db: Queryable): Promise<ListRow[]> {
  const { rows } = await db.query<ListRow>('select * from lists order by address');
  return rows;
}

export interface ListStats {
  members: number;
  messages: number;
  last_activity: Date | null;
}

export async function listStats(db: Queryable, listId: number): Promise<ListStats> {
  const { rows } = await db.query<ListStats>(
    `select (select count(*) from members where list_id = $1 and status in ('active', 'disabled'))::int as members,
            (select count(*) from list_messages where list_id = $1)::int as messages,
            (select max(date) from list_messages where list_id = $1) as last_activity`,
    [listId],
  );
  return rows[0];
}

export async function listOwners(db: Queryable, listId: number): Promise<string[]> {
  const { rows } = await db.query<{ email: string }>(
    `select email from list_roles where list_id = $1 and role = 'owner' order by email`, [listId]);
  return rows.map((r) => r.email);
}

/** Everyone who moderates a list: its owners and its moderators, each once. */
export async function listModerators(db: Queryable, listId: number): Promise<string[]> {
  const { rows } = await db.query<{ email: string }>(
    `select distinct email from list_roles where list_id = $1 and role in ('owner', 'moderator') order by email`, [listId]);
  return rows.map((r) => r.email);
}

export interface ResolvedRecipient {
  list: ListRow;
  role: Role;
  token?: string;
}

/** What an RCPT TO address means: a list and one of its roles, or null when it is no address of ours. */
export async function resolveRecipient(db: Queryable, address: string): Promise<ResolvedRecipient | null> {
  const parts = splitAddress(address);
  if (!parts) return null;
  const candidates = roleCandidates(parts.local);
  if (candidates.length === 0) return null;
  const { rows } = await db.query<ListRow>(
    'select * from lists where domain = $1 and local_part = any($2::text[])',
    [parts.domain, candidates.map((c) => c.localPart)],
  );
  for (const c of candidates) {
    const list = rows.find((r) => r.local_part === c.localPart);
    if (list) return { list, role: c.role, token: c.token };
  }
  return null;
}

/**
 * Whether `address` is one of this site's list addresses (a list, or one of its role addresses:
 * LIST-request@, LIST-owner@, LIST-bounces+…@ …). Such an address is nobody's mailbox: mail to it
 * is a post or a command, so no account may hold it and no login link goes to it (a verification
 * or login link mailed there would wait in the list's queue, to be published if approved).
 */
export async function isSiteListAddress(db: Queryable, address: string): Promise<boolean> {
  return (await resolveRecipient(db, address)) !== null;
}

// ---- Delivery options ----

/** The per-list sending options an owner may change (web panel: list settings). */
export interface DeliverySettings {
  subject_prefix: string;
  footer: string;
  reply_to: ReplyToPolicy;
  reply_to_address: string | null;
  dmarc_mitigation: DmarcMitigation;
  dkim_domain: string | null;
  dkim_selector: string | null;
  dkim_private_key: string | null;
  /** bytes; 0 means no limit */
  max_message_size: number;
  digest_size_threshold: number;
  digest_interval_hours: number;
  bounce_threshold: number;
  /** reminders a disabled member gets before removal (the disable notice is the first) */
  bounce_warnings: number;
  bounce_warning_interval_days: number;
  held_notice_minutes: number;
  /** spam score (rspamd) from which a post is held; null: never held for its score */
  spam_hold_score: number | null;
  /** spam score from which a post is refused (550 5.7.1); null: never refused for its score */
  spam_reject_score: number | null;
  /** what happens to a post that fails authentication (core/moderation-rules.ts) */
  auth_policy: AuthPolicy;
  /** what accepting a post waits for (sql/0052); null: the site's POST_SYNCHRONOUS_COMMIT */
  synchronous_commit: SynchronousCommit | null;
  /** whether the sender of a held post is told it awaits a moderator (Mailman's respond_to_post_requests) */
  notify_held_sender: boolean;
  /** who may see the member list on /lists/LIST/members: owners (and moderators), members, anyone */
  roster_visibility: RosterVisibility;
  /** the list's own texts (mail/templates.ts); '' is the built-in one */
  template_welcome: string;
  template_goodbye: string;
  template_held: string;
  template_confirm: string;
  /** whether new members are welcomed and leaving ones told goodbye (Mailman's send_welcome_message, send_goodbye_message) */
  send_welcome: boolean;
  send_goodbye: boolean;
}

/**
 * The column type of each sending option, for the update below. A new option is one line here
 * (and one in DeliverySettings): the statement is built from the keys given.
 */
const DELIVERY_COLUMNS: Record<keyof DeliverySettings, string> = {
  subject_prefix: 'text',
  footer: 'text',
  reply_to: 'text',
  reply_to_address: 'text',
  dmarc_mitigation: 'text',
  dkim_domain: 'text',
  dkim_selector: 'text',
  dkim_private_key: 'text',
  max_message_size: 'int',
  digest_size_threshold: 'int',
  digest_interval_hours: 'int',
  bounce_threshold: 'real',
  bounce_warnings: 'int',
  bounce_warning_interval_days: 'int',
  held_notice_minutes: 'int',
  spam_hold_score: 'real',
  spam_reject_score: 'real',
  auth_policy: 'text',
  synchronous_commit: 'text',
  notify_held_sender: 'boolean',
  roster_visibility: 'text',
  template_welcome: 'text',
  template_goodbye: 'text',
  template_held: 'text',
  template_confirm: 'text',
  send_welcome: 'boolean',
  send_goodbye: 'boolean',
};

/** The names of a list's sending options, as columns of `lists`. */
export const DELIVERY_SETTING_NAMES = Object.keys(DELIVERY_COLUMNS) as (keyof DeliverySettings)[];

/** Changes the given sending options of a list; the others keep their values. */
export async function updateDeliverySettings(db: Queryable, listId: number, s: Partial<DeliverySettings>): Promise<ListRow> {
  // Only known column names reach the SQL text; values are parameters.
  const keys = (Object.keys(s) as (keyof DeliverySettings)[]).filter((k) => Object.prototype.hasOwnProperty.call(DELIVERY_COLUMNS, k) && s[k] !== undefined);
  const sets = keys.map((k, i) => `${k} = $${i + 2}::${DELIVERY_COLUMNS[k]}`);
  const { rows } = await db.query<ListRow>(
    sets.length > 0 ? `update lists set ${sets.join(', ')} where id = $1 returning *` : 'select * from lists where id = $1',
    [listId, ...keys.map((k) => s[k] ?? null)],
  );
  if (!rows[0]) throw new NotFound(`no list with id ${listId}`, 'no_such_list');
  return rows[0];
}

/**
 * Keeps the list from being deleted until the transaction ends (a key-share lock on its row);
 * false when it is gone. A change to rows of the list that its deletion also locks (held posts,
 * subscription requests) takes this first: the deletion locks the list, then those rows, so a
 * decision that locked a held post and then named the list (its audit entry, the archived post, the
 * member row) waited for the deletion while the deletion waited for it, and PostgreSQL ended one of
 * them as a deadlock (a 503 in the panel). Other changes that lock a list's rows, then audit, can
 * still meet a deletion so; they are rarer, and end the same way.
 */
export async function keepList(db: Queryable, listId: number): Promise<boolean> {
  const { rowCount } = await db.query('select 1 from lists where id = $1 for key share', [listId]);
  return (rowCount ?? 0) > 0;
}

/** Whether a list with this id exists, as committed (no lock). */
export async function listExists(db: Queryable, listId: number): Promise<boolean> {
  const { rowCount } = await db.query('select 1 from lists where id = $1', [listId]);
  return (rowCount ?? 0) > 0;
}

/** A list by id; `forUpdate`: its row locked for a change of its settings, for the rest of the transaction. */
export async function getListById(db: Queryable, listId: number, opts: { forUpdate?: boolean } = {}): Promise<ListRow> {
  const { rows } = await db.query<ListRow>(`select * from lists where id = $1 ${opts.forUpdate ? 'for no key update' : ''}`, [listId]);
  if (!rows[0]) throw new NotFound(`no list with id ${listId}`, 'no_such_list');
  return rows[0];
}

/** Lists by id, each with its URL key (list-key.ts). */
export async function listsByIds(db: Queryable, ids: number[]): Promise<(ListRow & { key: string })[]> {
  const { rows } = await db.query<ListRow & { key: string }>(
    `select l.*, ${LIST_KEY} as key
       from lists l where l.id = any($1::bigint[])`,
    [ids],
  );
  return rows;
}
