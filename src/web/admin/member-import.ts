/*
 * Addresses pasted or uploaded by an owner: one per line, as `address`, `Name <address>`, or CSV
 * rows (`email,name,mode` — a header row naming the columns may come first, in any order).
 * Bad lines are reported with their number, never silently dropped. Names are read as
 * `subscribe` reads them (memberName: encoded words decoded, one line).
 */

import { DELIVERY_MODES, isOneOf, type DeliveryMode } from '../../list-policies.ts';
import { memberName, normalizeEmail } from '../../mail/address.ts';

export interface ImportEntry {
  email: string;
  name: string | null;
  mode: DeliveryMode | null;
}

export interface ImportResult {
  entries: ImportEntry[];
  problems: { line: number; text: string; reason: string }[];
}

export function parseMemberLines(text: string, maxEntries = 10_000): ImportResult {
  const entries: ImportEntry[] = [];
  const problems: ImportResult['problems'] = [];
  const seen = new Set<string>();
  let columns: { email: number; name: number; mode: number } | null = null;
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n|\r/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const cells = splitCsv(line);
    const lower = cells.map((c) => c.toLowerCase());
    if (columns === null && entries.length === 0 && problems.length === 0 && lower.some((c) => c === 'email' || c === 'e-mail' || c === 'address')) {
      const at = (names: string[]) => lower.findIndex((c) => names.includes(c));
      columns = { email: at(['email', 'e-mail', 'address']), name: at(['name', 'display name', 'full name']), mode: at(['mode', 'delivery']) };
      return;
    }
    let email: string | null;
    let name: string | null;
    let mode: string | null = null;
    if (columns) {
      email = normalizeEmail(cells[columns.email] ?? '');
      name = columns.name >= 0 ? cells[columns.name] || null : null;
      mode = columns.mode >= 0 ? cells[columns.mode]?.toLowerCase() || null : null;
    } else {
      const angle = /^(.*)<([^<>]+)>\s*$/.exec(cells[0]);
      if (cells.length === 1 && angle) {
        email = normalizeEmail(angle[2]);
        name = angle[1].trim().replace(/^"|"$/g, '') || null;
      } else {
        email = normalizeEmail(cells[0]);
        name = cells[1] || null;
        mode = cells[2]?.toLowerCase() || null;
      }
    }
    if (!email) return void problems.push({ line: i + 1, text: line.slice(0, 200), reason: 'not an e-mail address' });
    if (mode && !isOneOf(mode, DELIVERY_MODES)) return void problems.push({ line: i + 1, text: line.slice(0, 200), reason: `unknown delivery mode "${mode}"` });
    if (seen.has(email)) return;
    if (entries.length >= maxEntries) return void problems.push({ line: i + 1, text: line.slice(0, 200), reason: `more than ${maxEntries} addresses at once` });
    seen.add(email);
    entries.push({ email, name: name === null ? null : memberName(name), mode: mode as DeliveryMode | null });
  });
  return { entries, problems };
}

/** One CSV line (RFC 4180 quoting; commas or semicolons or tabs as separators). */
export function splitCsv(line: string): string[] {
  const sep = line.includes(',') ? ',' : line.includes(';') ? ';' : '\t';
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"' && cur.trim() === '') { quoted = true; cur = ''; }
    else if (ch === sep) { out.push(cur.trim()); cur = ''; }
    else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

/** A CSV cell, quoted when needed, and defused against spreadsheet formula injection. */
export function csvCell(value: unknown): string {
  let s = value === null || value === undefined ? '' : value instanceof Date ? value.toISOString() : String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
