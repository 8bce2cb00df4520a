/*
 * Cheap looks at a raw message's header section without parsing the MIME structure: enough to
 * recognise a message already archived (its Message-ID) before paying for a full parse.
 */

import { headerEnd, unfold } from './header-block.ts';
import { generatedMessageId, messageIdList, normalizeMessageId } from './message-id.ts';

/** The header section: bytes up to the first empty line (or all of it). */
export function headerSection(raw: Buffer): string {
  const limit = Math.min(raw.length, 256 * 1024);
  const end = headerEnd(raw)?.at ?? -1;
  return raw.toString('latin1', 0, end < 0 || end > limit ? limit : end);
}

/** The first header field of that name, unfolded, or null. */
export function firstHeader(section: string, name: string): string | null {
  const re = new RegExp(`^${name}[ \\t]*:(.*(?:\\r?\\n[ \\t].*)*)`, 'im');
  const m = re.exec(section);
  return m ? unfold(m[1]) : null;
}

/**
 * The Message-ID the archive will know this message by (its own, or the stable generated one);
 * what its thread is known by before it is threaded: the first of all its References (the
 * thread's start, where mail programs keep it), else its In-Reply-To, else itself; and every
 * Message-ID it names (itself, In-Reply-To, References), the keys its thread locks are taken on.
 */
export function archiveIdentity(raw: Buffer): { messageId: string; threadKey: string; keys: string[] } {
  const section = headerSection(raw);
  const messageId = normalizeMessageId(firstHeader(section, 'message-id')) ?? generatedMessageId(raw);
  const refs = messageIdList(firstHeader(section, 'references'));
  const inReplyTo = normalizeMessageId(firstHeader(section, 'in-reply-to'));
  const threadKey = refs[0] ?? inReplyTo ?? messageId;
  return { messageId, threadKey, keys: [messageId, ...(inReplyTo ? [inReplyTo] : []), ...refs] };
}
