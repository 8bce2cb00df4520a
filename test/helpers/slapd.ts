/*
 * A real OpenLDAP server (Debian's slapd 2.5) of the test's own: a slapd.conf and an mdb database
 * in a temporary folder, loaded with slapadd before the server starts, listening on a free
 * loopback port. The system's slapd (which the Debian package starts) is neither used nor touched.
 *
 * The directory: dc=example,dc=org with people (ann, bob, a "smith, jr" whose uid needs DN
 * escaping, nomail without an address), a groupOfNames of site administrators (bob), a
 * posixGroup naming bob by memberUid, mallory (uid mallory) whose mail attribute also holds the
 * value "bob", and a service account for search-then-bind. With `tls`, it offers StartTLS and refuses a simple bind
 * over a connection that is not encrypted. It allows unauthenticated binds (a DN with an empty
 * password, RFC 4513 5.1.2), as some servers do, so that a test can show we never make one.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { allThreadsStopped } from './proc.ts';
import { freePort } from './rspamd.ts';
import { until } from './worker-process.ts';

export const SLAPD = '/usr/sbin/slapd';
export const SLAPADD = '/usr/sbin/slapadd';
export const BASE = 'dc=example,dc=org';
export const PEOPLE = `ou=people,${BASE}`;
export const ADMINS_GROUP = `cn=listadmins,ou=groups,${BASE}`;
/** a posixGroup: memberUid bob */
export const POSIX_ADMINS_GROUP = `cn=posixadmins,ou=groups,${BASE}`;
/** uid mallory; her mail attribute holds "bob" beside her address, a value some other entry's uid spells */
export const MALLORY = { uid: 'mallory', password: 'mallory-directory-pw', mail: 'mallory@example.org' };
export const SERVICE_DN = `cn=service,${BASE}`;
export const SERVICE_PASSWORD = 'service-secret-pw';
/** uid → password and address (null: the entry has no mail attribute) */
export const PEOPLE_ENTRIES: Record<string, { password: string; mail: string | null }> = {
  ann: { password: 'ann-directory-pw', mail: 'Ann@Example.org' },
  bob: { password: 'bob-directory-pw', mail: 'bob@example.org' },
  'smith, jr': { password: 'smith-directory-pw', mail: 'smith@example.org' },
  nomail: { password: 'nomail-directory-pw', mail: null },
};

export interface RunningSlapd {
  url: string;
  /** ldaps:// on a second port, with `tls` */
  ldapsUrl: string | null;
  pid: number;
  output(): string;
  /**
   * SIGSTOP: the port still accepts connections (the kernel's backlog), nothing answers. Resolves
   * once every thread of slapd is stopped: kill() returns before a busy thread has stopped, and
   * under load one answered a bind after the signal (a login that should have timed out passed).
   */
  freeze(): Promise<void>;
  thaw(): void;
  stop(): Promise<void>;
}

const dnValue = (v: string) => v.replace(/([,+"\\<>;=])/g, '\\$1');

function ldif(): string {
  const people = Object.entries(PEOPLE_ENTRIES).map(([uid, p]) => [
    `dn: uid=${dnValue(uid)},${PEOPLE}`,
    'objectClass: inetOrgPerson',
    `uid: ${uid}`,
    `cn: ${uid}`,
    `sn: ${uid}`,
    `userPassword: ${p.password}`,
    ...(p.mail ? [`mail: ${p.mail}`] : []),
    '',
  ].join('\n'));
  return [
    `dn: ${BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n`,
    `dn: ${PEOPLE}\nobjectClass: organizationalUnit\nou: people\n`,
    `dn: ou=groups,${BASE}\nobjectClass: organizationalUnit\nou: groups\n`,
    `dn: ${SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: service\nuserPassword: ${SERVICE_PASSWORD}\n`,
    ...people,
    `dn: ${ADMINS_GROUP}\nobjectClass: groupOfNames\ncn: listadmins\nmember: uid=bob,${PEOPLE}\n`,
    `dn: ${POSIX_ADMINS_GROUP}\nobjectClass: posixGroup\ncn: posixadmins\ngidNumber: 5000\nmemberUid: bob\n`,
    `dn: uid=${MALLORY.uid},${PEOPLE}\nobjectClass: inetOrgPerson\nuid: ${MALLORY.uid}\ncn: ${MALLORY.uid}\nsn: ${MALLORY.uid}\nuserPassword: ${MALLORY.password}\nmail: bob\nmail: ${MALLORY.mail}\n`,
  ].join('\n');
}

export interface SlapdOptions {
  /** the loopback address it listens on (default 127.0.0.1) */
  host?: string;
  /** a certificate and key (PEM): StartTLS offered, and simple binds refused without it (security simple_bind=64) */
  tls?: { cert: string; key: string };
}

export async function startSlapd(opts: SlapdOptions = {}): Promise<RunningSlapd> {
  if (!fs.existsSync(SLAPD)) throw new Error(`${SLAPD} is missing: install Debian's slapd package (.ci/run does)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-slapd-'));
  fs.mkdirSync(path.join(dir, 'data'));
  const conf = path.join(dir, 'slapd.conf');
  if (opts.tls) {
    fs.writeFileSync(path.join(dir, 'server.pem'), opts.tls.cert);
    fs.writeFileSync(path.join(dir, 'server.key'), opts.tls.key, { mode: 0o600 });
  }
  fs.writeFileSync(conf, [
    'include /etc/ldap/schema/core.schema',
    'include /etc/ldap/schema/cosine.schema',
    'include /etc/ldap/schema/inetorgperson.schema',
    'include /etc/ldap/schema/nis.schema',
    `pidfile ${path.join(dir, 'slapd.pid')}`,
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    'allow bind_anon_dn',
    ...(opts.tls ? [
      `TLSCertificateFile ${path.join(dir, 'server.pem')}`,
      `TLSCertificateKeyFile ${path.join(dir, 'server.key')}`,
      'security simple_bind=64',
    ] : []),
    'database mdb',
    `suffix "${BASE}"`,
    `rootdn "cn=admin,${BASE}"`,
    `directory ${path.join(dir, 'data')}`,
    'maxsize 10485760',
    'access to attrs=userPassword by anonymous auth by * none',
    'access to * by * read',
    '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'data.ldif'), ldif());
  const added = spawnSync(SLAPADD, ['-f', conf, '-l', path.join(dir, 'data.ldif')], { encoding: 'utf8' });
  if (added.status !== 0) throw new Error(`slapadd failed:\n${added.stdout}${added.stderr}`);

  const port = await freePort();
  const host = opts.host ?? '127.0.0.1';
  const url = `ldap://${host}:${port}`;
  const ldapsUrl = opts.tls ? `ldaps://${host}:${await freePort()}` : null;
  // -d: stay in the foreground (and log to stderr); 'stats' shows each bind and search.
  const child: ChildProcess = spawn(SLAPD, ['-f', conf, '-h', [url, ldapsUrl].filter(Boolean).map((u) => `${u}/`).join(' '), '-d', 'stats'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`slapd exited with ${child.exitCode} before it was ready:\n${output}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (open) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`slapd was not listening within 20 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url, ldapsUrl, pid: child.pid!, output: () => output, stop,
    freeze: async () => {
      child.kill('SIGSTOP');
      await until(() => allThreadsStopped(child.pid!), `every thread of slapd (${child.pid}) to stop after SIGSTOP`, 5000);
    },
    thaw: () => child.kill('SIGCONT'),
  };
}
