import crypto from 'node:crypto';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { createList, updateDeliverySettings } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { useDnsServers } from '../src/dns.ts';
import type { AuthChecks } from '../src/mail/post-checks.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { bodyHash } from '../src/mail/list-signing.ts';
import { StubDns } from './helpers/stub-dns.ts';

/*
 * Forgeries that try to pass the authentication checks (src/core/post-authentication.ts) as a
 * p=reject domain, over a real SMTP session, with DNS from a stub server on loopback: the signer's
 * key is real, the trick is in what the post does with it.
 */

const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const publicB64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
// Loopback is not these domains' server: only a DKIM signature can vouch for their mail here.
const ELSEWHERE = 'v=spf1 ip4:192.0.2.0/24 -all';

let dns: StubDns;
let db: TestDatabase;
let smtp: RunningIngest;

beforeAll(async () => {
  dns = new StubDns();
  dns.set('victim.example', { txt: [ELSEWHERE] });
  dns.set('sel._domainkey.victim.example', { txt: [`v=DKIM1; k=rsa; p=${publicB64}`] });
  dns.set('_dmarc.victim.example', { txt: ['v=DMARC1; p=reject'] });
  // adkim=s: only a signature of strict.example itself aligns; news.relaxed.example's does for relaxed.example.
  dns.set('strict.example', { txt: [ELSEWHERE] });
  dns.set('_dmarc.strict.example', { txt: ['v=DMARC1; p=reject; adkim=s; aspf=s'] });
  dns.set('relaxed.example', { txt: [ELSEWHERE] });
  dns.set('_dmarc.relaxed.example', { txt: ['v=DMARC1; p=reject'] });
  // An international domain: From in U-labels (bücher.example, as SMTPUTF8 mail writes it), d= in A-labels.
  dns.set('xn--bcher-kva.example', { txt: [ELSEWHERE] });
  dns.set('_dmarc.xn--bcher-kva.example', { txt: ['v=DMARC1; p=reject'] });
  for (const d of ['strict.example', 'vendor.strict.example', 'news.relaxed.example', 'xn--bcher-kva.example', 'news.xn--bcher-kva.example']) dns.set(`sel._domainkey.${d}`, { txt: [`v=DKIM1; k=rsa; p=${publicB64}`] });
  // Servers that fail for now: the forger's own domain, a selector and a host of the victim's, a DMARC record.
  for (const name of ['sel._domainkey.dark.example', 'dark.example', 'broken._domainkey.victim.example', 'mail.victim.example', '_dmarc.flaky.example']) dns.set(name, { servfail: true });
  useDnsServers([await dns.start()]);
  db = await testDatabase();
  const settings = { ...parseConfig({ DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org', LOG_LEVEL: 'silent' }), authCheckTimeoutMs: 3000 };
  smtp = await startIngest(db.pool, { settings });
  const members = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addMember(db.pool, members.id, 'vera@victim.example', 'each');
  await createList(db.pool, { address: 'open@lists.example.org', name: 'Open', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  const refusing = await createList(db.pool, { address: 'refusing@lists.example.org', name: 'Refusing', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await updateDeliverySettings(db.pool, refusing.id, { auth_policy: 'reject' });
});

afterAll(async () => {
  useDnsServers((process.env.DNS_SERVERS ?? '').split(',').filter(Boolean));
  await smtp?.stop();
  await db?.drop();
  await dns?.stop();
});

/** `raw` with a DKIM signature of `domain` on top; `l` signs only that many bytes of the body. */
async function signed(raw: string, opts: { domain?: string; selector?: string; l?: number } = {}): Promise<string> {
  const key = { signingDomain: opts.domain ?? 'victim.example', selector: opts.selector ?? 'sel', privateKey: privatePem, canonicalization: 'relaxed/relaxed', ...(opts.l === undefined ? {} : { maxBodyLength: opts.l }) };
  const { signatures } = await dkimSign(raw, { ...key, signatureData: [key] });
  return signatures + raw;
}

async function fate(messageId: string): Promise<{ archived?: AuthChecks; held?: { rule: string; reason: string; auth: AuthChecks } }> {
  const archived = await db.pool.query('select checks from messages where message_id = $1', [messageId]);
  const held = await db.pool.query('select rule, reason, checks from held_messages where message_id = $1', [messageId]);
  return {
    archived: archived.rows[0]?.checks?.auth,
    held: held.rows[0] && { rule: held.rows[0].rule, reason: held.rows[0].reason, auth: held.rows[0].checks.auth },
  };
}

describe('forged posts that try to pass as authenticated', () => {
  it('does not count a DKIM signature whose l= leaves out what was appended below it (dkim=policy, DMARC fails)', async () => {
    for (const list of ['dev', 'open']) {
      // A real post of the member's, signed with l= over its one-line body; the forger appends.
      const original = await signed(message({ id: `l-trick-${list}@victim.example`, from: 'Vera <vera@victim.example>', subject: 'Minutes', body: 'See you.\r\n' }), { l: 10 });
      const forged = `${original}\r\nNew bank details for the conference fee: ...\r\n`;
      const res = await sendRaw(smtp.port, { from: 'bounce@elsewhere.example', to: [`${list}@lists.example.org`] }, forged);
      expect(res.ok, res.response).toBe(true);
      const { archived, held } = await fate(`l-trick-${list}@victim.example`);
      expect(archived).toBeUndefined();
      expect(held).toMatchObject({ rule: 'authentication', reason: 'From victim.example fails DMARC (p=reject)' });
      expect(held!.auth).toMatchObject({ dkim: 'policy', dmarc: 'fail', aligned: false });
      expect(held!.auth.header).toMatch(/dkim=policy \(undersized signature: \d+ bytes unsigned\) header\.i=@victim\.example/);
    }
  });

  it('still takes a signature whose l= covers the whole body', async () => {
    const raw = message({ id: 'l-whole@victim.example', from: 'Vera <vera@victim.example>', body: 'See you.\r\n' });
    const res = await sendRaw(smtp.port, { from: 'vera@victim.example', to: ['dev@lists.example.org'] }, await signed(raw, { l: 10 }));
    expect(res.ok, res.response).toBe(true);
    const f = await fate('l-whole@victim.example');
    expect(f.held, f.held?.reason).toBeUndefined();
    expect(f.archived).toMatchObject({ dkim: 'pass', dmarc: 'pass', aligned: true });
  });

  it('holds a post whose domain asks for strict alignment (adkim=s) and that only a subdomain signed', async () => {
    const raw = await signed(message({ id: 'strict-sub@strict.example', from: 'Sam <sam@strict.example>' }), { domain: 'vendor.strict.example' });
    const res = await sendRaw(smtp.port, { from: 'sam@strict.example', to: ['open@lists.example.org'] }, raw);
    expect(res.ok, res.response).toBe(true);
    const { archived, held } = await fate('strict-sub@strict.example');
    expect(archived).toBeUndefined();
    expect(held).toMatchObject({ rule: 'authentication', reason: 'From strict.example fails DMARC (p=reject)' });
    expect(held!.auth).toMatchObject({ dkim: 'pass', dmarc: 'fail', aligned: false });
    expect(held!.auth.header).toMatch(/dmarc=fail \(p=REJECT arc=none\) header\.from=strict\.example/);
  });

  it('takes a post signed by the strict domain itself, and one a subdomain signed for a relaxed domain', async () => {
    const own = await signed(message({ id: 'strict-own@strict.example', from: 'Sam <sam@strict.example>' }), { domain: 'strict.example' });
    const sub = await signed(message({ id: 'relaxed-sub@relaxed.example', from: 'Rae <rae@relaxed.example>' }), { domain: 'news.relaxed.example' });
    for (const [from, raw] of [['sam@strict.example', own], ['rae@relaxed.example', sub]]) {
      const res = await sendRaw(smtp.port, { from, to: ['open@lists.example.org'] }, raw);
      expect(res.ok, res.response).toBe(true);
    }
    expect((await fate('strict-own@strict.example')).archived).toMatchObject({ dkim: 'pass', dmarc: 'pass', aligned: true });
    expect((await fate('relaxed-sub@relaxed.example')).archived).toMatchObject({ dkim: 'pass', dmarc: 'pass', aligned: true });
  });

  it('takes a post from an international domain signed by it in A-labels, its From in U-labels', async () => {
    for (const [id, domain] of [['idn-own', 'xn--bcher-kva.example'], ['idn-sub', 'news.xn--bcher-kva.example']]) {
      const raw = await signed(message({ id: `${id}@xn--bcher-kva.example`, from: 'Bea <bea@bücher.example>' }), { domain });
      const res = await sendRaw(smtp.port, { from: 'bea@xn--bcher-kva.example', to: ['open@lists.example.org'] }, raw);
      expect(res.ok, res.response).toBe(true);
      const { archived, held } = await fate(`${id}@xn--bcher-kva.example`);
      expect(held, id).toBeUndefined();
      expect(archived, id).toMatchObject({ dkim: 'pass', dmarc: 'pass', aligned: true });
    }
  });

  it('holds a post whose From names a p=reject domain among several addresses, or in a second From field', async () => {
    const posts = {
      'two-addresses@attacker.example': message({ id: 'two-addresses@attacker.example', from: 'Vera <vera@victim.example>, Mallory <m@attacker.example>' }),
      'two-fields@attacker.example': `From: Mallory <m@attacker.example>\r\n${message({ id: 'two-fields@attacker.example', from: 'Vera <vera@victim.example>' })}`,
    };
    for (const [id, raw] of Object.entries(posts)) {
      const res = await sendRaw(smtp.port, { from: 'm@attacker.example', to: ['open@lists.example.org'] }, raw);
      expect(res.ok, res.response).toBe(true);
      const { archived, held } = await fate(id);
      expect(archived, id).toBeUndefined();
      expect(held, id).toMatchObject({ rule: 'authentication' });
      expect(held!.auth).toMatchObject({ dmarc: 'fail', dmarcPolicy: 'reject', dmarcDomain: 'victim.example', aligned: false });
      expect(held!.auth.header).toContain('dmarc=fail (p=REJECT arc=none) header.from=victim.example');
      // The moderators are told which of the From domains failed, not "(no domain)".
      expect(held!.reason, id).toBe('From victim.example fails DMARC (p=reject)');
    }
  });

  it('refuses a forgery that carries a signature whose selector is no DNS name, as it refuses an unsigned one', async () => {
    const body = 'Pay here.\r\n';
    for (const [id, selector] of [['long-label', 'a'.repeat(70)], ['control', 'sel\u0001x']]) {
      // The body hash is right, so the key is looked up: at a name the resolver refuses (EBADNAME).
      const sig = `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=victim.example; s=${selector}; h=from; bh=${bodyHash(Buffer.from(body))}; b=AAAA\r\n`;
      const raw = sig + message({ id: `${id}@victim.example`, from: 'Vera <vera@victim.example>', body });
      const res = await sendRaw(smtp.port, { from: 'm@attacker.example', to: ['refusing@lists.example.org'] }, raw);
      expect(res.ok, id).toBe(false);
      expect(res.response, id).toMatch(/^550 5\.7\.26 /);
      expect((await fate(`${id}@victim.example`)).held).toBeUndefined();
    }
  });

  it('refuses a forgery whose only temporary DNS error is for a domain not aligned with From', async () => {
    // Signed by the forger's own domain, whose DNS does not answer; or sent from an envelope domain of theirs that does not.
    const posts: [string, string, string][] = [
      ['dark-dkim', 'm@attacker.example', await signed(message({ id: 'dark-dkim@victim.example', from: 'Vera <vera@victim.example>' }), { domain: 'dark.example' })],
      ['dark-spf', 'm@dark.example', message({ id: 'dark-spf@victim.example', from: 'Vera <vera@victim.example>' })],
    ];
    for (const [id, envelope, raw] of posts) {
      const res = await sendRaw(smtp.port, { from: envelope, to: ['refusing@lists.example.org'] }, raw);
      expect(res.ok, id).toBe(false);
      expect(res.response, id).toMatch(/^550 5\.7\.26 /);
      expect((await fate(`${id}@victim.example`)).held, id).toBeUndefined();
    }
  });

  it('holds, never refuses, a post whose DMARC record, aligned SPF or aligned signature could not be checked for now', async () => {
    const posts: [string, string, string][] = [
      ['aligned-dkim@victim.example', 'm@attacker.example', await signed(message({ id: 'aligned-dkim@victim.example', from: 'Vera <vera@victim.example>' }), { selector: 'broken' })],
      ['aligned-spf@victim.example', 'vera@mail.victim.example', message({ id: 'aligned-spf@victim.example', from: 'Vera <vera@victim.example>' })],
      ['own-dmarc@flaky.example', 'm@attacker.example', message({ id: 'own-dmarc@flaky.example', from: 'Fay <fay@flaky.example>' })],
    ];
    for (const [id, envelope, raw] of posts) {
      const res = await sendRaw(smtp.port, { from: envelope, to: ['refusing@lists.example.org'] }, raw);
      if (id.startsWith('own-dmarc')) {
        // Without a readable DMARC record nothing says it is forged: a stranger on an open list goes through.
        expect(res.ok, res.response).toBe(true);
        expect((await fate(id)).archived).toMatchObject({ dmarc: 'temperror', unsure: { result: 'temperror' } });
        continue;
      }
      expect(res.ok, `${id}: ${res.response}`).toBe(true);
      const { held } = await fate(id);
      expect(held, id).toMatchObject({ rule: 'authentication' });
      expect(held!.reason, id).toMatch(/^From victim\.example fails DMARC \(p=reject\), but a DNS lookup failed for the time being \(temperror/);
    }
  });

  it('holds, never takes nor refuses, a post whose From names more than ten domains, the victim\'s in eleventh place', async () => {
    const decoys = Array.from({ length: 10 }, (_, i) => `m${i}@decoy${i}.example`).join(', ');
    for (const list of ['open', 'refusing']) {
      const id = `many-from-${list}@attacker.example`;
      const raw = message({ id, from: `${decoys}, Vera <vera@victim.example>` });
      const res = await sendRaw(smtp.port, { from: 'm@attacker.example', to: [`${list}@lists.example.org`] }, raw);
      expect(res.ok, res.response).toBe(true);
      const { archived, held } = await fate(id);
      expect(archived, list).toBeUndefined();
      expect(held, list).toMatchObject({ rule: 'authentication', reason: 'the sender cannot be authenticated: From names more than 10 domains' });
      expect(held!.auth).toMatchObject({ dmarc: 'permerror', aligned: false, unsure: { result: 'permerror' } });
      expect(held!.auth.header).toContain('dmarc=permerror (From names more than 10 domains)');
    }
  });

  it('records a signature whose l= is longer than the body as permerror, and writes nothing to stdout for it', async () => {
    const body = 'Pay here.\r\n';
    const sig = `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=victim.example; s=sel; l=100000; h=from; bh=${bodyHash(Buffer.from(body))}; b=AAAA\r\n`;
    const raw = sig + message({ id: 'long-l@victim.example', from: 'Vera <vera@victim.example>', body });
    // mailauth's console.log ("TOTAL … EXPECTING …") broke the JSON log on stdout.
    const log = vi.spyOn(console, 'log');
    try {
      const res = await sendRaw(smtp.port, { from: 'm@attacker.example', to: ['open@lists.example.org'] }, raw);
      expect(res.ok, res.response).toBe(true);
      expect(log.mock.calls.filter((c) => c.join(' ').includes('EXPECTING'))).toEqual([]);
    } finally {
      log.mockRestore();
    }
    const { held } = await fate('long-l@victim.example');
    expect(held).toMatchObject({ rule: 'authentication', reason: 'From victim.example fails DMARC (p=reject)' });
    expect(held!.auth).toMatchObject({ dkim: 'permerror', dmarc: 'fail' });
    expect(held!.auth.header).toMatch(/dkim=permerror \(l=100000 is longer than the body of \d+ bytes\) header\.i=@victim\.example header\.s=sel/);
  });
});
