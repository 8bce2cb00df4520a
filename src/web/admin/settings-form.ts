/*
 * The list settings form: every option of a list, read from the submitted form and checked.
 * Problems are collected so the page can show them all at once next to the values typed.
 */

import type { Request } from 'express';
import { LIST_SETTINGS } from '../../core/list-settings.ts';
import type { CoreSettings } from '../../db/list-admin.ts';
import type { DeliverySettings, ListRow } from '../../db/lists.ts';
import { ARCHIVE_POLICIES, AUTH_POLICIES, DMARC_MITIGATIONS, POST_POLICIES, REPLY_TO_POLICIES, ROSTER_VISIBILITIES, SUBSCRIBE_POLICIES, SYNCHRONOUS_COMMITS } from '../../list-policies.ts';
import { field } from './form.ts';

/** What is wrong with one field: the page marks the field and points it at this text. */
export interface SettingsProblem {
  field: string;
  text: string;
}

export interface SettingsInput {
  core: CoreSettings;
  delivery: Partial<DeliverySettings>;
  problems: SettingsProblem[];
}

export function readSettings(req: Request, list: ListRow): SettingsInput {
  const problems: SettingsProblem[] = [];
  const problem = (name: string, text: string) => void problems.push({ field: name, text });
  const pick = <T extends string>(name: string, label: string, allowed: readonly T[], current: T): T => {
    const v = field(req, name);
    if ((allowed as readonly string[]).includes(v)) return v as T;
    problem(name, `${label}: choose one of ${allowed.join(', ')}.`);
    return current;
  };
  const count = (name: string, label: string, current: number, opts: { min: number; max: number; scale?: number; decimals?: boolean }): number => {
    const raw = field(req, name);
    const n = Number(raw);
    if (raw === '' || !Number.isFinite(n) || n < opts.min || n > opts.max || (!opts.decimals && !Number.isInteger(n))) {
      problem(name, `${label}: enter a ${opts.decimals ? 'number' : 'whole number'} from ${opts.min} to ${opts.max}.`);
      return current;
    }
    return Math.round(n * (opts.scale ?? 1) * 100) / 100;
  };

  // A spam score threshold: empty turns it off; a form without the field leaves it as it is.
  const threshold = (name: string, label: string, current: number | null): number | null => {
    if (!Object.prototype.hasOwnProperty.call(req.body ?? {}, name)) return current;
    const raw = field(req, name, 20);
    if (raw === '' || raw.toLowerCase() === 'off') return null;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < -100 || n > 1000) {
      problem(name, `${label}: enter a score from -100 to 1000, or leave it empty to turn it off.`);
      return current;
    }
    return n;
  };

  // A yes/no choice: a form without the field leaves it as it is.
  const yesNo = (name: string, current: boolean): boolean => {
    if (!Object.prototype.hasOwnProperty.call(req.body ?? {}, name)) return current;
    return ['1', 'yes', 'on', 'true'].includes(field(req, name, 10).toLowerCase());
  };

  // A text checked as `list set` checks it (LIST_SETTINGS), read up to `max`, past the setting's
  // own limit, so that a text too long is refused by name rather than cut short here.
  const checked = (name: string, label: string, current: string, max: number): string => {
    try {
      return LIST_SETTINGS[name].parse(field(req, name, max)) as string;
    } catch (err) {
      problem(name, `${label}: must be ${(err as Error).message}.`);
      return current;
    }
  };

  // A list's own text (unknown variables are named); a form without the field leaves it as it is.
  // Browsers send each line end as CRLF: a text within the textarea's 5,000 characters was cut
  // short at 5,000 before its line ends became LF.
  const template = (name: 'footer' | 'template_welcome' | 'template_goodbye' | 'template_held' | 'template_confirm', label: string, current: string): string => {
    if (!Object.prototype.hasOwnProperty.call(req.body ?? {}, name)) return current;
    return checked(name, label, current, 20_000);
  };

  // One line each (no control characters), as `list set` has them: the panel stored what the
  // command refused, and an owner's escape sequences in the description reached a site
  // administrator's terminal through `listkeeper list ls`.
  const line = (name: 'name' | 'description' | 'subject_prefix', label: string, current: string) => checked(name, label, current, 2000);

  const named = field(req, 'name', 2000) !== '';
  if (!named) problem('name', 'Name: a list needs a name.');
  const core: CoreSettings = {
    name: named ? line('name', 'Name', list.name) : list.name,
    description: line('description', 'Description', list.description),
    post_policy: pick('post_policy', 'Who may post', POST_POLICIES, list.post_policy),
    subscribe_policy: pick('subscribe_policy', 'Subscription', SUBSCRIBE_POLICIES, list.subscribe_policy),
    archive: pick('archive', 'Archive', ARCHIVE_POLICIES, list.archive),
  };

  const replyTo = pick('reply_to', 'Reply-To', REPLY_TO_POLICIES, list.reply_to);
  // Checked as `list set` checks them (LIST_SETTINGS): the form had patterns of its own, and its
  // domain's took what the command refused ("a..b.org", "-x.org").
  const optionalChecked = (name: 'reply_to_address' | 'dkim_domain' | 'dkim_selector', label: string, current: string | null, max: number) => {
    const given = field(req, name, max);
    return given === '' ? null : (checked(name, label, current ?? '', max) || current);
  };
  const replyToAddress = optionalChecked('reply_to_address', 'Reply-To address', list.reply_to_address, 1000);
  if (replyTo === 'address' && !replyToAddress) problem('reply_to_address', 'Reply-To address: give the address replies should go to.');

  const dkimDomain = optionalChecked('dkim_domain', 'DKIM domain', list.dkim_domain, 1000);
  const dkimSelector = optionalChecked('dkim_selector', 'DKIM selector', list.dkim_selector, 1000);

  const delivery: Partial<DeliverySettings> = {
    subject_prefix: line('subject_prefix', 'Subject prefix', list.subject_prefix),
    footer: template('footer', 'Footer', list.footer),
    reply_to: replyTo,
    reply_to_address: replyToAddress,
    dmarc_mitigation: pick('dmarc_mitigation', 'DMARC mitigation', DMARC_MITIGATIONS, list.dmarc_mitigation),
    dkim_domain: dkimDomain,
    dkim_selector: dkimSelector,
    max_message_size: count('max_message_kb', 'Maximum message size', list.max_message_size, { min: 0, max: 1_000_000, scale: 1024 }),
    digest_size_threshold: count('digest_size_kb', 'Digest size', list.digest_size_threshold, { min: 1, max: 100_000, scale: 1024 }),
    digest_interval_hours: count('digest_interval_hours', 'Digest interval', list.digest_interval_hours, { min: 1, max: 24 * 31 }),
    bounce_threshold: count('bounce_threshold', 'Bounce threshold', list.bounce_threshold, { min: 0.5, max: 100, decimals: true }),
    bounce_warnings: count('bounce_warnings', 'Reminders to a disabled member', list.bounce_warnings, { min: 0, max: 100 }),
    bounce_warning_interval_days: count('bounce_warning_interval_days', 'Days between reminders', list.bounce_warning_interval_days, { min: 1, max: 365 }),
    held_notice_minutes: count('held_notice_minutes', 'Held-message notices', list.held_notice_minutes, { min: 0, max: 7 * 24 * 60 }),
    spam_hold_score: threshold('spam_hold_score', 'Hold at spam score', list.spam_hold_score),
    spam_reject_score: threshold('spam_reject_score', 'Refuse at spam score', list.spam_reject_score),
    notify_held_sender: yesNo('notify_held_sender', list.notify_held_sender),
    send_welcome: yesNo('send_welcome', list.send_welcome),
    send_goodbye: yesNo('send_goodbye', list.send_goodbye),
    template_welcome: template('template_welcome', 'Welcome', list.template_welcome),
    template_goodbye: template('template_goodbye', 'Goodbye', list.template_goodbye),
    template_confirm: template('template_confirm', 'Confirmation request', list.template_confirm),
    template_held: template('template_held', 'Held-post notice to the sender', list.template_held),
    auth_policy: pick('auth_policy', 'Posts that fail authentication', AUTH_POLICIES, list.auth_policy),
    // '' is the site's setting; a form without the field (an older page) leaves it as it is.
    synchronous_commit: Object.prototype.hasOwnProperty.call(req.body ?? {}, 'synchronous_commit')
      ? (field(req, 'synchronous_commit') === '' ? null : pick('synchronous_commit', 'Acknowledging posts', SYNCHRONOUS_COMMITS, list.synchronous_commit ?? 'local'))
      : list.synchronous_commit,
    // A form without the field (an older page) leaves it as it is.
    roster_visibility: Object.prototype.hasOwnProperty.call(req.body ?? {}, 'roster_visibility')
      ? pick('roster_visibility', 'Who may see the members', ROSTER_VISIBILITIES, list.roster_visibility) : list.roster_visibility,
  };
  // The private key is write-only: an empty field keeps the stored one; a checkbox removes it.
  const key = field(req, 'dkim_private_key', 20_000).replace(/\r\n/g, '\n');
  if (field(req, 'dkim_clear_key') === '1') delivery.dkim_private_key = null;
  else if (key) {
    // The same check as `listkeeper list set`: the key must parse and be able to sign DKIM.
    try {
      delivery.dkim_private_key = LIST_SETTINGS.dkim_private_key.parse(key) as string;
    } catch (err) {
      problem('dkim_private_key', `DKIM private key: paste ${(err as Error).message}.`);
    }
  }
  return { core, delivery, problems };
}

/**
 * For the page: each field with a problem, and the ids of the texts that describe it
 * (`problem-N`, N counting from 1 in the order shown), for aria-describedby.
 */
export function invalidFields(problems: SettingsProblem[]): Record<string, string> {
  const out: Record<string, string> = {};
  problems.forEach((p, i) => {
    out[p.field] = out[p.field] ? `${out[p.field]} problem-${i + 1}` : `problem-${i + 1}`;
  });
  return out;
}

/** What changed, for the audit log (secrets are named, never copied). */
export function changedSettings(list: ListRow, input: SettingsInput): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const before = list as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries({ ...input.core, ...input.delivery })) {
    if (before[k] === v || (before[k] ?? null) === (v ?? null)) continue;
    out[k] = k === 'dkim_private_key' ? (v ? 'replaced' : 'removed') : v;
  }
  return out;
}
