/*
 * How a failed delivery is classified, as data (in the spirit of zone-mta's bounces.txt). The
 * first rule whose pattern matches "<status> <diagnostic>" wins.
 *
 * - policy: the receiving side refused the message or the list's sending (spam filters, DMARC,
 *   block lists, content and its conversion, size). Not the member's fault: it never counts against them.
 * - hard: the address is gone (unknown user, no such domain, disabled mailbox).
 * - soft: a temporary condition of the member's mailbox (full, over quota, deferred).
 */

export type BounceKind = 'hard' | 'soft' | 'policy' | 'unknown';

export interface BounceRule {
  pattern: RegExp;
  kind: Exclude<BounceKind, 'unknown'>;
  category: string;
}

export const BOUNCE_RULES: readonly BounceRule[] = [
  // The message or the sender, not the member (RFC 3463 5.7.x: security or policy status).
  { pattern: /\bdmarc\b/i, kind: 'policy', category: 'dmarc' },
  { pattern: /\b[45]\.7\.\d{1,3}\b/, kind: 'policy', category: 'policy' },
  { pattern: /\b(spam|blocked using|black ?list|block ?list|listed (?:at|by|in|on)|spamhaus|spamcop|barracuda|reputation|rbl\b)/i, kind: 'policy', category: 'spam' },
  { pattern: /\b(virus|malware|phish|content rejected|message content|banned attachment)/i, kind: 'policy', category: 'content' },
  // RFC 3463 X.6.x, "message content or media status": the post could not be converted or carried
  // (Exchange's 5.6.0 ConversionFailedPermanentException for malformed MIME): what its author wrote.
  // Not inside a dotted number: "host 10.5.6.100" in an unknown user's report is no content status.
  { pattern: /(?<![\d.])[45]\.6\.\d{1,3}(?![\d.])/, kind: 'policy', category: 'content' },
  { pattern: /\b(spf|dkim)\b[^.]{0,200}\b(fail|reject|invalid)/i, kind: 'policy', category: 'authentication' },
  { pattern: /\b5\.3\.4\b|message (?:size|is too big|too large)|exceeds (?:the )?(?:maximum )?(?:message )?size/i, kind: 'policy', category: 'message_too_big' },
  // Our own relay or sender refused (misconfiguration): never the member's fault.
  { pattern: /relay(?:ing)? (?:access )?(?:denied|not permitted)|not permitted to relay|authentication required|sender address rejected/i, kind: 'policy', category: 'relay' },
  // The member's mailbox, for now.
  { pattern: /\b[45]\.2\.2\b|mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:storage|the quota)|insufficient (?:system )?storage/i, kind: 'soft', category: 'mailbox_full' },
  // The member's address, for good.
  { pattern: /\b5\.1\.\d{1,3}\b|user unknown|unknown (?:user|recipient|local part)|no such (?:user|mailbox|recipient|address)|does(?: not|n't) exist|recipient ?not ?found|invalid (?:recipient|mailbox)|no mailbox here|address rejected|not our customer|mailbox unavailable/i, kind: 'hard', category: 'no_such_user' },
  { pattern: /\b5\.4\.[0-7]\b|host (?:or domain name )?not found|domain (?:not found|does not exist)|no mx\b|name service error/i, kind: 'hard', category: 'no_such_domain' },
  { pattern: /\b5\.2\.1\b|mailbox (?:is )?disabled|account (?:has been |is )?(?:disabled|inactive|suspended|closed)/i, kind: 'hard', category: 'mailbox_disabled' },
  // Whatever else: temporary codes are soft, permanent ones hard.
  { pattern: /\b4\.\d{1,3}\.\d{1,3}\b|(?:^|\s)4\d\d[\s-]/, kind: 'soft', category: 'temporary' },
  { pattern: /\b5\.\d{1,3}\.\d{1,3}\b|(?:^|\s)5\d\d[\s-]/, kind: 'hard', category: 'permanent' },
];

/** How much a bounce adds to a member's score; at the list's bounce_threshold the member is probed. */
export const BOUNCE_WEIGHT: Record<BounceKind, number> = { hard: 1, soft: 0.5, policy: 0, unknown: 0 };

/** Scores halve every this many days: soft bounces now and then never add up to a disable. */
export const BOUNCE_HALF_LIFE_DAYS = 7;

/**
 * A probe nobody bounced within this many days expires: the member stays, the score is cleared.
 * Longer than the five days Postfix (and our own workers, DELIVERY_GIVE_UP_HOURS) keep retrying a
 * deferred message, so that the bounce of a probe to a full mailbox still comes back in time.
 */
export const BOUNCE_PROBE_DAYS = 6;

export function classifyText(status: string | null, diagnostic: string | null): { kind: BounceKind; category: string } {
  // A diagnostic is a line or three: the rules read no more than that of a hostile one.
  const text = `${status ?? ''} ${(diagnostic ?? '').slice(0, 2000)}`.replace(/\s+/g, ' ');
  for (const rule of BOUNCE_RULES) {
    if (rule.pattern.test(text)) return { kind: rule.kind, category: rule.category };
  }
  return { kind: 'unknown', category: 'unrecognised' };
}

/**
 * A refusal of a message for its size (552 5.3.4, "message size exceeds fixed limit"): about the
 * message, never about the member it was sent to.
 */
export function refusedForSize(response: string): boolean {
  const status = /\b([45]\.\d{1,3}\.\d{1,3})\b/.exec(response)?.[1] ?? null;
  return classifyText(status, response).category === 'message_too_big';
}
