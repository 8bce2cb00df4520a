import type { Queryable } from './pool.ts';

/** Per-list sender allowlist and banlist. `email` is an address or '@domain'. */
export type SenderRuleKind = 'allow' | 'ban';

export interface SenderRuleRow {
  list_id: number;
  email: string;
  kind: SenderRuleKind;
  expires_at: Date | null;
  created_by: string;
  created_at: Date;
}

export async function upsertSenderRule(db: Queryable, listId: number, email: string, kind: SenderRuleKind, expiresAt: Date | null, by: string): Promise<SenderRuleRow> {
  const { rows } = await db.query<SenderRuleRow>(
    `insert into sender_rules (list_id, email, kind, expires_at, created_by) values ($1, $2, $3, $4, $5)
     on conflict (list_id, email) do update
       set kind = excluded.kind, expires_at = excluded.expires_at, created_by = excluded.created_by, created_at = now()
     returning *`,
    [listId, email, kind, expiresAt, by],
  );
  return rows[0];
}

export async function deleteSenderRule(db: Queryable, listId: number, email: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from sender_rules where list_id = $1 and email = $2', [listId, email]);
  return (rowCount ?? 0) > 0;
}

export async function senderRules(db: Queryable, listId: number): Promise<SenderRuleRow[]> {
  const { rows } = await db.query<SenderRuleRow>('select * from sender_rules where list_id = $1 order by kind, email', [listId]);
  return rows;
}

export interface SenderFacts {
  memberStatus: 'active' | 'pending' | 'disabled' | 'unsubscribed' | null;
  rules: SenderRuleRow[];
}

/** What moderation needs to know about a sender, in one round trip: membership and matching rules. */
export async function senderFacts(db: Queryable, listId: number, email: string): Promise<SenderFacts> {
  const at = email.lastIndexOf('@');
  const { rows } = await db.query<{ member_status: SenderFacts['memberStatus']; rules: (Omit<SenderRuleRow, 'expires_at' | 'created_at'> & { expires_at: string | null; created_at: string })[] }>(
    `select (select status from members where list_id = $1 and email = $2) as member_status,
            coalesce((select json_agg(r order by r.email = $2 desc) from sender_rules r
                       where r.list_id = $1 and r.email in ($2, $3)), '[]'::json) as rules`,
    [listId, email, at >= 0 ? email.slice(at) : email],
  );
  return {
    memberStatus: rows[0].member_status,
    rules: rows[0].rules.map((r) => ({ ...r, expires_at: r.expires_at ? new Date(r.expires_at) : null, created_at: new Date(r.created_at) })),
  };
}
