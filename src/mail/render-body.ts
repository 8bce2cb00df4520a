/*
 * Message bodies as HTML fragments for archive pages: plain text escaped, links made clickable,
 * long quotes folded into <details> (works without JavaScript); HTML parts sanitised through an
 * allow-list with nothing that runs, nothing that loads from elsewhere unless the reader asks.
 */

import sanitize from 'sanitize-html';
import { htmlTooCostly } from './html-cost.ts';
import { defangSchemes, obfuscateMarkup, obfuscateText } from './obfuscate.ts';

/**
 * The most of a text a page renders, in characters; the page says when it shows less and links
 * to the raw message. A 12 MB body of quotes took 1.3 s and 50 MB of HTML at every view.
 */
export const SHOWN_TEXT_CHARS = 1024 * 1024;

/**
 * The largest HTML part a page sanitises (sanitize-html takes 0.3-0.6 s a MB, a 10 MB part 3 s at
 * every view): a larger one, or one nested too deeply to parse cheaply (html-cost.ts), is shown
 * as its text.
 */
export const SHOWN_HTML_CHARS = 512 * 1024;

export function showableHtml(html: string): boolean {
  return html.length <= SHOWN_HTML_CHARS && !htmlTooCostly(html);
}

/** The start of a text that a page shows, never ending inside a surrogate pair. */
export function shownText(text: string): { text: string; cut: boolean } {
  if (text.length <= SHOWN_TEXT_CHARS) return { text, cut: false };
  const end = /[\ud800-\udbff]/.test(text[SHOWN_TEXT_CHARS - 1]) ? SHOWN_TEXT_CHARS - 1 : SHOWN_TEXT_CHARS;
  return { text: text.slice(0, end), cut: true };
}

export interface RenderOptions {
  /** anonymous reader: addresses lose their domain */
  obfuscate: boolean;
  /** quoted runs of at least this many lines are folded */
  foldAt?: number;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]}]/g;

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return /[&<>"']/.test(s) ? s.replace(/[&<>"']/g, (c) => ESCAPES[c]) : s;
}

/** Text (any number of lines): escaped, addresses obfuscated if asked, http(s) URLs as links. */
function renderLine(line: string, obfuscate: boolean): string {
  const text = obfuscate ? obfuscateText(line) : line;
  let out = '';
  let last = 0;
  if (text.includes('http')) {
    for (const m of text.matchAll(URL_RE)) {
      const url = escapeHtml(m[0]);
      out += `${escapeHtml(text.slice(last, m.index))}<a href="${url}" rel="nofollow noopener noreferrer">${url}</a>`;
      last = m.index! + m[0].length;
    }
  }
  out += escapeHtml(text.slice(last));
  return out.includes('script') ? defangSchemes(out) : out;
}

// A run of quoted lines (">" after optional blanks), with the line end that closes it.
const QUOTE_RUN = /^[ \t]*>.*(?:\n[ \t]*>.*)*\n?/gm;

/** A plain-text body as HTML, for an element styled with white-space: pre-wrap. */
export function renderText(body: string, opts: RenderOptions): string {
  const foldAt = opts.foldAt ?? 5;
  const text = `${body.replace(/\r\n?/g, '\n').replace(/\n+$/, '')}\n`;
  if (!text.includes('>')) return renderLine(text, opts.obfuscate);
  let out = '';
  let last = 0;
  for (const m of text.matchAll(QUOTE_RUN)) {
    out += renderLine(text.slice(last, m.index), opts.obfuscate);
    const run = m[0].endsWith('\n') ? m[0].slice(0, -1) : m[0];
    const lines = run.split('\n').length;
    const quoted = renderLine(run, opts.obfuscate);
    out += lines >= foldAt
      ? `<details class="quote"><summary>${lines} quoted lines</summary><span class="q">${quoted}</span></details>`
      : `<span class="q">${quoted}</span>\n`;
    last = m.index! + m[0].length;
  }
  return out + renderLine(text.slice(last), opts.obfuscate);
}

export interface HtmlOptions {
  obfuscate: boolean;
  /** the reader asked to load remote images */
  remoteImages: boolean;
  /** where an inline image (cid:) of this message can be fetched from, if we have it */
  cidUrl?: (cid: string) => string | null;
}

const SAFE_DATA_IMAGE = /^data:image\/(png|jpeg|gif|webp);base64,[a-z0-9+/=\s]+$/i;

/** An HTML part reduced to harmless markup. */
export function sanitizeHtml(html: string, opts: HtmlOptions): string {
  // Attributes as a page may show them (a tooltip, an image's text, a link, where a browser drops
  // tabs and line ends: "alice@exa\tmple.org" is the address), each address obfuscated.
  const shown = (attribs: sanitize.Attributes): sanitize.Attributes => (!opts.obfuscate ? attribs
    : Object.fromEntries(Object.entries(attribs).map(([k, v]) => [k, v.includes('@') ? obfuscateText(v.replace(/[\t\n\r]/g, '')) : v])));
  const clean = sanitize(html, {
    allowedTags: [
      'a', 'abbr', 'b', 'blockquote', 'br', 'caption', 'cite', 'code', 'col', 'colgroup', 'dd', 'del', 'div', 'dl', 'dt',
      'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'img', 'ins', 'kbd', 'li', 'ol', 'p', 'pre', 'q', 's', 'samp',
      'small', 'span', 'strike', 'strong', 'sub', 'sup', 'table', 'tbody', 'td', 'tfoot', 'th', 'thead', 'tr', 'tt', 'u', 'ul',
    ],
    allowedAttributes: {
      a: ['href', 'title', 'rel'],
      img: ['src', 'alt', 'title', 'width', 'height', 'referrerpolicy'],
      td: ['colspan', 'rowspan', 'align', 'valign'],
      th: ['colspan', 'rowspan', 'align', 'valign'],
      ol: ['start', 'type'],
      span: ['title'],
    },
    allowedSchemes: ['http', 'https', 'mailto'],
    allowedSchemesByTag: { img: ['http', 'https', 'data', 'cid'] },
    allowProtocolRelative: false,
    disallowedTagsMode: 'discard',
    transformTags: {
      a: (tagName, attribs): sanitize.Tag => {
        // The scheme as a browser reads it (and sanitize-html checks it): without the white space
        // and control characters around and within it (" mail\tto:").
        const href = (attribs.href ?? '').replace(/[\u0000-\u0020]/g, '');
        if (/^mailto:/i.test(href) && opts.obfuscate) return { tagName: 'span', attribs: {} };
        return { tagName, attribs: { ...shown(attribs), rel: 'nofollow noopener noreferrer' } };
      },
      img: (tagName, original): sanitize.Tag => {
        // Decided on the source as sent (a cid: is a Content-ID, often shaped like an address).
        const src = (original.src ?? '').trim();
        const attribs = shown(original);
        const alt = attribs.alt ?? '';
        if (/^cid:/i.test(src)) {
          const url = opts.cidUrl?.(src.slice(4).replace(/^<|>$/g, ''));
          if (url) return { tagName, attribs: { ...attribs, src: url } };
        } else if (/^data:/i.test(src)) {
          if (SAFE_DATA_IMAGE.test(src)) return { tagName, attribs };
        } else if (/^https?:/i.test(src)) {
          if (opts.remoteImages) return { tagName, attribs: { ...attribs, referrerpolicy: 'no-referrer' } };
        }
        return { tagName: 'span', attribs: { class: 'img-placeholder', title: alt || 'image not loaded' } };
      },
      span: (tagName, attribs): sanitize.Tag => ({ tagName, attribs: shown(attribs) }),
    },
    allowedClasses: { span: ['img-placeholder'] },
    textFilter: (text) => (/script\s*:/i.test(text) ? text.replace(/\b(javascript|vbscript|livescript)\s*:/gi, '$1\u200b:') : text),
  });
  // Addresses in the text, once it is whole: the filter above sees it in pieces.
  return opts.obfuscate ? obfuscateMarkup(clean) : clean;
}

/** Whether an HTML part would load anything from elsewhere if allowed to. */
export function hasRemoteImages(html: string): boolean {
  return /<img\b[^>]*\bsrc\s*=\s*["']?\s*https?:/i.test(html);
}
