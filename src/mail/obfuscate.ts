/*
 * Addresses shown to anonymous readers lose their domain ("alice@…"), as archives do to keep
 * harvesters away; logged-in readers see them whole. Message-IDs in permalinks are not touched:
 * they are identities, not addresses.
 */

// What is an address to obfuscate. International addresses too (RFC 6531): letters and digits of
// any script, and the full stops IDNA reads as dots (。．｡), as a mail program takes "jörg@bücher。example".
export const ADDRESS = /([\p{L}\p{M}\p{N}!#$%&'*+/=?^_`{|}~.-]{1,64})@([\p{L}\p{N}](?:[\p{L}\p{M}\p{N}-]{0,61}[\p{L}\p{M}\p{N}])?(?:[.\u3002\uff0e\uff61][\p{L}\p{N}](?:[\p{L}\p{M}\p{N}-]{0,61}[\p{L}\p{M}\p{N}])?)+)/gu;

export function obfuscateAddress(email: string): string {
  const at = email.lastIndexOf('@');
  return at < 0 ? email : `${email.slice(0, at)}@…`;
}

/**
 * Every address in a text, obfuscated. The pattern is tried only on the runs without white space
 * that hold an "@" (no address has white space in it): tried at every position of a body, it cost
 * about 0.3 ms per 20 KB, for every message of a thread page each anonymous reader opens.
 */
export function obfuscateText(text: string): string {
  let at = text.indexOf('@');
  if (at < 0) return text;
  let out = '';
  let done = 0;
  while (at >= 0) {
    let start = at;
    while (start > done && !isSpace(text.charCodeAt(start - 1))) start--;
    let end = at + 1;
    while (end < text.length && !isSpace(text.charCodeAt(end))) end++;
    out += text.slice(done, start) + text.slice(start, end).replace(ADDRESS, '$1@…');
    done = end;
    at = text.indexOf('@', end);
  }
  return out + text.slice(done);
}

const SPACE = /\s/;

function isSpace(c: number): boolean {
  return c <= 0x20 || (c >= 0x7f && SPACE.test(String.fromCharCode(c)));
}

// Tags a sanitised HTML part (or a search excerpt's <mark>) may hold that keep a run of text going:
// an address may be spread over them ("alice<b></b>@example.org" reads as one). Any other tag ends the run.
const INLINE_TAG = /^<\/?(a|abbr|b|cite|code|del|em|i|ins|kbd|mark|q|s|samp|small|span|strike|strong|sub|sup|tt|u)\b/i;
const MARKUP = /<[^>]*>|&(?:amp|lt|gt|quot|#39);|[^<&]+|&/g;
const ENTITY: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };

/**
 * Every address in the text of sanitised HTML (sanitize-html's output or escapeHtml's: tags, text
 * with only their five entities) obfuscated, wherever inline tags or entities fall within it. The parser hands
 * a text filter its text in pieces (before and after "&#64;" or a tag), so no piece held the
 * address that the reader sees.
 */
export function obfuscateMarkup(html: string): string {
  if (!html.includes('@')) return html;
  // The text, and for each of its characters the piece of the markup it came from.
  const pieces = html.match(MARKUP) ?? [];
  let text = '';
  const from: number[] = [];
  pieces.forEach((p, i) => {
    if (p[0] === '<') {
      if (INLINE_TAG.test(p)) return;
      text += '\n';
      from.push(-1);
    } else if (p[0] === '&') {
      text += ENTITY[p] ?? p;
      from.push(i);
    } else {
      text += p;
      for (let k = 0; k < p.length; k++) from.push(i);
    }
  });
  const drop = new Set<number>();
  const ellipsis = new Set<number>();
  for (const m of text.matchAll(ADDRESS)) {
    const domainAt = m.index! + m[1].length + 1;
    for (let k = domainAt; k < m.index! + m[0].length; k++) drop.add(k);
    ellipsis.add(domainAt);
  }
  if (drop.size === 0) return html;
  // Each text piece rebuilt from its characters that stay; tags as they were.
  const kept = pieces.map((p) => (p[0] === '<' ? p : ''));
  for (let k = 0; k < text.length; k++) {
    const i = from[k];
    if (i < 0) continue;
    if (ellipsis.has(k)) kept[i] += '…';
    if (drop.has(k)) continue;
    kept[i] += pieces[i][0] === '&' ? pieces[i] : text[k];
  }
  return kept.join('');
}

/**
 * URL schemes that would run code if a reader pasted them are shown with an encoded colon, so
 * the escaped page source never holds "javascript:" at all (the reader still sees the text).
 */
export function defangSchemes(escapedHtml: string): string {
  return escapedHtml.replace(/\b(javascript|vbscript|livescript)\s*:/gi, '$1&#58;');
}
