import crypto from 'node:crypto';

/**
 * The longest Message-ID kept, in UTF-8 bytes. It is an index key (a btree row holds at most about
 * 2.7 kB), and no real one comes near it.
 */
const MAX_ID_BYTES = 900;
// Control characters make an id unusable; NUL above all, which PostgreSQL text cannot hold.
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * At most this many References take part in threading: the newest ones, which name the closest
 * ancestors. Each is an advisory lock while the message is stored (lock_thread_keys), so a header
 * with thousands of them would exhaust PostgreSQL's lock table.
 */
export const MAX_REFERENCES = 50;

// An id holds no angle brackets: written back between them (References, a permalink), it must read as itself.
function usable(id: string): boolean {
  return id.length > 0 && !CONTROL.test(id) && !/[<>]/.test(id) && Buffer.byteLength(id) <= MAX_ID_BYTES;
}

/** Message-IDs are stored and compared without their angle brackets; null when there is no usable one. */
export function normalizeMessageId(value: string | undefined | null): string | null {
  if (!value) return null;
  const bracketed = /<([^<>\s]+)>/.exec(value);
  // Without a bracketed id: the first word, stripped of stray brackets ("<<abc@x", "abc@x>").
  const id = (bracketed ? bracketed[1] : unbracketed(value.trim().split(/\s+/)[0])) ?? '';
  return usable(id) ? id : null;
}

/**
 * A word without the "<" before it and the ">" after it, by position: /^<+|>+$/g took time
 * quadratic in a run of ">", and a Message-ID of 150,000 of them held the ingest listener for 7 s.
 */
function unbracketed(word: string): string {
  let start = 0;
  let end = word.length;
  while (start < end && word[start] === '<') start++;
  while (end > start && word[end - 1] === '>') end--;
  return word.slice(start, end);
}

/** Every usable bracketed id in a References-style header, in order. */
export function messageIdList(value: string | string[] | undefined | null): string[] {
  if (!value) return [];
  const text = Array.isArray(value) ? value.join(' ') : value;
  const ids = [...text.matchAll(/<([^<>\s]+)>/g)].map((m) => m[1]);
  if (ids.length === 0) return text.split(/\s+/).filter((s) => s.includes('@') && usable(s));
  return ids.filter(usable);
}

/** The References a message is threaded by: the newest MAX_REFERENCES. */
export function threadingReferences(value: string | string[] | undefined | null): string[] {
  return messageIdList(value).slice(-MAX_REFERENCES);
}

/**
 * A stable id for a message that has none: the same bytes always get the same id, so a second
 * import or a redelivery of the message is recognised as the same message.
 */
export function generatedMessageId(raw: Buffer): string {
  return `${crypto.createHash('sha256').update(raw).digest('hex').slice(0, 40)}@generated.listkeeper.invalid`;
}

/** The form used in URLs: percent-encoded where a Message-ID character would break a path. */
export function messageIdPath(id: string): string {
  return encodeURIComponent(id).replace(/%40/g, '@');
}
