/*
 * A list's own texts for the mail it writes to people (welcome, goodbye, held notice,
 * confirmation) and for its footer, with `{variable}`s (Mailman 3's list:user:notice:welcome,
 * list:user:notice:goodbye, list:user:action:subscribe, list:member:regular:footer, with
 * Mailman's own variable names where it has one). Substitution is plain text: a variable is
 * replaced by its value, nothing is evaluated. The texts are bodies only, so a value with a line
 * break cannot become a header; subjects stay built-in.
 */

import { absoluteUrl, listUrl } from './urls.ts';
import { roleAddress } from './address.ts';

export const TEMPLATE_NAMES = ['welcome', 'goodbye', 'held', 'confirm', 'footer'] as const;
export type TemplateName = typeof TEMPLATE_NAMES[number];

/** What every text may use: the list's identity and addresses. */
const LIST_VARIABLES = ['list_name', 'list_address', 'list_description', 'archive_url', 'request_address', 'owner_address'] as const;

/**
 * The variables each text may use. The footer is the same bytes for every member (the list signs
 * each post's body once), so it has no member's address or unsubscribe link: each copy carries
 * those in its List-Unsubscribe header.
 */
export const TEMPLATE_VARIABLES: Record<TemplateName, readonly string[]> = {
  welcome: [...LIST_VARIABLES, 'member_email', 'unsubscribe_url'],
  goodbye: [...LIST_VARIABLES, 'member_email'],
  held: [...LIST_VARIABLES, 'member_email', 'subject', 'reason'],
  confirm: [...LIST_VARIABLES, 'member_email', 'confirm_url'],
  footer: [...LIST_VARIABLES],
};

/** What a text needs to do its job: a confirmation without its link could not be confirmed on the web. */
const REQUIRED: Partial<Record<TemplateName, readonly string[]>> = { confirm: ['confirm_url'] };

// `{name}` is a variable; `{{` and `}}` are a literal brace.
const TOKEN = /\{\{|\}\}|\{([A-Za-z0-9_]+)\}/g;

/** The variables a text uses, in order, each once. */
export function templateVariables(body: string): string[] {
  const seen = new Set<string>();
  for (const m of body.matchAll(TOKEN)) if (m[1] !== undefined) seen.add(m[1]);
  return [...seen];
}

/**
 * Checks a text before it is saved: every variable must be one this text has, and the required
 * ones must be there. Throws an Error whose message finishes "must be …" (list-settings.ts).
 * An empty text is the built-in one and always fine.
 */
export function checkTemplate(name: TemplateName, body: string): string {
  if (body.trim() === '') return '';
  const allowed = TEMPLATE_VARIABLES[name];
  const unknown = templateVariables(body).filter((v) => !allowed.includes(v));
  if (unknown.length > 0) {
    throw new Error(`a text whose variables are among ${allowed.map((v) => `{${v}}`).join(', ')}: ${unknown.map((v) => `{${v}}`).join(', ')} ${unknown.length === 1 ? 'is' : 'are'} unknown here (write {{ and }} for a literal brace)`);
  }
  const missing = (REQUIRED[name] ?? []).filter((v) => !templateVariables(body).includes(v));
  if (missing.length > 0) throw new Error(`a text that contains ${missing.map((v) => `{${v}}`).join(', ')}`);
  return body;
}

/**
 * The text with its variables replaced. A name without a value is left as written (a footer saved
 * before variables were checked keeps its braces): substitution never fails a mail.
 */
export function renderTemplate(body: string, values: Record<string, string>): string {
  return body.replace(TOKEN, (all, name: string | undefined) => {
    if (name === undefined) return all[0];
    return Object.prototype.hasOwnProperty.call(values, name) ? values[name] : all;
  });
}

/** The values every text has, from the list and the site's PUBLIC_URL; `key` is the list's URL key. */
export function listTemplateValues(list: { address: string; name: string; description: string }, key: string, publicUrl: string): Record<string, string> {
  return {
    list_name: list.name,
    list_address: list.address,
    list_description: list.description,
    archive_url: absoluteUrl(publicUrl, listUrl(key)),
    request_address: roleAddress(list.address, 'request'),
    owner_address: roleAddress(list.address, 'owner'),
  };
}
