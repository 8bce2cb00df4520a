/* Archive months ("YYYY-MM", UTC): the unit of month pages and month mbox files. */

export interface MonthRange {
  month: string;
  start: Date;
  end: Date;
}

export function monthRange(month: string): MonthRange | null {
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  if (!m) return null;
  const year = Number(m[1]);
  const mon = Number(m[2]);
  if (mon < 1 || mon > 12 || year < 1970 || year > 9999) return null;
  return { month, start: new Date(Date.UTC(year, mon - 1, 1)), end: new Date(Date.UTC(year, mon, 1)) };
}
