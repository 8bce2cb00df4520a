/*
 * Who may read an archive (its `archive` setting): everyone for a 'public' list; for 'members' and 'private'
 * lists, a logged-in viewer who is an active member, an owner or moderator of the list (by any of
 * the account's verified addresses), or a site
 * administrator. The rule itself is the SQL function can_read_archive() (sql/0063), so pages,
 * search, feeds and downloads all apply the same one.
 */

import { listForReader, readableListIds, readerMayRead, type Reader, type ReaderList } from '../../db/archive.ts';
import type { ListRow } from '../../db/lists.ts';
import type { Queryable } from '../../db/pool.ts';
import { Forbidden, InvalidInput, NotFound } from '../../errors.ts';
import type { Viewer } from '../viewer.ts';

export function readerOf(viewer: Viewer | null | undefined): Reader {
  return { emails: viewer?.emails ?? [], siteAdmin: viewer?.isSiteAdmin === true };
}

/** For other parts of the app: may this viewer read this list's archive? */
export async function canReadArchive(db: Queryable, viewer: Viewer | null | undefined, list: Pick<ListRow, 'id' | 'archive'>): Promise<boolean> {
  return readerMayRead(db, readerOf(viewer), list);
}

export async function readableLists(db: Queryable, viewer: Viewer | null | undefined): Promise<number[]> {
  return readableListIds(db, readerOf(viewer));
}

/**
 * 403 for an archive open to members only. The error page (views/archive/members-only.njk) links
 * to the login page with the way back, and to the list's subscribe form when the list is named.
 */
export class MembersOnly extends Forbidden {
  constructor(
    message: string,
    /** the list, when the page may name it (its URL does); null for a permalink */
    readonly list: { key: string; address: string; name: string } | null,
  ) {
    super(message, 'archive_restricted');
  }
}

/** "x@example.org is not" or, for an account with several addresses, "none of your addresses is". */
export function notMemberPhrase(viewer: Viewer): string {
  return viewer.emails.length > 1 ? 'none of your addresses is' : `${viewer.email} is not`;
}

/** A 'private' list is not even named to those who may not read it; a 'members' list says why. */
export function denied(list: Pick<ReaderList, 'archive' | 'address' | 'key' | 'name'>, viewer: Viewer | null | undefined): Error {
  if (list.archive === 'private') return new NotFound('There is no list archive at this address.', 'no_such_list');
  return new MembersOnly(
    viewer
      ? `The archive of ${list.address} is open to its members only, and ${notMemberPhrase(viewer)} one.`
      : `The archive of ${list.address} is open to its members only.`,
    { key: list.key, address: list.address, name: list.name },
  );
}

/** The list named in a URL, if this viewer may read its archive; otherwise 404 or 403. */
export async function readableList(db: Queryable, viewer: Viewer | null | undefined, ref: string): Promise<ReaderList> {
  const list = await listForReader(db, ref, readerOf(viewer));
  if (!list) throw new NotFound('There is no list archive at this address.', 'no_such_list');
  if (list.matches > 1) throw new InvalidInput(`"${ref}" names more than one list: use its full address`, 'ambiguous_list');
  if (!list.readable) throw denied(list, viewer);
  return list;
}
