import { describe, expect, it } from 'vitest';
import { partsByThread } from '../src/core/archive-import.ts';
import { archiveIdentity } from '../src/mail/raw-headers.ts';

/**
 * How an import splits a chunk between its writers (partsByThread): messages that name a common
 * Message-ID always go to one writer, so no two writers wait on each other's thread locks, and
 * unrelated threads are spread over the writers. archive-import.test.ts covers the whole import.
 */
function message(id: string, headers: { inReplyTo?: string; references?: string[] } = {}): Buffer {
  const lines = [`Message-ID: <${id}>`, 'From: a@example.org', `Subject: ${id}`];
  if (headers.inReplyTo) lines.push(`In-Reply-To: <${headers.inReplyTo}>`);
  if (headers.references) lines.push(`References: ${headers.references.map((r) => `<${r}>`).join(' ')}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\nbody\r\n`);
}

const split = (raws: Buffer[], parts: number) => partsByThread(raws.map(archiveIdentity), parts);

/** Every Message-ID a message names (itself, In-Reply-To, References) maps to one part. */
function expectNoSharedKey(raws: Buffer[], partOf: number[]) {
  const partOfKey = new Map<string, number>();
  raws.forEach((raw, i) => {
    for (const key of archiveIdentity(raw).keys) {
      expect(partOfKey.get(key) ?? partOf[i], key).toBe(partOf[i]);
      partOfKey.set(key, partOf[i]);
    }
  });
}

describe('splitting a chunk between writers', () => {
  it('keeps a chain of replies that give only In-Reply-To in one part', () => {
    const chain = Array.from({ length: 12 }, (_, i) => message(`c${i}@example.org`, i > 0 ? { inReplyTo: `c${i - 1}@example.org` } : {}));
    for (const parts of [2, 3, 4]) {
      const partOf = split(chain, parts);
      expect(new Set(partOf).size, `${parts} parts`).toBe(1);
      expectNoSharedKey(chain, partOf);
    }
  });

  it('spreads unrelated threads over the parts, each thread whole', () => {
    const raws: Buffer[] = [];
    for (let t = 0; t < 40; t++) {
      raws.push(message(`t${t}@example.org`));
      for (let r = 1; r <= 3; r++) raws.push(message(`t${t}.r${r}@example.org`, { inReplyTo: `t${t}.r${r - 1}@example.org`.replace('.r0', ''), references: [`t${t}@example.org`] }));
    }
    const partOf = split(raws, 2);
    expectNoSharedKey(raws, partOf);
    const sizes = [0, 1].map((p) => partOf.filter((x) => x === p).length);
    expect(Math.min(...sizes)).toBeGreaterThan(raws.length / 4);
  });

  it('joins two threads that one message names both of, whatever the order', () => {
    const raws = [
      message('a@example.org'),
      message('b@example.org'),
      message('a.1@example.org', { references: ['a@example.org'] }),
      message('b.1@example.org', { references: ['b@example.org'] }),
      message('both@example.org', { inReplyTo: 'b.1@example.org', references: ['a@example.org', 'a.1@example.org'] }),
    ];
    for (const parts of [2, 3, 5]) {
      for (const order of [raws, [...raws].reverse()]) {
        const partOf = split(order, parts);
        expect(new Set(partOf).size).toBe(1);
        expectNoSharedKey(order, partOf);
      }
    }
  });

  it('puts everything in part 0 when there is one writer', () => {
    expect(split([message('x@example.org'), message('y@example.org')], 1)).toEqual([0, 0]);
  });
});
