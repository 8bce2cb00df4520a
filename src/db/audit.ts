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
    [e.actor, e.action, e.list?.id ?? null, e.list?.address ?? null, e.target ?? null, JSON.stringify(e.detail ?? {})],
  );
}

/** Many entries in one statement (a bulk decision on a flood of held posts). */
export async function recordAudits(db: Queryable, entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await db.query(
    `insert into audit_log (actor, action, list_id, list_address, target, detail)
     select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[])`,
    [entries.map((e) => e.actor), entries.map((e) => e.action), entries.map((e) => e.list?.id ?? null), entries.map((e) => e.list?.address ?? null),
      entries.map((e) => e.target ?? null), entries.map((e) => JSON.stringify(e.detail ?? {}))],
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
