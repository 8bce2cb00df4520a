/*
 * Remembers which RCPT TO addresses are lists, so the hot path of a busy listener does not ask
 * PostgreSQL once per message. Only positive answers are kept (a list created a moment ago is
 * found by the next lookup), every change to `lists` clears the cache through NOTIFY from any
 * process, and while the LISTEN connection is down the cache is bypassed. So two instances never
 * disagree for longer than a notification takes, and that moment does not decide a post: the
 * moderation rules read the list's settings again in the transaction that commits it
 * (senderFacts).
 */

import type pg from 'pg';
import { resolveRecipient, type ResolvedRecipient } from '../db/lists.ts';
import { Listener } from '../db/listener.ts';

const MAX_ENTRIES = 10_000;
const MAX_AGE_MS = 60_000;

export class RecipientCache {
  private entries = new Map<string, { value: ResolvedRecipient; at: number }>();
  private listener: Listener;

  constructor(private pool: pg.Pool, url: string) {
    this.listener = new Listener(url, ['listkeeper_lists'], () => this.entries.clear(), () => this.entries.clear());
  }

  start(): Promise<void> {
    return this.listener.start();
  }

  stop(): Promise<void> {
    this.entries.clear();
    return this.listener.stop();
  }

  async resolve(address: string): Promise<ResolvedRecipient | null> {
    const key = address.toLowerCase();
    const hit = this.entries.get(key);
    if (hit && this.listener.connected && performance.now() - hit.at < MAX_AGE_MS) return hit.value;
    const value = await resolveRecipient(this.pool, key);
    if (value && this.listener.connected) {
      if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
      this.entries.set(key, { value, at: performance.now() });
    }
    return value;
  }
}
