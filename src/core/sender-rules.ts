import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import type { ListRow } from '../db/lists.ts';
import { withTransaction, type Queryable } from '../db/pool.ts';
import { deleteSenderRule, senderRules, upsertSenderRule, type SenderRuleRow } from '../db/sender-rules.ts';
import { InvalidInput } from '../errors.ts';
import { normalizeEmail } from '../mail/address.ts';

/*
 * A list's sender rules, which the moderation rules read: an address or '@domain' always
 * accepted (allow) or silently dropped (ban). Each change is audited in its transaction.
 */

/**
 * Always accept (allow) or silently drop (ban) a sender's posts on a list; `email` may be '@domain'.
 * `days`: the rule lapses after that many, counted by the database's clock (the one posts are
 * judged by), whatever this process's says; the rule returned says when.
 */
export async function addSenderRule(pool: pg.Pool, list: ListRow, email: string, kind: 'allow' | 'ban', opts: { days?: number | null; actor: string }): Promise<SenderRuleRow> {
  const key = senderKey(email);
  if (kind !== 'allow' && kind !== 'ban') throw new InvalidInput('a sender rule is allow or ban');
  return withTransaction(pool, async (tx) => {
    const rule = await upsertSenderRule(tx, list.id, key, kind, opts.days ?? null, opts.actor);
    await recordAudit(tx, { actor: opts.actor, action: `sender.${kind}`, list, target: rule.email, detail: rule.expires_at ? { expires: rule.expires_at.toISOString() } : {} });
    return rule;
  });
}

export async function removeSenderRule(pool: pg.Pool, list: ListRow, email: string, opts: { actor: string }): Promise<boolean> {
  const key = senderKey(email);
  return withTransaction(pool, async (tx) => {
    const removed = await deleteSenderRule(tx, list.id, key);
    if (removed) await recordAudit(tx, { actor: opts.actor, action: 'sender.remove', list, target: key });
    return removed;
  });
}

export async function listSenderRules(db: Queryable, listId: number): Promise<SenderRuleRow[]> {
  return senderRules(db, listId);
}

/** An address or '@domain' as rules store it; InvalidInput when it is neither. */
export function senderKey(email: string): string {
  const value = email.trim().toLowerCase();
  if (value.startsWith('@')) {
    // The domain as addresses are stored (NFC, IDNA-mapped: fullwidth letters, decomposed
    // accents), or the rule would never meet the senders it names.
    const domain = normalizeEmail(`x${value}`);
    if (domain) return domain.slice(1);
  }
  const address = normalizeEmail(value);
  if (!address) throw new InvalidInput(`"${email}" is not an e-mail address or @domain`, 'invalid_email');
  return address;
}
