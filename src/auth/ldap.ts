/*
 * Logging in with a directory account (LDAP simple bind), as ElepHaaS and Postorius' LDAP backend
 * do: the user's DN is made from a template (LDAP_BIND_DN) or found by a search (LDAP_SEARCH_BASE
 * and LDAP_SEARCH_FILTER, optionally as a service account), and the password is the one the
 * directory accepts in a bind as that DN. The account's address is the entry's mail attribute.
 *
 * What a stranger types ends up in a filter and a DN, so both are escaped (RFC 4515, RFC 4514):
 * `*)(uid=*` is a user name with odd characters, never a wildcard. An empty password is refused
 * before any bind: RFC 4513 5.1.2 makes a bind with a DN and no password an "unauthenticated"
 * one that some servers answer with success. Every operation has a deadline. Passwords go over
 * ldaps://, or ldap:// upgraded by StartTLS (certificate checked) unless the directory is local.
 */

import { PEM_LIMIT, readBoundedFile } from '../read-file.ts';
import net from 'node:net';
import tls from 'node:tls';
import { Client, InvalidCredentialsError } from 'ldapts';
import { within } from '../deadline.ts';
import { InvalidInput, TemporaryFailure } from '../errors.ts';

export interface LdapSettings {
  url: string;
  /** `uid={user},ou=people,dc=example,dc=org`: the user's DN, {user} its escaped name */
  bindDn?: string;
  /** search-then-bind: where and how the user's entry is looked for ({user} escaped as a filter value) */
  searchBase?: string;
  searchFilter: string;
  /** the account that searches (anonymous when unset) */
  bindUser?: string;
  bindPassword?: string;
  mailAttribute: string;
  /** DN of a group (groupOfNames, groupOfUniqueNames or posixGroup, by the entry's uid) whose members are site administrators */
  adminGroup?: string;
  timeoutMs: number;
  /** PEM file of CA certificates trusted besides the system's (a private CA) */
  tlsCaFile?: string;
}

/** Who the directory says logged in. admin: null when no admin group is configured. */
export interface LdapIdentity {
  dn: string;
  email: string;
  admin: boolean | null;
}

const MAX_USER = 256;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** RFC 4515 3: a value in a search filter, with `*`, `(`, `)`, `\` and control characters as \XX (UTF-8 stays as it is). */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\u0000-\u001f\u007f]/g, (ch) => `\\${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * RFC 4514 2.4: a value in a DN's attribute, with `"+,;<>\=` escaped by a backslash, a leading
 * space or `#` and a trailing space escaped, and control characters as \XX.
 */
export function escapeDnValue(value: string): string {
  const chars = Array.from(value);
  return chars.map((ch, i) => {
    const code = ch.codePointAt(0)!;
    if (code < 0x20 || code === 0x7f) return `\\${code.toString(16).padStart(2, '0')}`;
    if ('"+,;<>\\='.includes(ch)) return `\\${ch}`;
    if ((i === 0 && (ch === ' ' || ch === '#')) || (i === chars.length - 1 && ch === ' ')) return `\\${ch}`;
    return ch;
  }).join('');
}

/** `{user}` replaced by the escaped name, every time it occurs. */
function fill(template: string, value: string): string {
  return template.split('{user}').join(value);
}

export class LdapLogin {
  private readonly tlsOptions: tls.ConnectionOptions;

  constructor(private readonly s: LdapSettings) {
    const host = new URL(s.url).hostname.replace(/^\[|\]$/g, '');
    // Certificates are always checked (rejectUnauthorized is Node's default); a private CA adds to the system's.
    // host: the name the certificate must carry (StartTLS upgrades a socket, which names none);
    // servername (SNI) only for a name, never an address (RFC 6066).
    this.tlsOptions = {
      host, ...(net.isIP(host) ? {} : { servername: host }),
      ...(s.tlsCaFile ? { ca: [...tls.rootCertificates, readBoundedFile(s.tlsCaFile, PEM_LIMIT).toString('utf8')] } : {}),
    };
  }

  /**
   * The identity of `user` when `password` is theirs; null when the directory says it is not (or
   * there is no such user). Throws InvalidInput for a name or password that is refused unasked,
   * TemporaryFailure when the directory cannot be reached or does not answer in time.
   */
  async authenticate(userInput: string, password: string): Promise<LdapIdentity | null> {
    const user = ldapLoginName(userInput);
    if (!user || user.length > MAX_USER || /[\u0000-\u001f\u007f]/.test(user)) throw new InvalidInput('Enter your user name.', 'ldap_user');
    // Never an unauthenticated bind (RFC 4513 5.1.2): it "succeeds" without proving anything.
    if (password === '') throw new InvalidInput('Enter your password.', 'ldap_password');
    // ldapts speaks TLS from the start whenever tlsOptions are given: only for ldaps://.
    const ldaps = this.s.url.startsWith('ldaps:');
    const client = new Client({ url: this.s.url, timeout: this.s.timeoutMs, connectTimeout: this.s.timeoutMs, ...(ldaps ? { tlsOptions: { ...this.tlsOptions } } : {}) });
    // ldapts' timeouts cover each operation; the whole exchange has one deadline too.
    const work = this.exchange(client, user, password);
    try {
      return await within(work, this.s.timeoutMs * 2, 'the directory (LDAP_URL)');
    } catch (err) {
      if (err instanceof InvalidInput) throw err;
      const message = (err as Error).message;
      if (/timed? ?out|did not answer/i.test(message)) {
        throw new TemporaryFailure(`The directory did not answer within ${this.s.timeoutMs / 1000} s (LDAP_TIMEOUT); try again later.`, 'ldap_timeout');
      }
      // What went wrong (an address, a certificate) is for the log, not for a stranger's page.
      throw Object.assign(new TemporaryFailure('The directory could not be reached; try again later.', 'ldap_unavailable'), { cause: err });
    } finally {
      void client.unbind().catch(() => undefined);
    }
  }

  private async exchange(client: Client, user: string, password: string): Promise<LdapIdentity | null> {
    // A password crosses the network only encrypted: ldaps://, or ldap:// with StartTLS unless
    // the directory is on this machine.
    const url = new URL(this.s.url);
    // A copy: startTLS writes the socket it upgrades into the options it is given.
    if (url.protocol === 'ldap:' && !LOOPBACK.has(url.hostname)) await client.startTLS({ ...this.tlsOptions });
    let dn: string;
    if (this.s.bindDn) {
      dn = fill(this.s.bindDn, escapeDnValue(user));
    } else {
      if (this.s.bindUser) await client.bind(this.s.bindUser, this.s.bindPassword ?? '');
      const { searchEntries } = await client.search(this.s.searchBase!, {
        scope: 'sub', filter: fill(this.s.searchFilter, escapeFilterValue(user)), attributes: ['dn'], sizeLimit: 2, timeLimit: Math.ceil(this.s.timeoutMs / 1000),
      }).catch((err: Error) => {
        // More than one entry for a name is a directory we cannot log into safely.
        if (err.name === 'SizeLimitExceededError') return { searchEntries: [{ dn: '' }, { dn: '' }] };
        throw err;
      });
      if (searchEntries.length !== 1) return null;
      dn = searchEntries[0].dn;
    }
    try {
      await client.bind(dn, password);
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return null;
      // No such entry (32) from some servers for a DN made from a template: the same as a wrong password.
      if ((err as { code?: number }).code === 32) return null;
      throw err;
    }
    const { email, uids } = await this.entryOf(client, dn);
    if (!email) throw new InvalidInput(`The directory has no address (${this.s.mailAttribute}) for this user, so no account can be chosen.`, 'ldap_no_mail');
    const admin = this.s.adminGroup ? await this.isMember(client, dn, uids) : null;
    return { dn, email, admin };
  }

  /** The entry's address (the first value of the mail attribute that has an @) and its uid values. */
  private async entryOf(client: Client, dn: string): Promise<{ email: string | null; uids: string[] }> {
    const { searchEntries } = await client.search(dn, { scope: 'base', filter: '(objectClass=*)', attributes: [this.s.mailAttribute, 'uid'], timeLimit: Math.ceil(this.s.timeoutMs / 1000) });
    const entry = searchEntries[0];
    if (!entry) return { email: null, uids: [] };
    const values = (name: string) => {
      const key = Object.keys(entry).find((k) => k.toLowerCase() === name.toLowerCase());
      const v = key ? entry[key] : [];
      return (Array.isArray(v) ? v : [v]).map((x) => x.toString());
    };
    return { email: values(this.s.mailAttribute).find((v) => v.includes('@')) ?? null, uids: values('uid').filter(Boolean) };
  }

  /**
   * Whether the group entry names the user: member / uniqueMember (the DN) or memberUid (RFC 2307:
   * a uid of the entry, never the name typed, which the search filter may match in another
   * attribute, an address or a cn, that some other person's uid spells).
   */
  private async isMember(client: Client, dn: string, uids: string[]): Promise<boolean> {
    const byUid = uids.map((u) => `(memberUid=${escapeFilterValue(u)})`).join('');
    const filter = `(|(member=${escapeFilterValue(dn)})(uniqueMember=${escapeFilterValue(dn)})${byUid})`;
    try {
      const { searchEntries } = await client.search(this.s.adminGroup!, { scope: 'base', filter, attributes: ['dn'], timeLimit: Math.ceil(this.s.timeoutMs / 1000) });
      return searchEntries.length > 0;
    } catch (err) {
      // A group that does not exist (or that the user may not read) has no members we can see.
      if ((err as { code?: number }).code === 32) return false;
      throw err;
    }
  }
}

/**
 * A directory user name as the directory compares it (RFC 4518 string preparation, as OpenLDAP and
 * Active Directory match uid and DNs): NFKC, case folded, without default-ignorable characters
 * (zero-width spaces and joiners), and with a run of spaces inside as one space (RFC 4518 2.6.1,
 * insignificant space handling: "smith,   jr" binds as "smith, jr"). "ａnn" and "ann\u200b" are
 * ann there, so they are ann here too: the login limits count them as one name, and the directory
 * is asked the one name.
 */
export function ldapLoginName(input: string): string {
  return input.normalize('NFKC').replace(/\p{Default_Ignorable_Code_Point}/gu, '').toLowerCase().trim().replace(/ {2,}/g, ' ');
}
