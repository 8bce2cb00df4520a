/*
 * RFC 2047 encoded words ("=?utf-8?q?J=C3=BCrgen?=") in a header value, decoded for display.
 * Unknown charsets and malformed words are left as they are.
 */

const WORD = /=\?([^?\s]+)\?([bqBQ])\?([^?\s]*)\?=/g;

export function decodeHeaderWords(value: string): string {
  if (!value.includes('=?')) return value;
  return value
    .replace(/(=\?[^?\s]+\?[bqBQ]\?[^?\s]*\?=)\s+(?==\?)/g, '$1') // whitespace between encoded words is not text
    .replace(WORD, (word, charset: string, enc: string, text: string) => {
      try {
        const bytes = enc.toLowerCase() === 'b'
          ? Buffer.from(text, 'base64')
          : Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9a-f]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
        return new TextDecoder(charset.split('*')[0].toLowerCase()).decode(bytes);
      } catch {
        return word;
      }
    });
}
