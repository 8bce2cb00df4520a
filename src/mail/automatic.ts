/*
 * Whether a message was sent by a program rather than a person, read from its envelope and
 * headers alone (RFC 3834 Auto-Submitted, RFC 5321 null reverse-path, the Precedence and
 * X-Autoreply conventions). One place for the question that three stages ask: the posting rules
 * (automatic mail is never distributed as it stands), the command addresses (never answered) and
 * the bounce reader (an auto-reply is never a bounce). Pure.
 */

export type AutomaticKind =
  /** a delivery report: null envelope sender or MAILER-DAEMON */
  | 'delivery-report'
  /** mail from a site's mail system role (postmaster) */
  | 'mail-system'
  /** an answer made by a program: vacation, out-of-office, ticket acknowledgements */
  | 'auto-reply'
  /** sent by a program on its own account (Auto-Submitted: auto-generated, auto-notified, …) */
  | 'auto-generated'
  /** Precedence: bulk or junk */
  | 'bulk';

export interface AutomaticMark {
  kind: AutomaticKind;
  /** what gave it away, for people: "Auto-Submitted: auto-replied" */
  evidence: string;
}

const DAEMON = /^(?:mailer-daemon|mailer_daemon|mail-daemon|mailerdaemon)$/i;
const SYSTEM = /^(?:postmaster)$/i;

const localPart = (address: string | null | undefined) => {
  const at = address ? address.lastIndexOf('@') : -1;
  return address ? (at < 0 ? address : address.slice(0, at)).trim() : '';
};

const first = (headers: Map<string, string[]>, name: string) => headers.get(name)?.[0]?.trim().toLowerCase() ?? null;

/** RFC 3834: the first token of Auto-Submitted; parameters may follow ("auto-generated; owner-email=…"). */
export function autoSubmitted(headers: Map<string, string[]>): string | null {
  const value = first(headers, 'auto-submitted');
  return value === null ? null : value.split(/[;\s]/)[0];
}

/** Headers that only auto-responders set (whatever their value). */
const AUTO_REPLY_FIELDS = ['x-autoreply', 'x-autorespond', 'x-autoresponder', 'x-autoreply-from', 'x-mail-autoreply'];

/**
 * The first sign that a program sent this message, or null. `envelopeFrom` null or '' is the
 * null reverse-path `<>`, which only delivery reports and auto-replies use.
 */
export function automaticMark(headers: Map<string, string[]>, envelopeFrom: string | null, fromEmail: string): AutomaticMark | null {
  if (!envelopeFrom) return { kind: 'delivery-report', evidence: 'a null envelope sender (<>)' };
  const envelopeLocal = localPart(envelopeFrom);
  const fromLocal = localPart(fromEmail);
  if (DAEMON.test(envelopeLocal)) return { kind: 'delivery-report', evidence: `the envelope sender ${envelopeFrom}` };
  if (DAEMON.test(fromLocal)) return { kind: 'delivery-report', evidence: `From: ${fromEmail}` };
  if (headers.has('auto-submitted')) {
    const auto = autoSubmitted(headers);
    if (auto === 'auto-replied') return { kind: 'auto-reply', evidence: `Auto-Submitted: ${first(headers, 'auto-submitted')}` };
    if (auto !== 'no') return autoResponderMark(headers) ?? { kind: 'auto-generated', evidence: `Auto-Submitted: ${first(headers, 'auto-submitted')}` };
  }
  const responder = autoResponderMark(headers);
  if (responder) return responder;
  const precedence = first(headers, 'precedence');
  if (precedence === 'bulk' || precedence === 'junk') return { kind: 'bulk', evidence: `Precedence: ${precedence}` };
  if (SYSTEM.test(fromLocal) || SYSTEM.test(envelopeLocal)) return { kind: 'mail-system', evidence: `From: ${fromEmail || envelopeFrom}` };
  return null;
}

/**
 * Headers that only auto-responders set: X-Autoreply and its relatives, Precedence: auto_reply.
 * (Auto-Submitted: auto-replied is not among them: mail systems mark their bounces with it too.)
 */
export function autoResponderMark(headers: Map<string, string[]>): AutomaticMark | null {
  if (first(headers, 'precedence') === 'auto_reply') return { kind: 'auto-reply', evidence: 'Precedence: auto_reply' };
  const field = AUTO_REPLY_FIELDS.find((name) => headers.has(name));
  if (field) return { kind: 'auto-reply', evidence: `${field}: ${headers.get(field)![0] ?? ''}`.trim() };
  return null;
}

/**
 * Subjects that vacation and out-of-office programs put in front of the original one (English,
 * German, French, Spanish, Italian, Dutch, Portuguese, as Exchange, Gmail, Sieve vacation and
 * Zimbra write them). Anchored at the start: a post whose subject merely mentions an office is
 * not an auto-reply, and a bounce's "Undeliverable: Out of office" still starts with its own word.
 */
const VACATION_SUBJECT = new RegExp(
  '^\\s*(?:' + [
    'out of (?:the )?office', 'ooo\\b', 'automatic reply', 'auto(?:matic)?[- ]?(?:reply|response|antwort)', 'autoreply', 'auto:',
    'vacation', 'on (?:vacation|holiday|leave)', 'away from (?:my|the) (?:desk|office)', 'abwesenheit', 'abwesend',
    'réponse automatique', 'respuesta automática', 'fuera de la oficina', 'risposta automatica',
    'fuori sede', 'automatische antwort', 'automatisch antwoord', 'afwezig', 'resposta automática',
  ].join('|') + ')',
  'i',
);

export function isVacationSubject(subject: string): boolean {
  return VACATION_SUBJECT.test(subject);
}
