/*
 * How an attachment is served: only types a browser shows without running anything are shown
 * inline (common raster images, plain text); everything else, HTML and SVG included, is
 * downloaded as application/octet-stream. The file name survives in Content-Disposition, encoded
 * per RFC 6266 / 5987 with a plain ASCII fallback.
 */

const INLINE = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'text/plain']);

export interface ServedAs {
  contentType: string;
  disposition: string;
}

export function attachmentHeaders(contentType: string, filename: string | null, fallbackName: string): ServedAs {
  const type = contentType.toLowerCase().split(';')[0].trim();
  const name = safeFilename(filename) || fallbackName;
  const inline = INLINE.has(type);
  const charset = /;\s*charset="?([a-z0-9._:-]{1,40})"?/i.exec(contentType)?.[1] ?? 'utf-8';
  const served = type === 'text/plain' ? `text/plain; charset=${charset}` : inline ? type : 'application/octet-stream';
  return { contentType: served, disposition: contentDisposition(inline ? 'inline' : 'attachment', name) };
}

/** A file name without paths, control characters or characters that break headers. */
export function safeFilename(name: string | null): string {
  if (!name) return '';
  const base = wellFormed(name).split(/[\\/]/).pop() ?? '';
  // Bidirectional overrides make "evil\u202Egpj.exe" read as "evilexe.jpg": dropped.
  return base.replace(/[\u0000-\u001f\u007f"\u202a-\u202e\u2066-\u2069]/g, '').replace(/^\.+/, '').trim().slice(0, 200);
}

/**
 * A text without lone UTF-16 surrogates (each becomes U+FFFD), as a file name decoded from
 * =?utf-16be?…?= can hold: encodeURIComponent() throws on one, and the page answered 500.
 */
export function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

export function contentDisposition(type: 'inline' | 'attachment', name: string): string {
  name = wellFormed(name);
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/[\\"]/g, '_');
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return ascii === name ? `${type}; filename="${ascii}"` : `${type}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}
