import { isConnectionLoss } from './pool.ts';

/**
 * What a PostgreSQL error says about whose fault it was. SQLSTATE class 22 (data exception: a value
 * PostgreSQL cannot hold, such as NUL in text) and 54 (program limit exceeded: an index row or a
 * search entry too big) come from the values given, so running the same statement again with
 * the same input fails the same way: the input is at fault, not the system, and retrying it later
 * cannot help.
 */
export function isFaultOfInput(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|54)[0-9A-Z]{3}$/.test(code);
}

/**
 * The database refused a value or a row for what it holds: SQLSTATE class 22 (data exception: a
 * text it cannot hold, a value out of range) or 23 (integrity constraint violation: a check, a
 * foreign key, a trigger that says so). The same statement with the same values fails the same way.
 */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|23)[0-9A-Z]{3}$/.test(code);
}

/**
 * A write refused because the database takes none (SQLSTATE 25006): a standby not yet promoted
 * after a failover, DATABASE_URL on a replica, default_transaction_read_only. Reads still work.
 */
export function isReadOnlyDatabase(err: unknown): boolean {
  return (err as { code?: unknown })?.code === '25006';
}

/**
 * A fault of the database that a long-running role waits out rather than stop for: transient, or
 * a database that takes no writes for now (a failover under way).
 */
export function waitsOut(err: unknown): boolean {
  return isTransientFailure(err) || isReadOnlyDatabase(err);
}

/** A unique index refused the row (SQLSTATE 23505): someone else got there first. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown })?.code === '23505';
}

/**
 * Whether a failure says nothing about the rows a statement worked on, so that the same work may
 * succeed when tried again later: the connection lost or the server going away (isConnectionLoss),
 * class 40 (a serialization failure, a deadlock), 53 (insufficient resources: disk full, out of
 * memory, too many connections), 55P03 (a lock not got within lock_timeout), 57014 (a statement
 * cancelled: statement_timeout or pg_cancel_backend), 58 (an I/O error). Anything else (a
 * constraint refusing a row, a value PostgreSQL cannot hold, an exception of our code) fails the
 * same way each time it is tried on the same rows.
 */
export function isTransientFailure(err: unknown): boolean {
  if (isConnectionLoss(err)) return true;
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && (/^(40|53|58)[0-9A-Z]{3}$/.test(code) || code === '55P03' || code === '57014' || /^57P0[0-9]$/.test(code));
}

/**
 * Whether a failure that is not transient is the row's own, so that the same work on another row
 * may well succeed: a value PostgreSQL refuses (class 22, a data exception) or a constraint the
 * row breaks (class 23), or an error of the code with no code of its own (a parser's, or a bug
 * that a row's content sets off). Any other code is the release's or the machine's, and every row
 * would meet it: a table or function that is not there (class 42, an upgrade half done), a
 * privilege (42501), a Node system error (EMFILE, ENOMEM).
 */
export function isRowFailure(err: unknown): boolean {
  if (isTransientFailure(err)) return false;
  const code = (err as { code?: unknown })?.code;
  if (code === undefined || code === null) return true;
  return isDataError(err);
}
