import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeText, readMailmanFiles } from '../src/core/mailman-formats.ts';
import { parseListSettings } from '../src/core/list-settings.ts';
import { parseAssignments } from '../src/core/mailman-python.ts';
import { senderKey } from '../src/core/sender-rules.ts';
import { normalizeEmail, parseMailbox } from '../src/mail/address.ts';

/**
 * One mailbox per argument or roster line, as `listkeeper subscribe` and import-mailman read
 * them: two mailboxes in one, or a name with `<` outside quotes, are refused, never read as one
 * address with the other folded into its name.
 */
describe('a mailbox as an administrator gives it', () => {
  it('takes an address, Name <address> and "Name" <address>, undoing quoted pairs', () => {
    expect(parseMailbox('Ann@Example.com')).toEqual({ email: 'ann@example.com', name: null });
    expect(parseMailbox('  Ann Example <Ann@Example.com> ')).toEqual({ email: 'ann@example.com', name: 'Ann Example' });
    expect(parseMailbox('"Bo, B." <bo@example.com>')).toEqual({ email: 'bo@example.com', name: 'Bo, B.' });
    expect(parseMailbox('"O\\"Brien \\(work\\)" <ob@example.com>')).toEqual({ email: 'ob@example.com', name: 'O"Brien (work)' });
    expect(parseMailbox('"Sam <at home>" <sam@example.com>')).toEqual({ email: 'sam@example.com', name: 'Sam <at home>' });
    expect(parseMailbox('<only@example.com>')).toEqual({ email: 'only@example.com', name: null });
    expect(parseMailbox('Ann "The Bee" Apiarist <ann@example.com>')).toEqual({ email: 'ann@example.com', name: 'Ann The Bee Apiarist' });
  });

  it('decodes RFC 2047 encoded words in the name, as a From header copied in gives them', () => {
    expect(parseMailbox('=?utf-8?q?Jos=C3=A9?= <jose@example.org>')).toEqual({ email: 'jose@example.org', name: 'José' });
    expect(parseMailbox('"=?UTF-8?B?SsO8cmdlbg==?= =?utf-8?q?_M=C3=BCller?=" <jm@example.org>')).toEqual({ email: 'jm@example.org', name: 'Jürgen Müller' });
    expect(parseMailbox('=?iso-8859-1?q?Fran=E7ois?= Dupont <fd@example.org>')).toEqual({ email: 'fd@example.org', name: 'François Dupont' });
    // A control character that an encoded word hid is a space: the name stays one line, without a NUL.
    expect(parseMailbox('=?utf-8?q?Ann=00Bee=0A?= <ab@example.org>')).toEqual({ email: 'ab@example.org', name: 'Ann Bee' });
    // A charset nobody knows leaves the word as it was.
    expect(parseMailbox('=?x-unknown?q?abc?= <u@example.org>')).toEqual({ email: 'u@example.org', name: '=?x-unknown?q?abc?=' });
  });

  it('refuses two mailboxes in one, or stray angle brackets, instead of keeping the last', () => {
    for (const input of ['Ann <ann@example.com>, Ben <ben@example.com>', 'Evil <x@example.com> <y@example.com>', 'ann@example.com>', 'Ann <ann@example.com']) {
      expect(parseMailbox(input).email, input).toBeNull();
    }
  });
});

describe('list_members output named after its flag', () => {
  const config = { name: 'digest-fans.config', text: fs.readFileSync(path.join(import.meta.dirname, 'fixtures/mailman/mm2/bees.config'), 'utf8') };
  it('takes the flag from the last word of the file name, not from the list name', () => {
    const plan = readMailmanFiles([
      config,
      { name: 'digest-fans-regular.txt', text: 'Amy <amy@example.com>\n' },
      { name: 'nomail-digest-fans-digest.txt', text: 'dan@example.com\n' },
      { name: '/tmp/digest-fans/digest-fans.nomail', text: 'nat@example.com\n' },
    ]);
    expect(plan.members.map((m) => [m.email, m.mode])).toEqual([['amy@example.com', 'each'], ['dan@example.com', 'digest'], ['nat@example.com', 'nomail']]);
    expect(plan.problems).toEqual([]);
  });

  it('reports a roster line with two mailboxes on it, and keeps the others', () => {
    const plan = readMailmanFiles([config, { name: 'bees-regular.txt', text: 'Ann <ann@example.com>, Ben <ben@example.com>\ncy@example.com\n' }]);
    expect(plan.members.map((m) => m.email)).toEqual(['cy@example.com']);
    expect(plan.problems.map((p) => p.error)).toEqual(['bees-regular.txt:1: "Ann <ann@example.com>, Ben <ben@example.com>" is not an e-mail address']);
  });
});

describe('Mailman settings that are one line here', () => {
  it('fold a line break in a name, description or subject prefix into a space, where list set would refuse it', () => {
    const plan = readMailmanFiles([{ name: 'x.json', text: JSON.stringify({
      config: { list_name: 'x', mail_host: 'lists.example.org', display_name: 'Two\nLines', description: 'first line\r\nsecond line', subject_prefix: '[x]\n' },
    }) }]);
    expect(Object.fromEntries(plan.settings.filter(([k]) => ['name', 'description', 'subject_prefix'].includes(k)))).toEqual({ name: 'Two Lines', description: 'first line second line', subject_prefix: '[x]' });
  });
});

describe('a Mailman 3 configuration without its host', () => {
  it('is refused as naming no list address, not imported as LIST@undefined', () => {
    expect(() => readMailmanFiles([{ name: 'nohost.json', text: '{"list_name": "nohost"}' }])).toThrow(/names no list address/);
    expect(() => readMailmanFiles([{ name: 'numhost.json', text: '{"list_name": "x", "mail_host": 42}' }])).toThrow(/names no list address/);
  });
});

describe('Mailman 3 non-members with their own action', () => {
  it('become sender rules: accept an allow, discard and reject a ban; anything else reported', () => {
    const plan = readMailmanFiles([{ name: 'x.json', text: JSON.stringify({
      config: { list_name: 'x', mail_host: 'lists.example.org' },
      members: [
        { email: 'Friend@Example.org', role: 'nonmember', moderation_action: 'accept' },
        { email: 'spam@example.net', role: 'nonmember', moderation_action: 'discard' },
        { email: 'rude@example.net', role: 'nonmember', moderation_action: 'reject' },
        { email: 'maybe@example.net', role: 'nonmember', moderation_action: 'hold' },
        { email: 'odd@example.net', role: 'nonmember', moderation_action: 'frobnicate' },
      ],
    }) }]);
    expect(plan.allows).toEqual(['friend@example.org']);
    expect(plan.bans).toEqual(['spam@example.net', 'rude@example.net']);
    expect(plan.members).toEqual([]);
    expect(plan.unmapped).toEqual([{ setting: 'moderation_action (odd@example.net, non-member)', value: 'frobnicate', note: 'no equivalent' }]);
  });
});

describe('a sender rule for a whole @domain', () => {
  it('stores the domain as addresses are stored, so that the rule meets their senders', () => {
    for (const typed of ['@ｅｘａｍｐｌｅ.com', '@e\u0301xample.com', '@EXAMPLE.com', '@xn--bcher-kva.example']) {
      expect(senderKey(typed), typed).toBe(`@${normalizeEmail(`someone${typed}`)!.split('@')[1]}`);
    }
    expect(senderKey('@ｅｘａｍｐｌｅ.com')).toBe('@example.com');
    expect(() => senderKey('@not a domain')).toThrow(/is not an e-mail address or @domain/);
  });
});

describe('a Mailman 2 footer with braces of its own', () => {
  it('keeps them as literal braces of the template, and fills Mailman\'s fields', () => {
    const text = fs.readFileSync(path.join(import.meta.dirname, 'fixtures/mailman/mm2/bees.config'), 'utf8')
      + "\nreal_name = 'Bees {hive}'\nmsg_footer = 'Wiki: https://wiki.example.org/{page_name} for %(real_name)s {{x}}'\n";
    const plan = readMailmanFiles([{ name: 'bees.config', text }]);
    expect(plan.settings.find(([k]) => k === 'footer')?.[1]).toBe('Wiki: https://wiki.example.org/{{page_name}} for Bees {{hive}} {{{{x}}}}');
  });
});

describe('a Mailman 2 file in the charset it declares', () => {
  it('is read in that charset; bytes that are not, or a charset unknown, are an error naming the file', () => {
    const latin = Buffer.concat([Buffer.from('# -*- python -*-\n# -*- coding: iso-8859-1 -*-\ndescription = "caf'), Buffer.from([0xe9]), Buffer.from('"\n')]);
    expect(decodeText('bees.config', latin)).toContain('description = "café"');
    const fixture = fs.readFileSync(path.join(import.meta.dirname, 'fixtures/mailman/mm2/bees.config'), 'latin1').replace('coding: us-ascii', 'coding: iso-8859-1');
    const config = Buffer.concat([Buffer.from(fixture, 'latin1'), latin.subarray(latin.indexOf('description'))]);
    const plan = readMailmanFiles([{ name: 'bees.config', text: decodeText('bees.config', config) }]);
    expect(plan.settings).toContainEqual(['description', 'café']);
    // A file that says us-ascii with an é in it: an error, not U+FFFD stored.
    expect(() => decodeText('x.config', Buffer.concat([Buffer.from('# -*- coding: us-ascii -*-\nx = "'), Buffer.from([0xe9]), Buffer.from('"\n')]))).toThrow(/x.config: not valid us-ascii text/);
    expect(() => decodeText('members.txt', Buffer.from([0x61, 0xff, 0x0a]))).toThrow(/members.txt: not valid utf-8 text/);
    expect(() => decodeText('y.config', Buffer.from('# -*- coding: klingon-8 -*-\n'))).toThrow(/declares the charset "klingon-8"/);
    expect(decodeText('bom.txt', Buffer.from('\ufeffann@example.com\n'))).toBe('ann@example.com\n');
  });
});

describe('config_list assignments', () => {
  it('carry the line each starts on, across comments and strings of several lines, in any number', () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `k${i} = 'v${i}'`);
    lines.splice(3, 0, '# a comment', '', 'multi = """a', 'b', 'c"""');
    const out = parseAssignments(`${lines.join('\n')}\n`);
    expect(out.map((a) => [a.name, a.line]).filter((_, i) => [0, 2, 3, 4, out.length - 1].includes(i))).toEqual([['k0', 1], ['k2', 3], ['multi', 6], ['k3', 9], ['k4999', 5005]]);
    expect(() => parseAssignments(`${lines.join('\n')}\nbad = nope\n`)).toThrow(/^line 5006: /);
  });

  it('keep \\u and other unknown escapes as text in byte strings, as Python 2 does, and decode them in u strings', () => {
    const [info, uni] = parseAssignments('info = """Start with \\documentclass and \\usepackage{hyperref}, \\u00e9."""\nu = u\'caf\\u00e9 \\U0001F41D\'\n');
    expect(info.value).toBe('Start with \\documentclass and \\usepackage{hyperref}, \\u00e9.');
    expect(uni.value).toBe('café 🐝');
  });

  it('read \\x escapes in byte strings as bytes: UTF-8 when they are, else Latin-1; in u strings as code points', () => {
    const out = parseAssignments("a = 'Caf\\xc3\\xa9 \\xe2\\x82\\xac'\nb = 'caf\\xe9'\nc = u'caf\\xe9'\n");
    expect(out.map((x) => x.value)).toEqual(['Café €', 'café', 'café']);
  });

  it('read Python 2\'s other escapes as it does: \\a \\b \\f \\v, octal bytes or code points; a code point past U+10FFFF is an error', () => {
    const out = parseAssignments(String.raw`a = 'x\ay\bz\f\v'
b = 'n\0m\012o\101 \303\251'
c = u'\101\u00e9\N{DASH}'
` + '\n');
    expect(out.map((x) => x.value)).toEqual(['x\x07y\bz\f\v', 'n\0m\noA é', 'Aé\\N{DASH}']);
    expect(() => parseAssignments(String.raw`f = u'\U00110000'` + '\n')).toThrow(/^line 1: a bad escape in a string/);
  });
});

describe('what a Mailman list sets and the import cannot keep', () => {
  const mm3 = (config: Record<string, unknown>) => readMailmanFiles([{ name: 'x.json', text: JSON.stringify({ list_name: 'x', mail_host: 'lists.example.org', ...config }) }]);
  const mm2 = (lines: string) => readMailmanFiles([{ name: 'x.config', text: `real_name = 'x'\nhost_name = 'lists.example.org'\n${lines}\n` }]);
  const setting = (plan: ReturnType<typeof readMailmanFiles>, name: string) => plan.settings.find(([k]) => k === name)?.[1];

  it('reports an explicit Reply-To without an address (Mailman 3 and 2) rather than dropping it unsaid', () => {
    for (const plan of [mm3({ reply_goes_to_list: 'explicit_header', reply_to_address: '' }), mm3({ reply_goes_to_list: 'explicit_header_only' }), mm2("reply_goes_to_list = 2\nreply_to_address = ''")]) {
      expect(setting(plan, 'reply_to')).toBeUndefined();
      expect(plan.unmapped).toContainEqual(expect.objectContaining({ setting: 'reply_goes_to_list', note: 'an explicit Reply-To without an address: Reply-To left as it was' }));
    }
    const kept = mm3({ reply_goes_to_list: 'explicit_header', reply_to_address: 'Talk@Example.org' });
    expect([setting(kept, 'reply_to'), setting(kept, 'reply_to_address')]).toEqual(['address', 'Talk@Example.org']);
    expect(kept.unmapped.filter((u) => u.setting === 'reply_goes_to_list')).toEqual([]);
  });

  it('reports a subject prefix with the post number, from Mailman 3 as from Mailman 2', () => {
    for (const plan of [mm3({ subject_prefix: '[x %d] ' }), mm2("subject_prefix = '[x %05d] '")]) {
      expect(setting(plan, 'subject_prefix')).toMatch(/^\[x %0?5?d\]$/);
      expect(plan.unmapped).toContainEqual(expect.objectContaining({ setting: 'subject_prefix', note: 'the post number (%d) is not filled in' }));
    }
    expect(mm3({ subject_prefix: '[x] ' }).unmapped.filter((u) => u.setting === 'subject_prefix')).toEqual([]);
  });

  it('names what a sender entry it cannot keep is: a regular expression (^), another list (@), or no address', () => {
    for (const plan of [mm2("accept_these_nonmembers = ['^.*@example\\\\.(com|org)$', '@bumblebees', 'not an address']"), mm3({ accept_these_nonmembers: ['^.*@example\\.(com|org)$', '@bumblebees', 'not an address'] })]) {
      expect(plan.unmapped.map((u) => `${u.value}: ${u.note}`)).toEqual([
        '^.*@example\\.(com|org)$: a regular expression: rules here are an address or a whole @domain',
        "@bumblebees: another list's members (Mailman's @LISTNAME): rules here are an address or a whole @domain",
        'not an address: not an e-mail address: rules here are an address or a whole @domain',
      ]);
      expect(plan.allows).toEqual([]);
    }
  });

  it('reads "constructor" or "toString" as the unknown values they are, not as Object\'s own properties', () => {
    const plan = mm3({ reply_goes_to_list: 'constructor', subscription_policy: 'toString', archive_policy: '__proto__', member_roster_visibility: 'hasOwnProperty' });
    for (const name of ['reply_to', 'subscribe_policy', 'archive', 'roster_visibility']) expect(setting(plan, name)).toBeUndefined();
    expect(plan.unmapped.filter((u) => u.note === 'unknown value').map((u) => `${u.setting} = ${u.value}`)).toEqual([
      'reply_goes_to_list = constructor', 'subscription_policy = toString', 'archive_policy = __proto__', 'member_roster_visibility = hasOwnProperty',
    ]);
  });

  it('reports a member whose delivery_mode is unknown, naming member and value, and imports the others', () => {
    const plan = readMailmanFiles([
      { name: 'x.json', text: JSON.stringify({ list_name: 'x', mail_host: 'lists.example.org' }) },
      { name: 'members.json', text: JSON.stringify({ entries: [
        { email: 'ann@example.com', role: 'member', delivery_mode: 'toString' },
        { email: 'ben@example.com', role: 'member', delivery_mode: 'mime_digests' },
        { email: 'cy@example.com', role: 'member' },
      ] }) },
    ]);
    expect(plan.members.map((m) => `${m.email} ${m.mode} ${m.digestFormat}`)).toEqual(['ben@example.com digest mime', 'cy@example.com each null']);
    expect(plan.problems.map((p) => p.error)).toEqual([
      'members.json: entry 1 (ann@example.com): unknown delivery_mode "toString" (regular, plaintext_digests, mime_digests or summary_digests)',
    ]);
  });
});

describe('large and hostile import files', () => {
  const config = fs.readFileSync(path.join(import.meta.dirname, 'fixtures/mailman/mm2/bees.config'), 'utf8');

  // Each of these took half a minute or more before (a regex that backtracked over blank lines, a
  // search of the members read so far for every line): the test's time limit fails them.
  it('tells a roster with 200,000 blank lines in it from a config_list file, as it does without them', () => {
    const blanks = '\n'.repeat(200_000);
    const plan = readMailmanFiles([{ name: 'bees.config', text: config }, { name: 'bees-regular.txt', text: `ann@example.com${blanks}ben@example.com\n` }]);
    expect(plan.format).toBe('mailman2');
    expect(plan.address).toBe('bees@lists.example.com');
    expect(plan.members.map((m) => m.email)).toEqual(['ann@example.com', 'ben@example.com']);
  });

  it('reads a roster of 100,000 members, each once, with the mode of its last flag', () => {
    const emails = Array.from({ length: 100_000 }, (_, i) => `m${i}@example.com`);
    const plan = readMailmanFiles([
      { name: 'bees.config', text: config },
      { name: 'bees-regular.txt', text: `${emails.join('\n')}\n` },
      { name: 'bees-digest.txt', text: `${emails.slice(0, 10).join('\n')}\n` },
      { name: 'bees-nomail.txt', text: 'm5@example.com\nm99999@example.com\n' },
    ]);
    expect(plan.members).toHaveLength(100_000);
    expect(plan.members.filter((m) => m.mode === 'digest')).toHaveLength(9);
    expect(plan.members.filter((m) => m.mode === 'nomail').map((m) => m.email)).toEqual(['m5@example.com', 'm99999@example.com']);
  });

  it('refuses values nested past 100 levels, naming the file, instead of overflowing the stack', () => {
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    expect(() => readMailmanFiles([{ name: 'deep.json', text: `{"list_name": "x", "mail_host": "e.org", "extra": ${deep(200_000)}}` }]))
      .toThrow('deep.json: JSON nested more than 100 deep: not a Mailman 3 REST response');
    expect(() => readMailmanFiles([{ name: 'deep.config', text: `${config}\nextra = ${deep(200_000)}\n` }]))
      .toThrow(/^deep.config: not config_list output: line \d+: lists nested more than 100 deep$/);
    expect(readMailmanFiles([{ name: 'ok.json', text: `{"list_name": "x", "mail_host": "e.org", "extra": ${deep(50)}, "s": "[[[["}` }]).address).toBe('x@e.org');
  });
});

describe('control characters in what an administrator imports or sets', () => {
  it('takes no address holding U+FFFD, what bytes that were not UTF-8 became', () => {
    expect(normalizeEmail('\ufffd\ufffd@example.org')).toBeNull();
    expect(normalizeEmail('bob@ex\ufffdmple.org')).toBeNull();
    expect(normalizeEmail('bob@exämple.org')).toBe('bob@exämple.org');
  });

  it('refuses a mailbox with a NUL or a line break in it, and names the roster line with the character escaped', () => {
    expect(parseMailbox('Ann\0 <ann@example.com>')).toEqual({ email: null, name: null });
    expect(parseMailbox('ann@example.com\nben@example.com')).toEqual({ email: null, name: null });
    expect(parseMailbox('Ann\tBee <ann@example.com>')).toEqual({ email: 'ann@example.com', name: 'Ann\tBee' });
    const plan = readMailmanFiles([
      { name: 'bees.config', text: fs.readFileSync(path.join(import.meta.dirname, 'fixtures/mailman/mm2/bees.config'), 'utf8') },
      { name: 'bees-regular.txt', text: 'ann@example.com\nName\0 <c@example.com>\n' },
    ]);
    expect(plan.members.map((m) => m.email)).toEqual(['ann@example.com']);
    expect(plan.problems.map((p) => p.error)).toEqual(['bees-regular.txt:2: "Name\\u0000 <c@example.com>" is not an e-mail address']);
  });

  it('makes spaces of the control characters in a Mailman 3 member\'s name, keeping the member', () => {
    const plan = readMailmanFiles([{ name: 'x.json', text: JSON.stringify({
      config: { list_name: 'x', mail_host: 'lists.example.org' },
      members: [{ email: 'ann@example.com', role: 'member', display_name: 'Ann\0 Bee\nApiarist' }],
    }) }]);
    expect(plan.members).toEqual([expect.objectContaining({ email: 'ann@example.com', name: 'Ann Bee Apiarist' })]);
  });

  it('refuses a setting holding a NUL, naming it, as PostgreSQL would not say which', () => {
    expect(() => parseListSettings([['description', 'a\0b'], ['name', 'fine']])).toThrow(/^description: must be text without NUL characters \(got "a\\u0000b"\)$/);
  });
});
