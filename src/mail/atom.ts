/*
 * An Atom 1.0 feed (RFC 4287) as a string. Text is escaped, and characters XML 1.0 does not allow
 * (control characters from mail bodies, lone surrogates) are dropped, so the feed always parses.
 */

export interface AtomFeed {
  id: string;
  title: string;
  subtitle?: string;
  selfUrl: string;
  htmlUrl: string;
  updated: Date;
  entries: AtomEntry[];
}

export interface AtomEntry {
  id: string;
  url: string;
  title: string;
  author: string;
  updated: Date;
  summary: string;
}

const INVALID_XML = /[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/gu;

export function xmlText(s: string): string {
  return s.replace(INVALID_XML, '').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function atomFeed(f: AtomFeed): string {
  const date = (d: Date) => new Date(d).toISOString();
  const entries = f.entries.map((e) => `  <entry>
    <id>${xmlText(e.id)}</id>
    <title type="text">${xmlText(e.title)}</title>
    <link rel="alternate" type="text/html" href="${xmlText(e.url)}"/>
    <author><name>${xmlText(e.author)}</name></author>
    <updated>${date(e.updated)}</updated>
    <summary type="text">${xmlText(e.summary)}</summary>
  </entry>
`).join('');
  return `<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>${xmlText(f.id)}</id>
  <title type="text">${xmlText(f.title)}</title>
${f.subtitle ? `  <subtitle type="text">${xmlText(f.subtitle)}</subtitle>\n` : ''}  <link rel="self" type="application/atom+xml" href="${xmlText(f.selfUrl)}"/>
  <link rel="alternate" type="text/html" href="${xmlText(f.htmlUrl)}"/>
  <updated>${date(f.updated)}</updated>
  <generator>listkeeper</generator>
${entries}</feed>
`;
}
