/** Bytes (or a text, as UTF-8) in base64, in lines of 76 characters (RFC 2045 §6.8), joined by `eol`, without a final one. */
export function base64Lines(data: Buffer | string, eol: string): string {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return (bytes.toString('base64').match(/.{1,76}/g) ?? []).join(eol);
}
