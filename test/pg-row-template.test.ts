/*
 * Rows as node-postgres makes them, with the empty row kept per list of column names
 * (src/db/pg-row-template.ts): the same keys in the same order, values parsed by the query's
 * own types when it has them, a column named __proto__ a column, and no row sharing anything.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let db: TestDatabase;

beforeAll(async () => {
  db = await testDatabase();
});

afterAll(async () => {
  await db?.drop();
});

describe('rows of a result', () => {
  it('have the columns in order, the last of a repeated name, and a column named __proto__ as a column', async () => {
    for (let round = 0; round < 2; round++) {
      const { rows, fields } = await db.pool.query(`select 1::int as b, 'x' as "__proto__", null::text as a, 2::bigint as b, now() as at`);
      expect(fields.map((f) => f.name)).toEqual(['b', '__proto__', 'a', 'b', 'at']);
      const [row] = rows;
      expect(Object.keys(row)).toEqual(['b', '__proto__', 'a', 'at']);
      expect(Object.getPrototypeOf(row)).toBe(Object.prototype);
      expect(Object.getOwnPropertyDescriptor(row, '__proto__')?.value).toBe('x');
      expect(row.b).toBe(2);
      expect(row.a).toBeNull();
      expect(row.at).toBeInstanceOf(Date);
    }
  });

  it('are separate objects: changing one changes no other row, now or in a later result of the same shape', async () => {
    const sql = 'select g as n, null::text as note from generate_series(1, 3) g';
    const first = await db.pool.query(sql);
    first.rows[0].note = 'changed';
    first.rows[1].extra = true;
    const again = await db.pool.query(sql);
    expect(first.rows.map((r) => r.note)).toEqual(['changed', null, null]);
    expect(again.rows).toEqual([{ n: 1, note: null }, { n: 2, note: null }, { n: 3, note: null }]);
  });

  it("uses a query's own type parsers when it brings them, and the global ones otherwise", async () => {
    const types = { getTypeParser: (oid: number) => (v: string) => `${oid}:${v}` };
    const own = await db.pool.query({ text: 'select 7::int as n', types });
    expect(own.rows).toEqual([{ n: '23:7' }]);
    const global = await db.pool.query('select 7::int as n');
    expect(global.rows).toEqual([{ n: 7 }]);
  });
});
