/*
 * /api/v1/lists: lists and their settings, as `listkeeper list ls|show|create|set|delete` do them
 * (core/lists.ts, core/list-settings.ts), in the shape of `list show --json` (core/list-summary.ts).
 */

import { Router } from 'express';
import { parseListSettings, setListSettings } from '../../core/list-settings.ts';
import { listSummary } from '../../core/list-summary.ts';
import { createList, deleteList } from '../../core/lists.ts';
import { allLists, findList } from '../../db/lists.ts';
import { InvalidInput } from '../../errors.ts';
import { ARCHIVE_POLICIES, POST_POLICIES, SUBSCRIBE_POLICIES } from '../../list-policies.ts';
import { normalizeEmail } from '../../mail/address.ts';
import type { WebContext } from '../context.ts';
import { apiActor, need } from './auth.ts';
import { body, choice, pageOf, pageParams, pathList, sendPage, str } from './input.ts';

export function listsApi(ctx: WebContext): Router {
  const r = Router();
  const db = ctx.db.pool;

  r.get('/lists', need('read'), async (req, res) => {
    const { rows, nextKey } = pageOf(await allLists(db), (l) => l.address, pageParams(req));
    sendPage(req, res, await Promise.all(rows.map((l) => listSummary(db, l))), nextKey);
  });

  r.post('/lists', need('admin'), async (req, res) => {
    const b = body(req);
    const owners = b.owners ?? [];
    if (!Array.isArray(owners) || owners.some((o) => typeof o !== 'string')) throw new InvalidInput('"owners" must be an array of e-mail addresses.');
    const list = await createList(db, {
      address: str(b, 'address', { required: true, max: 254 }),
      name: str(b, 'name', { max: 200 }),
      description: str(b, 'description', { max: 1000 }) ?? '',
      postPolicy: choice(b, 'post_policy', POST_POLICIES, 'members'),
      subscribePolicy: choice(b, 'subscribe_policy', SUBSCRIBE_POLICIES, 'confirm'),
      archive: choice(b, 'archive', ARCHIVE_POLICIES, 'public'),
      owners: (owners as string[]).map((o) => {
        const email = normalizeEmail(o);
        if (!email) throw new InvalidInput(`"owners": "${o.slice(0, 100)}" is not an e-mail address.`);
        return email;
      }),
    }, { actor: apiActor(req, res), mailDomain: ctx.cfg.mailDomain });
    res.status(201).location(`/api/v1/lists/${encodeURIComponent(list.address)}`).json(await listSummary(db, list));
  });

  r.get('/lists/:list', need('read'), async (req, res) => {
    res.json(await listSummary(db, await pathList(ctx, req)));
  });

  // Settings by the names `list set` takes, checked by the same table (LIST_SETTINGS). JSON values
  // become the text `list set` would have been given: null clears, true/false are yes/no.
  r.patch('/lists/:list', need('admin'), async (req, res) => {
    const list = await pathList(ctx, req);
    const pairs = Object.entries(body(req)).map(([name, v]): [string, string] => {
      if (v === null) return [name, ''];
      if (typeof v === 'boolean') return [name, v ? 'yes' : 'no'];
      if (typeof v === 'number' || typeof v === 'string') return [name, String(v)];
      throw new InvalidInput(`${name}: must be a string, a number, true/false or null.`);
    });
    if (pairs.length === 0) throw new InvalidInput('Send the settings to change as a JSON object, e.g. {"subject_prefix": "[dev] "}.');
    await setListSettings(db, list, parseListSettings(pairs), { actor: apiActor(req, res) });
    res.json(await listSummary(db, await findList(db, list.address)));
  });

  r.delete('/lists/:list', need('admin'), async (req, res) => {
    const list = await pathList(ctx, req);
    const impact = await deleteList(db, list, { actor: apiActor(req, res) });
    res.json({ address: list.address, deleted: true, members: impact.members, messages: impact.messages, only_here: impact.onlyHere, roles: impact.roles });
  });

  return r;
}
