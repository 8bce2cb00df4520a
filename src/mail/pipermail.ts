import type { ParsedMessage } from './parse.ts';
import { bounded } from './parsed-message.ts';

/**
 * Mailman 2's pipermail archives (the monthly .txt files) write addresses as
 * "alice at example.org (Alice Example)" to keep them from harvesters. Read such a From back
 * into an address and a name; anything else is returned unchanged.
 */
export function undoPipermailFrom(m: ParsedMessage): ParsedMessage {
  if (m.fromEmail.includes('@')) return m;
  const from = m.headers.get('from')?.[0];
  if (!from) return m;
  const match = /^\s*([^\s@()<>]+) at ([a-z0-9.-]+\.[a-z]{2,})\s*(?:\((.*)\))?\s*$/i.exec(from);
  if (!match) return m;
  // The parser bounded the From it saw; the address made here gets the same limits (a 3,000
  // character one made the message's index row too big to store), or is no address.
  const restored = bounded({ ...m, fromEmail: `${match[1]}@${match[2]}`.toLowerCase(), fromName: (match[3] ?? m.fromName).trim() });
  return restored.fromEmail ? restored : m;
}
