/*
 * Working through PgBouncer in pool_mode=transaction (DATABASE_POOL_MODE=transaction): each
 * transaction may run on another server connection, so nothing may outlive one. listkeeper names
 * its frequent statements so that PostgreSQL parses them once per connection, and a name prepared
 * on one server connection does not exist on the next ("prepared statement ... does not exist";
 * PgBouncer tracks them only from 1.21, and Debian 12 has 1.18). So through such a pooler every
 * statement is sent unnamed, parsed each time. What needs a session (LISTEN, session advisory
 * locks, SET) goes to DATABASE_DIRECT_URL instead (database.ts).
 */

import type pg from 'pg';

/** Makes a client send every statement unnamed; the rest of each query (text, values, timeout) is kept. */
export function unnamedStatements(client: pg.ClientBase): void {
  const query = client.query;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- pg's overloads: the first argument is rewritten, the rest passed on
  (client as { query: (...args: any[]) => unknown }).query = function (this: pg.ClientBase, config: unknown, ...rest: unknown[]) {
    // A plain query config with a name (not a Submittable such as a COPY stream or a cursor).
    if (config && typeof config === 'object' && typeof (config as { submit?: unknown }).submit !== 'function' && (config as { name?: unknown }).name) {
      config = { ...(config as object), name: undefined };
    }
    return (query as (...args: unknown[]) => unknown).call(this, config, ...rest);
  };
}
