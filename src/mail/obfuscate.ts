/*
 * Addresses shown to anonymous readers lose their domain ("alice@…"), as archives do to keep
 * harvesters away; logged-in readers see them whole. Message-IDs in permalinks are not touched:
 * they are identities, not addresses.
 */

const ADDRESS = /([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64})@([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+)/g;

export function obfuscateAddress(email: string): string {
  const at = email.lastIndexOf('@');
  return at < 0 ? email : `${email.slice(0, at)}@…`;
}

/** Every address in a text, obfuscated. */
export function obfuscateText(text: string): string {
  if (!text.includes('@')) return text;
  return text.replace(ADDRESS, '$1@…');
}

/**
 * URL schemes that would run code if a reader pasted them are shown with an encoded colon, so
 * the escaped page source never holds "javascript:" at all (the reader still sees the text).
 */
export function defangSchemes(escapedHtml: string): string {
  return escapedHtml.replace(/\b(javascript|vbscript|livescript)\s*:/gi, '$1&#58;');
}
