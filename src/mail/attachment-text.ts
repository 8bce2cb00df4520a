/*
 * The text of a message's text attachments, as the search indexes it (messages.attachment_text,
 * sql/0070): a patch, a log or a configuration file sent as an attachment is found by its words,
 * as public-inbox finds it. The body (the message's own text parts) is stored apart and is what
 * the pages show; this is for searching only.
 */

import type { ParsedAttachment } from './parsed-message.ts';

/** As much as the search vector takes of the body (sql/0050's left(body, 200000)). */
export const MAX_ATTACHMENT_TEXT = 200_000;

/** Types whose bytes are text, whatever their name: text/* but HTML (its markup is not words). */
const TEXT_TYPE = /^text\/(?!html\b)/i;
/** Types mail clients give a patch or a log (or any file they cannot name) … */
const FILE_TYPE = /^application\/(octet-stream|x-patch|x-diff|x-sql|x-shellscript|x-sh)$/i;
/** … which count when the file's name says text. */
const TEXT_NAME = /\.(patch|diff|txt|log|sql|conf|ini|csv|md|rst|c|h|cc|cpp|py|pl|rb|sh|js|ts|java|go|rs|yaml|yml|json|xml)$/i;

/**
 * The text attachments' text, in order, each as UTF-8 when it is valid UTF-8 and else as Latin-1
 * (a legacy charset's letters then still make words); null when there is none. An attachment with
 * a NUL byte in its first 8 KB is taken for binary whatever its type says. At most
 * MAX_ATTACHMENT_TEXT characters in all.
 */
export function attachmentSearchText(attachments: readonly ParsedAttachment[]): string | null {
  const parts: string[] = [];
  let length = 0;
  for (const a of attachments) {
    if (length >= MAX_ATTACHMENT_TEXT) break;
    const type = a.contentType.split(';')[0].trim();
    if (!TEXT_TYPE.test(type) && !(FILE_TYPE.test(type) && a.filename && TEXT_NAME.test(a.filename))) continue;
    const head = a.content.subarray(0, 8192);
    if (head.includes(0)) continue;
    // Only what can be kept is decoded: a 20 MB log costs no more than its first 200,000
    // characters (4 bytes at most each).
    const bytes = a.content.subarray(0, (MAX_ATTACHMENT_TEXT - length) * 4);
    const text = (utf8(bytes) ?? bytes.toString('latin1')).slice(0, MAX_ATTACHMENT_TEXT - length).replace(/\u0000/g, '');
    if (!/\S/.test(text)) continue;
    parts.push(text);
    length += text.length + 2;
  }
  return parts.length ? parts.join('\n\n') : null;
}

/**
 * The bytes as UTF-8, null when they are not UTF-8 (`fatal`). A character cut at the end, where
 * the bytes were cut, is left out (`stream` keeps it pending) rather than taken for bad UTF-8.
 */
function utf8(bytes: Buffer): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
  } catch {
    return null;
  }
}
