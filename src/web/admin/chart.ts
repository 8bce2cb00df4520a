/*
 * A small bar chart of deliveries per hour, laid out here and drawn as inline SVG by the view:
 * no JavaScript, readable in any browser. Each hour is one stacked bar: sent, deferred, failed,
 * bounced.
 */

import type { HourlyCounts } from '../../db/outbox.ts';

export interface Bar {
  x: number;
  width: number;
  segments: { y: number; height: number; kind: string }[];
  title: string;
}

export interface Chart {
  width: number;
  height: number;
  plotHeight: number;
  max: number;
  bars: Bar[];
  labels: { x: number; text: string }[];
  totals: { sent: number; deferred: number; failed: number; bounced: number };
}

const KINDS = ['sent', 'deferred', 'failed', 'bounced'] as const;

/** The last `hours` hours ending with the current one, zeros where nothing was recorded. */
export function fillHours(rows: HourlyCounts[], hours: number, now = new Date()): HourlyCounts[] {
  const byHour = new Map(rows.map((r) => [new Date(r.hour).getTime(), r]));
  const last = Math.floor(now.getTime() / 3_600_000) * 3_600_000;
  return Array.from({ length: hours }, (_, i) => {
    const t = last - (hours - 1 - i) * 3_600_000;
    return byHour.get(t) ?? { hour: new Date(t), sent: 0, deferred: 0, failed: 0, bounced: 0 };
  });
}

export function hourlyChart(rows: HourlyCounts[], width = 720, height = 160): Chart {
  const plotHeight = height - 20;
  const max = Math.max(1, ...rows.map((r) => r.sent + r.deferred + r.failed + r.bounced));
  const slot = width / Math.max(1, rows.length);
  const totals = { sent: 0, deferred: 0, failed: 0, bounced: 0 };
  const bars = rows.map((r, i) => {
    let top = plotHeight;
    const segments = [];
    for (const kind of KINDS) {
      totals[kind] += r[kind];
      if (r[kind] === 0) continue;
      const h = Math.max(1, (r[kind] / max) * (plotHeight - 16));
      top -= h;
      segments.push({ y: round(top), height: round(h), kind });
    }
    const hour = new Date(r.hour).toISOString().slice(0, 13).replace('T', ' ');
    return {
      x: round(i * slot + 1),
      width: round(Math.max(1, slot - 2)),
      segments,
      title: `${hour}:00 UTC — sent ${r.sent}, deferred ${r.deferred}, failed ${r.failed}, bounced ${r.bounced}`,
    };
  });
  const labels = rows
    .map((r, i) => ({ i, d: new Date(r.hour) }))
    .filter(({ d }) => d.getUTCHours() % 6 === 0)
    .map(({ i, d }) => ({ x: round(Math.min(width - 12, Math.max(12, i * slot + slot / 2))), text: `${String(d.getUTCHours()).padStart(2, '0')}h` }));
  return { width, height, plotHeight, max, bars, labels, totals };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
