import crypto from 'node:crypto';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createList, updateDeliverySettings, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { setResolvers } from '../src/dns.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { normalizeEmail } from '../src/mail/address.ts';
import { parse } from '../src/mail/parse.ts';
import { drained, startWorker, workerConfig } from './helpers/capture-relay.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { startScriptedRelay, type ScriptedRelay } from './helpers/scripted-relay.ts';
import { message, postTo, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

/**
 * Outbound SMTP against a scripted server that does or does not offer 8BITMIME and SMTPUTF8:
 * what goes over the wire (EHLO name, MAIL FROM parameters, the bytes), and what the outbox says.
 */

let db: TestDatabase;
let smtp: RunningIngest;
let relay: ScriptedRelay;
let worker: DeliveryWorker | undefined;

const WITH_8BIT = '250-scripted.test\r\n250-8BITMIME\r\n250 SIZE 50000000';
const WITH_UTF8 = '250-scripted.test\r\n250-8BITMIME\r\n250 SMTPUTF8';
const BARE = '250-scripted.test\r\n250 SIZE 50000000';

async function listWith(local: string, members: string[]): Promise<ListRow> {
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const m of members) await addMember(db.pool, list.id, normalizeEmail(m)!, 'each');
  return list;
}

const post = (local: string, id: string, body = 'Hello, list.\n', headers: Record<string, string> = {}) => postTo(smtp.port, local, id, { body, headers });

const deliveredOf = (id: string) => relay.delivered.filter((d) => d.raw.includes(`<${id}>`));

async function outbox(id: string) {
  const { rows } = await db.pool.query<{ recipient: string; state: string; last_error: string | null }>(
    `select o.recipient, o.state, o.last_error from outbox o join messages m on m.id = o.message_id where m.message_id = $1 order by o.recipient`, [id]);
  return rows;
}

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  relay = await startScriptedRelay();
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  relay.setScript({});
  setResolvers();
});

afterAll(async () => {
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('the EHLO name', () => {
  it('is MAIL_DOMAIN by default and SMTP_HELO_NAME when set, to the relay and to an MX', async () => {
    await listWith('helo', ['one@helo.example']);
    worker = await startWorker(db, workerConfig(relay));
    await post('helo', 'helo-1@example.org');
    await drained(db);
    expect(deliveredOf('helo-1@example.org').map((d) => d.helo)).toEqual(['lists.example.org']);
    await worker.stop();

    worker = await startWorker(db, workerConfig(relay, { SMTP_HELO_NAME: 'Out.Example.NET' }));
    await post('helo', 'helo-2@example.org');
    await drained(db);
    expect(deliveredOf('helo-2@example.org').map((d) => d.helo)).toEqual(['out.example.net']);
    await worker.stop();

    setResolvers({ mx: async (domain) => (domain === 'helo.example' ? [{ exchange: '127.0.0.1', priority: 10 }] : []) });
    worker = await startWorker(db, workerConfig(relay, { RELAY_URL: '', DELIVERY_MX_PORT: String(relay.port), DELIVERY_MX_ALLOW: 'loopback', SMTP_HELO_NAME: 'mx-out.example.net' }));
    await post('helo', 'helo-3@example.org');
    await drained(db);
    expect(deliveredOf('helo-3@example.org').map((d) => d.helo)).toEqual(['mx-out.example.net']);
  });
});

describe('8BITMIME', () => {
  const text = 'Grüße aus Köln — naïve café, €5.\nZweite Zeile mit Ümlaut.\n';

  it('says BODY=8BITMIME for an 8-bit copy when the server offers it, and nothing for a 7-bit one', async () => {
    await listWith('eight', ['one@eight.example']);
    relay.setScript({ replies: { ehlo: WITH_8BIT } });
    worker = await startWorker(db, workerConfig(relay));
    await post('eight', 'eight-1@example.org', text);
    await post('eight', 'eight-2@example.org', 'plain ASCII\n');
    await drained(db);
    const [eight] = deliveredOf('eight-1@example.org');
    expect(eight.mail).toMatch(/^MAIL FROM:<eight-bounces\+[^>]+> BODY=8BITMIME/);
    expect(eight.raw.includes(Buffer.from('Grüße aus Köln'))).toBe(true);
    const [seven] = deliveredOf('eight-2@example.org');
    expect(seven.mail).not.toContain('BODY=');
  });

  it('converts each 8-bit text part to quoted-printable for a server without 8BITMIME, and the list signature covers the result', async () => {
    const list = await listWith('qp', ['one@qp.example']);
    const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    await updateDeliverySettings(db.pool, list.id, { dkim_domain: 'lists.example.org', dkim_selector: 'lk', dkim_private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() });
    relay.setScript({ replies: { ehlo: BARE } });
    worker = await startWorker(db, workerConfig(relay));
    const boundary = 'b-1';
    const body = [`--${boundary}`, 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', text.trimEnd(), `--${boundary}`,
      'Content-Type: text/html; charset=utf-8', '', '<p>Grüße</p>', `--${boundary}--`, ''].join('\n');
    await post('qp', 'qp-1@example.org', body, { 'Content-Type': `multipart/alternative; boundary="${boundary}"` });
    await drained(db);
    const [copy] = deliveredOf('qp-1@example.org');
    expect(copy.mail).not.toContain('BODY=');
    expect(copy.raw.some((b) => b >= 0x80)).toBe(false);
    expect(copy.raw.toString().match(/Content-Transfer-Encoding: quoted-printable/g)).toHaveLength(2);
    const parsed = await parse(copy.raw);
    expect(parsed.text?.trim()).toBe(text.trim());
    expect(parsed.html).toContain('<p>Grüße</p>');
    const publicB64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    const result = await dkimVerify(copy.raw, {
      resolver: async (name: string) => {
        if (name === 'lk._domainkey.lists.example.org') return [[`v=DKIM1; k=rsa; p=${publicB64}`]];
        throw Object.assign(new Error('none'), { code: 'ENOTFOUND' });
      },
    });
    const list_ = result.results.find((r: { signingDomain: string }) => r.signingDomain === 'lists.example.org');
    expect(list_?.status.result).toBe('pass');
  });

  it('fails a copy whose header fields are 8-bit for a server without 8BITMIME, saying why', async () => {
    await listWith('hdr', ['one@hdr.example']);
    relay.setScript({ replies: { ehlo: BARE } });
    worker = await startWorker(db, workerConfig(relay));
    await post('hdr', 'hdr-1@example.org', text, { 'X-Note': 'Grüße' });
    await drained(db);
    expect(deliveredOf('hdr-1@example.org')).toEqual([]);
    const [row] = await outbox('hdr-1@example.org');
    expect(row.state).toBe('failed');
    expect(row.last_error).toMatch(/does not offer 8BITMIME.*8-bit header fields/);
  });

  it('fails at once, saying why, a copy nested too deep to be made 7-bit, instead of deferring it for days', async () => {
    await listWith('nest', ['one@nest.example']);
    relay.setScript({ replies: { ehlo: BARE } });
    worker = await startWorker(db, workerConfig(relay));
    // 5,000 message/rfc822 parts one inside the other (the ingest takes them), an 8-bit body in
    // the last: converting it part by part overflowed the stack, and the RangeError was taken for
    // a broken session: the copy was deferred, and tried again (two sessions each time) for days.
    let inner = 'Subject: inside\r\n\r\nGrüße\r\n';
    for (let i = 0; i < 5000; i++) inner = `Content-Type: message/rfc822\r\n\r\n${inner}`;
    const raw = `From: Alice <alice@example.org>\r\nTo: nest@lists.example.org\r\nSubject: deep\r\nMessage-ID: <nest-1@example.org>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n${inner}`;
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['nest@lists.example.org'] }, Buffer.from(raw, 'utf8'));
    expect(res.ok, res.response).toBe(true);
    await drained(db);
    expect(deliveredOf('nest-1@example.org')).toEqual([]);
    const [row] = await outbox('nest-1@example.org');
    expect(row.state).toBe('failed');
    expect(row.last_error).toMatch(/does not offer 8BITMIME.*nested more than \d+ deep/);
    // A shallow 8-bit message still goes, converted.
    await post('nest', 'nest-2@example.org', text);
    await drained(db);
    expect(deliveredOf('nest-2@example.org')).toHaveLength(1);
  });
});

describe('a list on an international domain', () => {
  it('writes its addresses in A-labels in every copy and notice, which a server without 8BITMIME then takes', async () => {
    // The list is stored in U-labels, as every address is (normalizeEmail). Written so in List-Id,
    // List-Post, a notice's From and Message-ID, each copy's header was raw UTF-8: refused for
    // every member by a relay without 8BITMIME (and sent without SMTPUTF8 by one with it).
    const list = await createList(db.pool, { address: 'intl@bücher.example', name: 'intl', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    expect(list.address).toBe('intl@bücher.example');
    await addMember(db.pool, list.id, 'ann@example.net', 'each');
    relay.setScript({ replies: { ehlo: BARE } });
    worker = await startWorker(db, workerConfig(relay));
    const to = 'intl@xn--bcher-kva.example';
    const res = await sendRaw(smtp.port, { from: 'alice@example.org', to: [to] }, Buffer.from(message({ id: 'intl-1@example.org', to }), 'utf8'));
    expect(res.ok, res.response).toBe(true);
    const help = await sendRaw(smtp.port, { from: 'alice@example.org', to: ['intl-request@xn--bcher-kva.example'] }, Buffer.from(message({ id: 'intl-2@example.org', to: 'intl-request@xn--bcher-kva.example', subject: 'help', body: 'help\n' }), 'utf8'));
    expect(help.ok, help.response).toBe(true);
    await drained(db);
    expect((await outbox('intl-1@example.org')).map((r) => [r.recipient, r.state])).toEqual([['ann@example.net', 'sent']]);
    // latin1: one character a byte, so that a UTF-8 byte is a character past \x7f.
    const copy = { raw: deliveredOf('intl-1@example.org')[0].raw.toString('latin1') };
    const head = (raw: string) => raw.slice(0, raw.indexOf('\r\n\r\n'));
    expect(head(copy.raw)).toMatch(/^[\x00-\x7f]*$/);
    expect(copy.raw).toContain('\r\nList-Id: <intl.xn--bcher-kva.example>\r\n');
    expect(copy.raw).toContain('\r\nList-Post: <mailto:intl@xn--bcher-kva.example>\r\n');
    expect(copy.raw).toMatch(/\r\nList-Unsubscribe: <mailto:intl-unsubscribe@xn--bcher-kva\.example>/);
    const answer = relay.delivered.find((d) => d.to[0] === 'alice@example.org');
    expect(answer, 'the answer to "help"').toBeDefined();
    const notice = { raw: answer!.raw.toString('latin1') };
    expect(head(notice.raw)).toMatch(/^[\x00-\x7f]*$/);
    expect(notice.raw).toMatch(/^From: .*<intl-request@xn--bcher-kva\.example>\r$/m);
    expect(notice.raw).toMatch(/^Message-ID: <[^>]+@xn--bcher-kva\.example>\r$/m);
  });
});

describe('SMTPUTF8', () => {
  it('subscribes an international address from the command line, and still refuses garbage', async () => {
    await listWith('intl', []);
    const env = { DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org', LOG_LEVEL: 'silent' };
    const ok = await cli(['subscribe', 'intl', 'Jörg@Exämple.de'], env);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('jörg@exämple.de');
    const bad = await cli(['subscribe', 'intl', 'jörg@exä mple.de'], env);
    expect(bad.code).not.toBe(0);
    const { rows } = await db.pool.query(`select m.email from members m join lists l on l.id = m.list_id where l.address = 'intl@lists.example.org'`);
    expect(rows).toEqual([{ email: 'jörg@exämple.de' }]);
  });

  it('says SMTPUTF8 on MAIL FROM for a copy to an international address when the server offers it', async () => {
    await listWith('utf', ['jörg@exämple.de', 'ann@utf.example']);
    relay.setScript({ replies: { ehlo: WITH_UTF8 } });
    worker = await startWorker(db, workerConfig(relay));
    await post('utf', 'utf-1@example.org');
    await drained(db);
    const copies = deliveredOf('utf-1@example.org');
    const jorg = copies.find((d) => d.to[0] === 'jörg@exämple.de');
    expect(jorg?.mail).toMatch(/ SMTPUTF8\b/);
    expect(relay.commands).toContain('RCPT TO:<jörg@exämple.de>');
    expect(copies.find((d) => d.to[0] === 'ann@utf.example')?.mail).not.toContain('SMTPUTF8');
  });

  it('fails the copy for good, saying why, when the server does not offer SMTPUTF8', async () => {
    await listWith('noutf', ['jörg@exämple.de', 'ann@noutf.example', 'bob@bücher.example']);
    relay.setScript({ replies: { ehlo: WITH_8BIT } });
    worker = await startWorker(db, workerConfig(relay));
    const before = relay.commands.length;
    await post('noutf', 'noutf-1@example.org');
    await drained(db);
    // An ASCII local part at an international domain needs no SMTPUTF8: its domain goes in A-labels.
    expect(deliveredOf('noutf-1@example.org').map((d) => d.to[0]).sort()).toEqual(['ann@noutf.example', 'bob@xn--bcher-kva.example']);
    expect(deliveredOf('noutf-1@example.org').every((d) => !d.mail.includes('SMTPUTF8'))).toBe(true);
    // Not sent at all: no RCPT TO for the address the server could not take.
    expect(relay.commands.slice(before).filter((c) => c.startsWith('RCPT')).sort()).toEqual(['RCPT TO:<ann@noutf.example>', 'RCPT TO:<bob@xn--bcher-kva.example>']);
    const rows = await outbox('noutf-1@example.org');
    expect(rows.map((r) => [r.recipient, r.state])).toEqual([['ann@noutf.example', 'sent'], ['bob@bücher.example', 'sent'], ['jörg@exämple.de', 'failed']]);
    expect(rows[2].last_error).toMatch(/5\.6\.7 .*does not offer SMTPUTF8.*jörg@exämple\.de/);
  });
});
