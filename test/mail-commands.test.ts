import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setResolvers } from '../src/dns.ts';
import { LOOPBACK_SPF, stubResolvers, type StubRecords } from './helpers/stub-dns.ts';
import { createList, type ListRow } from '../src/db/lists.ts';
import { findMember } from '../src/db/members.ts';
import { requestWebSubscription } from '../src/core/subscriptions.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { message, sendRaw, startIngest, type RunningIngest } from './helpers/smtp.ts';

/**
 * Mail commands over the rate limit are recorded, not silently dropped; and a
 * subscription by mail is confirmed by the address even on a list whose policy is "open", because
 * anyone can put anyone's address in From. Over SMTP; what would be mailed is read from the outbox.
 */
let db: TestDatabase;
let smtp: RunningIngest;
let open: ListRow;

/** Mail From `from`; its envelope sender is `from` too (SPF passes, aligned: the address's own mail) unless `envelope` says otherwise. */
async function mail(to: string, from: string, opts: { subject?: string; body?: string; envelope?: string } = {}) {
  const res = await sendRaw(smtp.port, { from: opts.envelope ?? from, to: [to] }, message({ from, to, subject: opts.subject ?? '', body: opts.body ?? '' }));
  expect(res.ok, res.response).toBe(true);
}

/** Mail queued for an address, oldest first. */
async function queuedFor(address: string) {
  const { rows } = await db.pool.query<{ raw: Buffer }>(
    `select m.raw from outbox o join outbound_mail m on m.id = o.mail_id where o.recipient = $1 order by o.id`, [address]);
  return rows.map((r) => r.raw.toString());
}
const tokenIn = (raw: string) => /^Subject: confirm ([a-f0-9]{32})\r?$/m.exec(raw)?.[1] ?? null;

beforeAll(async () => {
  db = await testDatabase();
  smtp = await startIngest(db.pool);
  await createList(db.pool, { address: 'dev@lists.example.org', name: 'dev', description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  open = await createList(db.pool, { address: 'open@lists.example.org', name: 'open', description: '', postPolicy: 'members', subscribePolicy: 'open', archive: 'public', owners: ['owner@example.org'] });
});

afterAll(async () => {
  await smtp?.stop();
  await db?.drop();
});

describe('mail commands over the rate limit', () => {
  it('records the command it does not answer, with the reason, and answers the ones before it', async () => {
    for (let i = 0; i < 11; i++) await mail('dev-request@lists.example.org', 'chatty@x.example', { subject: 'help' });
    expect(await queuedFor('chatty@x.example')).toHaveLength(10);
    const { rows } = await db.pool.query(`select reason, recipients from ingest_errors where envelope_from = 'chatty@x.example'`);
    expect(rows).toEqual([{ reason: 'more than 10 mail commands in a day from chatty@x.example to dev@lists.example.org: not answered', recipients: ['dev-request@lists.example.org'] }]);
  });

  it('counts per list: commands forged in a member\'s name cannot silence their confirmation, nor their commands elsewhere, nor their own', async () => {
    await mail('open-request@lists.example.org', 'member@x.example', { subject: 'subscribe' });
    const token = tokenIn((await queuedFor('member@x.example'))[0])!;
    expect(token).not.toBeNull();
    // Someone else writes 25 commands From the member, to this list and to another.
    const forger = { envelope: 'forger@attacker.example' };
    for (let i = 0; i < 25; i++) await mail('open-request@lists.example.org', 'member@x.example', { subject: 'help', ...forger });
    for (let i = 0; i < 25; i++) await mail('dev-request@lists.example.org', 'member@x.example', { subject: 'help', ...forger });
    // The confirmation, guarded by its token, still counts.
    await mail(`open-confirm+${token}@lists.example.org`, 'member@x.example', { subject: `Re: confirm ${token}` });
    expect(await findMember(db.pool, open.id, 'member@x.example')).toMatchObject({ status: 'active' });
    // A confirmation that cannot be used is an answer like the others, and is not sent past the limit.
    const before = (await queuedFor('member@x.example')).length;
    await mail(`open-confirm+${'0'.repeat(32)}@lists.example.org`, 'member@x.example', { subject: 'Re: confirm', ...forger });
    expect(await queuedFor('member@x.example')).toHaveLength(before);
    const { rows } = await db.pool.query<{ reason: string }>(`select distinct reason from ingest_errors where envelope_from = 'forger@attacker.example' order by reason`);
    expect(rows.map((r) => r.reason)).toEqual([
      'more than 10 mail commands in a day from member@x.example to dev@lists.example.org: not answered',
      'more than 10 mail commands in a day from member@x.example to open@lists.example.org: not answered',
    ]);
    // The member's own commands (envelope in its domain: SPF passes aligned with From) count apart,
    // and are answered on both lists.
    await mail('dev-request@lists.example.org', 'member@x.example', { subject: 'help' });
    await mail(`open-confirm+${'1'.repeat(32)}@lists.example.org`, 'member@x.example', { subject: 'Re: confirm' });
    const own = (await queuedFor('member@x.example')).slice(before);
    expect(own).toHaveLength(2);
    expect(own[0]).toContain('This is the command address of the mailing list dev@lists.example.org');
    expect(own[1]).toContain('Your confirmation for open@lists.example.org could not be used');
  });

  it('answers at most 20 commands a day for one address across the site, the budget of mail a stranger can have sent to it', async () => {
    const lists = [];
    for (let i = 0; i < 6; i++) {
      lists.push(await createList(db.pool, { address: `many${i}@lists.example.org`, name: `many${i}`, description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] }));
    }
    // Within each list's 10, but 60 in all.
    // A stranger's mail: its envelope is not in From's domain, so nothing proves From.
    for (const l of lists) for (let i = 0; i < 10; i++) await mail(`${l.name}-request@lists.example.org`, 'flooded@x.example', { subject: 'help', envelope: 'bot@attacker.example' });
    expect(await queuedFor('flooded@x.example')).toHaveLength(20);
    const { rows } = await db.pool.query(`select count(*)::int as n from ingest_errors where envelope_from = 'bot@attacker.example' and reason = 'more than 20 mails a day to flooded@x.example asked for by mail or on the web: not answered'`);
    expect(rows[0].n).toBe(40);
  });
});

describe('confirmations for one address across the site', () => {
  it('sends one address at most 10 confirmations a day, however many lists are asked, by mail or on the web', async () => {
    const lists = [];
    for (let i = 0; i < 5; i++) {
      lists.push(await createList(db.pool, { address: `bomb${i}@lists.example.org`, name: `bomb${i}`, description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] }));
    }
    // A stranger writes three times to each list's -subscribe address in the victim's name: each
    // list alone would allow its three (15).
    for (const l of lists) for (let i = 0; i < 3; i++) await mail(`${l.name}-subscribe@lists.example.org`, 'bombed@x.example', { subject: 'subscribe', envelope: 'bot@attacker.example' });
    const sent = await queuedFor('bombed@x.example');
    expect(sent).toHaveLength(10);
    expect(sent.every((raw) => tokenIn(raw) !== null)).toBe(true);
    // The web form (requestWebSubscription, as the form calls it) goes through the same limit.
    await requestWebSubscription(db.pool, open, 'bombed@x.example', { mode: 'each', settings: { publicUrl: 'https://lists.example.org', confirmTokenHours: 48 } });
    expect(await queuedFor('bombed@x.example')).toHaveLength(10);
    // Another address is not affected.
    await mail('bomb0-subscribe@lists.example.org', 'bystander@x.example', { subject: 'subscribe' });
    expect(await queuedFor('bystander@x.example')).toHaveLength(1);
    // The victim's own request (its envelope in its domain: SPF passes aligned with From) has
    // limits of its own, which the stranger could not spend: it still gets its confirmation.
    await mail('bomb1-subscribe@lists.example.org', 'bombed@x.example', { subject: 'subscribe' });
    const after = await queuedFor('bombed@x.example');
    expect(after).toHaveLength(11);
    expect(tokenIn(after[10])).not.toBeNull();
  });
});

describe('mail commands in the name of a domain that says by DMARC they are forged', () => {
  // strict.example publishes p=reject and sends from elsewhere: mail in its name from loopback
  // fails SPF and carries no signature, so DMARC fails. loose.example publishes p=none and a
  // neutral SPF (?all): its mail from loopback fails DMARC, but nothing says it is forged.
  const records = new Map<string, StubRecords>([
    ['strict.example', { txt: ['v=spf1 ip4:192.0.2.0/24 -all'] }],
    ['_dmarc.strict.example', { txt: ['v=DMARC1; p=reject'] }],
    ['loose.example', { txt: ['v=spf1 ip4:192.0.2.0/24 ?all'] }],
    ['_dmarc.loose.example', { txt: ['v=DMARC1; p=none'] }],
    // No DMARC record, but SPF says that only 192.0.2.0/24 sends its mail (-all).
    ['hardfail.example', { txt: ['v=spf1 ip4:192.0.2.0/24 -all'] }],
  ]);
  beforeAll(() => setResolvers(stubResolvers(records, { defaultSpf: LOOPBACK_SPF })));
  afterAll(() => setResolvers());

  it('answers nothing, confirmation or help, to a From that fails DMARC with p=reject, and keeps the mail with why', async () => {
    await mail('open-subscribe@lists.example.org', 'victim@strict.example', { subject: 'subscribe' });
    await mail('open-request@lists.example.org', 'victim@strict.example', { subject: 'help' });
    await mail(`open-confirm+${'0'.repeat(32)}@lists.example.org`, 'victim@strict.example', { subject: 'Re: confirm' });
    expect(await queuedFor('victim@strict.example')).toEqual([]);
    const { rows } = await db.pool.query<{ reason: string }>(`select reason from ingest_errors where envelope_from = 'victim@strict.example' order by id`);
    expect(rows.map((r) => r.reason)).toEqual(Array(3).fill('From strict.example fails DMARC (p=reject): not answered, as mail in the name of victim@strict.example'));
    // Nor are they counted against the address: its own commands are answered as before.
    const { rows: counted } = await db.pool.query(`select key from rate_limits where key like 'mail-command:%victim@strict.example' or key like 'confirm-mail:%victim@strict.example' or key like 'stranger-mail:%victim@strict.example'`);
    expect(counted).toEqual([]);
  });

  it('answers nothing either when the p=reject From hides among more domains than are checked', async () => {
    // Eleven From domains: DMARC gives no verdict at all (permerror), and the first address, the
    // one an answer would go to, is the victim's.
    const from = ['victim2@strict.example', ...Array.from({ length: 10 }, (_, i) => `x@d${i}.example`)].join(', ');
    for (const [to, subject] of [['open-subscribe@lists.example.org', 'subscribe'], ['open-request@lists.example.org', 'help'], [`open-confirm+${'0'.repeat(32)}@lists.example.org`, 'Re: confirm']]) {
      const res = await sendRaw(smtp.port, { from: 'x@d0.example', to: [to] }, message({ from, to, subject }));
      expect(res.ok, res.response).toBe(true);
    }
    expect(await queuedFor('victim2@strict.example')).toEqual([]);
    const { rows } = await db.pool.query<{ reason: string }>(`select reason from ingest_errors where envelope_from = 'x@d0.example' order by id`);
    expect(rows.map((r) => r.reason)).toEqual(Array(3).fill('the sender cannot be authenticated (From names more than 10 domains): not answered, as mail in the name of victim2@strict.example'));
  });

  it('answers 451 while the From domain\'s DMARC record cannot be read, and as usual once it can', async () => {
    // A lookup that fails for now (SERVFAIL, or a forger's slow DNS) leaves no verdict: answered,
    // a p=reject domain's address got the confirmation. The sender's server tries again instead.
    records.set('_dmarc.flaky.example', { servfail: true });
    records.set('flaky.example', { txt: ['v=spf1 ip4:192.0.2.0/24 ?all'] }); // neutral: only DMARC could tell
    for (const [to, subject] of [['open-subscribe@lists.example.org', 'subscribe'], ['open-request@lists.example.org', 'help'], [`open-confirm+${'0'.repeat(32)}@lists.example.org`, 'Re: confirm']]) {
      const res = await sendRaw(smtp.port, { from: 'someone@flaky.example', to: [to] }, message({ from: 'someone@flaky.example', to, subject }));
      expect(res.ok, to).toBe(false);
      expect(res.response, to).toMatch(/^451 4\.7\.0 the sender could not be authenticated for now/);
    }
    expect(await queuedFor('someone@flaky.example')).toEqual([]);
    expect((await db.pool.query(`select 1 from ingest_errors where envelope_from = 'someone@flaky.example'`)).rowCount).toBe(0);
    // The record readable again (p=none): the retry is answered.
    records.set('_dmarc.flaky.example', { txt: ['v=DMARC1; p=none'] });
    await mail('open-subscribe@lists.example.org', 'someone@flaky.example', { subject: 'subscribe' });
    expect(tokenIn((await queuedFor('someone@flaky.example'))[0])).not.toBeNull();
  });

  it('answers as before where DMARC does not say so (p=none)', async () => {
    await mail('open-subscribe@lists.example.org', 'someone@loose.example', { subject: 'subscribe' });
    expect(tokenIn((await queuedFor('someone@loose.example'))[0])).not.toBeNull();
  });

  it('answers nothing to mail whose own domain fails it by SPF (-all), without any DMARC record', async () => {
    await mail('open-subscribe@lists.example.org', 'victim@hardfail.example', { subject: 'subscribe' });
    await mail('open-request@lists.example.org', 'victim@hardfail.example', { subject: 'help' });
    expect(await queuedFor('victim@hardfail.example')).toEqual([]);
    const { rows } = await db.pool.query<{ reason: string }>(`select reason from ingest_errors where envelope_from = 'victim@hardfail.example' order by id`);
    expect(rows.map((r) => r.reason)).toEqual(Array(2).fill('hardfail.example does not let this server send its mail (spf=fail): not answered, as mail in the name of victim@hardfail.example'));
  });
});

describe('subscribing by mail to a list whose policy is open', () => {
  it('asks the address to confirm instead of subscribing whoever From names', async () => {
    await mail('open-subscribe@lists.example.org', 'victim@x.example');
    await mail('open-request@lists.example.org', 'other-victim@x.example', { subject: 'subscribe' });
    expect(await findMember(db.pool, open.id, 'victim@x.example')).toBeNull();
    expect(await findMember(db.pool, open.id, 'other-victim@x.example')).toBeNull();
    const [confirmation] = await queuedFor('victim@x.example');
    expect(tokenIn(confirmation)).not.toBeNull();
    expect(confirmation).toContain('Someone (perhaps you) asked to join the mailing list open@lists.example.org');
  });

  it('subscribes once the address answers, with no owner approval', async () => {
    const token = tokenIn((await queuedFor('victim@x.example'))[0])!;
    await mail(`open-confirm+${token}@lists.example.org`, 'victim@x.example', { subject: `Re: confirm ${token}` });
    expect(await findMember(db.pool, open.id, 'victim@x.example')).toMatchObject({ status: 'active' });
    const [, welcome] = await queuedFor('victim@x.example');
    expect(welcome).toContain('Subject: Welcome to open@lists.example.org');
    expect(await queuedFor('owner@example.org')).toEqual([]);
  });
});

describe('automatic replies to a confirmation', () => {
  it('does not confirm with a vacation reply that says what it is only in its Subject, and keeps it with why', async () => {
    await mail('open-subscribe@lists.example.org', 'away@x.example', { subject: 'subscribe' });
    const token = tokenIn((await queuedFor('away@x.example'))[0])!;
    // A responder that answers Reply-To, from the mailbox's own address, with no Auto-Submitted,
    // X-Autoreply or Precedence field and a non-null envelope sender.
    await mail(`open-confirm+${token}@lists.example.org`, 'away@x.example', { subject: `Automatic reply: confirm ${token}`, body: 'I am out of the office until Monday.\n' });
    expect(await findMember(db.pool, open.id, 'away@x.example')).toBeNull();
    const { rows } = await db.pool.query<{ reason: string }>(`select reason from ingest_errors where envelope_from = 'away@x.example'`);
    expect(rows.map((r) => r.reason)).toEqual([`an automatic reply (Subject: Automatic reply: confirm ${token}) to the confirm address: not acted on`]);
    // The person's own reply still confirms.
    await mail(`open-confirm+${token}@lists.example.org`, 'away@x.example', { subject: `Re: confirm ${token}` });
    expect(await findMember(db.pool, open.id, 'away@x.example')).toMatchObject({ status: 'active' });
  });
});

describe('confirmations for one mailbox under many sub-addresses', () => {
  it('counts bob+1@, bob+2@, … as the one mailbox they reach: at most 10 confirmations a day in all', async () => {
    const lists = [];
    for (let i = 0; i < 5; i++) {
      lists.push(await createList(db.pool, { address: `plus${i}@lists.example.org`, name: `plus${i}`, description: '', postPolicy: 'members', subscribePolicy: 'confirm', archive: 'public', owners: [] }));
    }
    // A stranger asks each list for a new spelling of the victim's address each time.
    for (const l of lists) for (let i = 0; i < 4; i++) await mail(`${l.name}-subscribe@lists.example.org`, `tagged+${l.name}-${i}@x.example`, { subject: 'subscribe' });
    const { rows } = await db.pool.query<{ n: number }>(`select count(*)::int as n from outbox where recipient like 'tagged+%@x.example' or recipient = 'tagged@x.example'`);
    expect(rows[0].n).toBe(10);
  });
});

describe('commands in mail whose only text is HTML', () => {
  // A client that sends HTML alone inside multipart/alternative: the parser leaves that HTML as
  // HTML (it converts only HTML that stands alone), so the body held no command for us to read.
  const htmlOnly = (from: string, to: string, html: string, subject = '') => message({
    from, to, subject,
    headers: { 'Content-Type': 'multipart/alternative; boundary="alt"' },
    body: `--alt\nContent-Type: text/html; charset=utf-8\n\n${html}\n--alt--\n`,
  });
  const send = async (from: string, to: string, html: string) => {
    const res = await sendRaw(smtp.port, { from, to: [to] }, htmlOnly(from, to, html));
    expect(res.ok, res.response).toBe(true);
  };

  it('reads the command from the HTML made text, as for a plain-text body, and not from what it quotes', async () => {
    await send('html@x.example', 'dev-request@lists.example.org', '<html><body><div dir="ltr">subscribe&nbsp;digest</div><div>Thanks!</div></body></html>');
    const [confirmation] = await queuedFor('html@x.example');
    expect(tokenIn(confirmation)).not.toBeNull();
    const { rows } = await db.pool.query(`select mode from subscription_requests where email = 'html@x.example'`);
    expect(rows).toEqual([{ mode: 'digest' }]);
    // A reply whose own text has no command, above a quote that has one: help, not the quoted command.
    await send('quoter@x.example', 'dev-request@lists.example.org', '<p>What can I do here?</p><blockquote><p>unsubscribe</p></blockquote>');
    const [answer] = await queuedFor('quoter@x.example');
    expect(answer).toContain('No command was found in your message.');
  });

  it('reads only the start of the HTML, and HTML too deep to parse cheaply gets the help text, not a stalled listener', async () => {
    // A command after 64 KB of HTML is not looked for, even when nothing before it is text.
    await send('late@x.example', 'dev-request@lists.example.org', `<!--${'x'.repeat(70_000)}--><p>unsubscribe</p>`);
    expect(await queuedFor('late@x.example')).toEqual([expect.stringContaining('No command was found in your message.')]);
    await send('deep@x.example', 'dev-request@lists.example.org', `${'<div>'.repeat(20_000)}unsubscribe${'</div>'.repeat(20_000)}`);
    expect(await queuedFor('deep@x.example')).toEqual([expect.stringContaining('No command was found in your message.')]);
  });
});
