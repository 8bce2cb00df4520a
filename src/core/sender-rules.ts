import type { Queryable } from '../db/pool.ts';
import { deleteSenderRule, senderRules, upsertSenderRule, type SenderRuleRow } from '../db/sender-rules.ts';
import { InvalidInput } from '../errors.ts';
import { normalizeEmail } from '../mail/address.ts';

/** A list's sender rules, which the moderation rules read: an address or '@domain' always accepted or dropped. */
/** Always accept (allow) or silently drop (ban) a sender's posts on a list; `email` may be '@domain'. */
export async function addSenderRule(db: Queryable, listId: number, email: string, kind: 'allow' | 'ban', opts: { expiresAt?: Date | null; by: string }): Promise<SenderRuleRow> {
  const key = senderKey(email);
  if (kind !== 'allow' && kind !== 'ban') throw new InvalidInput('a sender rule is allow or ban');
  return upsertSenderRule(db, listId, key, kind, opts.expiresAt ?? null, opts.by);
}

export async function removeSenderRule(db: Queryable, listId: number, email: string): Promise<boolean> {
  return deleteSenderRule(db, listId, senderKey(email));
}

export async function listSenderRules(db: Queryable, listId: number): Promise<SenderRuleRow[]> {
  return senderRules(db, listId);
}

function senderKey(email: string): string {
  const value = email.trim().toLowerCase();
  if (value.startsWith('@') && normalizeEmail(`x${value}`)) return value;
  const address = normalizeEmail(value);
  if (!address) throw new InvalidInput(`"${email}" is not an e-mail address or @domain`, 'invalid_email');
  return address;
}
