/* Per-list sender allowlist and banlist. `email` is an address or '@domain'. */

import type { ListRow } from './lists.ts';
import type { Queryable } from './pool.ts';

export type SenderRuleKind = 'allow' | 'ban';

export interface SenderRuleRow {
  list_id: number;
  email: string;
  kind: SenderRuleKind;
  expires_at: Date | null;
  created_by: string;
  created_at: Date;
}

/**
 * Sets a sender's rule on a list, replacing the one it had. `days`: it lapses that many days of
 * 24 hours from now by the database's clock (the clock rules are judged by; a process's own may be
 * off), null for never.
 */
export async function upsertSenderRule(db: Queryable, listId: number, email: string, kind: SenderRuleKind, days: number | null, by: string): Promise<SenderRuleRow> {
  const { rows } = await db.query<SenderRuleRow>(
    `insert into sender_rules (list_id, email, kind, expires_at, created_by)
     values ($1, $2, $3, now() + make_interval(hours => 24 * $4::int), $5)
     on conflict (list_id, email) do update
       set kind = excluded.kind, expires_at = excluded.expires_at, created_by = excluded.created_by, created_at = now()
     returning *`,
    [listId, email, kind, days, by],
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
  /** the list's posting settings as they are now, in the caller's transaction (null if it was deleted) */
  list: PostingSettings | null;
  /** the database's time, which rules' expires_at is judged by (not the listener machine's clock, which may be off) */
  now: Date;
}

export type PostingSettings = Pick<ListRow, 'post_policy' | 'max_message_size' | 'spam_hold_score' | 'spam_reject_score' | 'auth_policy' | 'synchronous_commit'>;

/**
 * What moderation needs to know about posts, in one round trip for any number of them:
 * membership and matching rules (the address's own first), one result per question, in order,
 * and the list's settings as they are now. The SMTP listener found the list through a cache that
 * learns of changes by NOTIFY, which can come a moment after a post; a policy changed just before
 * must still decide it.
 */
export async function senderFacts(db: Queryable, asks: { listId: number; email: string; oldSpelling?: string | null }[]): Promise<SenderFacts[]> {
  if (asks.length === 0) return [];
  type Row = PostingSettings & { now: Date; list_id: number | null; member_status: SenderFacts['memberStatus']; rules: (Omit<SenderRuleRow, 'expires_at' | 'created_at'> & { expires_at: string | null; created_at: string })[] };
  const { rows } = await db.query<Row>({
    // Named: parsed once per connection, as it runs for every batch of posts. Named columns, not
    // l.*: a prepared statement fails once its result type changes (a migration adding a column).
    name: 'sender_facts',
    // `old` is the spelling a release before sql/0074 stored for the same address typed with its
    // domain in A-labels, matched as well until the address-spellings job has respelled it.
    text: `select now() as now, l.id as list_id, l.post_policy, l.max_message_size, l.spam_hold_score, l.spam_reject_score, l.auth_policy, l.synchronous_commit,
                  (select status from members m where m.list_id = x.list_id and m.email in (x.email, x.old) order by m.email = x.email desc limit 1) as member_status,
                  coalesce((select json_agg(r order by (r.email = x.email or r.email = x.old) is true desc, r.email in (x.email, x.domain) desc) from sender_rules r
                             where r.list_id = x.list_id and r.email in (x.email, x.domain, x.old, x.old_domain)), '[]'::json) as rules
             from unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) with ordinality x(list_id, email, domain, old, old_domain, ord)
             left join lists l on l.id = x.list_id
            order by x.ord`,
    values: [asks.map((a) => a.listId), asks.map((a) => a.email), asks.map((a) => domainPart(a.email)), asks.map((a) => a.oldSpelling ?? null), asks.map((a) => (a.oldSpelling ? domainPart(a.oldSpelling) : null))],
  });
  return rows.map((row) => ({
    now: row.now,
    memberStatus: row.member_status,
    rules: row.rules.map((r) => ({ ...r, expires_at: r.expires_at ? new Date(r.expires_at) : null, created_at: new Date(r.created_at) })),
    list: row.list_id === null ? null : { post_policy: row.post_policy, max_message_size: row.max_message_size, spam_hold_score: row.spam_hold_score, spam_reject_score: row.spam_reject_score, auth_policy: row.auth_policy, synchronous_commit: row.synchronous_commit },
  }));
}

/** '@domain' of an address, as domain rules are stored (the whole value when it has no '@'). */
const domainPart = (email: string) => email.slice(Math.max(0, email.lastIndexOf('@')));
