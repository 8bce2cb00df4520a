/*
 * node-postgres builds, for every result, an empty row with the statement's column names (the
 * object each row is copied from), out of a null-prototype object filled one name at a time and
 * then spread. In a running server, where results of many shapes pass through the same code, that
 * took 13.5 µs a statement (a search page's one statement: 2.7 µs in a loop of one shape). Here
 * it is built once per list of names and shared, which pg allows: rows are copies of it, and it
 * is never written. Everything else is as pg's Result.addFields (pg 8.23): the fields kept, a
 * parser per column from the query's own types or the global ones. 3.2 µs a statement.
 */

import pg from 'pg';

type Field = { name: string; dataTypeID: number; format?: string };
type Parser = (value: string) => unknown;
interface ResultInternals {
  fields: Field[];
  _parsers: Parser[] | undefined;
  _types: { getTypeParser(oid: number, format: string): Parser } | undefined;
  _prebuiltEmptyResultObject: Record<string, null> | null;
}

/** Empty rows by their column names (joined with NUL, which no identifier holds). */
const emptyRows = new Map<string, Record<string, null>>();
/** Statements with more shapes than this are not kept (a program asking for ever new ones). */
const MAX_SHAPES = 1024;

function addFields(this: ResultInternals, fields: Field[]): void {
  this.fields = fields;
  if (fields.length) this._parsers = new Array<Parser>(fields.length);
  const types = this._types ?? pg.types;
  let key = '';
  for (let i = 0; i < fields.length; i++) {
    key += `${fields[i].name}\u0000`;
    this._parsers![i] = types.getTypeParser(fields[i].dataTypeID, fields[i].format === 'binary' ? 'binary' : 'text');
  }
  let empty = emptyRows.get(key);
  if (empty === undefined) {
    // As pg builds it: a null prototype first, so a column named __proto__ is a column.
    const row = Object.create(null) as Record<string, null>;
    for (const f of fields) row[f.name] = null;
    empty = { ...row };
    if (emptyRows.size < MAX_SHAPES) emptyRows.set(key, empty);
  }
  this._prebuiltEmptyResultObject = empty;
}

(pg as unknown as { Result: { prototype: { addFields: unknown } } }).Result.prototype.addFields = addFields;
