import DKIM from 'nodemailer/lib/dkim';
import type { ListRow } from '../db/lists.ts';
import { listsByIds } from '../db/lists.ts';
import { mailSources, messageSources, type ClaimedRow } from '../db/outbox.ts';
import type { Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { needsFromRewrite } from '../mail/dmarc.ts';
import { memberCopy, prepareCopy, withMemberLines, type PreparedCopy } from '../mail/list-copy.ts';
import type { ListIdentity } from '../mail/list-headers.ts';
import { dmarcPolicyFor } from './dmarc-lookup.ts';

/**
 * The copies of one claimed batch. Everything shared is loaded and prepared once (each message's
 * bytes, each list's headers, the DMARC decision); a member's copy is then a concatenation of
 * three buffers, built just before it is sent so memory stays bounded by the lanes in flight.
 */
export class BatchCopies {
  private constructor(
    private lists: Map<number, ListRow & { identity: ListIdentity }>,
    private posts: Map<string, PreparedCopy>,
    private mails: Map<number, Buffer>,
    private signers: Map<number, DKIM>,
  ) {}

  static async load(db: Queryable, rows: ClaimedRow[], publicUrl: string, log: Logger): Promise<BatchCopies> {
    const listIds = [...new Set(rows.map((r) => r.list_id).filter((id): id is number => id !== null))];
    const messageIds = [...new Set(rows.map((r) => r.message_id).filter((id): id is number => id !== null))];
    const mailIds = [...new Set(rows.map((r) => r.mail_id).filter((id): id is number => id !== null))];
    const [listRows, messages, mails] = await Promise.all([listsByIds(db, listIds), messageSources(db, messageIds), mailSources(db, mailIds)]);

    const lists = new Map(listRows.map((l) => [l.id, { ...l, identity: { address: l.address, path: l.unique_local ? l.local_part : l.address, publicUrl } }]));
    const byId = new Map(messages.map((m) => [m.id, m]));
    const posts = new Map<string, PreparedCopy>();
    for (const r of rows) {
      if (r.message_id === null || r.list_id === null) continue;
      const key = `${r.message_id}:${r.list_id}`;
      if (posts.has(key)) continue;
      const m = byId.get(r.message_id);
      const list = lists.get(r.list_id);
      if (!m || !list) continue;
      const mungeFrom = list.dmarc_mitigation === 'munge_from' && m.from_email.includes('@')
        ? needsFromRewrite(await dmarcPolicyFor(db, m.from_email.split('@')[1], log))
        : false;
      posts.set(key, prepareCopy(m.raw, {
        list: { ...list.identity, name: list.name },
        messageId: m.message_id,
        subject: m.subject,
        fromName: m.from_name,
        fromEmail: m.from_email,
        subjectPrefix: list.subject_prefix,
        footer: list.footer,
        replyTo: { policy: list.reply_to, address: list.reply_to_address },
        mungeFrom,
      }));
    }
    const signers = new Map<number, DKIM>();
    for (const l of lists.values()) {
      if (l.dkim_domain && l.dkim_selector && l.dkim_private_key) {
        signers.set(l.id, new DKIM({ domainName: l.dkim_domain, keySelector: l.dkim_selector, privateKey: l.dkim_private_key }));
      }
    }
    return new BatchCopies(lists, posts, new Map(mails.map((m) => [m.id, m.raw])), signers);
  }

  /** The bytes for one row, or null when its source is gone (list or message deleted meanwhile). */
  async copy(row: ClaimedRow): Promise<Buffer | null> {
    let raw: Buffer | null = null;
    const list = row.list_id === null ? undefined : this.lists.get(row.list_id);
    if (row.message_id !== null) {
      const prepared = this.posts.get(`${row.message_id}:${row.list_id}`);
      raw = prepared ? memberCopy(prepared, row.member_token) : null;
    } else if (row.mail_id !== null) {
      const mail = this.mails.get(row.mail_id) ?? null;
      raw = mail && row.kind === 'digest' && list ? withMemberLines(mail, list.identity, row.member_token) : mail;
    }
    const signer = row.list_id === null ? undefined : this.signers.get(row.list_id);
    return raw && signer ? sign(signer, raw) : raw;
  }
}

async function sign(signer: DKIM, raw: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of signer.sign(raw)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
