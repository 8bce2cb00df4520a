import { describe, expect, it } from 'vitest';
import { headerFields, splitMessage } from '../src/mail/header-block.ts';
import { memberCopy, prepareCopy, type CopyOptions } from '../src/mail/list-copy.ts';
import { parse } from '../src/mail/parse.ts';
import { SAMPLE_POST } from './helpers/sample-post.ts';

/** Each member's copy of a post (src/mail/list-copy.ts): the list headers on top, the author's bytes kept. */

const RAW = SAMPLE_POST;

function options(over: Partial<CopyOptions> = {}): CopyOptions {
  return {
    list: { address: 'dev@lists.example.org', key: 'dev', publicUrl: 'https://lists.example.org', name: 'dev' },
    messageId: 'plan/1+x@example.org', subject: 'Über die Planung', fromName: 'Alice', fromEmail: 'alice@example.org',
    subjectPrefix: '', footer: '', replyTo: { policy: 'none', address: null }, mitigation: 'none', ...over,
  };
}

describe('list copies', () => {
  it('adds the list headers (RFC 2369, 2919, 8058, Archived-At) on top and leaves the original bytes untouched', () => {
    const copy = memberCopy(prepareCopy(RAW, options()), 'tok123');
    const text = copy.toString();
    expect(text.endsWith(RAW.toString())).toBe(true);
    const added = text.slice(0, text.length - RAW.length).split('\r\n').filter(Boolean);
    expect(added).toEqual([
      'List-Unsubscribe: <mailto:dev-unsubscribe@lists.example.org>, <https://lists.example.org/u/tok123>',
      'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
      'List-Id: <dev.lists.example.org>',
      'List-Post: <mailto:dev@lists.example.org>',
      'List-Help: <mailto:dev-request@lists.example.org?subject=help>',
      'List-Subscribe: <mailto:dev-subscribe@lists.example.org>, <https://lists.example.org/lists/dev/subscribe>',
      'List-Archive: <https://lists.example.org/lists/dev/>',
      'Archived-At: <https://lists.example.org/message-id/plan%2F1%2Bx@example.org>',
      'Precedence: list',
    ]);
  });

  it('drops Authentication-Results written under our authserv-id, keeps other hosts\' ones, and puts ours on top', () => {
    const raw = Buffer.concat([Buffer.from([
      'Authentication-Results: Lists.Example.org (forged);\r\n dkim=pass header.d=example.org',
      'Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.org',
      'Authentication-Results: lists.example.org.evil.example; dkim=pass',
      '',
    ].join('\r\n')), RAW]);
    const ours = 'Authentication-Results: lists.example.org;\r\n spf=pass smtp.mailfrom=alice@example.org';
    const copy = memberCopy(prepareCopy(raw, options({ authservId: 'lists.example.org', trace: [ours] })), 't');
    const results = headerFields(splitMessage(copy).head).filter((f) => f.name === 'authentication-results').map((f) => f.bytes.toString());
    expect(results).toEqual([
      `${ours}\r\n`,
      'Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.org\r\n',
      'Authentication-Results: lists.example.org.evil.example; dkim=pass\r\n',
    ]);
  });

  it('folds trace fields with the post\'s own line ending', () => {
    const lf = Buffer.from(RAW.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
    const copy = memberCopy(prepareCopy(lf, options({ trace: ['Authentication-Results: lists.example.org;\r\n spf=pass'] })), 't').toString('latin1');
    expect(copy.startsWith('Authentication-Results: lists.example.org;\n spf=pass\n')).toBe(true);
    expect(copy).not.toContain('\r');
  });

  it('replaces list headers another list put on the message', () => {
    const raw = Buffer.concat([Buffer.from('List-Id: <users.other.example>\r\nPrecedence: bulk\r\n'), RAW]);
    const fields = headerFields(splitMessage(memberCopy(prepareCopy(raw, options()), 't')).head);
    expect(fields.filter((f) => f.name === 'list-id')).toHaveLength(1);
    expect(fields.filter((f) => f.name === 'precedence')).toHaveLength(1);
    expect(fields.find((f) => f.name === 'list-id')!.bytes.toString()).toContain('dev.lists.example.org');
  });

  it('puts the subject prefix before the encoded original subject, once', async () => {
    const copy = memberCopy(prepareCopy(RAW, options({ subjectPrefix: '[dev]' })), 't');
    expect((await parse(copy)).subject).toBe('[dev] Über die Planung');
    const again = memberCopy(prepareCopy(RAW, options({ subjectPrefix: '[dev]', subject: 'Re: [dev] Über die Planung' })), 't');
    expect((await parse(again)).subject).toBe('Über die Planung');
  });

  it('adds the footer as its own MIME part and keeps the author text', async () => {
    const copy = memberCopy(prepareCopy(RAW, options({ footer: 'Dev list — https://lists.example.org/lists/dev/' })), 't');
    const parsed = await parse(copy);
    expect(parsed.text).toContain('Hello, list.');
    expect(parsed.text).toContain('Dev list — https://lists.example.org/lists/dev/');
    expect(parsed.headers.get('content-type')![0]).toMatch(/^multipart\/mixed/);
  });

  it('rewrites From to the list and keeps the author in Reply-To for DMARC mitigation', async () => {
    const parsed = await parse(memberCopy(prepareCopy(RAW, options({ mitigation: 'munge_from' })), 't'));
    expect(parsed.fromEmail).toBe('dev@lists.example.org');
    expect(parsed.fromName).toBe('Alice via dev');
    expect(parsed.headers.get('reply-to')).toEqual(['Alice <alice@example.org>']);
    expect(parsed.headers.get('from')).toHaveLength(1);
  });

  it('sets Reply-To to the list when the list asks for it', async () => {
    const parsed = await parse(memberCopy(prepareCopy(RAW, options({ replyTo: { policy: 'list', address: null } })), 't'));
    expect(parsed.headers.get('reply-to')).toEqual(['<dev@lists.example.org>']);
  });
});
