/*
 * `listkeeper import-mailman`: a Mailman list (mailman-formats.ts reads it) made into a list here,
 * in one transaction: the list (created when it does not exist), its settings, owners,
 * moderators, members (added at once, as an administrator's add: no confirmation) and sender
 * rules, with one audit entry. Running it again changes only what differs, and says when nothing
 * did. A Mailman digest member whose delivery is off becomes `nomail` remembering digest as the
 * mode to go back to (members.mode_before_nomail), with their digest format when the export gives
 * it. Nothing is removed: a member, a role or a rule that is here and not in Mailman stays. A
 * member who unsubscribed here stays unsubscribed: the export says what Mailman knew, not that
 * they want the list again. Likewise a member's delivery mode (a pause included) or digest format
 * changed here since the import that gave it is kept, and reported in `kept`: a re-run is the
 * final sync before switching over, and carries what changed in Mailman meanwhile, not back over
 * what changed here (members.import_mode and import_digest_format remember what the import gave).
 */

import type pg from 'pg';
import { recordAudit } from '../db/audit.ts';
import { addListRole, updateCoreSettings, type CoreSettings } from '../db/list-admin.ts';
import { createList as insertList, updateDeliverySettings, type DeliverySettings, type ListRow } from '../db/lists.ts';
import { addMember, findMember, recordImportedMode, setDigestFormat, setMemberName, setModeBeforeNomail, type AddOutcome, type MemberRow } from '../db/members.ts';
import type { DeliveryMode, DigestFormat } from '../list-policies.ts';
import { withTransaction } from '../db/pool.ts';
import { senderRules, upsertSenderRule } from '../db/sender-rules.ts';
import { InvalidInput } from '../errors.ts';
import { listAddressProblem } from '../mail/address.ts';
import { LIST_SETTINGS, parseListSettings } from './list-settings.ts';
import type { ImportPlan } from './mailman-formats.ts';

export interface ImportResult {
  list: string;
  created: boolean;
  /** settings that changed, with their new values (none when the list already had them) */
  settings: Record<string, unknown>;
  owners_added: string[];
  moderators_added: string[];
  /** what the members of the export became; left_unsubscribed: unsubscribed here, and left so */
  members: Record<AddOutcome | 'left_unsubscribed', number>;
  rules_added: { pattern: string; kind: 'allow' | 'ban' }[];
  /** members whose mode or digest format was changed here since an import gave it, and is kept: what is here, what the export says */
  kept: KeptChoice[];
  changed: boolean;
}

export interface KeptChoice {
  email: string;
  mode?: { here: DeliveryMode; until: string | null; export: DeliveryMode };
  digest_format?: { here: DigestFormat; export: DigestFormat };
}

export async function importMailmanList(pool: pg.Pool, plan: ImportPlan, opts: { actor: string }): Promise<ImportResult> {
  const address = plan.address!;
  const problem = listAddressProblem(address);
  if (problem) throw new InvalidInput(`${address}: ${problem}`);
  const values = parseListSettings(plan.settings);
  if (values.reply_to === 'address' && !values.reply_to_address) {
    // Mailman keeps an explicit Reply-To without an address; here the choice needs one.
    delete values.reply_to;
  }
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<ListRow>('select * from lists where address = $1 for update', [address]);
    let list = rows[0];
    const created = !list;
    if (!list) {
      list = await insertList(tx, {
        address, name: String(values.name ?? address.split('@')[0]), description: String(values.description ?? ''),
        postPolicy: (values.post_policy ?? 'members') as ListRow['post_policy'], subscribePolicy: (values.subscribe_policy ?? 'confirm') as ListRow['subscribe_policy'],
        archive: (values.archive ?? 'public') as ListRow['archive'], owners: plan.owners,
      });
      await recordAudit(tx, { actor: opts.actor, action: 'list.create', list, target: address, detail: { owners: plan.owners, from: plan.format } });
    }

    const before = list as unknown as Record<string, unknown>;
    const core = { name: list.name, description: list.description, post_policy: list.post_policy, subscribe_policy: list.subscribe_policy, archive: list.archive } as CoreSettings;
    const delivery: Record<string, unknown> = {};
    const settings: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(values)) {
      if ((before[name] ?? null) === (value ?? null)) continue;
      settings[name] = value;
      if (LIST_SETTINGS[name].group === 'core') (core as unknown as Record<string, unknown>)[name] = value;
      else delivery[name] = value;
    }
    if (Object.keys(settings).length > 0) {
      await updateCoreSettings(tx, list.id, core);
      await updateDeliverySettings(tx, list.id, delivery as Partial<DeliverySettings>);
    }

    const owners_added: string[] = [];
    const moderators_added: string[] = [];
    for (const email of plan.owners) if ((await addListRole(tx, list.id, email, 'owner')) && !created) owners_added.push(email);
    if (created) owners_added.push(...plan.owners);
    for (const email of plan.moderators) if (await addListRole(tx, list.id, email, 'moderator')) moderators_added.push(email);

    const members: ImportResult['members'] = { added: 0, reactivated: 0, updated: 0, unchanged: 0, left_unsubscribed: 0 };
    const kept: KeptChoice[] = [];
    for (const m of plan.members) {
      // Someone who left the list here (their own unsubscribe, an owner's removal) is not put back
      // by running the import again: a re-run re-subscribed them, against their choice.
      const here = created ? null : await findMember(tx, list.id, m.email);
      if (here?.status === 'unsubscribed') {
        members.left_unsubscribed++;
        continue;
      }
      const keep = here ? changedHere(here) : { mode: false, digestFormat: false };
      let outcome: AddOutcome;
      if (keep.mode) {
        // Their mode (or pause) is theirs now: only the name follows the export.
        outcome = m.name && (await setMemberName(tx, list.id, m.email, m.name)) ? 'updated' : 'unchanged';
      } else {
        outcome = await addMember(tx, list.id, m.email, m.mode, m.name);
        // A digest reader whose delivery is off in Mailman: nomail here, going back to digests.
        if (m.mode === 'nomail' && (await setModeBeforeNomail(tx, list.id, m.email, m.modeBeforeNomail ?? 'each')) && outcome === 'unchanged') outcome = 'updated';
      }
      if (m.digestFormat && !keep.digestFormat) {
        // addMember leaves the digest format as it was: a row read before it says it.
        const row = here ?? (await findMember(tx, list.id, m.email));
        if (row && row.digest_format !== m.digestFormat) {
          await setDigestFormat(tx, list.id, m.email, m.digestFormat);
          if (outcome === 'unchanged') outcome = 'updated';
        }
      }
      await recordImportedMode(tx, list.id, m.email, m.mode, m.digestFormat);
      const choice: KeptChoice = { email: m.email };
      if (keep.mode && here && (here.mode !== m.mode || here.nomail_until)) choice.mode = { here: here.mode, until: here.nomail_until?.toISOString().slice(0, 10) ?? null, export: m.mode };
      if (keep.digestFormat && here && m.digestFormat && here.digest_format !== m.digestFormat) choice.digest_format = { here: here.digest_format, export: m.digestFormat };
      if (choice.mode || choice.digest_format) kept.push(choice);
      members[outcome]++;
    }

    const existing = new Map((await senderRules(tx, list.id)).map((r) => [r.email, r]));
    const rules_added: ImportResult['rules_added'] = [];
    for (const [kind, patterns] of [['allow', plan.allows], ['ban', plan.bans]] as const) {
      for (const pattern of patterns) {
        const had = existing.get(pattern);
        if (had && had.kind === kind && had.expires_at === null) continue;
        await upsertSenderRule(tx, list.id, pattern, kind, null, opts.actor);
        existing.set(pattern, { ...(had ?? { list_id: list.id, email: pattern, created_by: opts.actor, created_at: new Date() }), kind, expires_at: null });
        rules_added.push({ pattern, kind });
      }
    }

    const changed = created || Object.keys(settings).length > 0 || owners_added.length + moderators_added.length + rules_added.length > 0 || members.added + members.reactivated + members.updated > 0;
    if (changed) {
      await recordAudit(tx, {
        actor: opts.actor, action: 'list.import', list, target: address,
        detail: { from: plan.format, settings, owners_added, moderators_added, members, rules_added: rules_added.length, unmapped: plan.unmapped.length, ...(kept.length ? { kept: kept.length } : {}) },
      });
    }
    return { list: address, created, settings, owners_added, moderators_added, members, rules_added, kept, changed };
  });
}

/**
 * Whether a member's mode and digest format were changed here since an import gave them: those an
 * import never gave (null) are the export's to set. A pause until a date is always a choice made
 * here (no import sets one).
 */
function changedHere(here: MemberRow): { mode: boolean; digestFormat: boolean } {
  return {
    mode: here.nomail_until !== null || (here.import_mode !== null && here.mode !== here.import_mode),
    digestFormat: here.import_digest_format !== null && here.digest_format !== here.import_digest_format,
  };
}
