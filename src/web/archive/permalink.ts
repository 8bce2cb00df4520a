import type { MessageCopy } from '../../db/archive-messages.ts';
import { NotFound } from '../../errors.ts';
import { MembersOnly, notMemberPhrase } from './access.ts';
import type { Viewer } from '../viewer.ts';

/**
 * What /message-id/MSGID shows this reader. A Message-ID may name several messages (one per list
 * at most: sql/0013), and each message may be in several lists, each list hiding it or not on its
 * own. Only pairs in lists the reader may read count, and a list the reader may not read is never
 * named:
 *
 * - a message shown in a readable list: that message (in the list asked for with ?list=, if it is
 *   one of them);
 * - several different messages shown: a choice between them (300), unless ?list= picks one;
 * - readable only where it was hidden: 410 with the reason;
 * - in a members-only archive the reader may not read: 403; otherwise 404.
 */
export type Resolution =
  | { kind: 'show'; mid: number; listId: number; lists: MessageCopy[]; shared: boolean }
  | { kind: 'choice'; choices: Choice[] }
  | { kind: 'hidden'; copy: MessageCopy; lists: MessageCopy[] };

export interface Choice {
  mid: number;
  subject: string;
  from_name: string;
  from_email: string;
  date: Date;
  /** the lists it is shown in for this reader */
  lists: MessageCopy[];
}

export function resolvePermalink(copies: MessageCopy[], preferred: string | null, viewer: Viewer | null): Resolution {
  const readable = copies.filter((c) => c.readable);
  if (readable.length === 0) {
    if (copies.some((c) => c.archive === 'members')) {
      // The list is not named: which list holds a Message-ID is not this reader's to learn.
      throw new MembersOnly(`This message is in an archive open to list members only${viewer ? `, and ${notMemberPhrase(viewer)} a member of it` : ''}.`, null);
    }
    throw new NotFound('There is no archived message with this Message-ID.', 'no_such_message');
  }
  const shown = readable.filter((c) => c.hidden_at === null);
  if (shown.length === 0) return { kind: 'hidden', copy: readable[0], lists: readable };
  const mids = [...new Set(shown.map((c) => c.mid))];
  const asked = preferred ? shown.find((c) => c.key === preferred || c.address === preferred) : undefined;
  // Whether the links must say which message: only messages this reader may read count, or the
  // links would tell that a list they may not read has another message under this Message-ID.
  const shared = new Set(readable.map((c) => c.mid)).size > 1;
  if (asked || mids.length === 1) {
    const pick = asked ?? shown[0];
    return { kind: 'show', mid: pick.mid, listId: pick.list_id, lists: shown.filter((c) => c.mid === pick.mid), shared };
  }
  return {
    kind: 'choice',
    choices: mids.map((mid) => {
      const first = shown.find((c) => c.mid === mid)!;
      return { mid, subject: first.subject, from_name: first.from_name, from_email: first.from_email, date: new Date(first.date), lists: shown.filter((c) => c.mid === mid) };
    }),
  };
}
