import type { Queryable } from './pool.ts';

export interface AuditEntry {
  /** who acted: an account's address, or `cli` */
  actor: string;
  /** what was done, as `area.verb`: `held.approve`, `member.add`, `list.update`… */
  action: string;
  /** the list acted on; id null once the list itself is gone (its address is kept) */
  list?: { id: number | null; address: string } | null;
  /** what it was done to: an address, a Message-ID, a held message id */
  target?: string | null;
  detail?: Record<string, unknown>;
}

export interface AuditRow {
  id: number;
  at: Date;
  actor: string;
  action: string;
  list_id: number | null;
  list_address: string | null;
  target: string | null;
  detail: Record<string, unknown>;
}

export async function recordAudit(db: Queryable, e: AuditEntry): Promise<void> {
  await db.query(
    `insert into audit_log (actor, action, list_id, list_address, target, detail) values ($1, $2, $3, $4, $5, $6)`,
    [e.actor, e.action, e.list?.id ?? null, e.list?.address ?? null, e.target ?? null, detailJson(e.detail)],
  );
}

/**
 * An entry's detail as JSON PostgreSQL takes. JSON.stringify writes a lone surrogate (from a
 * file's "\ud800", a JavaScript string cut between a pair) as the escape `\ud800`, which jsonb
 * refuses: the whole change failed with "invalid input syntax for type json". Each such string,
 * and key, is made well-formed first (U+FFFD in place of the lone half), as the text columns
 * beside it store it.
 */
function detailJson(detail: Record<string, unknown> | undefined): string {
  return JSON.stringify(detail ?? {}, (_key, value: unknown) => {
    if (typeof value === 'string') return wellFormed(value);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    const entries = Object.entries(value);
    return entries.some(([k]) => LONE_SURROGATE.test(k)) ? Object.fromEntries(entries.map(([k, v]) => [wellFormed(k), v])) : value;
  });
}

// A high half not followed by a low one, or a low half not after a high one (String.prototype.toWellFormed, not in TypeScript's lib yet).
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE.source, 'g');

function wellFormed(s: string): string {
  return LONE_SURROGATE.test(s) ? s.replace(LONE_SURROGATES, '\ufffd') : s;
}

/** Many entries in one statement (a bulk decision on a flood of held posts). */
export async function recordAudits(db: Queryable, entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db.query(
    `insert into audit_log (actor, action, list_id, list_address, target, detail)
     select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[])`,
    [entries.map((e) => e.actor), entries.map((e) => e.action), entries.map((e) => e.list?.id ?? null), entries.map((e) => e.list?.address ?? null),
      entries.map((e) => e.target ?? null), entries.map((e) => detailJson(e.detail))],
  );
}

/** Newest first; optionally one list's entries, one family of actions, entries before an id (paging). */
export async function recentAudit(
  db: Queryable, opts: { listId?: number | null; beforeId?: number | null; actionPrefix?: string | null; limit?: number } = {},
): Promise<AuditRow[]> {
  const { rows } = await db.query<AuditRow>(
    `select * from audit_log
      where ($1::bigint is null or list_id = $1) and ($2::bigint is null or id < $2)
        and ($3::text is null or starts_with(action, $3))
      order by id desc limit $4`,
    [opts.listId ?? null, opts.beforeId ?? null, opts.actionPrefix ?? null, opts.limit ?? 50],
  );
  return rows;
}
