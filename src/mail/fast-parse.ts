/*
 * The common case of list mail, parsed without the MIME machinery: one text/plain part in UTF-8 or
 * US-ASCII, 7bit or 8bit, not flowed, with plain ASCII Subject and a simple From. Bulk import
 * parses most messages here, about twenty times faster than parse(). It gives exactly what
 * parse() gives (a test holds it to that) and returns null for anything else, which then goes
 * through parse().
 */

import { headerEnd, unfold } from './header-block.ts';
import { decodeIso2022jpRuns } from './iso-2022-jp.ts';
import { generatedMessageId, normalizeMessageId, threadingReferences } from './message-id.ts';
import { bounded, messageDate, type ParsedMessage } from './parsed-message.ts';

const HEADER_LINE = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/;
const SIMPLE_TYPE = /^text\/plain\s*(?:;\s*charset\s*=\s*"?(utf-8|us-ascii)"?\s*)?;?$/i;
const ASCII = /^[\x20-\x7e\t]*$/;
// The unquoted name is taken greedily up to "<" and trimmed after: a lazy name followed by \s*
// backtracked over every split of a run of spaces, and a From of 60,000 spaces held the process for 10 s.
const NAME_ADDR = /^(?:"([^"\\]*)"\s*|([^"<>,;:\\()@[\]]*))<([^\s<>@,;:"\\()[\]]+@[^\s<>@,;:"\\()[\]]+)>$/;
const BARE_ADDR = /^<?([^\s<>@,;:"\\()[\]]+@[^\s<>@,;:"\\()[\]]+)>?$/;
const SINGLE = ['subject', 'from', 'date', 'content-type', 'content-transfer-encoding'];

export function fastParse(raw: Buffer, receivedAt = new Date(), undated = receivedAt): ParsedMessage | null {
  const end = headerEnd(raw);
  const split = end?.at ?? -1;
  if (!end || split <= 0 || split > 64 * 1024) return null;
  const lines = raw.toString('latin1', 0, split).split(/\r?\n/);
  const headers = new Map<string, string[]>();
  for (let i = 0; i < lines.length; ) {
    const m = HEADER_LINE.exec(lines[i]);
    if (!m) return null;
    let line = lines[i++];
    while (i < lines.length && (lines[i].startsWith(' ') || lines[i].startsWith('\t'))) line += `\n${lines[i++]}`;
    const key = m[1].toLowerCase();
    const value = unfold(line.slice(line.indexOf(':') + 1));
    const list = headers.get(key);
    if (list) list.push(value);
    else headers.set(key, [value]);
  }
  for (const key of SINGLE) if ((headers.get(key)?.length ?? 0) > 1) return null;
  if (headers.has('content-disposition')) return null;
  const type = headers.get('content-type')?.[0] ?? 'text/plain';
  if (!SIMPLE_TYPE.test(type)) return null;
  const encoding = (headers.get('content-transfer-encoding')?.[0] ?? '7bit').toLowerCase();
  if (encoding !== '7bit' && encoding !== '8bit') return null;

  const subject = headers.get('subject')?.[0] ?? '';
  const fromHeader = headers.get('from')?.[0];
  const dateHeader = headers.get('date')?.[0];
  if (!ASCII.test(subject) || subject.includes('=?') || !fromHeader || !ASCII.test(fromHeader) || fromHeader.includes('=?')) return null;
  if (!dateHeader) return null;
  const date = new Date(dateHeader);
  if (Number.isNaN(date.getTime())) return null;
  const from = simpleFrom(fromHeader);
  if (!from) return null;

  const ownId = normalizeMessageId(headers.get('message-id')?.[0]);
  // ISO-2022-JP is 7-bit: sent without a charset or as US-ASCII, its escaped runs read as ASCII.
  const text = decodeIso2022jpRuns(raw.toString('utf8', split + 2 * end.eol.length).replace(/\r?\n/g, '\n'));
  return bounded({
    messageId: ownId ?? generatedMessageId(raw),
    generatedId: ownId === null,
    subject,
    fromName: from.name,
    fromEmail: from.address.toLowerCase(),
    date: messageDate(date, headers.get('received') ?? [], receivedAt, undated),
    inReplyTo: normalizeMessageId(headers.get('in-reply-to')?.[0]),
    references: threadingReferences(headers.get('references')),
    text: text.includes('\u0000') ? text.replace(/\u0000/g, '') : text,
    html: null,
    attachments: [],
    headers,
  });
}

function simpleFrom(value: string): { name: string; address: string } | null {
  const bare = BARE_ADDR.exec(value);
  if (bare) return { name: '', address: bare[1] };
  const m = NAME_ADDR.exec(value);
  if (!m) return null;
  return { name: (m[1] ?? m[2] ?? '').trim(), address: m[3] };
}
