import type { AuditRow } from '../../db/audit.ts';

/** Audit entries as the pages show them: one readable line of detail each. */
export function auditLines(rows: AuditRow[]) {
  return rows.map((r) => ({ ...r, summary: summarize(r.detail) }));
}

function summarize(detail: Record<string, unknown>): string {
  return Object.entries(detail ?? {})
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join('; ')
    .slice(0, 300);
}
