import crypto from 'node:crypto';

/** Message-IDs are stored and compared without their angle brackets. */
export function normalizeMessageId(value: string | undefined | null): string | null {
  if (!value) return null;
  const bracketed = /<([^<>\s]+)>/.exec(value);
  const id = (bracketed ? bracketed[1] : value.trim().split(/\s+/)[0]) ?? '';
  return id.length > 0 && id.length <= 900 ? id : null;
}

/** Every bracketed id in a References-style header, in order. */
export function messageIdList(value: string | string[] | undefined | null): string[] {
  if (!value) return [];
  const text = Array.isArray(value) ? value.join(' ') : value;
  const ids = [...text.matchAll(/<([^<>\s]+)>/g)].map((m) => m[1]);
  if (ids.length === 0) return text.split(/\s+/).filter((s) => s.includes('@') && s.length <= 900);
  return ids.filter((id) => id.length <= 900);
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
