/*
 * One list as scripts see it: `listkeeper list show --json`, `list ls --json` and the REST API's
 * list resource (docs/command-line.md, docs/api.md) are this one shape.
 */

import { listOwners, listStats, type ListRow } from '../db/lists.ts';
import type { Queryable } from '../db/pool.ts';
import { LIST_SETTINGS } from './list-settings.ts';

/** Settings the summary already shows first, under the same names. */
const CORE_FIELDS = { name: 1, description: 1, post_policy: 1, subscribe_policy: 1, archive: 1 };

export async function listSummary(db: Queryable, list: ListRow) {
  const stats = await listStats(db, list.id);
  return {
    address: list.address,
    name: list.name,
    description: list.description,
    post_policy: list.post_policy,
    subscribe_policy: list.subscribe_policy,
    archive: list.archive,
    owners: await listOwners(db, list.id),
    // Every setting `list set` takes, by the same name; the private key only as whether there is one.
    ...Object.fromEntries(Object.entries(LIST_SETTINGS).filter(([name, setting]) => !setting.secret && !(name in CORE_FIELDS)).map(([name]) => [name, (list as unknown as Record<string, unknown>)[name] ?? null])),
    dkim_key: list.dkim_private_key !== null,
    members: stats.members,
    messages: stats.messages,
    last_activity: stats.last_activity,
    created_at: list.created_at,
  };
}

export type ListSummary = Awaited<ReturnType<typeof listSummary>>;
