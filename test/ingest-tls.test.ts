import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config.ts';
import { createList } from '../src/db/lists.ts';
import { addMember } from '../src/db/members.ts';
import type { DeliveryWorker } from '../src/delivery/worker.ts';
import type { PostChecks } from '../src/mail/post-checks.ts';
import { drained, startCaptureRelay, startWorker, workerConfig, type CaptureRelay } from './helpers/capture-relay.ts';
import { makeCertificates, type TestCertificates } from './helpers/certificates.ts';
import { cli } from './helpers/cli.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';
import { spawnServe, type ServeProcess } from './helpers/serve-process.ts';
import { message, smtpDialogue, startIngest, type RunningIngest } from './helpers/smtp.ts';
import { until } from './helpers/worker-process.ts';

/**
 * STARTTLS on the ingest listener (SMTP_TLS_CERT, SMTP_TLS_KEY, SMTP_REQUIRE_TLS, SIGHUP), the
 * Received line each copy gets for the hop into listkeeper, and XFORWARD behind Postfix. Real
 * sockets throughout: swaks as the client, certificates made with openssl, node:tls to read
 * which certificate a new connection is shown, a real `serve` process for SIGHUP.
 */
let db: TestDatabase;
let certs: TestCertificates;
let relay: CaptureRelay;
let worker: DeliveryWorker;
const running: RunningIngest[] = [];
const settings = parseConfig({ MAIL_DOMAIN: 'lists.example.org', SMTP_HELO_NAME: 'mx.lists.example.org' });
let certFile: string;
let keyFile: string;
let n = 0;

async function ingest(opts: Parameters<typeof startIngest>[1] = {}): Promise<RunningIngest> {
  const s = await startIngest(db.pool, { settings, ...opts });
  running.push(s);
  return s;
}

const withTls = () => ({ tls: { certFile, keyFile } });

/** A fresh open list with one member; its local part. */
async function newList(): Promise<string> {
  const local = `tls${++n}`;
  const list = await createList(db.pool, { address: `${local}@lists.example.org`, name: local, description: '', postPolicy: 'open', subscribePolicy: 'confirm', archive: 'public', owners: [] });
  await addMember(db.pool, list.id, `reader@${local}.example`, 'each');
  return local;
}

interface Swaks {
  code: number;
  output: string;
}

/** swaks, the SMTP test tool, sending `file` (CRLF lines) to one address. */
function swaks(port: number, to: string, file: string, extra: string[] = []): Promise<Swaks> {
  const args = ['--server', '127.0.0.1', '--port', String(port), '--ehlo', 'client.example', '--from', 'alice@example.org', '--to', to, '--data', file, '--timeout', '20', ...extra];
  return new Promise((resolve) => {
    execFile('swaks', args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` });
    });
  });
}

/** A message for swaks, and the bytes swaks puts on the wire before the final dot. */
function messageFile(local: string, id: string): { file: string; bytes: Buffer } {
  const text = message({ id, to: `${local}@lists.example.org`, subject: 'Over TLS', body: 'Sent over STARTTLS.\n\n-- \nAlice' });
  const file = path.join(certs.dir, `${id}.eml`);
  // swaks ends the data with CRLF itself (one more if the file has its own).
  fs.writeFileSync(file, text);
  return { file, bytes: Buffer.from(`${text}\r\n`) };
}

async function stored(id: string): Promise<{ raw: Buffer; checks: PostChecks | null } | undefined> {
  const { rows } = await db.pool.query<{ raw: Buffer; checks: PostChecks | null }>(`select raw, checks from messages where message_id = $1`, [id]);
  return rows[0];
}

/** Reads an SMTP server until a reply matching `done` arrives. */
function readUntil(socket: net.Socket, done: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => finish(new Error(`no ${done} in ${JSON.stringify(text)}`)), 10_000);
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (done.test(text)) finish(null);
    };
    const finish = (err: Error | null) => {
      clearTimeout(timer);
      socket.off('data', onData);
      if (err) reject(err);
      else resolve(text);
    };
    socket.on('data', onData);
  });
}

/** The SHA-256 fingerprint of the certificate a new connection is shown after STARTTLS. */
async function certificateShown(port: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  try {
    await readUntil(socket, /^220 /m);
    socket.write('EHLO probe.example\r\n');
    const ehlo = await readUntil(socket, /^250 /m);
    expect(ehlo).toMatch(/^250-STARTTLS/m);
    socket.write('STARTTLS\r\n');
    await readUntil(socket, /^220 /m);
    const secure = tls.connect({ socket, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    const fingerprint = secure.getPeerCertificate().fingerprint256;
    secure.destroy();
    return fingerprint;
  } finally {
    socket.destroy();
  }
}

const fingerprint = (pem: string) => new crypto.X509Certificate(pem).fingerprint256;

beforeAll(async () => {
  certs = makeCertificates();
  certFile = path.join(certs.dir, 'good.pem');
  keyFile = path.join(certs.dir, 'good.key');
  db = await testDatabase();
  relay = await startCaptureRelay();
  worker = await startWorker(db, workerConfig(relay));
});

afterAll(async () => {
  await worker?.stop();
  for (const s of running) await s.stop();
  await relay?.stop();
  await db?.drop();
  certs?.remove();
});

describe('STARTTLS on ingest', () => {
  it('is offered only when a certificate and key are configured', async () => {
    for (const [server, offered] of [[await ingest(), false], [await ingest(withTls()), true]] as const) {
      const dialogue = await smtpDialogue(server.port);
      const ehlo = await dialogue.say('EHLO client.example');
      dialogue.close();
      expect(ehlo).toMatch(/^250/);
      expect(/^250[- ]STARTTLS\r?$/m.test(ehlo), ehlo).toBe(offered);
    }
  });

  it('takes a post from swaks --tls; the delivered copy has a Received line with the TLS details on top, the archive the bytes as sent', async () => {
    const server = await ingest(withTls());
    const local = await newList();
    const { file, bytes } = messageFile(local, `${local}-swaks@example.org`);
    const sent = await swaks(server.port, `${local}@lists.example.org`, file, ['--tls']);
    expect(sent.output).toMatch(/<- {2}220 Ready to start TLS/);
    expect(sent.output).toMatch(/TLS started with cipher/);
    expect(sent.code, sent.output).toBe(0);

    const archived = await until(() => stored(`${local}-swaks@example.org`), 'the archived post');
    expect(archived.raw.equals(bytes), 'the archive keeps exactly what was sent').toBe(true);
    expect(archived.checks?.received).toMatch(
      /^from client\.example \([a-z0-9.-]+ \[127\.0\.0\.1\]\) by mx\.lists\.example\.org with ESMTPS \(TLS1\.[23] [A-Z0-9_-]+\) id [a-z0-9]+-\d+; \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/);

    await relay.waitFor(1);
    await drained(db);
    const [copy] = relay.to(`reader@${local}.example`);
    const text = copy.raw.toString('latin1');
    // The trace block on top: our Authentication-Results for this hop, then its Received line.
    const trace = text.replace(/^Authentication-Results: mx\.lists\.example\.org;(?:\r\n[ \t].*)*\r\n/, '');
    expect(trace.startsWith(`Received: ${archived.checks!.received}\r\n`), text.slice(0, 600)).toBe(true);
    // Below the trace line and the list's headers, the author's header and body are unchanged.
    expect(text.endsWith(bytes.toString('latin1').slice(bytes.indexOf('From:')))).toBe(true);
  });

  it('a post in clear gets a Received line that says ESMTP and names no cipher', async () => {
    const server = await ingest(withTls());
    const local = await newList();
    const { file } = messageFile(local, `${local}-clear@example.org`);
    const sent = await swaks(server.port, `${local}@lists.example.org`, file);
    expect(sent.code, sent.output).toBe(0);
    const archived = await until(() => stored(`${local}-clear@example.org`), 'the archived post');
    expect(archived.checks?.received).toMatch(/\[127\.0\.0\.1\]\) by mx\.lists\.example\.org with ESMTP id /);
  });

  it('with SMTP_REQUIRE_TLS, refuses MAIL before STARTTLS with 530 5.7.0 and takes the post after it', async () => {
    const server = await ingest({ ...withTls(), requireTls: true });
    const local = await newList();
    const dialogue = await smtpDialogue(server.port);
    await dialogue.say('EHLO client.example');
    const mail = await dialogue.say('MAIL FROM:<alice@example.org>');
    dialogue.close();
    expect(mail).toMatch(/^530 5\.7\.0 Must issue a STARTTLS command first/);

    const { file } = messageFile(local, `${local}-required@example.org`);
    const clear = await swaks(server.port, `${local}@lists.example.org`, file);
    expect(clear.code).not.toBe(0);
    expect(clear.output).toMatch(/<\*\* 530 5\.7\.0/);
    expect(await stored(`${local}-required@example.org`)).toBeUndefined();

    const secure = await swaks(server.port, `${local}@lists.example.org`, file, ['--tls']);
    expect(secure.code, secure.output).toBe(0);
    expect((await stored(`${local}-required@example.org`))?.checks?.received).toContain(' with ESMTPS (TLS');
  });
});

describe('XFORWARD', () => {
  const forwarded = 'XFORWARD NAME=mail.sender.example ADDR=198.51.100.7 PROTO=ESMTP HELO=helo.sender.example';

  it('behind Postfix (LMTP), names the client Postfix spoke to in the checks, not Postfix', async () => {
    const server = await ingest({ lmtp: true });
    const local = await newList();
    const dialogue = await smtpDialogue(server.port);
    const lhlo = await dialogue.say('LHLO postfix.example');
    expect(lhlo).toMatch(/^250[- ]XFORWARD /m);
    expect(await dialogue.say(forwarded)).toMatch(/^250 /);
    expect(await dialogue.say('MAIL FROM:<alice@example.org>')).toMatch(/^250 /);
    expect(await dialogue.say(`RCPT TO:<${local}@lists.example.org>`)).toMatch(/^250 /);
    expect(await dialogue.say('DATA')).toMatch(/^354 /);
    const done = await dialogue.say(`${message({ id: `${local}-xforward@example.org`, to: `${local}@lists.example.org` })}\r\n.`);
    dialogue.close();
    expect(done).toMatch(/^250 2\.0\.0 Ok: queued as [a-z0-9]+-\d+/);
    const archived = await until(() => stored(`${local}-xforward@example.org`), 'the archived post');
    expect(archived.checks?.received).toMatch(/^from helo\.sender\.example \(mail\.sender\.example \[198\.51\.100\.7\]\) by mx\.lists\.example\.org with LMTP id /);
    expect(archived.checks?.received).not.toContain('127.0.0.1');
    expect(archived.checks?.received).not.toContain('postfix.example');
    // The id in the Received line is the one the LMTP reply gave.
    expect(archived.checks?.received).toContain(` id ${/queued as (\S+)/.exec(done)![1]};`);
  });

  it('facing the internet (SMTP), is neither offered nor obeyed: a client cannot claim another address', async () => {
    const server = await ingest();
    const local = await newList();
    const dialogue = await smtpDialogue(server.port);
    const ehlo = await dialogue.say('EHLO client.example');
    expect(ehlo).not.toMatch(/XFORWARD/);
    expect(await dialogue.say(forwarded)).toMatch(/^550 /);
    await dialogue.say('MAIL FROM:<alice@example.org>');
    await dialogue.say(`RCPT TO:<${local}@lists.example.org>`);
    await dialogue.say('DATA');
    expect(await dialogue.say(`${message({ id: `${local}-forged@example.org`, to: `${local}@lists.example.org` })}\r\n.`)).toMatch(/^250 /);
    dialogue.close();
    const archived = await until(() => stored(`${local}-forged@example.org`), 'the archived post');
    expect(archived.checks?.received).toMatch(/^from client\.example \([a-z0-9.-]+ \[127\.0\.0\.1\]\) /);
    expect(archived.checks?.received).not.toContain('198.51.100.7');
  });
});

describe('TLS configuration', () => {
  const env = (e: Record<string, string>) => ({ MAIL_DOMAIN: 'lists.example.org', ...e });
  const refusal = (e: Record<string, string>) => {
    try {
      parseConfig(env(e));
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('configuration accepted');
  };

  it('takes a certificate with its key, and refuses one without the other, a missing file, a file that is no PEM and a key of another certificate', () => {
    expect(parseConfig(env({ SMTP_TLS_CERT: certFile, SMTP_TLS_KEY: keyFile, SMTP_REQUIRE_TLS: '1' })).smtp).toMatchObject({ tls: { certFile, keyFile }, requireTls: true });
    expect(parseConfig(env({})).smtp).toMatchObject({ tls: null, requireTls: false });
    expect(refusal({ SMTP_TLS_CERT: certFile })).toMatch(/^Invalid configuration: SMTP_TLS_KEY is not set/);
    expect(refusal({ SMTP_TLS_KEY: keyFile })).toMatch(/^Invalid configuration: SMTP_TLS_CERT is not set/);
    expect(refusal({ SMTP_TLS_CERT: '/nonexistent/cert.pem', SMTP_TLS_KEY: keyFile })).toBe('Invalid configuration: SMTP_TLS_CERT="/nonexistent/cert.pem" cannot be read (ENOENT)');
    expect(refusal({ SMTP_TLS_CERT: keyFile, SMTP_TLS_KEY: keyFile })).toMatch(/^Invalid configuration: SMTP_TLS_CERT=.* must be a PEM file starting with the server's certificate$/);
    expect(refusal({ SMTP_TLS_CERT: certFile, SMTP_TLS_KEY: certFile })).toMatch(/^Invalid configuration: SMTP_TLS_KEY="\*\*\*" must be a PEM file with a private key/);
    expect(refusal({ SMTP_TLS_CERT: certFile, SMTP_TLS_KEY: path.join(certs.dir, 'wrong.key') })).toMatch(/^Invalid configuration: SMTP_TLS_KEY="\*\*\*" is not the key of the certificate in SMTP_TLS_CERT=/);
    expect(refusal({ SMTP_REQUIRE_TLS: '1' })).toMatch(/^Invalid configuration: SMTP_REQUIRE_TLS=1 needs SMTP_TLS_CERT and SMTP_TLS_KEY/);
  });

  it('a key given in place of its path is never printed', () => {
    const message = refusal({ SMTP_TLS_CERT: certFile, SMTP_TLS_KEY: certs.good.key });
    expect(message).not.toContain('PRIVATE KEY');
    expect(message).toContain('SMTP_TLS_KEY="***"');
  });

  it('stops serve at start-up with one line naming the variable', async () => {
    const r = await cli(['serve', '--smtp'], { SMTP_PORT: '0', SMTP_TLS_CERT: certFile, SMTP_TLS_KEY: path.join(certs.dir, 'wrong.key') });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^listkeeper: Invalid configuration: SMTP_TLS_KEY="\*\*\*" is not the key of the certificate/)]);
  });
});

describe('SIGHUP', () => {
  let serve: ServeProcess | undefined;
  afterAll(async () => {
    await serve?.kill('SIGTERM');
  });

  it('reloads the certificate for new connections, and keeps the one in use when the new files are bad', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-reload-'));
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    fs.writeFileSync(cert, certs.good.cert);
    fs.writeFileSync(key, certs.good.key);
    try {
      serve = await spawnServe({ roles: ['smtp'], env: { DATABASE_URL: db.url, SMTP_TLS_CERT: cert, SMTP_TLS_KEY: key } });
      expect(await certificateShown(serve.smtpPort!)).toBe(fingerprint(certs.good.cert));

      // A renewal: new files, then SIGHUP.
      fs.writeFileSync(cert, certs.selfSignedWrongName.cert);
      fs.writeFileSync(key, certs.selfSignedWrongName.key);
      process.kill(serve.pid, 'SIGHUP');
      await until(() => serve!.output().includes('TLS certificate reloaded'), 'the reload log line');
      expect(await certificateShown(serve.smtpPort!)).toBe(fingerprint(certs.selfSignedWrongName.cert));

      // A botched renewal: the key of another certificate. Logged; the last good one stays.
      fs.writeFileSync(key, certs.good.key);
      process.kill(serve.pid, 'SIGHUP');
      await until(() => serve!.output().includes('TLS certificate not reloaded'), 'the error line');
      expect(serve.output()).toMatch(/"level":50.*SMTP_TLS_KEY=\\"\*\*\*\\" is not the key of the certificate/);
      expect(serve.alive()).toBe(true);
      expect(await certificateShown(serve.smtpPort!)).toBe(fingerprint(certs.selfSignedWrongName.cert));

      // An unreadable file is no different.
      fs.rmSync(cert);
      process.kill(serve.pid, 'SIGHUP');
      await until(() => serve!.output().includes('cannot be read (ENOENT)'), 'the error line');
      expect(serve.alive()).toBe(true);
      expect(await certificateShown(serve.smtpPort!)).toBe(fingerprint(certs.selfSignedWrongName.cert));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
