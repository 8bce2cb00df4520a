/*
 * A list's settings by name, as `listkeeper list set LIST KEY=VALUE...` takes them (and the REST
 * API will): each name with how its text value is checked and turned into the stored value. A new
 * setting is one entry here (and its column in db/lists.ts DeliverySettings).
 */

import crypto from 'node:crypto';
import type pg from 'pg';
import type { CoreSettings } from '../db/list-admin.ts';
import type { DeliverySettings, ListRow } from '../db/lists.ts';
import { InvalidInput } from '../errors.ts';
import { ARCHIVE_POLICIES, AUTH_POLICIES, SYNCHRONOUS_COMMITS, DMARC_MITIGATIONS, POST_POLICIES, REPLY_TO_POLICIES, ROSTER_VISIBILITIES, SUBSCRIBE_POLICIES } from '../list-policies.ts';
import { normalizeEmail } from '../mail/address.ts';
import { signingKeyProblem } from '../mail/list-signing.ts';
import { checkTemplate, type TemplateName } from '../mail/templates.ts';
import { oneLineProblem, settingsVersion, updateListSettings } from './lists.ts';

interface Setting {
  /** core settings are the list's identity and policies; delivery ones its sending options */
  group: 'core' | 'delivery';
  /** the stored value for a text value, or an InvalidInput saying what is allowed */
  parse(value: string): unknown;
  /** shown as "replaced"/"removed" in the audit log, never copied */
  secret?: boolean;
}

const oneOf = (allowed: readonly string[]) => (v: string) => {
  if (!allowed.includes(v)) throw new Error(`one of ${allowed.join(', ')}`);
  return v;
};
const text = (max: number) => (v: string) => {
  if (v.length > max) throw new Error(`at most ${max} characters`);
  return v;
};
const line = (max: number) => (v: string) => {
  const problem = oneLineProblem(v);
  if (problem) throw new Error(problem);
  return text(max)(v);
};
// Written in decimal: Number() alone also reads "0x10", "1e3" and "0b11", which a form or a
// script setting a size meant as something else.
const DECIMAL = /^\s*[-+]?\d+(\.\d+)?\s*$/;
const number = (min: number, max: number, opts: { integer?: boolean } = {}) => (v: string) => {
  const n = Number(v);
  if (!DECIMAL.test(v) || !Number.isFinite(n) || n < min || n > max || (opts.integer !== false && !Number.isInteger(n))) {
    throw new Error(`a ${opts.integer === false ? 'number' : 'whole number'} from ${min} to ${max}`);
  }
  return n;
};
const optional = (parse: (v: string) => unknown) => (v: string) => (v === '' ? null : parse(v));
// A spam score threshold (rspamd scores run from below 0 to well above 15); "off" or empty: none.
const spamThreshold = (v: string) => {
  if (v === '' || v.toLowerCase() === 'off') return null;
  const n = Number(v);
  if (!DECIMAL.test(v) || !Number.isFinite(n) || n < -100 || n > 1000) throw new Error('a score from -100 to 1000, or off');
  return n;
};
const yesNo = (v: string) => {
  const t = v.trim().toLowerCase();
  if (['yes', 'true', 'on', '1'].includes(t)) return true;
  if (['no', 'false', 'off', '0'].includes(t)) return false;
  throw new Error('yes or no');
};
const email = (v: string) => {
  const e = normalizeEmail(v);
  if (!e) throw new Error('an e-mail address');
  return e;
};
const domainName = (v: string) => {
  // RFC 1035's lengths too: a label of at most 63 octets, a name of at most 253 characters.
  if (v.length > 253 || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/i.test(v)) throw new Error('a domain name');
  return v.toLowerCase();
};
const selector = (v: string) => {
  if (!/^[A-Za-z0-9._-]{1,63}$/.test(v)) throw new Error('letters, digits, ".", "_" and "-"');
  return v;
};
const privateKey = (v: string) => {
  const key = v.replace(/\r\n/g, '\n').trim();
  if (!/^-----BEGIN (RSA )?PRIVATE KEY-----[\s\S]+-----END (RSA )?PRIVATE KEY-----$/.test(key)) throw new Error('a PEM private key ("-----BEGIN PRIVATE KEY-----"…)');
  // The text must be a key that signs, not just look like one: a key that does not parse would
  // only show up when the first copy is signed (and wait in the queue).
  let parsed: crypto.KeyObject;
  try {
    parsed = crypto.createPrivateKey({ key, format: 'pem' });
  } catch {
    throw new Error('a PEM private key that parses (this one does not: truncated or damaged?)');
  }
  const problem = signingKeyProblem(parsed);
  if (problem) throw new Error(problem);
  return key;
};

// A list's own text (mail/templates.ts): its variables are checked now, never in a broken mail.
const template = (name: TemplateName) => (v: string) => checkTemplate(name, text(5000)(v.replace(/\r\n?/g, '\n')));

export const LIST_SETTINGS: Record<string, Setting> = {
  name: { group: 'core', parse: (v) => { if (!v.trim()) throw new Error('a name'); return line(200)(v.trim()); } },
  description: { group: 'core', parse: line(1000) },
  post_policy: { group: 'core', parse: oneOf(POST_POLICIES) },
  subscribe_policy: { group: 'core', parse: oneOf(SUBSCRIBE_POLICIES) },
  archive: { group: 'core', parse: oneOf(ARCHIVE_POLICIES) },
  subject_prefix: { group: 'delivery', parse: line(100) },
  footer: { group: 'delivery', parse: template('footer') },
  reply_to: { group: 'delivery', parse: oneOf(REPLY_TO_POLICIES) },
  reply_to_address: { group: 'delivery', parse: optional(email) },
  dmarc_mitigation: { group: 'delivery', parse: oneOf(DMARC_MITIGATIONS) },
  max_message_size: { group: 'delivery', parse: number(0, 1024 * 1024 * 1024) },
  digest_size_threshold: { group: 'delivery', parse: number(1024, 100 * 1024 * 1024) },
  digest_interval_hours: { group: 'delivery', parse: number(1, 24 * 31) },
  bounce_threshold: { group: 'delivery', parse: number(0.5, 100, { integer: false }) },
  bounce_warnings: { group: 'delivery', parse: number(0, 100) },
  bounce_warning_interval_days: { group: 'delivery', parse: number(1, 365) },
  held_notice_minutes: { group: 'delivery', parse: number(0, 7 * 24 * 60) },
  notify_held_sender: { group: 'delivery', parse: yesNo },
  send_welcome: { group: 'delivery', parse: yesNo },
  send_goodbye: { group: 'delivery', parse: yesNo },
  template_welcome: { group: 'delivery', parse: template('welcome') },
  template_goodbye: { group: 'delivery', parse: template('goodbye') },
  template_held: { group: 'delivery', parse: template('held') },
  template_confirm: { group: 'delivery', parse: template('confirm') },
  spam_hold_score: { group: 'delivery', parse: spamThreshold },
  spam_reject_score: { group: 'delivery', parse: spamThreshold },
  auth_policy: { group: 'delivery', parse: oneOf(AUTH_POLICIES) },
  // empty or "default": the site's POST_SYNCHRONOUS_COMMIT
  synchronous_commit: { group: 'delivery', parse: (v) => (v === '' || v === 'default' ? null : oneOf(SYNCHRONOUS_COMMITS)(v)) },
  roster_visibility: { group: 'delivery', parse: oneOf(ROSTER_VISIBILITIES) },
  dkim_domain: { group: 'delivery', parse: optional(domainName) },
  dkim_selector: { group: 'delivery', parse: optional(selector) },
  dkim_private_key: { group: 'delivery', parse: optional(privateKey), secret: true },
};

/** How many problems one refusal names; the rest are counted (60,000 unknown keys made 34 MB). */
const PROBLEMS_SHOWN = 20;

/**
 * Checks KEY=VALUE settings against LIST_SETTINGS: every problem at once (the first
 * PROBLEMS_SHOWN of them, then a count), as one InvalidInput; the valid names once if a name is unknown.
 */
export function parseListSettings(pairs: [string, string][]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  let unknown = false;
  for (const [name, value] of pairs) {
    const setting = Object.prototype.hasOwnProperty.call(LIST_SETTINGS, name) ? LIST_SETTINGS[name] : undefined;
    if (!setting) {
      problems.push(`${name.length > 60 ? `${name.slice(0, 60)}…` : name}: no such setting`);
      unknown = true;
      continue;
    }
    try {
      // PostgreSQL stores no NUL in text, and said so without naming the setting.
      if (value.includes('\0')) throw new Error('text without NUL characters');
      out[name] = setting.parse(value);
    } catch (err) {
      problems.push(`${name}: must be ${(err as Error).message}${setting.secret ? '' : ` (got ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)})`}`);
    }
  }
  if (problems.length === 0) return out;
  const shown = problems.slice(0, PROBLEMS_SHOWN);
  if (problems.length > PROBLEMS_SHOWN) shown.push(`… and ${problems.length - PROBLEMS_SHOWN} more`);
  if (unknown) shown.push(`settings: ${Object.keys(LIST_SETTINGS).join(', ')}`);
  throw new InvalidInput(shown.join('; '));
}

/**
 * Saves settings by name (parseListSettings's output) with one audit entry of what changed.
 * `reply_to=address` needs a `reply_to_address`, given now or already set, as the panel's form
 * asks: without one the copies carried no Reply-To at all, while the command said it was changed.
 */
export async function setListSettings(pool: pg.Pool, list: ListRow, values: Record<string, unknown>, opts: { actor: string }): Promise<Record<string, unknown>> {
  const replyTo = 'reply_to' in values ? values.reply_to : list.reply_to;
  const replyToAddress = 'reply_to_address' in values ? values.reply_to_address : list.reply_to_address;
  // Only a change of either: a list left so by an earlier release still takes its other settings.
  const touched = 'reply_to' in values || 'reply_to_address' in values;
  if (touched && replyTo === 'address' && !replyToAddress) {
    throw new InvalidInput('reply_to_address: give the address replies should go to (reply_to=address sends them there)');
  }
  const before = list as unknown as Record<string, unknown>;
  const core = { name: list.name, description: list.description, post_policy: list.post_policy, subscribe_policy: list.subscribe_policy, archive: list.archive } as CoreSettings;
  const delivery: Record<string, unknown> = {};
  const changed: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values)) {
    const setting = LIST_SETTINGS[name];
    if (setting.group === 'core') (core as unknown as Record<string, unknown>)[name] = value;
    else delivery[name] = value;
    if ((before[name] ?? null) !== (value ?? null)) changed[name] = setting.secret ? (value ? 'replaced' : 'removed') : value;
  }
  // The core settings are written whole, from `list`: refused, rather than undone, if changed since.
  await updateListSettings(pool, list, { core, delivery: delivery as Partial<DeliverySettings> }, { actor: opts.actor, changed, version: settingsVersion(list) });
  return changed;
}
