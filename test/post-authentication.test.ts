import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Config } from '../src/config.ts';
import { MAX_DKIM_SIGNATURES } from '../src/core/post-authentication.ts';
import { addListRole } from '../src/db/list-admin.ts';
import { createList, updateDeliverySettings, type ListRow } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import { setResolvers } from '../src/dns.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import type { AuthChecks } from '../src/mail/post-checks.ts';
import { loggedIn } from './helpers/browser.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { LOOPBACK_SPF, stubResolvers, type StubRecords } from './helpers/stub-dns.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';

/*
 * Authentication of posts (src/core/post-authentication.ts, rule 'authentication' in
 * src/core/moderation-rules.ts) over a real SMTP socket, with DNS stubbed in the process: DKIM keys
 * made here, SPF records that do or do not let loopback send, a DMARC p=reject domain.
 */

const TIMEOUT_MS = 1500;
const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const publicB64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
// Loopback is not these domains' server: only a DKIM signature can vouch for their mail here.
const ELSEWHERE = 'v=spf1 ip4:192.0.2.0/24 -all';
const records = new Map<string, StubRecords>([
  ['signed.example', { txt: [ELSEWHERE] }],
  ['sel._domainkey.signed.example', { txt: [`v=DKIM1; k=rsa; p=${publicB64}`] }],
  ['example.net', { txt: [ELSEWHERE] }],
  ['strict.example', { txt: [ELSEWHERE] }],
  ['_dmarc.strict.example', { txt: ['v=DMARC1; p=reject'] }],
]);
const stubbed = () => setResolvers(stubResolvers(records, { defaultSpf: LOOPBACK_SPF }));

let db: TestDatabase;
let smtp: RunningIngest;
let relay: CaptureRelay;
let worker: DeliveryWorker;
let web: RunningWeb;
let dev: ListRow;
let settings: Config;

beforeAll(async () => {
  stubbed();
  db = await testDatabase();
  settings = { ...parseConfig({ DATABASE_URL: db.url, MAIL_DOMAIN: 'lists.example.org', LOG_LEVEL: 'silent' }), authCheckTimeoutMs: TIMEOUT_MS };
  smtp = await startIngest(db.pool, { settings });
  relay = await startCaptureRelay();
  worker = await startWorker(db, workerConfig(relay));
  web = await startWeb(db);
  dev = await createList(db.pool, { address: 'dev@lists.example.org', name: 'Dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['owner@example.org'] });
  await createList(db.pool, { address: 'open@lists.example.org', name: 'Open', description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  for (const member of ['carol@signed.example', 'bob@example.net', 'erin@loopback.example']) await addMember(db.pool, dev.id, member, 'each');
  await addListRole(db.pool, dev.id, 'mod@example.org', 'moderator');
});

afterAll(async () => {
  setResolvers();
  await worker?.stop();
  await smtp?.stop();
  await relay?.stop();
  await web?.stop();
  await db?.drop();
});

async function signed(raw: string, domain = 'signed.example'): Promise<Buffer> {
  const key = { signingDomain: domain, selector: 'sel', privateKey: privatePem, canonicalization: 'relaxed/relaxed' };
  const { signatures } = await dkimSign(raw, { ...key, signatureData: [key] });
  return Buffer.concat([Buffer.from(signatures), Buffer.from(raw)]);
}

async function post(list: string, from: string, raw: string | Buffer, envelopeFrom = from) {
  return sendRaw(smtp.port, { from: envelopeFrom, to: [`${list}@lists.example.org`] }, raw);
}

async function archivedChecks(messageId: string): Promise<AuthChecks | undefined> {
  const { rows } = await db.pool.query('select checks from messages where message_id = $1', [messageId]);
  return rows[0]?.checks?.auth;
}

async function heldRow(messageId: string) {
  const { rows } = await db.pool.query('select id, reason, rule, checks from held_messages where message_id = $1', [messageId]);
  return rows[0] as { id: number; reason: string; rule: string; checks: { auth: AuthChecks } } | undefined;
}

describe('authentication of posts', () => {
  it('accepts a member post with an aligned DKIM signature, and says dkim=pass under our authserv-id', async () => {
    const raw = await signed(message({ id: 'signed@signed.example', from: 'Carol <carol@signed.example>', subject: 'Signed' }));
    const res = await post('dev', 'carol@signed.example', raw);
    expect(res.ok, res.response).toBe(true);
    const auth = await archivedChecks('signed@signed.example');
    expect(auth).toMatchObject({ dkim: 'pass', spf: 'fail', dmarc: 'none', arc: 'none', arcInstance: 0, fromDomain: 'signed.example', aligned: true });
    expect(auth!.header).toMatch(/^lists\.example\.org;\r\n dkim=pass header\.i=@signed\.example header\.s=sel /);
    expect(auth!.header).toContain('spf=fail (lists.example.org: domain of carol@signed.example does not designate 127.0.0.1 as permitted sender)');
  });

  it('checks only the first DKIM signatures of a post: 2,000 more below them, each with its own l=, cost nothing', async () => {
    const bogus = Array.from({ length: 2000 }, (_, i) => `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d${i}.example; s=s; l=${100_000_000 + i}; h=from; bh=AAAA; b=AAAA\r\n`).join('');
    const body = `${'x'.repeat(76)}\r\n`.repeat(26_000); // 2 MB
    const raw = await signed(bogus + message({ id: 'many-signatures@signed.example', from: 'Carol <carol@signed.example>', body }));
    // Every signature's body hash was computed in one turn of the event loop (17 s here, and the
    // check's deadline could not fire before it ended), and its key looked up at a domain the
    // sender chose: the lookups say how many were checked.
    const asked: string[] = [];
    setResolvers({ ...stubResolvers(records, { defaultSpf: LOOPBACK_SPF }), txt: (name: string) => {
      asked.push(name);
      return stubResolvers(records, { defaultSpf: LOOPBACK_SPF }).txt!(name);
    } });
    let res;
    try {
      res = await post('dev', 'carol@signed.example', raw);
    } finally {
      stubbed();
    }
    expect(res.ok, res.response).toBe(true);
    expect(asked.filter((n) => n.includes('._domainkey.')).length).toBeLessThanOrEqual(MAX_DKIM_SIGNATURES);
    expect(await archivedChecks('many-signatures@signed.example')).toMatchObject({ dkim: 'pass', aligned: true });
    expect(MAX_DKIM_SIGNATURES).toBe(5);
  });

  it('holds a forged member post (From a member, unsigned, SPF fails) and says why', async () => {
    const res = await post('dev', 'bob@example.net', message({ id: 'forged@example.net', from: 'Bob <bob@example.net>' }));
    expect(res.ok, res.response).toBe(true);
    const held = await heldRow('forged@example.net');
    expect(held).toMatchObject({ rule: 'authentication', reason: 'From is a member but neither SPF nor DKIM passes for example.net' });
    expect(held!.checks.auth).toMatchObject({ spf: 'fail', dkim: 'none', aligned: false });
    expect(await archivedChecks('forged@example.net')).toBeUndefined();
  });

  it('refuses the forgery with 550 5.7.26 when the list says reject, keeps it aside, and takes it when the list says accept', async () => {
    await updateDeliverySettings(db.pool, dev.id, { auth_policy: 'reject' });
    try {
      const refused = await post('dev', 'bob@example.net', message({ id: 'forged-2@example.net', from: 'Bob <bob@example.net>' }));
      expect(refused.ok).toBe(false);
      expect(refused.responseCode).toBe(550);
      expect(refused.response).toContain('5.7.26 From is not authenticated: neither SPF nor DKIM passes for example.net');
      expect(await heldRow('forged-2@example.net')).toBeUndefined();
      const { rows } = await db.pool.query('select reason from ingest_errors where message_id = $1', ['forged-2@example.net']);
      expect(rows.map((r) => r.reason)).toEqual(['refused by the authentication rule: From is not authenticated: neither SPF nor DKIM passes for example.net']);
      // The real member, signing, still posts.
      const real = await post('dev', 'carol@signed.example', await signed(message({ id: 'signed-2@signed.example', from: 'carol@signed.example' })));
      expect(real.ok, real.response).toBe(true);

      await updateDeliverySettings(db.pool, dev.id, { auth_policy: 'accept' });
      const taken = await post('dev', 'bob@example.net', message({ id: 'forged-3@example.net', from: 'Bob <bob@example.net>' }));
      expect(taken.ok, taken.response).toBe(true);
      expect(await archivedChecks('forged-3@example.net')).toMatchObject({ spf: 'fail', aligned: false });
    } finally {
      await updateDeliverySettings(db.pool, dev.id, { auth_policy: 'hold' });
    }
  });

  it('answers a forged From alike whether or not it is a member, under every auth_policy: the SMTP reply tells no stranger who is on the list', async () => {
    // bob@example.net is a member of dev, eve@example.net is not; nothing proves either From here.
    const forge = (from: string, id: string) => post('dev', 'mallory@attacker.example', message({ id, from, to: 'dev@lists.example.org' }));
    const reply = (r: Awaited<ReturnType<typeof post>>) => ({ ok: r.ok, code: r.responseCode, text: r.ok ? 'taken' : r.response });
    try {
      for (const policy of ['reject', 'hold'] as const) {
        await updateDeliverySettings(db.pool, dev.id, { auth_policy: policy });
        const member = await forge('bob@example.net', `oracle-member-${policy}@example.net`);
        const stranger = await forge('eve@example.net', `oracle-stranger-${policy}@example.net`);
        expect(reply(member), policy).toEqual(reply(stranger));
        if (policy === 'reject') {
          expect(member.responseCode).toBe(550);
          // The real member whose mail is not authenticated still learns why, from their own server's bounce.
          expect(member.response).toContain('5.7.26 From is not authenticated: neither SPF nor DKIM passes for example.net: refused by the policy of dev@lists.example.org');
        } else {
          expect(member.ok, member.response).toBe(true);
        }
      }
      // A stranger whose own mail is signed is taken to the queue as before, and a signed member posts.
      await updateDeliverySettings(db.pool, dev.id, { auth_policy: 'reject' });
      const signedStranger = await post('dev', 'dan@signed.example', await signed(message({ id: 'oracle-signed@signed.example', from: 'dan@signed.example' })));
      expect(signedStranger.ok, signedStranger.response).toBe(true);
      expect(await heldRow('oracle-signed@signed.example')).toMatchObject({ rule: 'members-only' });
    } finally {
      await updateDeliverySettings(db.pool, dev.id, { auth_policy: 'hold' });
    }
  });

  it('holds a forged member post whose From the rules and the checks read differently (the rules fall back to the envelope)', async () => {
    // Mallory signs for signed.example, which she controls; our parser finds no address in the
    // first From entry (or no From field at all) and takes the envelope sender, bob, a member;
    // mailauth reads mallory@signed.example and finds it aligned with the signature.
    for (const [id, from] of [['parse-gap-1@signed.example', '<>, <mallory@signed.example>'], ['parse-gap-2@signed.example', null]] as const) {
      let raw = message({ id, from: 'placeholder@x.example' });
      raw = from === null
        ? raw.replace('From: placeholder@x.example\r\n', 'From : mallory@signed.example\r\n')
        : raw.replace('placeholder@x.example', from);
      const res = await post('dev', 'bob@example.net', await signed(raw));
      expect(res.ok, res.response).toBe(true);
      expect(await archivedChecks(id)).toBeUndefined();
      expect((await heldRow(id))?.rule, id).toMatch(/^(authentication|members-only)$/);
    }
  });

  it('holds a post whose From domain publishes p=reject and fails DMARC, even from a stranger on an open list', async () => {
    const res = await post('open', 'dave@strict.example', message({ id: 'dmarc@strict.example', from: 'dave@strict.example', to: 'open@lists.example.org' }));
    expect(res.ok, res.response).toBe(true);
    const held = await heldRow('dmarc@strict.example');
    expect(held).toMatchObject({ rule: 'authentication', reason: 'From strict.example fails DMARC (p=reject)' });
    expect(held!.checks.auth).toMatchObject({ dmarc: 'fail', dmarcPolicy: 'reject' });
    expect(held!.checks.auth.header).toContain('dmarc=fail (p=REJECT arc=none) header.from=strict.example');
  });

  it('passes SPF from the client IP through the domain\'s record, aligned when the envelope domain is From\'s', async () => {
    const res = await post('dev', 'erin@loopback.example', message({ id: 'spf@loopback.example', from: 'erin@loopback.example' }));
    expect(res.ok, res.response).toBe(true);
    const auth = await archivedChecks('spf@loopback.example');
    expect(auth).toMatchObject({ spf: 'pass', dkim: 'none', aligned: true });
    expect(auth!.header).toContain('spf=pass (lists.example.org: domain of erin@loopback.example designates 127.0.0.1 as permitted sender) smtp.mailfrom=erin@loopback.example');

    // The same member through another domain's envelope: SPF passes, but not for From's domain.
    const other = await post('dev', 'erin@loopback.example', message({ id: 'spf-unaligned@loopback.example', from: 'erin@loopback.example' }), 'bounces@other.example');
    expect(other.ok, other.response).toBe(true);
    const held = await heldRow('spf-unaligned@loopback.example');
    expect(held?.reason).toBe('From is a member but neither SPF nor DKIM passes for loopback.example');
    expect(held!.checks.auth).toMatchObject({ spf: 'pass', aligned: false });
  });

  it('gives temperror within the deadline when DNS never answers, and keeps the post', async () => {
    setResolvers({ resolve: () => new Promise(() => undefined), txt: () => new Promise(() => undefined) });
    try {
      const started = Date.now();
      const res = await post('dev', 'erin@loopback.example', message({ id: 'dns-down@loopback.example', from: 'erin@loopback.example' }));
      const took = Date.now() - started;
      expect(res.ok, res.response).toBe(true);
      expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS * 0.8);
      expect(took).toBeLessThan(TIMEOUT_MS + 1500);
      const held = await heldRow('dns-down@loopback.example');
      expect(held?.rule).toBe('authentication');
      expect(held?.reason).toContain('temperror');
      expect(held!.checks.auth).toMatchObject({ spf: 'temperror', dkim: 'none', dmarc: 'temperror', aligned: false });
    } finally {
      stubbed();
    }
  });

  it('shows the moderator the results in the preview of a held post', async () => {
    const held = await heldRow('forged@example.net');
    const mod = await loggedIn(db, web.url, 'mod@example.org');
    const page = await mod.get(`/admin/lists/dev@lists.example.org/held/${held!.id}`);
    expect(page.status).toBe(200);
    const auth = page.text.slice(page.text.indexOf('<h3>Authentication</h3>'), page.text.indexOf('<h3>Headers</h3>'));
    expect(auth).toMatch(/<dt>SPF<\/dt><dd><span class="badge warn">fail<\/span>/);
    expect(auth).toMatch(/<dt>DKIM<\/dt><dd><span class="badge">none<\/span>/);
    expect(auth).toContain('<span class="badge warn">no</span>: neither SPF nor DKIM passed for example.net');
    expect(auth).toContain('Authentication-Results: lists.example.org; dkim=none (message not signed); spf=fail');
    expect(page.text).toContain('From is a member but neither SPF nor DKIM passes for example.net');
  });

  it('puts our Authentication-Results on every copy, and drops one a sender wrote under our name', async () => {
    relay.clear();
    const raw = await signed(message({
      id: 'copy@signed.example', from: 'carol@signed.example', subject: 'Copies',
      headers: { 'Authentication-Results': 'lists.example.org; dkim=pass header.d=forged.example (forged)' },
    }));
    const withOther = Buffer.concat([
      Buffer.from('Authentication-Results: mx.signed.example; spf=pass smtp.mailfrom=signed.example\r\n'),
      // Comments nest (RFC 5322 §3.2.2): authres reads this one's authserv-id as lists.example.org.
      Buffer.from('Authentication-Results: ((x)) lists.example.org; dkim=pass header.d=forged.example (nested)\r\n'),
      raw,
    ]);
    expect((await post('dev', 'carol@signed.example', withOther)).ok).toBe(true);
    await drained(db);
    const copy = (await relay.copy('erin@loopback.example', 'copy@signed.example')).raw;
    const head = copy.toString('latin1').split('\r\n\r\n')[0];
    const results = head.replace(/\r\n[ \t]+/g, ' ').split('\r\n').filter((l) => /^authentication-results:/i.test(l));
    expect(results).toHaveLength(2);
    expect(results[0]).toMatch(/^Authentication-Results: lists\.example\.org; dkim=pass header\.i=@signed\.example /);
    expect(results[1]).toBe('Authentication-Results: mx.signed.example; spf=pass smtp.mailfrom=signed.example');
    expect(head).not.toContain('(forged)');
    expect(head).not.toContain('(nested)');
    expect(head.startsWith('Authentication-Results: lists.example.org;')).toBe(true);

    // An independent parser of RFC 8601 (Debian's python3-authres, which python3-authheaders uses) reads it alike.
    const python = '/usr/bin/python3';
    if (!fs.existsSync(python)) return;
    const script = 'import sys, authres; h = authres.AuthenticationResultsHeader.parse(sys.stdin.read()); print(h.authserv_id); [print(r.method, r.result) for r in h.results]';
    const parsed = await new Promise<string>((resolve, reject) => {
      const child = execFile(python, ['-c', script], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)));
      child.stdin!.end(head.split(/\r\n(?=[^ \t])/)[0]);
    });
    expect(parsed.trim().split('\n')).toEqual(['lists.example.org', 'dkim pass', 'spf fail', 'arc none', 'dmarc none']);
  });

  it('keeps a hostile envelope sender inside the comment of our Authentication-Results', async () => {
    relay.clear();
    const raw = await signed(message({ id: 'comment@signed.example', from: 'carol@signed.example', subject: 'Comment' }));
    // smtp-server takes no white space in MAIL FROM; authres needs none around the injected result.
    const sender = '"x);dkim=pass(y"@example.net';
    const res = await post('dev', 'carol@signed.example', raw, sender);
    expect(res.ok, res.response).toBe(true);
    await drained(db);
    const copy = (await relay.copy('erin@loopback.example', 'comment@signed.example')).raw;
    const head = copy.toString('latin1').split('\r\n\r\n')[0];
    const ours = head.split(/\r\n(?=[^ \t])/)[0];
    expect(ours).toMatch(/^Authentication-Results: lists\.example\.org;/);
    const python = '/usr/bin/python3';
    if (!fs.existsSync(python)) return;
    const script = 'import sys, authres; h = authres.AuthenticationResultsHeader.parse(sys.stdin.read()); [print(r.method, r.result) for r in h.results]';
    const parsed = await new Promise<string>((resolve, reject) => {
      const child = execFile(python, ['-c', script], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)));
      child.stdin!.end(ours);
    });
    expect(parsed.trim().split('\n')).toEqual(['dkim pass', 'spf fail', 'arc none', 'dmarc none']);
  });
});
