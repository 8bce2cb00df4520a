import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readBounce } from '../src/mail/bounce.ts';
import { classifyText } from '../src/mail/bounce-rules.ts';
import { parse } from '../src/mail/parse.ts';

/** Reading bounces (src/mail/bounce.ts) and classifying failures (src/mail/bounce-rules.ts), on real samples. */

const bounce = (name: string) => fs.readFileSync(path.join(import.meta.dirname, 'fixtures/bounces', name));
async function report(name: string) {
  const raw = bounce(name);
  const p = await parse(raw);
  return readBounce({ raw, text: p.text, headers: p.headers });
}

describe('bounce classification on real DSN samples', () => {
  it('reads a Postfix DSN for an unknown user as a hard bounce', async () => {
    expect(await report('postfix-user-unknown.eml')).toEqual([expect.objectContaining({ recipient: 'bob@example.net', status: '5.1.1', kind: 'hard', category: 'no_such_user', failed: true })]);
  });

  it('reads a Gmail DSN for a missing account as a hard bounce', async () => {
    expect((await report('gmail-no-such-user.eml'))[0]).toMatchObject({ recipient: 'carol.nonexistent@gmail.com', status: '5.1.1', kind: 'hard' });
  });

  it('reads an Exchange NDR (5.1.10 RecipientNotFound) as a hard bounce', async () => {
    expect((await report('exchange-recipient-not-found.eml'))[0]).toMatchObject({ recipient: 'carol@contoso.example', status: '5.1.10', kind: 'hard' });
  });

  it('reads an Exim DSN for a full mailbox as a soft bounce despite its generic 5.0.0', async () => {
    expect((await report('exim-mailbox-full.eml'))[0]).toMatchObject({ recipient: 'erin@example.com', kind: 'soft', category: 'mailbox_full' });
  });

  it('reads a classic plain-text Exim bounce', async () => {
    expect((await report('exim-plain-user-unknown.eml'))[0]).toMatchObject({ recipient: 'dave@example.com', status: '5.1.1', kind: 'hard' });
  });

  it('reads a plain-text qmail bounce', async () => {
    expect((await report('qmail-plain-no-mailbox.eml'))[0]).toMatchObject({ recipient: 'grace@example.info', kind: 'hard' });
  });

  it('classifies a DMARC rejection as policy', async () => {
    expect((await report('gmail-dmarc-policy.eml'))[0]).toMatchObject({ status: '5.7.26', kind: 'policy', category: 'dmarc' });
  });

  it('classifies a block-list rejection as policy', async () => {
    expect((await report('postfix-spamhaus-policy.eml'))[0]).toMatchObject({ status: '5.7.1', kind: 'policy' });
  });

  it('does not take a delay warning for a failure', async () => {
    expect((await report('postfix-delayed-warning.eml'))[0]).toMatchObject({ action: 'delayed', failed: false });
  });

  it('does not take an out-of-office reply for a bounce', async () => {
    expect((await report('vacation-auto-reply.eml'))[0]).toMatchObject({ failed: false, category: 'auto_reply' });
  });

  it('classifies SMTP answers met while sending', () => {
    expect(classifyText(null, '550 5.1.1 <x@y>: Recipient address rejected: User unknown')).toMatchObject({ kind: 'hard' });
    expect(classifyText(null, '552 5.2.2 Mailbox full')).toMatchObject({ kind: 'soft' });
    expect(classifyText(null, '550 5.7.1 Message rejected as spam')).toMatchObject({ kind: 'policy' });
    expect(classifyText(null, '554 Message refused: listed on a block list')).toMatchObject({ kind: 'policy' });
    expect(classifyText(null, '554 <m@x.example>: Relay access denied')).toMatchObject({ kind: 'policy', category: 'relay' });
    // RFC 3463 X.6.x is about the message's content, not the mailbox; an address with 5.6 in it is no status.
    expect(classifyText('5.6.0', 'smtp; 554 5.6.0 STOREDRV.Deliver.Exception:ConversionFailedPermanentException')).toMatchObject({ kind: 'policy', category: 'content' });
    expect(classifyText(null, '554 5.6.1 Media not supported')).toMatchObject({ kind: 'policy', category: 'content' });
    expect(classifyText('5.0.0', 'smtp; 550 user unknown (relay 10.5.6.100)')).toMatchObject({ kind: 'hard', category: 'no_such_user' });
  });
});

describe('hostile bounces', () => {
  const read = async (raw: string) => {
    const p = await parse(Buffer.from(raw));
    return readBounce({ raw: Buffer.from(raw), text: p.text, headers: p.headers });
  };
  const dsn = (recipient: string, diagnostic: string) => ['From: MAILER-DAEMON@example.net', 'Subject: failure',
    'Content-Type: multipart/report; report-type=delivery-status; boundary=B', '', '--B', 'Content-Type: text/plain', '', 'It failed.', '--B',
    'Content-Type: message/delivery-status', '', 'Reporting-MTA: dns; mx.example.net', '', `Final-Recipient: rfc822; ${recipient}`, 'Action: failed',
    'Status: 5.0.0', `Diagnostic-Code: smtp; ${diagnostic}`, '', '--B--', ''].join('\r\n');

  // Each of these took the ingest process from seconds to minutes (patterns whose cost grew with
  // the square of the text); read in linear time, they end well within the test's limit.
  it('reads a "bounce" of 400,000 empty lines, a recipient of 200,000 letters and a diagnostic of 40,000 words for what they are', async () => {
    expect((await read(`From: MAILER-DAEMON@example.net\r\nSubject: x\r\n\r\n${'\r\n'.repeat(400_000)}Your message\r\n`))[0])
      .toMatchObject({ failed: false, category: 'not_a_bounce' });
    expect((await read(dsn('a'.repeat(200_000), '550 no such user')))[0]).toMatchObject({ recipient: null, kind: 'hard', failed: true });
    const [words] = await read(dsn('x@y.example', 'dkim '.repeat(40_000)));
    expect(words).toMatchObject({ recipient: 'x@y.example', failed: true });
    expect(words.diagnostic!.length).toBeLessThanOrEqual(2000);
  });

  it('drops NUL characters from the report fields, which PostgreSQL cannot store', async () => {
    expect((await read(dsn('bob\u0000@example.org', '550 5.1.1 user\u0000 unknown')))[0])
      .toMatchObject({ recipient: 'bob@example.org', diagnostic: '550 5.1.1 user unknown', kind: 'hard', category: 'no_such_user' });
  });

  it('makes a NUL harmless where an auto-reply or a plain-text report is quoted: a space in the diagnostic, nothing in an address', async () => {
    expect(await read('From: bob@example.net\r\nSubject: Out of office: Release\u0000planning\r\n\r\nAway.\r\n'))
      .toEqual([expect.objectContaining({ category: 'auto_reply', diagnostic: 'an automatic reply (Subject: Out of office: Release planning): never counted' })]);
    expect(await read('From: bob@example.net\r\nX-Autoreply: yes\u0000\r\nSubject: Re: x\r\n\r\nAway.\r\n'))
      .toEqual([expect.objectContaining({ category: 'auto_reply', diagnostic: 'an automatic reply (x-autoreply: yes ): never counted' })]);
    const exim = bounce('exim-plain-user-unknown.eml').toString('latin1').replace(/^/, 'X-Failed-Recipients: gone\u0000@example.org\r\n');
    expect((await read(exim))[0]).toMatchObject({ recipient: 'gone@example.org', failed: true });
  });
});
