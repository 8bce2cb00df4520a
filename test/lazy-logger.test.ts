/*
 * lazyChild() (src/log.ts): a post's child logger is made only when a line is written through it,
 * and the lines are exactly those of pino's own child().
 */

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { lazyChild } from '../src/log.ts';

function logger(level: string) {
  const lines: Record<string, unknown>[] = [];
  const parent = pino({ level, base: { app: 'test' }, timestamp: false, redact: ['password'] }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  let children = 0;
  const child = parent.child as unknown as (this: pino.Logger, b: pino.Bindings, o?: pino.ChildLoggerOptions) => pino.Logger;
  // Children inherit this (pino makes them with Object.create): each call counts, on any of them.
  parent.child = function (this: pino.Logger, b: pino.Bindings, o?: pino.ChildLoggerOptions) {
    children++;
    return child.call(this, b, o);
  } as unknown as typeof parent.child;
  return { parent, lines, children: () => children };
}

describe('lazyChild', () => {
  it('writes the lines pino\'s child() writes, bindings, nesting and redaction included', () => {
    const eager = logger('info');
    const lazy = logger('info');
    eager.parent.child({ session: 's1' }).child({ messageId: 'm1' }).warn({ password: 'secret', n: 1 }, 'hello');
    lazyChild(lazy.parent, { session: 's1' }).child({ messageId: 'm1' }).warn({ password: 'secret', n: 1 }, 'hello');
    expect(lazy.lines).toEqual(eager.lines);
    expect(lazy.lines[0]).toMatchObject({ session: 's1', messageId: 'm1', password: '[Redacted]', n: 1, msg: 'hello', level: 40 });
  });

  it('makes no child for lines below the level, nor to read its bindings or level', () => {
    const l = logger('warn');
    const post = lazyChild(l.parent, { session: 's2' });
    const msg = post.child({ messageId: 'm2' });
    post.info({ a: 1 }, 'not written');
    msg.debug('not written');
    expect(msg.bindings()).toEqual({ app: 'test', session: 's2', messageId: 'm2' });
    expect(msg.isLevelEnabled('info')).toBe(false);
    expect(msg.isLevelEnabled('error')).toBe(true);
    expect(l.children()).toBe(0);
    expect(l.lines).toEqual([]);
    msg.error('written');
    msg.error('again');
    expect(l.children()).toBe(1);
    expect(l.lines.map((x) => [x.session, x.messageId, x.msg])).toEqual([['s2', 'm2', 'written'], ['s2', 'm2', 'again']]);
  });
});
