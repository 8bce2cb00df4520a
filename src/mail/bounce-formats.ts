/*
 * The plain-text bounce formats that mail systems still send instead of a DSN (RFC 3464), as data.
 * A report counts only when it comes from a mail system (see MAIL_SYSTEM_FROM) and carries one of
 * these signatures: text that merely contains numbers that look like status codes (a phone
 * number, a date like 5.1.26) in a vacation notice or a person's reply never does.
 *
 * Collected from the formats GNU Mailman's bounce detectors (flufl.bounce) and the MTAs'
 * own sources write; each has a fixture in test/fixtures/bounces/ where one was at hand.
 */

export interface BounceFormat {
  name: string;
  /** the sentence the mail system opens its report with */
  signature: RegExp;
  /** the format's own words for "this is only a warning, delivery goes on" */
  warning?: RegExp;
}

export const PLAIN_BOUNCE_FORMATS: readonly BounceFormat[] = [
  { name: 'qmail', signature: /\bThis is the qmail-send program at\b|I'm afraid I wasn't able to deliver your message to the following addresses/i },
  { name: 'exim', signature: /This message was created automatically by mail delivery software/i, warning: /This is not an error|warning only|still being tried|will continue trying/i },
  { name: 'postfix', signature: /This is the (?:mail system|Postfix program) at host\b/i, warning: /THIS IS A WARNING ONLY|could not be delivered for more than/i },
  {
    name: 'sendmail',
    signature: /-{3,}\s*The following addresses had (?:permanent fatal|transient non-fatal) errors|-{3,}\s*Transcript of session follows|The original message was received at\b/i,
    warning: /transient non-fatal errors|Warning: could not send message for past|will (?:keep trying|be retried)/i,
  },
  {
    name: 'microsoft',
    signature: /Delivery has failed to these recipients or groups|Your message did not reach some or all of the intended recipients|The (?:e-?mail|message) below could not be delivered to the following (?:user|recipient)/i,
    warning: /Delivery to the following recipients has been delayed/i,
  },
  { name: 'gmail', signature: /Delivery to the following recipients? (?:failed|was aborted)/i, warning: /Delivery to the following recipients? (?:has been )?delayed|will retry for/i },
  { name: 'yahoo', signature: /Sorry, we were unable to deliver your message to the following address|Unable to deliver message to the following address\(es\)/i },
  { name: 'domino', signature: /^[ \t]*Your message[ \t]*\r?\n(?:.*\n){0,6}?[ \t]*was not delivered to:/im },
  { name: 'groupwise', signature: /The message that you sent was undeliverable to the following/i },
  { name: 'mdaemon', signature: /The following addresses did NOT receive a copy of your message/i },
  { name: 'smail', signature: /^[ \t]*failed addresses follow:/im },
  { name: 'generic', signature: /^[ \t]*A message that you sent could not be delivered to (?:one or more of its|all of its) recipients/im },
];

/**
 * Mail systems write their reports from MAILER-DAEMON, postmaster or a "Mail Delivery System";
 * a vacation notice comes from the member's own mailbox.
 */
export const MAIL_SYSTEM_FROM = /(?:^|[<\s"'(])(?:mailer[-_]?daemon|mail-daemon|postmaster|mdaemon)@|^\s*<?(?:mailer[-_]?daemon|postmaster)>?\s*$|\bmail delivery (?:system|subsystem|service)\b|\bmail administrator\b/i;

/** Where the report ends and the returned copy of our message begins. */
export const RETURNED_COPY = /^[ \t]*(?:-{2,}|\*{3,})[ \t]*(?:This is a copy|Below this line|Original message|Undelivered message|Returned mail|Message text follows|The original message|Included is a copy|START OF RETURNED MESSAGE|Original message follows|Unsent message below|Headers of the returned message)/im;

// The signatures start at a line's beginning with [ \t]*, never \s*: with the m flag, \s* ran on
// through every blank line after each line start, and a bounce of 160,000 empty lines took a
// minute of the ingest process (one pattern test per line start, each to the end of the run).
export function plainBounceFormat(text: string): { format: BounceFormat; at: number } | null {
  for (const format of PLAIN_BOUNCE_FORMATS) {
    const m = format.signature.exec(text);
    if (m) return { format, at: m.index };
  }
  return null;
}
