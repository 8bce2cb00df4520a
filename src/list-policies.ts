/*
 * The values a list's and a member's settings may take: each set once, as an array (for checking
 * input: the CLI, the panel's forms, mailed commands) and as the type derived from it. The
 * schema's check constraints (sql/0001, sql/0003, sql/0029) hold the same sets. A leaf: it imports nothing.
 */

export const POST_POLICIES = ['open', 'members', 'moderated'] as const;
export type PostPolicy = (typeof POST_POLICIES)[number];

export const SUBSCRIBE_POLICIES = ['open', 'confirm', 'approve'] as const;
export type SubscribePolicy = (typeof SUBSCRIBE_POLICIES)[number];

export const ARCHIVE_POLICIES = ['public', 'members', 'private'] as const;
export type ArchivePolicy = (typeof ARCHIVE_POLICIES)[number];

export const REPLY_TO_POLICIES = ['none', 'list', 'address'] as const;
export type ReplyToPolicy = (typeof REPLY_TO_POLICIES)[number];

/** munge_from and wrap_message only for authors whose domain asks for reject or quarantine (mail/dmarc.ts) */
export const DMARC_MITIGATIONS = ['none', 'munge_from', 'munge_from_always', 'wrap_message'] as const;
export type DmarcMitigation = (typeof DMARC_MITIGATIONS)[number];

/** What a post that fails authentication gets (DMARC fail, or a member's address not aligned): sql/0026. */
/**
 * What the accepting transaction waits for (PostgreSQL's synchronous_commit), weakest first:
 * this server's disk; also the synchronous standby's memory; its disk; its replay.
 */
export const SYNCHRONOUS_COMMITS = ['local', 'remote_write', 'on', 'remote_apply'] as const;
export type SynchronousCommit = (typeof SYNCHRONOUS_COMMITS)[number];

export const AUTH_POLICIES = ['accept', 'hold', 'reject'] as const;
export type AuthPolicy = (typeof AUTH_POLICIES)[number];

/** Who may see a list's member list (/lists/LIST/members): sql/0044. */
export const ROSTER_VISIBILITIES = ['owners', 'members', 'anyone'] as const;
export type RosterVisibility = (typeof ROSTER_VISIBILITIES)[number];

export const DELIVERY_MODES = ['each', 'digest', 'nomail'] as const;
export type DeliveryMode = (typeof DELIVERY_MODES)[number];

export const DIGEST_FORMATS = ['mime', 'plain'] as const;
export type DigestFormat = (typeof DIGEST_FORMATS)[number];

export const MEMBER_STATUSES = ['active', 'pending', 'disabled', 'unsubscribed'] as const;
export type MemberStatus = (typeof MEMBER_STATUSES)[number];

/** Whether `value` is one of `allowed` (narrowing it to that union). */
export function isOneOf<T extends string>(value: string, allowed: readonly T[]): value is T {
  return (allowed as readonly string[]).includes(value);
}
