/*
 * /lists/LIST/members: the read-only member list, for whom the list's roster_visibility says
 * (owners: its owners and moderators and site administrators; members: those and its logged-in
 * members; anyone). Addresses are obfuscated for anonymous readers, in names too, as on archive pages. A list
 * whose archive is private is not named to those who may not read it (404, as its archive); a
 * roster for owners only is not there for anyone else (404); a members' roster tells the others
 * why (403, with a login link for the anonymous).
 */

import type { Request, Response } from 'express';
import { listForReader } from '../../db/archive.ts';
import { standingOnList, visibleRoster } from '../../db/roster.ts';
import { Forbidden, InvalidInput, NotFound } from '../../errors.ts';
import { obfuscateAddress, obfuscateText } from '../../mail/obfuscate.ts';
import { listUrl, rosterUrl, subscribeUrl } from '../../mail/urls.ts';
import type { WebContext } from '../context.ts';
import { viewerOf } from '../viewer.ts';
import { readerOf } from './access.ts';
import { sendPage } from './http.ts';

export async function rosterPage(ctx: WebContext, req: Request, res: Response) {
  const viewer = viewerOf(req);
  const db = ctx.db.readPool;
  const list = await listForReader(db, String(req.params.list), readerOf(viewer));
  const absent = new NotFound('There is no member list at this address.', 'no_such_list');
  if (!list) throw absent;
  if (list.matches > 1) throw new InvalidInput(`"${req.params.list}" names more than one list: use its full address`, 'ambiguous_list');
  if (list.archive === 'private' && !list.readable) throw absent;
  const standing = viewer ? (viewer.isSiteAdmin ? 'staff' : await standingOnList(db, list.id, viewer.emails)) : null;
  const allowed = list.roster_visibility === 'anyone' || standing === 'staff' || (list.roster_visibility === 'members' && standing === 'member');
  if (!allowed && list.roster_visibility === 'owners') throw absent;
  if (!allowed) {
    throw new Forbidden(viewer
      ? `The members of ${list.address} are shown to its members only.`
      : `The members of ${list.address} are shown to its members only: log in to see them.`, 'roster_restricted');
  }
  const members = await visibleRoster(db, list.id);
  // Never in a shared cache, even when anyone may see it (personal): no purge follows a member who
  // leaves or a roster that stops being public, so a cache in front would show them for its max-age.
  sendPage(ctx, req, res, 'archive/members.njk', {
    title: `Members of ${list.name}`,
    list,
    base: listUrl(list.key),
    subscribe: subscribeUrl(list.key),
    self: rosterUrl(list.key),
    // A name may hold an address (a Mailman import's display name often is one): obfuscated too.
    members: members.map((m) => ({ name: viewer || !m.name ? m.name : obfuscateText(m.name), email: viewer ? m.email : obfuscateAddress(m.email) })),
  }, { restricted: list.roster_visibility !== 'anyone' || list.archive !== 'public', personal: true });
}
