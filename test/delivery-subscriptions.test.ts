import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createList, type ListRow } from '../src/db/lists.ts';
import { addMember, findMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import { parse, type ParsedMessage } from '../src/mail/parse.ts';
import { decideSubscription, pendingApprovals, requestSubscription } from '../src/core/subscriptions.ts';
import { switchOwnSubscription } from '../src/core/members.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { startWeb, type RunningWeb } from './helpers/web.ts';
import { config } from '../src/config.ts';

let db: TestDatabase;
let relay: CaptureRelay;
let smtp: RunningIngest;
let web: RunningWeb;
let worker: DeliveryWorker;
let dev: ListRow;

async function newList(local: string, subscribePolicy: 'open' | 'confirm' | 'approve') {
  return createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: 'Development', postPolicy: 'members', subscribePolicy, archive: 'public', owners: ['owner@example.org'] });
}

async function mail(to: string, from: string, opts: { subject?: string; body?: string; headers?: Record<string, string>; envelopeFrom?: string } = {}) {
  const res = await sendRaw(smtp.port, { from: opts.envelopeFrom ?? from, to: [to] }, message({ from, to, subject: opts.subject ?? '', body: opts.body ?? '', headers: opts.headers }));
  expect(res.ok, res.response).toBe(true);
}

/** The next mail the relay got for an address, parsed. */
async function nextMailTo(address: string, seen = 0): Promise<ParsedMessage & { envelopeFrom: string }> {
  const deadline = Date.now() + 10_000;
  while (relay.to(address).length <= seen) {
    if (Date.now() > deadline) throw new Error(`no mail for ${address}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const m = relay.to(address)[seen];
  return Object.assign(await parse(m.raw), { envelopeFrom: m.from });
}

const tokenOf = (m: ParsedMessage) => /^confirm ([a-f0-9]{32})$/.exec(m.subject)![1];
const settle = async () => {
  await drained(db);
  await new Promise((r) => setTimeout(r, 300));
};

async function formPost(url: string, fields: Record<string, string>, cookie?: string) {
  return fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
    body: new URLSearchParams(fields).toString(),
  });
}

/** GETs a page and returns its CSRF token and cookie, as a browser would have them. */
async function csrfFrom(url: string) {
  const res = await fetch(url);
  const html = await res.text();
  const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  const cookie = (res.headers.get('set-cookie') ?? '').split(';')[0];
  return { res, html, token: token!, cookie };
}

beforeAll(async () => {
  db = await testDatabase();
  relay = await startCaptureRelay();
  smtp = await startIngest(db.pool);
  web = await startWeb(db);
  dev = await newList('dev', 'confirm');
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  await web?.stop();
  await smtp?.stop();
  await relay?.stop();
  await db?.drop();
});

describe('subscribing by mail', () => {
  it('answers LIST-subscribe@ with a confirmation whose Reply-To is LIST-confirm+TOKEN@ and which has a link', async () => {
    await mail('dev-subscribe@lists.example.org', 'Nina <nina@x.example>');
    const c = await nextMailTo('nina@x.example');
    const token = tokenOf(c);
    expect(c.headers.get('reply-to')).toEqual([`dev-confirm+${token}@lists.example.org`]);
    expect(c.fromEmail).toBe('dev-request@lists.example.org');
    expect(c.text).toContain(`/confirm/${token}`);
    expect(c.envelopeFrom).toBe('dev-bounces+notice@lists.example.org');
    expect(c.headers.get('auto-submitted')).toEqual(['auto-generated']);
    expect(await findMember(db.pool, dev.id, 'nina@x.example')).toBeNull();
  });

  it('subscribes the address when the confirmation is answered by mail', async () => {
    const token = tokenOf(await nextMailTo('nina@x.example'));
    await mail(`dev-confirm+${token}@lists.example.org`, 'nina@x.example', { subject: `Re: confirm ${token}`, body: '> quoted text\n' });
    expect(await findMember(db.pool, dev.id, 'nina@x.example')).toMatchObject({ status: 'active', mode: 'each' });
    const welcome = await nextMailTo('nina@x.example', 1);
    expect(welcome.subject).toBe('Welcome to dev@lists.example.org');
    const member = await findMember(db.pool, dev.id, 'nina@x.example');
    expect(welcome.text).toContain(`/u/${member!.token}`);
  });

  it('takes "subscribe digest" from the body of a message to LIST-request@ and confirms by link with CSRF', async () => {
    await mail('dev-request@lists.example.org', 'omar@x.example', { subject: 'hello', body: 'subscribe digest\n\n-- \nOmar\n' });
    const token = tokenOf(await nextMailTo('omar@x.example'));
    const page = await csrfFrom(`${web.url}/confirm/${token}`);
    expect(page.res.status).toBe(200);
    expect(page.html).toContain('omar@x.example');
    expect(page.html).toContain('dev@lists.example.org');
    expect(await findMember(db.pool, dev.id, 'omar@x.example')).toBeNull(); // a GET changes nothing
    const forged = await formPost(`${web.url}/confirm/${token}`, {});
    expect(forged.status).toBe(403);
    const ok = await formPost(`${web.url}/confirm/${token}`, { _csrf: page.token }, page.cookie);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('omar@x.example is subscribed to dev@lists.example.org');
    expect(await findMember(db.pool, dev.id, 'omar@x.example')).toMatchObject({ status: 'active', mode: 'digest' });
    // Audited as the address's own act; the link used again changes nothing and records nothing.
    expect((await formPost(`${web.url}/confirm/${token}`, { _csrf: page.token }, page.cookie)).status).toBe(200);
    const audit = await db.pool.query(`select actor, action, detail from audit_log where target = 'omar@x.example' order by id`);
    expect(audit.rows).toEqual([{ actor: 'omar@x.example', action: 'self.subscribe', detail: { request: expect.any(Number), via: 'mail', confirmed: true, mode: 'digest' } }]);
  });

  it('refuses an expired confirmation link', async () => {
    await mail('dev-subscribe@lists.example.org', 'late@x.example');
    const token = tokenOf(await nextMailTo('late@x.example'));
    await db.pool.query(`update subscription_requests set expires_at = now() - interval '1 minute' where email = 'late@x.example'`);
    const page = await csrfFrom(`${web.url}/confirm/${token}`);
    expect(page.res.status).toBe(410);
    expect(page.html).toContain('expired');
    await mail(`dev-confirm+${token}@lists.example.org`, 'late@x.example', { subject: `Re: confirm ${token}` });
    const answer = await nextMailTo('late@x.example', 1);
    expect(answer.text).toContain('expired');
    expect(await findMember(db.pool, dev.id, 'late@x.example')).toBeNull();
  });

  it('sends the same confirmation to unsubscribe whether or not the address is subscribed', async () => {
    await mail('dev-unsubscribe@lists.example.org', 'nina@x.example');
    await mail('dev-request@lists.example.org', 'never@x.example', { subject: 'unsubscribe' });
    const member = await nextMailTo('nina@x.example', 2);
    const stranger = await nextMailTo('never@x.example');
    const normalise = (m: ParsedMessage) => m.text.replaceAll(tokenOf(m), 'TOKEN').replace(/\S+@x\.example/g, 'ADDRESS');
    expect(normalise(member)).toBe(normalise(stranger));
    expect(member.subject.replace(/[a-f0-9]{32}/, '')).toBe(stranger.subject.replace(/[a-f0-9]{32}/, ''));
    // Confirming does what was asked and reveals nothing either way.
    await mail(`dev-confirm+${tokenOf(member)}@lists.example.org`, 'nina@x.example', { subject: 'Re: confirm' });
    await mail(`dev-confirm+${tokenOf(stranger)}@lists.example.org`, 'never@x.example', { subject: 'Re: confirm' });
    expect(await findMember(db.pool, dev.id, 'nina@x.example')).toMatchObject({ status: 'unsubscribed' });
    expect(await findMember(db.pool, dev.id, 'never@x.example')).toBeNull();
    // Nina's joining and leaving are in the audit log, the stranger's confirmation (nothing done) is not.
    const audit = await db.pool.query(`select target, action, detail->>'via' as via from audit_log where target in ('nina@x.example', 'never@x.example') order by id`);
    expect(audit.rows).toEqual([
      { target: 'nina@x.example', action: 'self.subscribe', via: 'mail' }, { target: 'nina@x.example', action: 'self.unsubscribe', via: 'mail' },
    ]);
  });

  it('answers "help" and mail without a command with the list of commands', async () => {
    await mail('dev-request@lists.example.org', 'pat@x.example', { subject: 'help' });
    await mail('dev-request@lists.example.org', 'quin@x.example', { subject: 'What is this?', body: 'How do I post?' });
    const help = await nextMailTo('pat@x.example');
    expect(help.text).toContain('subscribe     join the list');
    expect(help.text).not.toContain('No command was found');
    expect(help.headers.get('auto-submitted')).toEqual(['auto-replied']);
    expect((await nextMailTo('quin@x.example')).text).toContain('No command was found in your message.');
  });

  it('never answers automatic mail sent to a command address, and keeps it with the reason', async () => {
    await mail('dev-request@lists.example.org', 'robot@x.example', { subject: 'subscribe', headers: { 'Auto-Submitted': 'auto-replied' } });
    await settle();
    expect(relay.to('robot@x.example')).toHaveLength(0);
    const { rows } = await db.pool.query(`select reason from ingest_errors where envelope_from = 'robot@x.example'`);
    expect(rows[0].reason).toContain('automatic mail to the request address');
  });

  it('sends at most a few confirmations per address and hour (subscription bombing)', async () => {
    for (let i = 0; i < 6; i++) await mail('dev-subscribe@lists.example.org', 'victim@x.example', { subject: `subscribe ${i}` });
    await settle();
    expect(relay.to('victim@x.example')).toHaveLength(3);
  });

  it('forwards mail for LIST-owner@ to the owners', async () => {
    await mail('dev-owner@lists.example.org', 'worried@x.example', { subject: 'A question for the owners' });
    const fwd = await nextMailTo('owner@example.org');
    expect(fwd.subject).toBe('A question for the owners');
    expect(fwd.fromEmail).toBe('worried@x.example');
  });

  it('forwards at most 10 messages an hour from one sender to LIST-owner@, and 100 in all; keeps the rest aside with the reason', async () => {
    const busy = await createList(db.pool, { address: 'busy@lists.example.org', name: 'busy', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: ['busy-owner@example.org', 'busy-owner2@example.org'] });
    const forwards = async () => (await db.pool.query<{ n: number }>(`select count(*)::int as n from outbox where list_id = $1 and kind = 'notice' and recipient = 'busy-owner@example.org'`, [busy.id])).rows[0].n;
    const kept = async () => (await db.pool.query<{ reason: string }>(`select reason from ingest_errors where list_id = $1 order by id`, [busy.id])).rows.map((r) => r.reason);
    for (let i = 0; i < 11; i++) await mail('busy-owner@lists.example.org', 'pest@x.example', { subject: `Again ${i}` });
    expect(await forwards()).toBe(10);
    expect(await kept()).toEqual(['more than 10 messages in an hour from pest@x.example to busy-owner@lists.example.org: not forwarded']);
    // Another sender still gets through, up to the list's 100 an hour in all.
    for (let i = 0; i < 91; i++) await mail('busy-owner@lists.example.org', `sender${i}@y.example`, { subject: `Hello ${i}` });
    expect(await forwards()).toBe(100);
    expect((await kept()).slice(1)).toEqual(['more than 100 messages in an hour to busy-owner@lists.example.org: not forwarded']);
  }, 60_000);

  it('keeps mail for LIST-owner@ of a list without owners aside with the reason, rather than take it and drop it', async () => {
    await createList(db.pool, { address: 'orphan@lists.example.org', name: 'orphan', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
    await mail('orphan-owner@lists.example.org', 'worried@x.example', { subject: 'Is anybody there?', headers: { 'Message-ID': '<nobody-home@x.example>' } });
    const { rows } = await db.pool.query('select recipients, reason from ingest_errors where message_id = $1', ['nobody-home@x.example']);
    expect(rows).toEqual([{ recipients: ['orphan-owner@lists.example.org'], reason: 'mail to the owner address of a list without owners: not forwarded' }]);
  });
});

describe('subscribe policies', () => {
  it('waits for an owner after confirmation on an approve list, then subscribes on approval', async () => {
    const club = await newList('club', 'approve');
    expect(await requestSubscription(db.pool, club, 'sue@x.example', { via: 'web', settings: config() })).toBe('pending');
    const token = tokenOf(await nextMailTo('sue@x.example'));
    await mail(`club-confirm+${token}@lists.example.org`, 'sue@x.example', { subject: `Re: confirm ${token}` });
    expect(await findMember(db.pool, club.id, 'sue@x.example')).toBeNull();
    const [request] = await pendingApprovals(db.pool, club.id);
    expect(request).toMatchObject({ email: 'sue@x.example', state: 'approval' });
    await decideSubscription(db.pool, request.id, 'approve', 'owner@example.org', config());
    expect(await findMember(db.pool, club.id, 'sue@x.example')).toMatchObject({ status: 'active' });
    expect(await pendingApprovals(db.pool, club.id)).toEqual([]);
    await expect(decideSubscription(db.pool, request.id, 'reject', 'owner@example.org', config())).rejects.toThrow(/not waiting for approval/);
  });

  it('asks the address to confirm on an open list too, then subscribes without an owner', async () => {
    const open = await newList('open', 'open');
    expect(await requestSubscription(db.pool, open, 'tim@x.example', { via: 'web', settings: config() })).toBe('pending');
    expect(await findMember(db.pool, open.id, 'tim@x.example')).toBeNull();
    const token = tokenOf(await nextMailTo('tim@x.example'));
    await mail(`open-confirm+${token}@lists.example.org`, 'tim@x.example', { subject: `Re: confirm ${token}` });
    expect(await findMember(db.pool, open.id, 'tim@x.example')).toMatchObject({ status: 'active' });
    expect((await nextMailTo('tim@x.example', 1)).subject).toBe('Welcome to open@lists.example.org');
  });
});

describe('one-click unsubscribe', () => {
  it('shows a confirmation page on GET and changes nothing', async () => {
    await addMember(db.pool, dev.id, 'uma@x.example', 'each');
    const member = await findMember(db.pool, dev.id, 'uma@x.example');
    const res = await fetch(`${web.url}/u/${member!.token}`);
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('Unsubscribe <strong>uma@x.example</strong>');
    expect(html).toContain('name="List-Unsubscribe" value="One-Click"');
    expect(await findMember(db.pool, dev.id, 'uma@x.example')).toMatchObject({ status: 'active' });
  });

  it('unsubscribes at once on an RFC 8058 POST, without cookies or CSRF, and sets none', async () => {
    const member = await findMember(db.pool, dev.id, 'uma@x.example');
    const res = await formPost(`${web.url}/u/${member!.token}`, { 'List-Unsubscribe': 'One-Click' });
    expect(res.status).toBe(200);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(await res.text()).toContain('uma@x.example is unsubscribed from dev@lists.example.org');
    expect(await findMember(db.pool, dev.id, 'uma@x.example')).toMatchObject({ status: 'unsubscribed' });
    // Audited, as a member leaving from their account page is; a second post changes nothing, records nothing.
    expect((await formPost(`${web.url}/u/${member!.token}`, { 'List-Unsubscribe': 'One-Click' })).status).toBe(200);
    const audit = await db.pool.query(`select actor, action, list_address, detail from audit_log where target = 'uma@x.example' order by id`);
    expect(audit.rows).toEqual([{ actor: 'uma@x.example', action: 'self.unsubscribe', list_address: 'dev@lists.example.org', detail: { via: 'one-click' } }]);
  });

  it('accepts the one-click body as multipart/form-data too', async () => {
    await addMember(db.pool, dev.id, 'val@x.example', 'each');
    const member = await findMember(db.pool, dev.id, 'val@x.example');
    const form = new FormData();
    form.set('List-Unsubscribe', 'One-Click');
    const res = await fetch(`${web.url}/u/${member!.token}`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    expect(await findMember(db.pool, dev.id, 'val@x.example')).toMatchObject({ status: 'unsubscribed' });
  });

  it('refuses a POST without the one-click body and an unknown token', async () => {
    await addMember(db.pool, dev.id, 'wes@x.example', 'each');
    const member = await findMember(db.pool, dev.id, 'wes@x.example');
    expect((await formPost(`${web.url}/u/${member!.token}`, { anything: 'else' })).status).toBe(400);
    expect((await formPost(`${web.url}/u/0123456789abcdef0123456789abcdef`, { 'List-Unsubscribe': 'One-Click' })).status).toBe(404);
    expect((await fetch(`${web.url}/u/0123456789abcdef0123456789abcdef`)).status).toBe(404);
    expect(await findMember(db.pool, dev.id, 'wes@x.example')).toMatchObject({ status: 'active' });
  });

  it('lets a member disabled by bounces turn delivery back on from the same page', async () => {
    await addMember(db.pool, dev.id, 'xia@x.example', 'each');
    await db.pool.query(`update members set status = 'disabled', bounce_score = 4 where email = 'xia@x.example'`);
    const member = await findMember(db.pool, dev.id, 'xia@x.example');
    const page = await csrfFrom(`${web.url}/u/${member!.token}`);
    expect(page.html).toContain('Re-enable delivery');
    const res = await formPost(`${web.url}/u/${member!.token}/reenable`, { _csrf: page.token }, page.cookie);
    expect(res.status).toBe(200);
    expect(await findMember(db.pool, dev.id, 'xia@x.example')).toMatchObject({ status: 'active', bounce_score: 0 });
    // Audited; pressed again, with nothing left to re-enable, it records nothing more.
    expect((await formPost(`${web.url}/u/${member!.token}/reenable`, { _csrf: page.token }, page.cookie)).status).toBe(200);
    const audit = await db.pool.query(`select actor, action, detail from audit_log where target = 'xia@x.example' order by id`);
    expect(audit.rows).toEqual([{ actor: 'xia@x.example', action: 'self.reenable', detail: { via: 'link' } }]);
  });
});

describe('a subscription moved to another address', () => {
  const defer = (address: string) => relay.setRule((a) => (a === address ? { code: 451, message: '4.2.0 mailbox busy, try later' } : null));
  /** The post's queued copy for a member, once the relay has deferred its first try. */
  const deferredCopy = async (memberId: number) => {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      const { rows } = await db.pool.query(`select id, state, attempts from outbox where member_id = $1 and kind = 'post'`, [memberId]);
      if (rows[0]?.state === 'queued' && rows[0].attempts > 0) return rows[0].id as number;
    }
    throw new Error('the copy was not deferred');
  };

  it('sends a copy waiting for its retry to the new address, with the new token, and never to the old one', async () => {
    await addMember(db.pool, dev.id, 'poster.m@x.example', 'each');
    const member = (await addMember(db.pool, dev.id, 'uma@old.example', 'each'), (await findMember(db.pool, dev.id, 'uma@old.example'))!);
    defer('uma@old.example');
    try {
      await mail('dev@lists.example.org', 'poster.m@x.example', { subject: 'moved-copy-1', body: 'Who reads the old mailbox?' });
      const queued = await deferredCopy(member.id);
      await switchOwnSubscription(db.pool, member.id, { email: 'uma@old.example', emails: ['uma@old.example', 'uma@new.example'] }, 'uma@new.example');
      const moved = (await findMember(db.pool, dev.id, 'uma@new.example'))!;
      await db.pool.query('update outbox set run_at = now() where id = $1', [queued]);
      const copy = await relay.copy('uma@new.example', 'moved-copy-1');
      expect(copy.from).toBe(`dev-bounces+${moved.token}@lists.example.org`);
      const parsed = await parse(copy.raw);
      const unsubscribe = (parsed.headers.get('list-unsubscribe') ?? []).join(' ');
      expect(unsubscribe).toContain(moved.token);
      expect(unsubscribe).not.toContain(member.token);
      await settle();
      expect(relay.to('uma@old.example')).toHaveLength(0);
      const { rows } = await db.pool.query('select state, recipient from outbox where id = $1', [queued]);
      expect(rows[0]).toEqual({ state: 'sent', recipient: 'uma@new.example' });
    } finally {
      relay.setRule(null);
    }
  });

  it('does not send a post twice to an address that had its own copy of it', async () => {
    await addMember(db.pool, dev.id, 'poster.n@x.example', 'each');
    await addMember(db.pool, dev.id, 'vic@old.example', 'each');
    await addMember(db.pool, dev.id, 'vic@new.example', 'each');
    const member = (await findMember(db.pool, dev.id, 'vic@old.example'))!;
    defer('vic@old.example');
    try {
      await mail('dev@lists.example.org', 'poster.n@x.example', { subject: 'moved-copy-2', body: 'Once is enough.' });
      const queued = await deferredCopy(member.id);
      await relay.copy('vic@new.example', 'moved-copy-2');
      await db.pool.query(`update members set status = 'unsubscribed' where list_id = $1 and email = 'vic@new.example'`, [dev.id]);
      await switchOwnSubscription(db.pool, member.id, { email: 'vic@old.example', emails: ['vic@old.example', 'vic@new.example'] }, 'vic@new.example');
      const { rows } = await db.pool.query('select state, recipient, last_error from outbox where id = $1', [queued]);
      expect(rows[0]).toEqual({ state: 'cancelled', recipient: 'vic@old.example', last_error: 'not sent: the member moved to an address that has its own copy' });
      await settle();
      expect(relay.to('vic@new.example')).toHaveLength(1);
      expect(relay.to('vic@old.example')).toHaveLength(0);
    } finally {
      relay.setRule(null);
    }
  });
});
