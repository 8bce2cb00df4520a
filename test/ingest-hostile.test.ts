import net from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { createList } from '../src/db/lists.ts';
import { setResolvers } from '../src/dns.ts';
import { DEFAULT_GREETING_DELAY_MS, greetingDelayMs, MAX_SESSIONS_PER_CLIENT, sessionLimit } from '../src/smtp/greeting.ts';
import { IngestServer, MAX_RECIPIENTS, MAX_UNKNOWN_RECIPIENTS } from '../src/smtp/server.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

/**
 * Hostile and odd input at the ingest listener (issue "Trust", items 2, 7 and 9): every RCPT
 * answered 250 gets the post; a fault of the message is a 5xx with the message kept aside, never a
 * 451 the sender would retry forever; one slow sender never holds up the others.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let lmtp: RunningIngest;

beforeAll(async () => {
  db = await testDatabase();
  for (const local of ['pub', 'other']) {
    await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  }
  smtp = await startIngest(db.pool, { maxSize: 8 * 1024 * 1024 });
  lmtp = await startIngest(db.pool, { lmtp: true, maxSize: 8 * 1024 * 1024 });
});

afterAll(async () => {
  await smtp?.stop();
  await lmtp?.stop();
  await db?.drop();
});

const listsOf = async (messageId: string) =>
  (await db.pool.query(
    `select l.local_part from messages m join list_messages lm on lm.message_id = m.id join lists l on l.id = lm.list_id
      where m.message_id = $1 order by 1`, [messageId])).rows.map((r) => r.local_part);

/** A raw SMTP/LMTP client: writes lines, reads complete replies (a reply ends with "NNN text"). */
class Client {
  private socket: net.Socket;
  private buffer = '';
  private waiting: (() => void) | null = null;
  replies: string[] = [];

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.buffer += d;
      for (let m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buffer); m; m = /^(\d{3}) [^\r\n]*\r\n/m.exec(this.buffer)) {
        this.replies.push(this.buffer.slice(0, m.index + m[0].length));
        this.buffer = this.buffer.slice(m.index + m[0].length);
      }
      this.waiting?.();
    });
    this.socket.on('close', () => this.waiting?.());
  }

  /** Waits until `n` replies have arrived in all, and returns them. */
  async replyCount(n: number): Promise<string[]> {
    while (this.replies.length < n && !this.socket.destroyed) await new Promise<void>((r) => (this.waiting = r));
    return this.replies.slice(0, n);
  }

  write(data: string | Buffer) {
    this.socket.write(data);
  }

  async say(line: string): Promise<string> {
    const n = this.replies.length + 1;
    this.write(`${line}\r\n`);
    return (await this.replyCount(n))[n - 1];
  }

  get closed() {
    return this.socket.destroyed;
  }

  close() {
    this.socket.destroy();
  }
}

async function open(port: number, hello = 'EHLO'): Promise<Client> {
  const c = new Client(port);
  await c.replyCount(1);
  await c.say(`${hello} test.example`);
  return c;
}

describe('repeated RCPT TO', () => {
  it('delivers to every recipient answered 250 over SMTP, whatever the case of a repeated one', async () => {
    const c = await open(smtp.port);
    expect(await c.say('MAIL FROM:<alice@example.org>')).toMatch(/^250/);
    expect(await c.say('RCPT TO:<pub@lists.example.org>')).toMatch(/^250/);
    expect(await c.say('RCPT TO:<PUB@lists.example.org>')).toMatch(/^250/);
    expect(await c.say('RCPT TO:<other@lists.example.org>')).toMatch(/^250/);
    expect(await c.say('DATA')).toMatch(/^354/);
    expect(await c.say(`${message({ id: 'repeat-smtp@example.org' })}\r\n.`)).toMatch(/^250/);
    c.close();
    expect(await listsOf('repeat-smtp@example.org')).toEqual(['other', 'pub']);
  });

  it('answers LMTP once per accepted RCPT, and delivers to each', async () => {
    const c = await open(lmtp.port, 'LHLO');
    await c.say('MAIL FROM:<alice@example.org>');
    for (const rcpt of ['pub@lists.example.org', 'PUB@lists.example.org', 'nobody@lists.example.org', 'other@lists.example.org']) await c.say(`RCPT TO:<${rcpt}>`);
    expect(c.replies.slice(-4).map((r) => r.slice(0, 3))).toEqual(['250', '250', '550', '250']);
    expect(await c.say('DATA')).toMatch(/^354/);
    const before = c.replies.length;
    c.write(`${message({ id: 'repeat-lmtp@example.org' })}\r\n.\r\n`);
    const after = await c.replyCount(before + 3);
    expect(after.slice(before).map((r) => r.slice(0, 3))).toEqual(['250', '250', '250']);
    // and nothing more: the next command's reply is the next one
    expect(await c.say('NOOP')).toMatch(/^250/);
    c.close();
    expect(await listsOf('repeat-lmtp@example.org')).toEqual(['other', 'pub']);
  });

  it('refuses RCPT TO past 1,000 in one transaction, repeats included, with 452 4.5.3, and takes the message for those accepted', async () => {
    const c = await open(smtp.port);
    await c.say('MAIL FROM:<alice@example.org>');
    const before = c.replies.length;
    c.write('RCPT TO:<pub@lists.example.org>\r\n'.repeat(MAX_RECIPIENTS) + 'RCPT TO:<other@lists.example.org>\r\n');
    const rcpt = (await c.replyCount(before + MAX_RECIPIENTS + 1)).slice(before);
    expect(rcpt.filter((r) => r.startsWith('250')).length).toBe(MAX_RECIPIENTS);
    expect(rcpt.at(-1)).toMatch(/^452 4\.5\.3 /);
    expect(await c.say('DATA')).toMatch(/^354/);
    expect(await c.say(`${message({ id: 'many-rcpt@example.org' })}\r\n.`)).toMatch(/^250/);
    // the next transaction starts afresh
    await c.say('MAIL FROM:<alice@example.org>');
    expect(await c.say('RCPT TO:<other@lists.example.org>')).toMatch(/^250/);
    c.close();
    expect(await listsOf('many-rcpt@example.org')).toEqual(['pub']);
  });

  it('answers an oversized message once per accepted RCPT over LMTP', async () => {
    const small = await startIngest(db.pool, { lmtp: true, maxSize: 1000 });
    try {
      const c = await open(small.port, 'LHLO');
      await c.say('MAIL FROM:<alice@example.org>');
      await c.say('RCPT TO:<pub@lists.example.org>');
      await c.say('RCPT TO:<Pub@lists.example.org>');
      await c.say('DATA');
      const before = c.replies.length;
      c.write(`${message({ id: 'big-lmtp@example.org', body: 'x'.repeat(5000) })}\r\n.\r\n`);
      const after = await c.replyCount(before + 2);
      expect(after.slice(before).map((r) => r.slice(0, 3))).toEqual(['552', '552']);
      expect(await c.say('NOOP')).toMatch(/^250/);
      c.close();
    } finally {
      await small.stop();
    }
  });
});

describe('faults of the message', () => {
  const refusedOrTaken = async (raw: string | Buffer, id: string) => {
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['pub@lists.example.org'] }, raw);
    // never 451: a fault of the message is not a fault of the system
    expect(res.responseCode ?? 250, res.response).not.toBe(451);
    return { res, lists: await listsOf(id) };
  };

  it('takes a Message-ID or In-Reply-To holding NUL under a generated id', async () => {
    const raw = message({ id: 'nul\u0000here@example.org', subject: 'NUL in the id', headers: { 'In-Reply-To': '<also\u0000nul@example.org>' } });
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['pub@lists.example.org'] }, raw);
    expect(res.ok).toBe(true);
    const { rows } = await db.pool.query(`select message_id, in_reply_to from messages where subject = 'NUL in the id'`);
    expect(rows).toEqual([{ message_id: expect.stringMatching(/@generated\.listkeeper\.invalid$/), in_reply_to: null }]);
  });

  it('takes a 4,000-character From address, keeping it only in the raw bytes', async () => {
    const from = `${'a'.repeat(4000)}@example.org`;
    const { res, lists } = await refusedOrTaken(message({ id: 'long-from@example.org', from: `Somebody <${from}>` }), 'long-from@example.org');
    expect(res.ok).toBe(true);
    expect(lists).toEqual(['pub']);
    const { rows } = await db.pool.query(`select from_email, raw from messages where message_id = 'long-from@example.org'`);
    expect(rows[0].from_email).toBe('');
    expect(rows[0].raw.toString()).toContain(from);
  });

  it('takes a subject of a million characters (more than the search index takes), searchable by its start', async () => {
    const words = Array.from({ length: 120_000 }, (_, i) => `w${i.toString(36)}x`).join(' ');
    const { res, lists } = await refusedOrTaken(message({ id: 'huge-subject@example.org', subject: `zebracorn ${words}` }), 'huge-subject@example.org');
    expect(res.ok).toBe(true);
    expect(lists).toEqual(['pub']);
    const { rows } = await db.pool.query(`select length(subject) as n, tsv @@ to_tsquery('listkeeper', 'zebracorn') as found from messages where message_id = 'huge-subject@example.org'`);
    expect(rows[0]).toEqual({ n: 1001, found: true });
  });

  it('refuses a message PostgreSQL will not store for what it holds with 554, keeps it aside, and takes the others', async () => {
    // Stands in for any value PostgreSQL refuses (SQLSTATE classes 22 and 54): a trigger that
    // refuses one subject the way a too-long search entry or index row would be refused.
    await db.pool.query(`create function poison() returns trigger language plpgsql as $$
      begin
        if new.subject = 'poison' then raise exception 'string is too long for tsvector' using errcode = '54000'; end if;
        return new;
      end $$`);
    await db.pool.query('create trigger poison before insert on messages for each row execute function poison()');
    try {
      const poisoned = sendRaw(smtp.port, { from: 'alice@example.org', to: ['pub@lists.example.org'] }, message({ id: 'poison@example.org', subject: 'poison' }));
      const healthy = sendRaw(smtp.port, { from: 'alice@example.org', to: ['pub@lists.example.org'] }, message({ id: 'healthy@example.org', subject: 'fine' }));
      const [p, h] = await Promise.all([poisoned, healthy]);
      expect(p.responseCode).toBe(554);
      expect(p.response).toMatch(/5\.6\.0 the message could not be stored: string is too long for tsvector/);
      expect(h.ok).toBe(true);
      const { rows } = await db.pool.query(`select reason, raw from ingest_errors where message_id = 'poison@example.org'`);
      expect(rows.map((r) => r.reason)).toEqual(['the message could not be stored: string is too long for tsvector']);
      expect(rows[0].raw.toString()).toContain('Subject: poison');
    } finally {
      await db.pool.query('drop trigger poison on messages; drop function poison()');
    }
  });

  it('refuses at once a message whose HTML is nested 200,000 deep, and reads ordinary HTML as before', async () => {
    // htmlparser2, under mailparser's HTML-to-text, costs the depth at every tag: this 2.2 MB
    // message held the ingest's event loop for 52 s before it was refused as unparseable anyway.
    const deep = `${'<div>'.repeat(200_000)}x${'</div>'.repeat(200_000)}`;
    const started = Date.now();
    const { res, lists } = await refusedOrTaken(message({ id: 'deep-html@example.org', headers: { 'Content-Type': 'text/html' }, body: deep }), 'deep-html@example.org');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(res.responseCode).toBe(554);
    expect(res.response).toContain('its HTML is nested too deeply to be read');
    expect(lists).toEqual([]);
    // HTML alone, and HTML beside a text part, are read as they were.
    const html = `<div><p>First <b>paragraph</b></p>${'<div>'.repeat(50)}nested deep${'</div>'.repeat(50)}</div>`;
    expect((await refusedOrTaken(message({ id: 'html-only@example.org', headers: { 'Content-Type': 'text/html' }, body: html }), 'html-only@example.org')).lists).toEqual(['pub']);
    const mixed = ['--b', 'Content-Type: text/plain', '', 'plain part', '--b', 'Content-Type: text/html', '', html, '--b--', ''].join('\r\n');
    expect((await refusedOrTaken(message({ id: 'html-mixed@example.org', headers: { 'Content-Type': 'multipart/mixed; boundary=b' }, body: mixed }), 'html-mixed@example.org')).lists).toEqual(['pub']);
    const alternative = ['--b', 'Content-Type: text/plain', '', 'the text version', '--b', 'Content-Type: text/html', '', deep, '--b--', ''].join('\r\n');
    expect((await refusedOrTaken(message({ id: 'html-alternative@example.org', headers: { 'Content-Type': 'multipart/alternative; boundary=b' }, body: alternative }), 'html-alternative@example.org')).lists).toEqual(['pub']);
    const { rows } = await db.pool.query(`select message_id, body from messages where message_id like 'html-%' order by 1`);
    expect(rows).toEqual([
      // The HTML of an alternative is never made text (the text part is the body), however deep.
      { message_id: 'html-alternative@example.org', body: 'the text version' },
      { message_id: 'html-mixed@example.org', body: 'plain part\nFirst paragraph\n\nnested deep' },
      { message_id: 'html-only@example.org', body: 'First paragraph\n\nnested deep' },
    ]);
  });

  it('refuses a part whose Content-Type has thousands of parameters with 554, and takes one with a few hundred', async () => {
    // mailparser reads a field's parameters in more than linear time: 40 such parts of 50,000
    // parameters (21.6 MB) held the ingest's event loop for 24 s.
    const part = (n: number) => `--b\r\nContent-Type: text/plain${Array.from({ length: n }, (_, i) => `; p${i}*=x`).join('')}\r\n\r\nparameters ${n}\r\n`;
    const many = await refusedOrTaken(message({ id: 'ct-params-many@example.org', headers: { 'Content-Type': 'multipart/mixed; boundary=b' }, body: `${part(5000).repeat(4)}--b--\r\n` }), 'ct-params-many@example.org');
    expect(many.res.responseCode).toBe(554);
    expect(many.res.response).toContain('a Content-Type or Content-Disposition field has more than 256 parameters');
    expect(many.lists).toEqual([]);
    // Folded over lines, as long RFC 2231 file names are, and counted all the same.
    const folded = ['--b', `Content-Disposition: attachment${Array.from({ length: 300 }, (_, i) => `;\r\n filename*${i}*=a`).join('')}`, 'Content-Type: text/plain', '', 'x', '--b--', ''].join('\r\n');
    expect((await refusedOrTaken(message({ id: 'cd-params-folded@example.org', headers: { 'Content-Type': 'multipart/mixed; boundary=b' }, body: folded }), 'cd-params-folded@example.org')).res.responseCode).toBe(554);
    const some = await refusedOrTaken(message({ id: 'ct-params-some@example.org', headers: { 'Content-Type': 'multipart/mixed; boundary=b' }, body: `${part(200)}--b--\r\n` }), 'ct-params-some@example.org');
    expect(some.lists).toEqual(['pub']);
    // Semicolons in a body are not parameters.
    const prose = await refusedOrTaken(message({ id: 'semicolons@example.org', headers: { 'Content-Type': 'multipart/mixed; boundary=b' }, body: `--b\r\nContent-Type: text/plain\r\n\r\n${'a; b; '.repeat(5000)}\r\n--b--\r\n` }), 'semicolons@example.org');
    expect(prose.lists).toEqual(['pub']);
  });

  it('threads a message with 20,000 References by the newest of them', async () => {
    await sendRaw(smtp.port, { from: 'alice@example.org', to: ['pub@lists.example.org'] }, message({ id: 'ref-root@example.org', subject: 'root' }));
    const refs = [...Array.from({ length: 20_000 }, (_, i) => `<r${i}@example.org>`), '<ref-root@example.org>'].join('\r\n ');
    const { res, lists } = await refusedOrTaken(message({ id: 'many-refs@example.org', subject: 'Re: root', headers: { References: refs } }), 'many-refs@example.org');
    expect(res.ok).toBe(true);
    expect(lists).toEqual(['pub']);
    const { rows } = await db.pool.query(
      `select p.message_id as parent, cardinality(c.refs) as refs from messages c join messages p on p.id = c.parent_id where c.message_id = 'many-refs@example.org'`);
    expect(rows).toEqual([{ parent: 'ref-root@example.org', refs: 50 }]);
  });
});

describe('large messages and slow senders', () => {
  it('takes a large message while another sender trickles a large one', async () => {
    const big = (id: string) => `${message({ id, body: `${'y'.repeat(100)}\r\n`.repeat(20_000) })}\r\n.\r\n`;
    const slow = await open(smtp.port);
    await slow.say('MAIL FROM:<slow@example.org>');
    await slow.say('RCPT TO:<pub@lists.example.org>');
    await slow.say('DATA');
    const slowData = Buffer.from(big('slow-big@example.org'));
    slow.write(slowData.subarray(0, 1_200_000)); // past the first megabyte, then nothing for now

    const fast = await open(smtp.port);
    await fast.say('MAIL FROM:<fast@example.org>');
    await fast.say('RCPT TO:<pub@lists.example.org>');
    await fast.say('DATA');
    const before = fast.replies.length;
    fast.write(big('fast-big@example.org'));
    expect((await fast.replyCount(before + 1))[before]).toMatch(/^250/);
    expect(await listsOf('fast-big@example.org')).toEqual(['pub']);
    expect(await listsOf('slow-big@example.org')).toEqual([]); // still arriving

    const slowBefore = slow.replies.length;
    slow.write(slowData.subarray(1_200_000));
    expect((await slow.replyCount(slowBefore + 1))[slowBefore]).toMatch(/^250/);
    expect(await listsOf('slow-big@example.org')).toEqual(['pub']);
    slow.close();
    fast.close();
  });

  it('answers 451 when the memory for large messages stays taken too long, and takes the message on retry', async () => {
    const tight = await startIngest(db.pool, { maxSize: 8 * 1024 * 1024, memoryBytes: 1024 * 1024, memoryWaitMs: 300 });
    try {
      const body = `${'z'.repeat(100)}\r\n`.repeat(15_000); // 1.5 MB: half a megabyte from the budget
      const hog = await open(tight.port);
      await hog.say('MAIL FROM:<hog@example.org>');
      await hog.say('RCPT TO:<pub@lists.example.org>');
      await hog.say('DATA');
      const hogData = Buffer.from(`${message({ id: 'hog@example.org', body: body + body })}\r\n.\r\n`); // 3 MB
      hog.write(hogData.subarray(0, 2_200_000)); // holds 1.2 MB of a 1 MB budget (a lone session may)

      const res = await sendRaw(tight.port, { from: 'late@example.org', to: ['pub@lists.example.org'] }, message({ id: 'late-big@example.org', body }));
      expect(res.responseCode).toBe(451);
      expect(res.response).toMatch(/4\.3\.1/);
      hog.write(hogData.subarray(2_200_000));
      expect((await hog.replyCount(hog.replies.length + 1)).at(-1)).toMatch(/^250/);
      const retry = await sendRaw(tight.port, { from: 'late@example.org', to: ['pub@lists.example.org'] }, message({ id: 'late-big@example.org', body }));
      expect(retry.ok).toBe(true);
      hog.close();
    } finally {
      await tight.stop();
    }
  });

  it('ends a DATA phase that outlasts its deadline with 421, keeping nothing', async () => {
    const strict = await startIngest(db.pool, { maxSize: 8 * 1024 * 1024, dataTimeoutMs: 500 });
    try {
      const c = await open(strict.port);
      await c.say('MAIL FROM:<slowpoke@example.org>');
      await c.say('RCPT TO:<pub@lists.example.org>');
      await c.say('DATA');
      const before = c.replies.length;
      c.write(message({ id: 'never-ends@example.org' }).slice(0, 50));
      const [reply] = (await c.replyCount(before + 1)).slice(before);
      expect(reply).toMatch(/^421/);
      while (!c.closed) await new Promise((r) => setTimeout(r, 20));
      expect(await listsOf('never-ends@example.org')).toEqual([]);
    } finally {
      await strict.stop();
    }
  });
});

describe('early talkers (issue 14, item 9)', () => {
  it('waits before the greeting only for SMTP peers off loopback, unless the wait is configured', () => {
    const unset = { lmtp: false, configured: null };
    for (const peer of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1']) expect(greetingDelayMs(peer, unset), peer).toBe(0);
    for (const peer of ['192.0.2.7', '::ffff:192.0.2.7', '2001:db8::1', '10.127.0.1']) expect(greetingDelayMs(peer, unset), peer).toBe(DEFAULT_GREETING_DELAY_MS);
    expect(DEFAULT_GREETING_DELAY_MS).toBeGreaterThan(0);
    // LMTP: the client is our own MTA, which faced the internet
    expect(greetingDelayMs('192.0.2.7', { lmtp: true, configured: null })).toBe(0);
    // Set, it applies to everyone (behind a local proxy every peer is on loopback)
    expect(greetingDelayMs('127.0.0.1', { lmtp: false, configured: 5000 })).toBe(5000);
    expect(greetingDelayMs('192.0.2.7', { lmtp: true, configured: 250 })).toBe(250);
    expect(greetingDelayMs('192.0.2.7', { lmtp: false, configured: 0 })).toBe(0);
  });

  it('reads SMTP_GREETING_DELAY_MS, unset meaning "chosen per peer"', () => {
    expect(parseConfig({}).smtp.greetingDelayMs).toBeNull();
    expect(parseConfig({ SMTP_GREETING_DELAY_MS: '' }).smtp.greetingDelayMs).toBeNull();
    expect(parseConfig({ SMTP_GREETING_DELAY_MS: '0' }).smtp.greetingDelayMs).toBe(0);
    expect(parseConfig({ SMTP_GREETING_DELAY_MS: '250' }).smtp.greetingDelayMs).toBe(250);
    expect(() => parseConfig({ SMTP_GREETING_DELAY_MS: '-1' })).toThrow(/SMTP_GREETING_DELAY_MS/);
  });

  it('refuses a client that talks before the greeting with 421, and takes nothing from it', async () => {
    // A long wait (on loopback too, as configured): the greeting cannot come before the command.
    // The reverse lookup answers at once, so that nothing but the wait holds the greeting back.
    setResolvers({ reverse: async () => [] });
    const wary = await startIngest(db.pool, { greetingDelayMs: 5000 });
    const c = new Client(wary.port);
    try {
      c.write(`EHLO spammer.example\r\nMAIL FROM:<spam@example.org>\r\nRCPT TO:<pub@lists.example.org>\r\nDATA\r\n${message({ id: 'early-talker@example.org' })}\r\n.\r\n`);
      const [first] = await c.replyCount(1);
      expect(first).toMatch(/^421 .*talk too soon/);
      while (!c.closed) await new Promise((r) => setTimeout(r, 20));
      expect(c.replies.some((r) => r.startsWith('220') || r.startsWith('250'))).toBe(false);
      expect(await listsOf('early-talker@example.org')).toEqual([]);
    } finally {
      setResolvers();
      c.close();
      await wary.stop();
    }
  });
});

/** An address of this machine's that is not loopback (a connection to it comes from it), if any. */
const external = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

/** The first line a connection to host:port is answered with (after `send`, written at once). */
function firstLine(host: string, port: number, send?: string): Promise<{ line: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host);
    if (send) socket.write(send);
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      text += d;
      if (text.includes('\r\n')) resolve({ line: text.slice(0, text.indexOf('\r\n')), socket });
    });
    socket.on('error', reject);
  });
}

describe('sessions from one address', () => {
  it('limits a client from the network, not one on loopback nor our own MTA over LMTP', () => {
    expect(sessionLimit('192.0.2.7', { lmtp: false })).toBe(MAX_SESSIONS_PER_CLIENT);
    expect(sessionLimit('2001:db8::1', { lmtp: false })).toBe(MAX_SESSIONS_PER_CLIENT);
    for (const peer of ['127.0.0.1', '::1', '::ffff:127.0.0.1']) expect(sessionLimit(peer, { lmtp: false }), peer).toBeNull();
    expect(sessionLimit('192.0.2.7', { lmtp: true })).toBeNull();
  });

  it.skipIf(!external)('answers 421 to one more session than the limit from one address, while others are still greeted', async () => {
    const server = new IngestServer(db.pool, { host: '0.0.0.0', port: 0, lmtp: false, maxSize: 1024 * 1024, greetingDelayMs: 0 });
    const { port } = await server.start();
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < MAX_SESSIONS_PER_CLIENT; i++) {
        const { line, socket } = await firstLine(external!, port);
        sockets.push(socket);
        expect(line).toMatch(/^220 /);
      }
      // Without a limit of its own, one address could hold all 500 of the listener's sessions.
      const over = await firstLine(external!, port);
      sockets.push(over.socket);
      expect(over.line).toMatch(/^421 4\.7\.0 .*too many connections from your address/);
      const local = await firstLine('127.0.0.1', port);
      sockets.push(local.socket);
      expect(local.line).toMatch(/^220 /);
      // One session fewer, and the address is greeted again.
      sockets[0].destroy();
      await new Promise((r) => setTimeout(r, 100));
      const again = await firstLine(external!, port);
      sockets.push(again.socket);
      expect(again.line).toMatch(/^220 /);
    } finally {
      for (const s of sockets) s.destroy();
      await server.stop();
    }
  });

  it('counts an IPv6 client by its /64, not by each of its addresses', async () => {
    const server = new IngestServer(db.pool, { host: '127.0.0.1', port: 0, lmtp: false, maxSize: 1024 * 1024, greetingDelayMs: 0 });
    // This machine has no 2^64 addresses to connect from: each connection names its client in a
    // PROXY header (smtp-server's useProxy, read when a connection arrives), as a proxy would.
    (server as unknown as { server: { options: { useProxy: boolean } } }).server.options.useProxy = true;
    const { port } = await server.start();
    const sockets: net.Socket[] = [];
    const from = async (ip: string) => {
      const { line, socket } = await firstLine('127.0.0.1', port, `PROXY TCP6 ${ip} ::1 40000 25\r\n`);
      sockets.push(socket);
      return line;
    };
    try {
      // One host, a new address of its /64 for each session.
      for (let i = 1; i <= MAX_SESSIONS_PER_CLIENT; i++) expect(await from(`2001:db8:1:2::${i.toString(16)}`)).toMatch(/^220 /);
      // Counted by address, it could go on to take every one of the listener's 500 sessions.
      expect(await from('2001:db8:1:2:ffff::1')).toMatch(/^421 4\.7\.0 .*too many connections from your address/);
      // Another network is another client, greeted as ever.
      expect(await from('2001:db8:1:3::1')).toMatch(/^220 /);
    } finally {
      for (const s of sockets) s.destroy();
      await server.stop();
    }
  });
});

describe('unknown recipients in one session', () => {
  /** The replies' codes of a pipelined session (one code a reply), until the server closes it or QUIT is answered. */
  function codesOf(port: number, lines: string[], proxy?: string): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      let text = '';
      socket.setEncoding('latin1');
      if (proxy) socket.write(proxy);
      socket.once('data', () => socket.write(lines.map((l) => `${l}\r\n`).join('')));
      socket.on('data', (d: string) => (text += d));
      socket.on('error', reject);
      const done = () => resolve(text.split('\r\n').filter((l) => /^\d{3} /.test(l)).map((l) => Number(l.slice(0, 3))));
      socket.on('close', done);
      setTimeout(() => socket.destroy(), 10_000);
    });
  }

  it('closes a session from the network with 421 past the limit of guesses, and leaves loopback (a local MTA) alone', async () => {
    const server = new IngestServer(db.pool, { host: '127.0.0.1', port: 0, lmtp: false, maxSize: 1024 * 1024, greetingDelayMs: 0 });
    (server as unknown as { server: { options: { useProxy: boolean } } }).server.options.useProxy = true;
    const { port } = await server.start();
    const guesses = Array.from({ length: MAX_UNKNOWN_RECIPIENTS + 5 }, (_, i) => `RCPT TO:<guess-${i}@lists.example.org>`);
    const session = ['EHLO client.example', 'MAIL FROM:<probe@example.net>', ...guesses, 'QUIT'];
    try {
      // Listed first: 220 greeting, 250 EHLO, 250 MAIL, then the guesses.
      const network = await codesOf(port, session, 'PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n');
      expect(network).toEqual([220, 250, 250, ...Array(MAX_UNKNOWN_RECIPIENTS).fill(550), 421]);
      const local = await codesOf(port, session, 'PROXY TCP4 127.0.0.1 127.0.0.1 40000 25\r\n');
      expect(local).toEqual([220, 250, 250, ...Array(guesses.length).fill(550), 221]);
    } finally {
      await server.stop();
    }
  });
});
