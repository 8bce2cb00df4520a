import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCertificates, type TestCertificates } from './helpers/certificates.ts';
import { startFaultRelay, type RelayStep } from './helpers/fault-relay.ts';

/**
 * The fault relay (test/helpers/fault-relay.ts) that the crash loop and the delivery fault tests
 * stand on, held to what it promises, with nodemailer as an ordinary client.
 */
let certs: TestCertificates;
beforeAll(() => {
  certs = makeCertificates();
});
afterAll(() => certs?.remove());

const mail = { envelope: { from: 'a@example.org', to: ['b@example.net'] }, raw: 'Message-ID: <m@example.org>\r\nSubject: x\r\n\r\n.a line with a dot\r\n' };

function client(port: number, opts: Record<string, unknown> = {}) {
  return nodemailer.createTransport({ host: '127.0.0.1', port, ignoreTLS: true, connectionTimeout: 2000, greetingTimeout: 2000, socketTimeout: 2000, ...opts } as Parameters<typeof nodemailer.createTransport>[0]);
}

async function attempt(port: number, opts: Record<string, unknown> = {}): Promise<number | string> {
  try {
    await client(port, opts).sendMail(mail);
    return 250;
  } catch (err) {
    const e = err as { responseCode?: number; code?: string; message: string };
    return e.responseCode ?? `${e.code} ${e.message}`;
  }
}

describe('the fault relay', () => {
  it('answers the chosen code at each step, once, and takes the next message whole', async () => {
    const relay = await startFaultRelay();
    for (const step of ['connect', 'mail', 'rcpt', 'data', 'dot'] as RelayStep[]) {
      relay.fail(step, { code: 451, times: 1 });
      expect(await attempt(relay.port), step).toBe(451);
    }
    relay.fail('dot', { code: 554, match: (r) => r === 'b@example.net' });
    expect(await attempt(relay.port)).toBe(554);
    relay.clear();
    expect(await attempt(relay.port)).toBe(250);
    expect(relay.messages).toHaveLength(1);
    expect(relay.messages[0].raw.toString()).toBe(mail.raw);
    expect(relay.copies().get('m@example.org b@example.net')).toBe(1);
    await relay.stop();
  });

  it('hangs, hangs up, goes down and comes back on the same port', async () => {
    const relay = await startFaultRelay();
    relay.fail('data', { hang: true, times: 1 });
    expect(await attempt(relay.port)).toMatch(/^ETIMEDOUT/);
    relay.fail('rcpt', { drop: true, times: 1 });
    expect(await attempt(relay.port)).not.toBe(250);
    const port = relay.port;
    await relay.down();
    expect(await attempt(port)).toMatch(/ECONNREFUSED/);
    await relay.up();
    expect(relay.port).toBe(port);
    expect(await attempt(port)).toBe(250);
    await relay.stop();
  });

  it('offers STARTTLS and AUTH, and records which messages and passwords came over TLS', async () => {
    const relay = await startFaultRelay({ tls: certs.good, auth: true });
    expect(await attempt(relay.port, { ignoreTLS: false, requireTLS: true, tls: { ca: certs.ca }, auth: { user: 'u', pass: 'p' } })).toBe(250);
    expect(relay.messages[0].tls).toBe(true);
    expect(relay.auths).toEqual([{ user: 'u', pass: 'p', tls: true }]);
    // In clear when the client does not ask for TLS: the relay records that too.
    expect(await attempt(relay.port, { auth: { user: 'u', pass: 'p' } })).toBe(250);
    expect(relay.auths[1]).toEqual({ user: 'u', pass: 'p', tls: false });
    await relay.stop();
  });

  it('presents the bad certificates it is given', async () => {
    for (const pair of [certs.selfSignedWrongName, certs.expired]) {
      const relay = await startFaultRelay({ tls: pair });
      expect(await attempt(relay.port, { ignoreTLS: false, requireTLS: true, tls: { ca: certs.ca } })).toMatch(/self-signed certificate|certificate has expired/);
      await relay.stop();
    }
    const smtps = await startFaultRelay({ implicitTls: certs.good });
    expect(smtps.url).toMatch(/^smtps:/);
    expect(await attempt(smtps.port, { secure: true, tls: { ca: certs.ca } })).toBe(250);
    expect(smtps.messages[0].tls).toBe(true);
    await smtps.stop();
  });
});
