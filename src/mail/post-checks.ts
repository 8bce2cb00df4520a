/*
 * What listkeeper learnt about a post as it arrived: who handed it over (the peer), the trace
 * line of that hop, how it authenticated, how the spam scanner scored it. Stored with the message
 * (messages.checks, held_messages.checks: sql/0024) while the archived bytes stay exactly as
 * received; each copy gets the trace fields built from it on top (traceFields). A leaf: types and
 * pure functions only.
 */

/** The SMTP client that handed a message to the ingest listener (behind Postfix: its XFORWARD). */
export interface Peer {
  /** the client's IP address (XFORWARD ADDR behind Postfix) */
  ip: string | null;
  /** what it said in EHLO/HELO (XFORWARD HELO behind Postfix) */
  helo: string | null;
  /** the reverse-DNS name of the client, when known */
  hostname?: string | null;
  /** TLS of the session, when STARTTLS was used: protocol (TLSv1.3) and cipher name */
  tls?: { protocol: string; cipher: string } | null;
  /**
   * the client is a relay in front of us, not the sender's server (LMTP from Postfix without
   * XFORWARD): its address and HELO say nothing SPF could judge
   */
  relay?: boolean;
  /** SMTP, ESMTP, ESMTPS, LMTP… (RFC 3848 "with" keywords) */
  protocol?: string;
  /** the ingest's id of the transaction (the Received line's id, the 250 reply's "queued as") */
  id?: string;
}

/** What the authentication checks found (mailauth): each method's result, and what follows. */
export interface AuthChecks {
  spf: string;
  dkim: string;
  dmarc: string;
  arc: string;
  /** the highest instance (i=) of the ARC chain the post arrived with; 0 when it had none */
  arcInstance: number;
  /** the From header's domain */
  fromDomain: string | null;
  /**
   * the DMARC policy that applies to From's domain (p=, or sp= for a subdomain): reject,
   * quarantine or none; null without a record or when it could not be read
   */
  dmarcPolicy?: string | null;
  /**
   * the (organisational) domain DMARC's verdict is for: From's, or for a From of several domains
   * the one whose verdict asked most; null without a verdict. Absent in checks stored before it.
   */
  dmarcDomain?: string | null;
  /** SPF or DKIM passed for a domain aligned with From (DMARC's test, whatever the policy) */
  aligned: boolean;
  /**
   * why the verdict cannot be trusted either way, when that could change it (null: it stands): a
   * lookup that failed for now (temperror) for DMARC's own record, for SPF of an envelope domain
   * aligned with From, or for the key of a DKIM signature whose d= is aligned with From; or a
   * From of more domains than are checked (permerror, "From names more than 10 domains"). Such a
   * post is held, never refused; a temperror anywhere else changes nothing. Absent in checks
   * stored before it existed.
   */
  unsure?: { result: 'temperror' | 'permerror'; reason: string } | null;
  /** the value of Authentication-Results (authserv-id; method=result …), without the field name */
  header: string;
}

/** The spam scanner's verdict (rspamd /checkv2). */
export interface SpamChecks {
  score: number;
  /** rspamd's own action: no action, add header, rewrite subject, soft reject, reject, greylist */
  action: string;
  symbols: string[];
}

export interface PostChecks {
  /** the value of the Received field for the hop into listkeeper (RFC 5321 §4.4), without "Received: " */
  received?: string;
  auth?: AuthChecks;
  spam?: SpamChecks;
  /** the scanner was asked but did not answer: the post was taken unscanned (SPAM_CHECK_FAIL=accept) */
  spamUnchecked?: string;
}

/**
 * The trace fields put on top of each copy, newest first as trace fields go (RFC 5322 §3.6.7):
 * Authentication-Results above the Received line of the hop they describe.
 */
export function traceFields(checks: PostChecks | null | undefined): string[] {
  if (!checks) return [];
  const fields: string[] = [];
  if (checks.auth?.header) fields.push(`Authentication-Results: ${checks.auth.header}`);
  if (checks.received) fields.push(`Received: ${checks.received}`);
  return fields;
}
