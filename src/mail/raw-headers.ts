/*
 * Cheap looks at a raw message's header section without parsing the MIME structure: enough to
 * recognise a message already archived (its Message-ID) before paying for a full parse.
 */

import { headerEnd, unfold } from './header-block.ts';
import { generatedMessageId, normalizeMessageId } from './message-id.ts';

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

/** The Message-ID the archive will know this message by: its own, or the stable generated one. */
export function archiveMessageId(raw: Buffer): string {
  return normalizeMessageId(firstHeader(headerSection(raw), 'message-id')) ?? generatedMessageId(raw);
}
