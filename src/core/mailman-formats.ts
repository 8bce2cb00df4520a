/*
 * What `listkeeper import-mailman` reads, turned into one plan: the list's address, its settings
 * by LIST_SETTINGS name (as `list set` takes them), owners, moderators, members with their modes,
 * banned and allowed senders, and each Mailman setting that has no equivalent here. Pure: files
 * in, plan out. The formats, and which Mailman setting becomes which (docs/command-line.md):
 *
 * Mailman 3: the JSON of its REST API (what Postorius reads), one response per file or several
 * under one object {config, members, owners, moderators, bans}: GET /3.1/lists/LIST/config, the
 * rosters GET /3.1/lists/LIST/roster/{member,owner,moderator} ({entries: [{email, display_name,
 * delivery_mode, role…}]}; an entry may carry delivery_status from the member's preferences) and
 * GET /3.1/lists/LIST/bans ({entries: [{email…}]}).
 *
 * Mailman 2: `config_list -o FILE LIST` (Python assignments) and `list_members` output, one
 * address or `Name <address>` (-f) a line, one file per flag: the file's name says which, by
 * containing "regular", "digest" or "nomail" (list_members -r, -d, -n), and for digest members
 * the kind after it, "digest-plain" or "digest-mime" (--digest=plain, --digest=mime). Without a
 * flag list_members prints regular and digest members alike, so a name without one is refused.
 * Mailman 2 keeps delivery on or off apart from the digest choice: a digest member whose delivery
 * is off (in both files) is `nomail` here, remembering digest as the mode to go back to.
 */

import path from 'node:path';
import { InvalidInput } from '../errors.ts';
import type { DeliveryMode, DigestFormat } from '../list-policies.ts';
import { normalizeEmail, parseMailbox } from '../mail/address.ts';
import { parseAssignments, PythonSyntaxError, type PyValue } from './mailman-python.ts';
import { senderKey } from './sender-rules.ts';

export interface ImportMember {
  email: string;
  name: string | null;
  mode: DeliveryMode;
  /** with mode `nomail`: the mode delivery resumes in (members.mode_before_nomail), null for `each` */
  modeBeforeNomail: 'digest' | null;
  digestFormat: DigestFormat | null;
}

export interface ImportPlan {
  format: 'mailman3' | 'mailman2';
  address: string | null;
  /** setting name → text value, checked later by parseListSettings */
  settings: [string, string][];
  owners: string[];
  moderators: string[];
  members: ImportMember[];
  bans: string[];
  allows: string[];
  /** a Mailman setting (or part of one) listkeeper has no equivalent for, and why */
  unmapped: { setting: string; value: string; note: string }[];
  /** input refused line by line (an address that is none): reported, the rest imported */
  problems: { file: string; line: number | null; input: string; error: string }[];
}

export interface InputFile {
  name: string;
  text: string;
}

/** Reads every file into one plan; a file that is of no known format, or no configuration among them, is an InvalidInput. */
export function readMailmanFiles(files: InputFile[]): ImportPlan {
  const plan: ImportPlan = { format: 'mailman3', address: null, settings: [], owners: [], moderators: [], members: [], bans: [], allows: [], unmapped: [], problems: [] };
  let configs = 0;
  const memberFiles: InputFile[] = [];
  const pages: RosterPage[] = [];
  for (const f of files) {
    const t = f.text.replace(/^\uFEFF/, '').trim();
    if (t.startsWith('{') || t.startsWith('[') || /\.json$/i.test(f.name)) {
      let json: unknown;
      if (jsonDepth(t) > MAX_JSON_DEPTH) throw new InvalidInput(`${f.name}: JSON nested more than ${MAX_JSON_DEPTH} deep: not a Mailman 3 REST response`, 'bad_import');
      try {
        json = JSON.parse(t);
      } catch (err) {
        throw new InvalidInput(`${f.name}: not JSON (${(err as Error).message})`, 'bad_import');
      }
      configs += readMailman3(f.name, json, plan, pages);
    } else if (/^[ \t]*#[ \t]*-\*- python -\*-|mailing list configuration settings|^[a-z_]+ = /m.test(t)) {
      plan.format = 'mailman2';
      configs += 1;
      readMailman2Config(f.name, t, plan);
    } else {
      memberFiles.push(f);
    }
  }
  // Regular, then digest, then nomail: list_members -n repeats members the others list too.
  const order = (f: InputFile) => ['regular', 'digest', 'nomail'].indexOf(memberFlag(f).flag);
  for (const f of memberFiles.sort((a, b) => order(a) - order(b))) readMemberLines(f, plan);
  noteDigestKindUnknown(plan);
  refuseMissingPages(pages);
  if (configs === 0) throw new InvalidInput('no list configuration among the files: give the Mailman 3 list config JSON or Mailman 2 config_list -o output', 'bad_import');
  if (configs > 1) throw new InvalidInput('more than one list configuration among the files: import one list at a time', 'bad_import');
  if (!plan.address) throw new InvalidInput('the configuration names no list address (list_name and mail_host, or host_name)', 'bad_import');
  return plan;
}

const MAX_JSON_DEPTH = 100;

/** How deep a JSON text's arrays and objects nest, counted without parsing (reading a deeper value recursively would exhaust the stack). */
function jsonDepth(t: string): number {
  let [depth, max, inString] = [0, 0, false];
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[' || c === '{') max = Math.max(max, ++depth);
    else if (c === ']' || c === '}') depth--;
  }
  return max;
}

type MemberFlag = 'regular' | 'digest' | 'nomail';

/** Which list_members output a file is, by its name; for digest members the kind after the flag (--digest=plain, --digest=mime), when given. */
function memberFlag(f: InputFile): { flag: MemberFlag; kind: DigestFormat | null } {
  // The flag is the last of the words in the file's name: a list called "digest-fans" has its
  // regular members in digest-fans-regular.txt, and they are not digest members.
  const flags = [...path.basename(f.name).toLowerCase().matchAll(/(?<=^|[-_.\s])(regular|digest|nomail)(?:[-_.=\s]+(plain|mime))?(?=[-_.=\s]|$)/g)];
  const last = flags.at(-1);
  if (last) return { flag: last[1] as MemberFlag, kind: last[1] === 'digest' ? ((last[2] as DigestFormat | undefined) ?? null) : null };
  const looksLikeMembers = f.text.split('\n').some((l) => parseMailbox(l).email !== null);
  throw new InvalidInput(looksLikeMembers
    ? `${f.name}: cannot tell which list_members output this is: name the file after its flag (…regular…, …digest…, …nomail…)`
    : `${f.name}: not a format import-mailman knows (Mailman 3 REST JSON, config_list -o output, list_members output)`, 'bad_import');
}

function readMemberLines(f: InputFile, plan: ImportPlan) {
  const { flag, kind } = memberFlag(f);
  // By address, not plan.members.find per line: that made 100,000 lines take 40 seconds.
  const byEmail = new Map(plan.members.map((m) => [m.email, m]));
  f.text.split(/\r?\n/).forEach((raw, n) => {
    const line = raw.trim();
    if (!line) return;
    const { email, name } = parseMailbox(line);
    // JSON's quoting shows a control character in the line as an escape, not raw on a terminal.
    if (!email) return void plan.problems.push({ file: f.name, line: n + 1, input: line, error: `${f.name}:${n + 1}: ${JSON.stringify(line)} is not an e-mail address` });
    const known = byEmail.get(email);
    if (!known) {
      const member: ImportMember = { email, name, mode: flag === 'regular' ? 'each' : flag, modeBeforeNomail: null, digestFormat: kind };
      plan.members.push(member);
      byEmail.set(email, member);
    } else if (flag === 'nomail') {
      // Digest and nomail both: delivery off, and digests when it is back on (not every post).
      if (known.mode === 'digest') known.modeBeforeNomail = 'digest';
      known.mode = 'nomail';
    } else if (flag === 'digest') {
      known.mode = 'digest';
      known.digestFormat = kind ?? known.digestFormat;
    }
  });
}

/**
 * `list_members -d` prints plain and MIME digest members alike: their kind is not in the files,
 * so say so rather than give them all the default (MIME) without a word.
 */
function noteDigestKindUnknown(plan: ImportPlan) {
  const n = plan.members.filter((m) => (m.mode === 'digest' || m.modeBeforeNomail === 'digest') && !m.digestFormat).length;
  if (n === 0) return;
  plan.unmapped.push({
    setting: 'list_members -d', value: `${n} digest member${n === 1 ? '' : 's'}`,
    note: 'plain or MIME not told apart: a new member gets MIME digests; give list_members --digest=plain and --digest=mime output (…digest-plain…, …digest-mime…) to keep each one\'s',
  });
}

// ---- Mailman 3 ----

/** One JSON document; how many list configurations it held. */
function readMailman3(file: string, json: unknown, plan: ImportPlan, pages: RosterPage[]): number {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new InvalidInput(`${file}: not a Mailman 3 REST response (a JSON object)`, 'bad_import');
  const o = json as Record<string, unknown>;
  if (typeof o.list_name === 'string' || typeof o.fqdn_listname === 'string') {
    readMailman3Config(o, plan);
    return 1;
  }
  if (Array.isArray(o.entries) || typeof o.total_size === 'number') {
    // Read as an array, anything else stopped the command with "entries.forEach is not a function".
    if (o.entries !== undefined && !Array.isArray(o.entries)) throw new InvalidInput(`${file}: "entries" is not an array: not a Mailman 3 REST response`, 'bad_import');
    notePage(pages, file, o);
    readMailman3Entries(file, (o.entries ?? []) as unknown[], plan);
    return 0;
  }
  const parts = ['config', 'members', 'owners', 'moderators', 'bans'].filter((k) => k in o);
  if (parts.length === 0) throw new InvalidInput(`${file}: not a format import-mailman knows (a list config, a roster or bans, or {config, members, owners, moderators, bans})`, 'bad_import');
  let configs = 0;
  for (const k of parts) {
    if (k === 'bans' && Array.isArray(o.bans)) readMailman3Entries(file, o.bans.map((b) => (typeof b === 'string' ? { email: b, self_link: '/bans/' } : b)), plan, 'ban');
    else if (k !== 'config' && Array.isArray(o[k])) readMailman3Entries(file, o[k] as unknown[], plan, k === 'members' ? 'member' : k.slice(0, -1));
    else if (k !== 'config' && o[k] && typeof o[k] === 'object' && Array.isArray((o[k] as { entries?: unknown }).entries)) {
      const role = k === 'bans' ? 'ban' : k === 'members' ? 'member' : k.slice(0, -1);
      notePage(pages, `${file} (${k})`, o[k] as Record<string, unknown>, role);
      readMailman3Entries(file, (o[k] as { entries: unknown[] }).entries, plan, role);
    } else configs += readMailman3(`${file} (${k})`, o[k], plan, pages);
  }
  return configs;
}

/**
 * A JSON value as text: a string as it is, anything else as its JSON. String() of an object made
 * "[object Object]", and one whose "toString" is no function stopped the command with
 * "Cannot convert object to primitive value".
 */
function text(v: unknown): string {
  return typeof v === 'string' ? v : v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** What Mailman 3 does with a post (default_member_action, default_nonmember_action). */
const MM3_ACTIONS = new Set(['hold', 'reject', 'discard', 'accept', 'defer']);

// Maps, not objects: a value read from the file ("constructor", "toString") must not find Object's own.
const MM3_DIGEST = new Map<string, DigestFormat>([['plaintext_digests', 'plain'], ['mime_digests', 'mime'], ['summary_digests', 'mime']]);

function readMailman3Entries(file: string, entries: unknown[], plan: ImportPlan, role?: string) {
  entries.forEach((e, n) => {
    const entry = (e ?? {}) as Record<string, unknown>;
    const raw = text(entry.email ?? entry.address ?? '');
    const kind = text(entry.role ?? role ?? (text(entry.self_link ?? '').includes('/bans/') ? 'ban' : ''));
    if (kind === 'ban') {
      // A ban is an address or a regular expression (^…); only ^.*@domain$ has an equivalent.
      return void addBan(plan, 'bans', raw);
    }
    const email = normalizeEmail(raw);
    if (!email) return void plan.problems.push({ file, line: null, input: raw, error: `${file}: entry ${n + 1}: ${JSON.stringify(raw)} is not an e-mail address` });
    if (kind === 'owner') pushOnce(plan.owners, email);
    else if (kind === 'moderator') pushOnce(plan.moderators, email);
    else if (kind === 'member') {
      const delivery = text(entry.delivery_mode ?? 'regular');
      if (delivery !== 'regular' && !MM3_DIGEST.has(delivery)) {
        return void plan.problems.push({ file, line: null, input: email, error: `${file}: entry ${n + 1} (${email}): unknown delivery_mode ${JSON.stringify(delivery)} (regular, plaintext_digests, mime_digests or summary_digests)` });
      }
      const status = text(entry.delivery_status ?? 'enabled');
      if (entry.moderation_action && entry.moderation_action !== 'defer') plan.unmapped.push({ setting: `moderation_action (${email})`, value: text(entry.moderation_action), note: 'no per-member moderation: use post_policy or a sender rule' });
      plan.members.push({
        email,
        // Control characters (a NUL, a line break) become spaces: PostgreSQL stores no NUL, and a name is one line.
        name: typeof entry.display_name === 'string' && entry.display_name.trim() ? entry.display_name.replace(/[\s\x00-\x1f\x7f]+/g, ' ').trim().slice(0, 200) || null : null,
        mode: status !== 'enabled' ? 'nomail' : delivery === 'regular' ? 'each' : 'digest',
        // A digest reader whose delivery is off goes back to digests when it is on again.
        modeBeforeNomail: status !== 'enabled' && delivery !== 'regular' ? 'digest' : null,
        digestFormat: MM3_DIGEST.get(delivery) ?? null,
      });
    } else if (kind === 'nonmember') {
      // A non-member's own action is a sender rule here: accept lets them post, discard and reject
      // refuse them; hold and defer are what a list does with non-members anyway.
      const action = text(entry.moderation_action ?? '');
      if (action === 'accept') addBan(plan, 'nonmember moderation_action', email, 'allow');
      else if (action === 'discard' || action === 'reject') addBan(plan, 'nonmember moderation_action', email);
      else if (action && action !== 'hold' && action !== 'defer') plan.unmapped.push({ setting: `moderation_action (${email}, non-member)`, value: action, note: 'no equivalent' });
    } else {
      throw new InvalidInput(`${file}: entry ${n + 1} is neither a member, an owner, a moderator nor a ban`, 'bad_import');
    }
  });
}

/** A roster or bans response as read: how many entries it held of the `total_size` it announced. */
interface RosterPage {
  file: string;
  kind: string;
  entries: number;
  total: number;
}

function notePage(pages: RosterPage[], file: string, o: Record<string, unknown>, role?: string) {
  if (typeof o.total_size !== 'number') return;
  const entries = Array.isArray(o.entries) ? o.entries : [];
  const first = (entries[0] ?? {}) as Record<string, unknown>;
  const kind = role ?? (typeof first.role === 'string' ? first.role : text(first.self_link ?? '').includes('/bans/') ? 'ban' : 'entries');
  pages.push({ file, kind, entries: entries.length, total: o.total_size });
}

/**
 * Mailman's REST API pages a roster when asked (?count=50&page=1): the response then holds one
 * page of entries and the whole roster's total_size. Imported as it was, the members of the other
 * pages were silently left out and the command said it succeeded; every page must be given.
 */
function refuseMissingPages(pages: RosterPage[]) {
  for (const kind of new Set(pages.map((p) => p.kind))) {
    const of = pages.filter((p) => p.kind === kind);
    const total = Math.max(...of.map((p) => p.total));
    const got = of.reduce((n, p) => n + p.entries, 0);
    if (got >= total) continue;
    const short = of.filter((p) => p.entries < p.total).map((p) => `${p.file} holds ${p.entries} of ${p.total}`).join(', ');
    throw new InvalidInput(`the ${kind} roster is incomplete (${short}: one page of a paginated response?): give every page, or fetch it without count and page`, 'bad_import');
  }
}

/** '@domain' as sender rules store it (senderKey), or null for a domain no address can have. */
function domainRuleKey(domain: string): string | null {
  try {
    return senderKey(`@${domain}`);
  } catch {
    return null;
  }
}

function pushOnce(to: string[], v: string) {
  if (!to.includes(v)) to.push(v);
}

function addBan(plan: ImportPlan, setting: string, raw: string, kind: 'ban' | 'allow' = 'ban') {
  const domain = /^\^?\.\*@((?:[a-z0-9-]+\\\.)+[a-z0-9-]+)\$?$/i.exec(raw.trim());
  // The domain spelled as the rules command stores it (U-labels): a rule kept as
  // "@xn--bcher-kva.example" matched no sender, whose address says "bücher.example".
  const key = domain ? domainRuleKey(domain[1].replace(/\\\./g, '.')) : raw.trim().startsWith('^') ? null : normalizeEmail(raw);
  // In Mailman an entry that starts with ^ is a regular expression, one that starts with @ names
  // another list, whose members it means (not a domain, as @ does in a rule here); any other is an address.
  const start = raw.trim()[0];
  const what = start === '^' ? 'a regular expression' : start === '@' ? 'another list\'s members (Mailman\'s @LISTNAME)' : 'not an e-mail address';
  if (!key) return void plan.unmapped.push({ setting, value: raw, note: `${what}: rules here are an address or a whole @domain` });
  pushOnce(kind === 'ban' ? plan.bans : plan.allows, key);
}

/** Settings that are one line here (core/lists.ts oneLineProblem): Mailman's, with a line break in them, are folded rather than refused. */
const ONE_LINE = new Set(['name', 'description', 'subject_prefix']);

function oneLine(setting: string, v: string): string {
  return ONE_LINE.has(setting) ? v.replace(/[\x00-\x1f\x7f]+/g, ' ').trim() : v;
}

const MM3_REPLY = new Map([['no_munging', 'none'], ['point_to_list', 'list'], ['explicit_header', 'address'], ['explicit_header_only', 'address']]);
// Both Mailmans fill %d (or %05d) of a subject prefix with the post's number.
const POST_NUMBER_NOTE = 'the post number (%d) is not filled in';
// Mailman keeps "an explicit Reply-To" with no address in it (and then adds none); the setting
// here needs the address, so the list keeps its Reply-To as it is.
const NO_REPLY_ADDRESS_NOTE = 'an explicit Reply-To without an address: Reply-To left as it was';
const MM3_SUBSCRIBE = new Map([['open', 'open'], ['confirm', 'confirm'], ['moderate', 'approve'], ['confirm_then_moderate', 'approve']]);
const MM3_ARCHIVE = new Map([['public', 'public'], ['private', 'members'], ['never', 'private']]);
const MM3_ROSTER = new Map([['moderators', 'owners'], ['members', 'members'], ['public', 'anyone']]);
/** config keys that are not settings: identities, addresses derived from the name, state */
const MM3_NOT_SETTINGS = new Set(['list_name', 'mail_host', 'fqdn_listname', 'list_id', 'http_etag', 'self_link', 'created_at', 'last_post_at', 'digest_last_sent_at', 'next_digest_number', 'post_id', 'volume',
  'bounces_address', 'join_address', 'leave_address', 'owner_address', 'posting_address', 'request_address', 'no_reply_address']);

function readMailman3Config(c: Record<string, unknown>, plan: ImportPlan) {
  const fq = typeof c.fqdn_listname === 'string' ? c.fqdn_listname
    : typeof c.list_name === 'string' && typeof c.mail_host === 'string' ? `${c.list_name}@${c.mail_host}` : null;
  // Without both, no address: readMailmanFiles says so (not "nohost@undefined").
  if (fq) plan.address = fq.toLowerCase();
  const used = new Set<string>(MM3_NOT_SETTINGS);
  const val = (k: string) => {
    used.add(k);
    return c[k];
  };
  const set = (name: string, v: unknown) => plan.settings.push([name, oneLine(name, String(v))]);
  const note = (k: string, note: string) => plan.unmapped.push({ setting: k, value: show(c[k]), note });

  if (typeof val('display_name') === 'string' && c.display_name) set('name', c.display_name);
  if (typeof val('description') === 'string') set('description', c.description);
  if (typeof val('subject_prefix') === 'string') {
    const prefix = String(c.subject_prefix).trim();
    set('subject_prefix', prefix);
    if (/%\d*d/.test(prefix)) note('subject_prefix', POST_NUMBER_NOTE);
  }
  const reply = val('reply_goes_to_list');
  const replyAddress = typeof val('reply_to_address') === 'string' ? String(c.reply_to_address).trim() : '';
  if (typeof reply === 'string') {
    if (MM3_REPLY.get(reply) === 'address' && !replyAddress) note('reply_goes_to_list', NO_REPLY_ADDRESS_NOTE);
    else if (MM3_REPLY.has(reply)) set('reply_to', MM3_REPLY.get(reply));
    else note('reply_goes_to_list', 'unknown value');
    if (reply === 'explicit_header_only' && replyAddress) note('reply_goes_to_list', 'the author\'s own Reply-To is kept besides the list\'s address');
  }
  if (replyAddress) set('reply_to_address', replyAddress);
  // An action Mailman does not have is reported, and the default taken: it was taken without a word.
  const action = (k: string, otherwise: string) => {
    const v = val(k);
    if (v === undefined || v === null) return otherwise;
    if (typeof v === 'string' && MM3_ACTIONS.has(v)) return v;
    note(k, 'unknown value');
    return otherwise;
  };
  const memberAction = action('default_member_action', 'defer');
  const nonmemberAction = action('default_nonmember_action', 'hold');
  set('post_policy', memberAction === 'hold' ? 'moderated' : nonmemberAction === 'accept' ? 'open' : 'members');
  if (['reject', 'discard'].includes(memberAction)) note('default_member_action', 'members\' posts are held, not refused or dropped');
  if (['reject', 'discard'].includes(nonmemberAction)) note('default_nonmember_action', 'non-members\' posts are held, not refused or dropped (a ban rule drops one sender\'s)');
  const sub = val('subscription_policy');
  if (typeof sub === 'string' && MM3_SUBSCRIBE.has(sub)) set('subscribe_policy', MM3_SUBSCRIBE.get(sub));
  else if (sub !== undefined) note('subscription_policy', 'unknown value');
  if (sub === 'moderate') note('subscription_policy', 'the address confirms by mail before an owner approves');
  const arch = val('archive_policy');
  if (typeof arch === 'string' && MM3_ARCHIVE.has(arch)) set('archive', MM3_ARCHIVE.get(arch));
  else if (arch !== undefined) note('archive_policy', 'unknown value');
  if (arch === 'never') note('archive_policy', 'posts are archived all the same, shown to nobody but members and moderators (archive=private)');
  const size = val('max_message_size');
  if (typeof size === 'number' || /^\d+$/.test(text(size ?? ''))) set('max_message_size', Number(size) * 1024);
  else if (size !== undefined && size !== null) note('max_message_size', 'unknown value');
  if (c.digest_size_threshold !== undefined && Number(text(val('digest_size_threshold'))) > 0) set('digest_size_threshold', Math.max(1024, Math.round(Number(c.digest_size_threshold) * 1024)));
  const dmarc = val('dmarc_mitigate_action');
  const always = val('dmarc_mitigate_unconditionally') === true;
  if (dmarc === 'no_mitigation') set('dmarc_mitigation', 'none');
  else if (dmarc === 'munge_from') set('dmarc_mitigation', always ? 'munge_from_always' : 'munge_from');
  else if (dmarc === 'wrap_message') {
    set('dmarc_mitigation', 'wrap_message');
    if (always) note('dmarc_mitigate_unconditionally', 'messages are wrapped only for authors whose domain asks for reject or quarantine');
  } else if (dmarc !== undefined) {
    set('dmarc_mitigation', 'munge_from');
    note('dmarc_mitigate_action', 'posts from strict DMARC domains are not refused or dropped: the From is rewritten instead (dmarc_mitigation=munge_from)');
  }
  if (dmarc === 'munge_from' || dmarc === 'no_mitigation' || dmarc === undefined) used.add('dmarc_mitigate_unconditionally');
  const roster = val('member_roster_visibility');
  if (typeof roster === 'string' && MM3_ROSTER.has(roster)) set('roster_visibility', MM3_ROSTER.get(roster));
  else if (roster !== undefined) note('member_roster_visibility', 'unknown value');
  if (typeof val('respond_to_post_requests') === 'boolean') set('notify_held_sender', c.respond_to_post_requests ? 'yes' : 'no');
  if (typeof val('send_welcome_message') === 'boolean') set('send_welcome', c.send_welcome_message ? 'yes' : 'no');
  if (typeof val('send_goodbye_message') === 'boolean') set('send_goodbye', c.send_goodbye_message ? 'yes' : 'no');
  if (typeof val('bounce_score_threshold') === 'number') set('bounce_threshold', c.bounce_score_threshold);
  if (typeof val('bounce_you_are_disabled_warnings') === 'number') set('bounce_warnings', c.bounce_you_are_disabled_warnings);
  // Mailman's REST API writes a timedelta as "7d", or "0d43200.0s" when it is not whole days
  // (rest/helpers.py): that form was dropped without a word, as any other would have been.
  const intervalValue = val('bounce_you_are_disabled_warnings_interval');
  const interval = /^(\d+)d(?:(\d+(?:\.\d+)?)s)?$/.exec(text(intervalValue ?? ''));
  if (interval) {
    const days = Number(interval[1]) + Number(interval[2] ?? 0) / 86400;
    set('bounce_warning_interval_days', Math.max(1, Math.round(days)));
    if (!Number.isInteger(days)) note('bounce_you_are_disabled_warnings_interval', `whole days here: ${Math.max(1, Math.round(days))}`);
  } else if (intervalValue !== undefined && intervalValue !== null) note('bounce_you_are_disabled_warnings_interval', 'unknown value');
  for (const [k, list] of [['accept_these_nonmembers', 'allow'], ['discard_these_nonmembers', 'ban']] as const) {
    const v = val(k);
    if (Array.isArray(v)) for (const p of v) addBan(plan, k, text(p), list);
  }
  // What is left has no equivalent; empty values and defaults that listkeeper shares are not worth a line.
  for (const [k, v] of Object.entries(c)) {
    if (used.has(k) || v === null || v === '' || (Array.isArray(v) && v.length === 0)) continue;
    plan.unmapped.push({ setting: k, value: show(v), note: 'no equivalent' });
  }
}

// ---- Mailman 2 ----

const MM2_REPLY = ['none', 'list', 'address'];
const MM2_SUBSCRIBE = ['open', 'confirm', 'approve', 'approve'];
const MM2_ROSTER = ['anyone', 'members', 'owners'];
const MM2_NOT_SETTINGS = new Set(['host_name', 'real_name']);

function readMailman2Config(file: string, text: string, plan: ImportPlan) {
  let assignments: ReturnType<typeof parseAssignments>;
  try {
    assignments = parseAssignments(text);
  } catch (err) {
    if (err instanceof PythonSyntaxError) throw new InvalidInput(`${file}: not config_list output: ${err.message}`, 'bad_import');
    throw err;
  }
  const c = new Map(assignments.map((a) => [a.name, a.value]));
  const header = /^## "([^"]+)" mailing list configuration settings/m.exec(text);
  const local = (header?.[1] ?? String(c.get('real_name') ?? '')).toLowerCase();
  const host = c.get('host_name');
  plan.address = local && typeof host === 'string' && host ? `${local}@${host.toLowerCase()}` : null;
  const used = new Set<string>(MM2_NOT_SETTINGS);
  const val = (k: string) => {
    used.add(k);
    return c.get(k);
  };
  const num = (k: string) => {
    const v = val(k);
    return typeof v === 'boolean' ? Number(v) : typeof v === 'number' ? v : null;
  };
  const set = (name: string, v: unknown) => plan.settings.push([name, oneLine(name, String(v))]);
  const note = (k: string, n: string) => plan.unmapped.push({ setting: k, value: show(c.get(k)), note: n });

  if (typeof c.get('real_name') === 'string') set('name', c.get('real_name'));
  if (typeof val('description') === 'string') set('description', c.get('description'));
  if (typeof val('subject_prefix') === 'string') {
    const prefix = String(c.get('subject_prefix')).trim();
    set('subject_prefix', prefix);
    if (/%\d*d/.test(prefix)) note('subject_prefix', POST_NUMBER_NOTE);
  }
  const reply = num('reply_goes_to_list');
  const replyAddress = typeof val('reply_to_address') === 'string' ? String(c.get('reply_to_address')).trim() : '';
  if (reply !== null && MM2_REPLY[reply] === 'address' && !replyAddress) note('reply_goes_to_list', NO_REPLY_ADDRESS_NOTE);
  else if (reply !== null && MM2_REPLY[reply]) set('reply_to', MM2_REPLY[reply]);
  else if (reply !== null) note('reply_goes_to_list', 'unknown value');
  if (replyAddress) set('reply_to_address', replyAddress);
  const moderated = num('default_member_moderation') === 1;
  const nonmember = num('generic_nonmember_action') ?? 1;
  set('post_policy', moderated ? 'moderated' : nonmember === 0 ? 'open' : 'members');
  if (moderated && (num('member_moderation_action') ?? 0) > 0) note('member_moderation_action', 'moderated members\' posts are held, not refused or dropped');
  if (!moderated) used.add('member_moderation_action');
  if (nonmember >= 2) note('generic_nonmember_action', 'non-members\' posts are held, not refused or dropped (a ban rule drops one sender\'s)');
  const sub = num('subscribe_policy');
  if (sub !== null && MM2_SUBSCRIBE[sub]) set('subscribe_policy', MM2_SUBSCRIBE[sub]);
  else if (sub !== null) note('subscribe_policy', 'unknown value');
  const archive = num('archive');
  const archivePrivate = num('archive_private');
  if (archive === 0) {
    set('archive', 'private');
    note('archive', 'posts are archived all the same, shown to nobody but members and moderators (archive=private)');
  } else if (archivePrivate !== null) set('archive', archivePrivate === 1 ? 'members' : 'public');
  const size = num('max_message_size');
  if (size !== null) set('max_message_size', size * 1024);
  const digestSize = num('digest_size_threshhold');
  if (digestSize !== null && digestSize > 0) set('digest_size_threshold', Math.max(1024, Math.round(digestSize * 1024)));
  const dmarc = num('dmarc_moderation_action');
  const fromIsList = num('from_is_list');
  if (fromIsList === 1) set('dmarc_mitigation', 'munge_from_always');
  else if (fromIsList === 2) {
    set('dmarc_mitigation', 'wrap_message');
    note('from_is_list', 'messages are wrapped only for authors whose domain asks for reject or quarantine');
  } else if (dmarc === 1 || dmarc === 2) set('dmarc_mitigation', dmarc === 1 ? 'munge_from' : 'wrap_message');
  else if (dmarc === 0) set('dmarc_mitigation', 'none');
  else if (dmarc !== null) {
    set('dmarc_mitigation', 'munge_from');
    note('dmarc_moderation_action', 'posts from strict DMARC domains are not refused or dropped: the From is rewritten instead (dmarc_mitigation=munge_from)');
  }
  const roster = num('private_roster');
  if (roster !== null && MM2_ROSTER[roster]) set('roster_visibility', MM2_ROSTER[roster]);
  const respond = num('respond_to_post_requests');
  if (respond !== null) set('notify_held_sender', respond ? 'yes' : 'no');
  for (const [mm2, here] of [['send_welcome_msg', 'send_welcome'], ['send_goodbye_msg', 'send_goodbye']] as const) {
    const v = num(mm2);
    if (v !== null) set(here, v ? 'yes' : 'no');
  }
  const threshold = num('bounce_score_threshold');
  if (threshold !== null) set('bounce_threshold', threshold);
  const warnings = num('bounce_you_are_disabled_warnings');
  if (warnings !== null) set('bounce_warnings', warnings);
  const every = num('bounce_you_are_disabled_warnings_interval');
  if (every !== null) set('bounce_warning_interval_days', Math.max(1, every));
  const footer = val('msg_footer');
  if (typeof footer === 'string') {
    const filled = fillFooter(footer, { real_name: String(c.get('real_name') ?? ''), list_name: local, _internal_name: local, host_name: String(host ?? ''), description: String(c.get('description') ?? ''), info: String(c.get('info') ?? '') });
    set('footer', filled);
    const left = [...new Set(filled.match(/%\([a-z_]+\)s/g) ?? [])];
    if (left.length > 0) note('msg_footer', `kept as text with ${left.join(', ')} not filled in: edit the footer`);
  }
  for (const [k, role] of [['owner', 'owners'], ['moderator', 'moderators']] as const) {
    const v = val(k);
    for (const e of Array.isArray(v) ? v : []) {
      const email = normalizeEmail(String(e));
      if (email) pushOnce(plan[role], email);
      else plan.problems.push({ file, line: null, input: String(e), error: `${file}: ${k}: "${String(e)}" is not an e-mail address` });
    }
  }
  for (const [k, kind] of [['ban_list', 'ban'], ['discard_these_nonmembers', 'ban'], ['accept_these_nonmembers', 'allow']] as const) {
    const v = val(k);
    for (const p of Array.isArray(v) ? v : []) addBan(plan, k, String(p), kind);
  }
  for (const a of assignments) {
    if (used.has(a.name) || a.value === '' || a.value === null || (Array.isArray(a.value) && a.value.length === 0)) continue;
    plan.unmapped.push({ setting: a.name, value: show(a.value), note: 'no equivalent' });
  }
}

/**
 * Mailman's %(name)s fields filled in; every brace, the text's own and the values', doubled, since
 * a footer here is a template where {name} is a variable (src/mail/templates.ts).
 */
function fillFooter(text: string, vars: Record<string, string>): string {
  const literal = (t: string) => t.replace(/[{}]/g, (b) => b + b);
  return literal(text).replace(/%\(([a-z_]+)\)s/g, (all, k: string) => (Object.prototype.hasOwnProperty.call(vars, k) ? literal(vars[k]) : all));
}

function show(v: PyValue | unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  const one = s.replace(/\s+/g, ' ');
  return one.length > 60 ? `${one.slice(0, 60)}…` : one;
}

/**
 * A file's text in the charset it declares: Mailman 2's config_list writes non-ASCII values raw,
 * in the list's charset, and says which on a `# -*- coding: X -*-` line (PEP 263) in its first
 * two lines. Anything else is UTF-8. Bytes that are not the charset's are an error, never
 * replacement characters stored as the list's text.
 */
export function decodeText(name: string, bytes: Buffer): string {
  const head = bytes.subarray(0, 400).toString('latin1').split('\n', 2).join('\n');
  const declared = /^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)/m.exec(head)?.[1].toLowerCase() ?? 'utf-8';
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(declared === 'us-ascii' || declared === 'ascii' ? 'utf-8' : declared, { fatal: true });
  } catch {
    throw new InvalidInput(`${name}: declares the charset "${declared}", which is not one this can read: convert the file to UTF-8 (iconv) and remove that line`, 'bad_import');
  }
  try {
    return decoder.decode(bytes);
  } catch {
    throw new InvalidInput(`${name}: not valid ${declared} text: convert the file to UTF-8 (iconv -f CHARSET -t UTF-8)`, 'bad_import');
  }
}
