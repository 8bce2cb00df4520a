/*
 * The copies a worker sends. Everything shared by many rows of one post is prepared once and kept
 * for a minute (a 10,000-member fan-out is claimed in many batches): each message's bytes with
 * its list's headers, prefix and footer, the DMARC decision. A member's copy is then three buffers
 * joined, built just before it is sent, so memory stays bounded by the sends in flight.
 *
 * The lists' settings themselves are read again for every batch (one small query): a prefix,
 * footer or key changed a moment ago applies to the next post, on every worker, with no cache to
 * expire (a post already being sent keeps the copy it started with).
 */

import type { DatabaseClock } from '../db/database-clock.ts';
import type { ListRow } from '../db/lists.ts';
import { listsByIds } from '../db/lists.ts';
import { mailSources, messageSources, type ClaimedRow } from '../db/outbox.ts';
import type { Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { needsMitigation } from '../mail/dmarc.ts';
import { toSevenBit } from '../mail/seven-bit.ts';
import { traceFields } from '../mail/post-checks.ts';
import { listTemplateValues, renderTemplate } from '../mail/templates.ts';
import { isOwnerForward, memberCopy, prepareCopy, signCopies, signedMemberCopy, withMemberLines, type CopyOptions, type PreparedCopy } from '../mail/list-copy.ts';
import type { ListIdentity } from '../mail/list-headers.ts';
import { listKey, signMessage, type ListKey } from '../mail/list-signing.ts';
import { dmarcPolicyFor } from './dmarc-lookup.ts';

const KEEP_MS = 60_000;
const MAX_ENTRIES = 64;

/** signer: the list's parsed DKIM key; an Error when the stored key does not parse or cannot sign (copies wait) */
type CachedList = ListRow & { identity: ListIdentity; signer: ListKey | Error | null };

interface Entry<T> {
  value: T;
  at: number;
}

export class CopyCache {
  private lists = new Map<number, Entry<CachedList>>();
  /** an Error when the post's copy could not be built: its rows are deferred (copy() throws it), not the batch's */
  private posts = new Map<string, Entry<PreparedCopy | Error | null>>();
  private mails = new Map<number, Entry<Buffer | null>>();

  /**
   * authservId: our name in Authentication-Results (SMTP_HELO_NAME); copies drop incoming ones that use it.
   * clock: the database's, for the signatures' t= (a receiver rejects one from the future).
   */
  constructor(private readonly publicUrl: string, private readonly log: Logger, private readonly clock: DatabaseClock, private readonly authservId?: string) {}

  /** Loads whatever the rows need that is not cached yet. */
  async prepare(db: Queryable, rows: ClaimedRow[]): Promise<void> {
    this.evict();
    const missing = <K>(ids: (K | null)[], cache: Map<K, unknown>) => [...new Set(ids.filter((id): id is K => id !== null && !cache.has(id)))];
    // Read now, used from this local map: other prepare() calls of the same worker run
    // concurrently (a lane that misses a row while the next batch is claimed) and replace entries.
    const listIds = [...new Set(rows.flatMap((r) => (r.list_id === null ? [] : [r.list_id])))];
    const fresh = new Map<number, CachedList>();
    if (listIds.length > 0) {
      for (const l of await listsByIds(db, listIds)) {
        const signer = l.dkim_domain && l.dkim_selector && l.dkim_private_key ? parseKey(l.dkim_domain, l.dkim_selector, l.dkim_private_key) : null;
        fresh.set(l.id, { ...l, identity: { address: l.address, key: l.key, publicUrl: this.publicUrl }, signer });
      }
      for (const id of listIds) {
        const l = fresh.get(id);
        if (l) this.lists.set(id, { value: l, at: performance.now() });
        else this.lists.delete(id);
      }
    }
    const postKeys = new Map<string, { messageId: number; listId: number }>();
    for (const r of rows) {
      if (r.message_id !== null && r.list_id !== null && !this.posts.has(`${r.message_id}:${r.list_id}`)) {
        postKeys.set(`${r.message_id}:${r.list_id}`, { messageId: r.message_id, listId: r.list_id });
      }
    }
    if (postKeys.size > 0) {
      const sources = new Map((await messageSources(db, [...new Set([...postKeys.values()].map((k) => k.messageId))])).map((m) => [m.id, m]));
      for (const [key, { messageId, listId }] of postKeys) {
        const m = sources.get(messageId);
        const list = fresh.get(listId);
        this.posts.set(key, { value: m && list ? await this.preparePost(db, m, list).catch((err: Error) => err) : null, at: performance.now() });
      }
    }
    const mailIds = missing(rows.map((r) => r.mail_id), this.mails);
    if (mailIds.length > 0) {
      const found = new Map((await mailSources(db, mailIds)).map((m) => [m.id, m.raw]));
      for (const id of mailIds) this.mails.set(id, { value: found.get(id) ?? null, at: performance.now() });
    }
  }

  private async preparePost(db: Queryable, m: Awaited<ReturnType<typeof messageSources>>[number], list: CachedList): Promise<PreparedCopy> {
    const mitigation = await this.mitigation(db, list.dmarc_mitigation, m.from_email);
    const prepared = prepareCopy(m.raw, {
      list: { ...list.identity, name: list.name },
      messageId: m.message_id,
      subject: m.subject,
      fromName: m.from_name,
      fromEmail: m.from_email,
      subjectPrefix: list.subject_prefix,
      footer: renderTemplate(list.footer, listTemplateValues(list, list.identity.key, list.identity.publicUrl)),
      replyTo: { policy: list.reply_to, address: list.reply_to_address },
      mitigation,
      trace: traceFields(m.checks),
      authservId: this.authservId,
    });
    // The body hash and the ARC set once per post; each member's copy then signs its header only.
    return list.signer instanceof Error || !list.signer ? prepared : signCopies(prepared, list.signer, m.checks?.auth, this.clock.now());
  }

  /**
   * The DMARC mitigation for one post: munge_from_always for every post; munge_from and
   * wrap_message for an author whose domain may have a failing copy rejected or quarantined
   * (pct counted, mail/dmarc.ts), or whose policy could not be looked up (fail closed).
   */
  private async mitigation(db: Queryable, mode: ListRow['dmarc_mitigation'], fromEmail: string): Promise<CopyOptions['mitigation']> {
    if (mode === 'none') return 'none';
    if (mode === 'munge_from_always') return 'munge_from';
    const at = fromEmail.lastIndexOf('@');
    // No domain to look up: nothing a receiver could align with, nothing to mitigate.
    if (at < 0) return 'none';
    return needsMitigation(await dmarcPolicyFor(db, fromEmail.slice(at + 1), this.log)) ? mode : 'none';
  }

  /**
   * The bytes for one row, or null when its source is gone (list or message deleted meanwhile).
   * `sevenBit`: every 8-bit body re-encoded (mail/seven-bit.ts) for a server without 8BITMIME,
   * before the list's signature, which signs the final bytes; null when that cannot be done.
   */
  async copy(db: Queryable, row: ClaimedRow, opts: { sevenBit?: boolean } = {}): Promise<Buffer | null> {
    if (!this.prepared(row)) await this.prepare(db, [row]);
    let raw: Buffer | null = null;
    const list = row.list_id === null ? undefined : this.lists.get(row.list_id)?.value;
    if (row.message_id !== null) {
      const entry = this.posts.get(`${row.message_id}:${row.list_id}`);
      // No entry at all is not "the post is gone" (null): another lane's prepare() dropped a failed
      // one (evict) between this prepare and here. Deferred, never failed for good.
      if (!entry) throw new Error('the post was not read for its copy (its read failed); tried again later');
      const prepared = entry.value;
      if (prepared instanceof Error) throw prepared;
      if (!prepared) return null;
      if (prepared.signing === undefined && list?.signer instanceof Error) throw keyError(list);
      if (!opts.sevenBit) return signedMemberCopy(prepared, row.member_token);
      // A server without 8BITMIME: the re-encoded copy is signed whole, DKIM only (the post's ARC
      // set was made over the 8-bit body; a copy converted for one server is rare enough).
      raw = toSevenBit(memberCopy(prepared, row.member_token));
    } else if (row.mail_id !== null) {
      const mail = this.mails.get(row.mail_id)?.value ?? null;
      // The list signs what it writes (notices, digests), never a stranger's message it forwards.
      if (mail && isOwnerForward(mail)) return opts.sevenBit ? toSevenBit(mail) : mail;
      raw = mail && row.kind === 'digest' && list ? withMemberLines(mail, list.identity, row.member_token) : mail;
      if (raw && opts.sevenBit) raw = toSevenBit(raw);
    }
    if (list?.signer instanceof Error) throw keyError(list);
    return raw && list?.signer ? signMessage(list.signer, raw, this.clock.now()) : raw;
  }

  private prepared(row: ClaimedRow): boolean {
    if (row.list_id !== null && !this.lists.has(row.list_id)) return false;
    if (row.message_id !== null) return this.posts.has(`${row.message_id}:${row.list_id}`);
    return row.mail_id === null || this.mails.has(row.mail_id);
  }

  private evict() {
    const old = performance.now() - KEEP_MS;
    for (const cache of [this.lists, this.posts, this.mails] as Map<unknown, Entry<unknown>>[]) {
      // A copy that could not be built is tried again with the next batch, not kept a minute.
      for (const [k, e] of cache) if (e.at < old || cache.size > MAX_ENTRIES || e.value instanceof Error) cache.delete(k);
    }
  }
}

function parseKey(domain: string, selector: string, pem: string): ListKey | Error {
  try {
    return listKey(domain, selector, pem);
  } catch (err) {
    return err as Error;
  }
}

/** A list whose stored key does not parse, or cannot sign (listKey): its copies are deferred, not sent unsigned. */
function keyError(list: CachedList): Error {
  return new Error(`the DKIM key of ${list.address} cannot be used (${(list.signer as Error).message}): set a new one with "listkeeper list dkim ${list.address} --generate" or "list set"`);
}
