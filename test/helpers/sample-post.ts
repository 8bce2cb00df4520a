/*
 * One plain post to dev@lists.example.org, with an encoded-word Subject and a Message-ID that
 * needs escaping in URLs: the message the pure mail tests (copies, digests) build on.
 */
export const SAMPLE_POST = Buffer.from([
  'From: Alice <alice@example.org>',
  'To: dev@lists.example.org',
  'Subject: =?UTF-8?Q?=C3=9Cber_die_Planung?=',
  'Date: Mon, 02 Nov 2026 10:00:00 +0000',
  'Message-ID: <plan/1+x@example.org>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello, list.',
  '',
].join('\r\n'));
