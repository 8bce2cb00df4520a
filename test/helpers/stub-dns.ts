/*
 * A DNS server on loopback for tests (DNS is the edge of the world we stub): answers TXT, MX, A
 * and AAAA from a table the test fills, NXDOMAIN for every other name, over UDP. Child processes
 * (serve, the CLI) reach it through DNS_SERVERS; in-process code can use stubResolvers() instead.
 * PTR queries get NXDOMAIN: a client has no reverse name in tests.
 */

import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { Resolvers } from '../../src/dns.ts';

export interface StubRecords {
  txt?: string[];
  mx?: { exchange: string; priority: number }[];
  a?: string[];
  aaaa?: string[];
  /** the name's server fails (SERVFAIL) for every type: a lookup that fails for the time being */
  servfail?: boolean;
}

type RecordType = Exclude<keyof StubRecords, 'servfail'>;

const TYPES: Record<number, RecordType> = { 16: 'txt', 15: 'mx', 1: 'a', 28: 'aaaa' };

/**
 * The SPF record the suite's stub publishes for every domain nobody set (global-setup.ts): mail
 * from loopback passes SPF for any envelope sender, as a domain's own server would in production,
 * so a test post from 127.0.0.1 whose envelope domain is From's authenticates and aligns.
 */
export const LOOPBACK_SPF = 'v=spf1 ip4:127.0.0.0/8 ip6:::1 -all';

export interface StubOptions {
  /** TXT answered for a host name (not _dmarc., _domainkey. …) that has no records set */
  defaultSpf?: string;
}

/** The default SPF record for `name`, when it is a host name with nothing set. */
function fallbackTxt(name: string, records: Map<string, StubRecords>, opts: StubOptions): string[] | null {
  if (!opts.defaultSpf || records.has(name) || name.split('.').some((label) => label.startsWith('_'))) return null;
  return [opts.defaultSpf];
}

export class StubDns {
  readonly records = new Map<string, StubRecords>();
  /** names asked for, in order (lower case, with the record type) */
  readonly asked: string[] = [];
  private socket = dgram.createSocket('udp4');

  constructor(private readonly opts: StubOptions = {}) {}

  async start(): Promise<string> {
    this.socket.on('message', (msg, rinfo) => {
      try {
        this.socket.send(this.answer(msg), rinfo.port, rinfo.address);
      } catch {
        // a malformed query gets no answer, as from a real server that drops it
      }
    });
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(this.socket.address() as AddressInfo).port}`;
  }

  set(name: string, records: StubRecords): void {
    this.records.set(name.toLowerCase().replace(/\.$/, ''), records);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private answer(q: Buffer): Buffer {
    let off = 12;
    const labels: string[] = [];
    while (q[off] !== 0) {
      labels.push(q.subarray(off + 1, off + 1 + q[off]).toString('latin1'));
      off += q[off] + 1;
    }
    const qtype = q.readUInt16BE(off + 1);
    const question = q.subarray(12, off + 5);
    const name = labels.join('.').toLowerCase();
    this.asked.push(`${name}/${TYPES[qtype] ?? qtype}`);
    const fallback = TYPES[qtype] === 'txt' ? fallbackTxt(name, this.records, this.opts) : null;
    const entry = this.records.get(name) ?? (fallback ? { txt: fallback } : undefined);
    const kind = TYPES[qtype];
    const rdatas = entry && kind && !entry.servfail ? rdata(kind, entry) : [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(q.readUInt16BE(0), 0);
    // QR, opcode 0, AA, RD copied, RA; rcode NXDOMAIN when the name has no records at all, SERVFAIL when asked to.
    header.writeUInt16BE(0x8400 | (q[2] & 0x01) << 8 | 0x80 | (entry?.servfail ? 2 : entry ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(rdatas.length, 6);
    const answers = rdatas.map((d) => {
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(d.length, 10);
      return Buffer.concat([rr, d]);
    });
    return Buffer.concat([header, question, ...answers]);
  }
}

function rdata(kind: RecordType, r: StubRecords): Buffer[] {
  switch (kind) {
    case 'txt':
      return (r.txt ?? []).map((t) => {
        const bytes = Buffer.from(t, 'utf8');
        const parts: Buffer[] = [];
        for (let i = 0; i < bytes.length || i === 0; i += 255) {
          const chunk = bytes.subarray(i, i + 255);
          parts.push(Buffer.from([chunk.length]), chunk);
          if (bytes.length === 0) break;
        }
        return Buffer.concat(parts);
      });
    case 'mx':
      return (r.mx ?? []).map((m) => {
        const pref = Buffer.alloc(2);
        pref.writeUInt16BE(m.priority);
        return Buffer.concat([pref, encodeName(m.exchange)]);
      });
    case 'a':
      return (r.a ?? []).map((ip) => Buffer.from(ip.split('.').map(Number)));
    case 'aaaa':
      return [];
  }
}

function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}

/** The same table as in-process resolvers (setResolvers), for tests that do not spawn processes. */
export function stubResolvers(records: Map<string, StubRecords>, opts: StubOptions = {}): Partial<Resolvers> {
  const find = (name: string, type?: string) => {
    const key = name.toLowerCase().replace(/\.$/, '');
    const fallback = type === 'TXT' ? fallbackTxt(key, records, opts) : null;
    const r = records.get(key) ?? (fallback ? { txt: fallback } : undefined);
    if (!r) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    if (r.servfail) throw Object.assign(new Error(`queryTxt ESERVFAIL ${name}`), { code: 'ESERVFAIL' });
    return r;
  };
  const nodata = (name: string) => Object.assign(new Error(`ENODATA ${name}`), { code: 'ENODATA' });
  return {
    txt: async (name) => {
      const t = find(name, 'TXT').txt;
      if (!t?.length) throw nodata(name);
      return t.map((s) => [s]);
    },
    mx: async (name) => {
      const m = find(name).mx;
      if (!m?.length) throw nodata(name);
      return m;
    },
    resolve: async (name, rrtype) => {
      const r = find(name, rrtype);
      const v = rrtype === 'TXT' ? r.txt?.map((s) => [s]) : rrtype === 'MX' ? r.mx : rrtype === 'A' ? r.a : rrtype === 'AAAA' ? r.aaaa : undefined;
      if (!v?.length) throw nodata(name);
      return v;
    },
  };
}
