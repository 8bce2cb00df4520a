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

/** The rules that could apply to a sender: the exact address, then the domain. Expiry is judged by moderation. */
export async function rulesForSender(db: Queryable, listId: number, email: string): Promise<SenderRuleRow[]> {
  const at = email.lastIndexOf('@');
  const { rows } = await db.query<SenderRuleRow>(
    `select * from sender_rules where list_id = $1 and email in ($2, $3) order by email = $2 desc`,
    [listId, email, at >= 0 ? email.slice(at) : email],
  );
  return rows;
}
