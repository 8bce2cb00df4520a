import { describe, expect, it } from 'vitest';
import { findCommand, isAutomatic } from '../src/mail/commands.ts';

/** Reading commands mailed to LIST-request@, and telling mail sent by machines (src/mail/commands.ts). */

describe('mail commands', () => {
  it('finds a command in the subject, then in the first body lines', () => {
    expect(findCommand('subscribe', '')).toEqual({ name: 'subscribe', mode: null });
    expect(findCommand('Re: unsubscribe', '')).toEqual({ name: 'unsubscribe' });
    expect(findCommand('', '\nsubscribe digest\n')).toEqual({ name: 'subscribe', mode: 'digest' });
    expect(findCommand('question', 'help\n')).toEqual({ name: 'help' });
    expect(findCommand('question', 'How do I post?\n')).toBeNull();
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
