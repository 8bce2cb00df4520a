/*
 * A list's DKIM key (`listkeeper list dkim`): a new RSA-2048 key pair stored as the list's
 * dkim_* settings (with one audit entry, as `list set` does), and the DNS record to publish.
 */

import crypto from 'node:crypto';
import { promisify } from 'node:util';
import type pg from 'pg';
import type { ListRow } from '../db/lists.ts';
import { splitAddress } from '../mail/address.ts';
import { dkimTxtRecord } from '../mail/list-signing.ts';
import { parseListSettings, setListSettings } from './list-settings.ts';

const generateKeyPair = promisify(crypto.generateKeyPair);

export interface ListDkim {
  domain: string;
  selector: string;
  /** the zone-file line to publish */
  record: string;
}

/**
 * A selector that names the list and the day the key was made: lists of one domain each get
 * their own record, and a later key (rotation) gets another one, so the old record can stay
 * published while mail signed with it is on its way.
 */
export function defaultSelector(address: string, now = new Date()): string {
  const local = splitAddress(address)!.local.replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'list';
  return `${local}-${now.toISOString().slice(0, 10).replace(/-/g, '')}`;
}

/** Makes and stores a new key for the list, signing from the next post on; returns its record. */
export async function generateListKey(pool: pg.Pool, list: ListRow, opts: { selector?: string; actor: string }): Promise<ListDkim> {
  const domain = splitAddress(list.address)!.domain;
  const selector = opts.selector ?? defaultSelector(list.address);
  const { privateKey } = await generateKeyPair('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  // Through the settings' own checks (the selector's characters, the key parsing).
  const values = parseListSettings([['dkim_domain', domain], ['dkim_selector', selector], ['dkim_private_key', pem]]);
  await setListSettings(pool, list, values, { actor: opts.actor });
  return { domain, selector, record: dkimTxtRecord(domain, selector, pem) };
}

/** The list's current key and record, or null when it signs nothing. */
export function currentListKey(list: ListRow): ListDkim | null {
  if (!list.dkim_domain || !list.dkim_selector || !list.dkim_private_key) return null;
  return { domain: list.dkim_domain, selector: list.dkim_selector, record: dkimTxtRecord(list.dkim_domain, list.dkim_selector, list.dkim_private_key) };
}
