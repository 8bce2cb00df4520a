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
  const base = name.split(/[\\/]/).pop() ?? '';
  return base.replace(/[\u0000-\u001f\u007f"]/g, '').replace(/^\.+/, '').trim().slice(0, 200);
}

export function contentDisposition(type: 'inline' | 'attachment', name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/[\\"]/g, '_');
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return ascii === name ? `${type}; filename="${ascii}"` : `${type}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}
