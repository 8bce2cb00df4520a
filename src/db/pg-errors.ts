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

/** A unique index refused the row (SQLSTATE 23505): someone else got there first. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown })?.code === '23505';
}
