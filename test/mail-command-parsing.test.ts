import { describe, expect, it } from 'vitest';
import { findCommand, findModerationCommand, isAutomatic } from '../src/mail/commands.ts';

/** Reading commands mailed to LIST-request@, and telling mail sent by machines (src/mail/commands.ts). */

describe('mail commands', () => {
  it('finds a command in the subject, then in the first body lines', () => {
    expect(findCommand('subscribe', '')).toEqual({ name: 'subscribe', mode: null });
    expect(findCommand('Re: unsubscribe', '')).toEqual({ name: 'unsubscribe' });
    expect(findCommand('', '\nsubscribe digest\n')).toEqual({ name: 'subscribe', mode: 'digest' });
    expect(findCommand('question', 'help\n')).toEqual({ name: 'help' });
    expect(findCommand('question', 'How do I post?\n')).toBeNull();
  });

  it('takes a moderator\'s decision only from a line that is the decision: approve and discard alone, reject with its reason', () => {
    expect(findModerationCommand('Re: 1 post held for moderation', 'approve\n\n> A post is waiting')).toEqual({ action: 'approve', reason: null });
    expect(findModerationCommand('Approve.', '')).toEqual({ action: 'approve', reason: null });
    expect(findModerationCommand('re: discard!', '')).toEqual({ action: 'discard', reason: null });
    expect(findModerationCommand('', 'reject: off topic, please ask on users@\n')).toEqual({ action: 'reject', reason: 'off topic, please ask on users@' });
    expect(findModerationCommand('', 'Approve? not sure, looks like spam\n')).toBeNull();
    expect(findModerationCommand('approve not', '')).toBeNull();
    expect(findModerationCommand('', 'discard the first, approve the second\n')).toBeNull();
  });

  it('recognises mail sent by machines', () => {
    const h = (o: Record<string, string>) => new Map(Object.entries(o).map(([k, v]) => [k, [v]]));
    expect(isAutomatic(h({}), null)).toBe(true);
    expect(isAutomatic(h({ 'auto-submitted': 'auto-replied' }), 'a@b.c')).toBe(true);
    expect(isAutomatic(h({ precedence: 'bulk' }), 'a@b.c')).toBe(true);
    expect(isAutomatic(h({ 'auto-submitted': 'no' }), 'a@b.c')).toBe(false);
    expect(isAutomatic(h({}), 'a@b.c')).toBe(false);
  });
});
