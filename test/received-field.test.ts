import { describe, expect, it } from 'vitest';
import { receivedField } from '../src/mail/received.ts';

const date = new Date('2026-12-02T15:00:00Z');
const by = 'lists.example.org';

describe('the Received line of the hop into listkeeper', () => {
  it('names the HELO, the reverse name and address, our name, the protocol with its TLS, the id and the date', () => {
    const value = receivedField({ ip: '192.0.2.1', helo: 'helo.example', hostname: 'rdns.example', protocol: 'ESMTPS', tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' } }, { by, id: 'abc123-1', date });
    expect(value).toBe('from helo.example (rdns.example [192.0.2.1]) by lists.example.org with ESMTPS (TLS1.3 TLS_AES_256_GCM_SHA384) id abc123-1; Wed, 02 Dec 2026 15:00:00 +0000');
  });

  it('says "unknown" for a client without a reverse name, and ESMTP without TLS details on a clear session', () => {
    expect(receivedField({ ip: '192.0.2.1', helo: 'helo.example', hostname: null, protocol: 'ESMTP' }, { by, date }))
      .toBe('from helo.example (unknown [192.0.2.1]) by lists.example.org with ESMTP; Wed, 02 Dec 2026 15:00:00 +0000');
  });

  it('writes IPv6 clients as IPv6 address literals, and IPv4-mapped addresses as IPv4', () => {
    expect(receivedField({ ip: '2001:DB8::1', helo: 'h.example', protocol: 'LMTP' }, { by, date })).toContain('(unknown [IPv6:2001:db8::1]) by');
    expect(receivedField({ ip: '::ffff:192.0.2.9', helo: 'h.example' }, { by, date })).toContain('(unknown [192.0.2.9]) by');
  });

  it('takes a bare IP address given as HELO as an address literal', () => {
    expect(receivedField({ ip: '192.0.2.1', helo: '192.0.2.1', protocol: 'SMTP' }, { by, date })).toMatch(/^from \[192\.0\.2\.1\] \(unknown \[192\.0\.2\.1\]\) by /);
  });

  it('keeps a HELO that is no domain out of the from-domain, made safe in the comment, so the line still parses', () => {
    const value = receivedField({ ip: '192.0.2.1', helo: 'evil)(by;x\\é', hostname: 'rdns.example', protocol: 'ESMTP' }, { by, date });
    expect(value).toBe('from rdns.example (rdns.example [192.0.2.1] helo=evil??by;x??) by lists.example.org with ESMTP; Wed, 02 Dec 2026 15:00:00 +0000');
    expect(value).toMatch(/^[\x20-\x7e]+$/);
  });

  it('ignores a reverse name that is not a host name, and odd characters in the id and TLS fields', () => {
    const value = receivedField({ ip: '192.0.2.1', helo: 'h.example', hostname: 'bad name\r\nX-Injected: 1', protocol: 'ESMTPS', tls: { protocol: 'TLSv1.2', cipher: 'ECDHE (x) \r\n' } }, { by, id: 'a b;c', date });
    expect(value).toBe('from h.example (unknown [192.0.2.1]) by lists.example.org with ESMTPS (TLS1.2 ECDHE??x????) id abc; Wed, 02 Dec 2026 15:00:00 +0000');
  });

  it('stays one line under 998 octets whatever the client said', () => {
    const long = 'a'.repeat(600);
    const value = receivedField({ ip: '192.0.2.1', helo: `${long}(`, hostname: `${'b'.repeat(63)}.example`, protocol: 'ESMTPS', tls: { protocol: long, cipher: long } }, { by, id: long, date });
    expect(value).not.toMatch(/[\r\n]/);
    expect(Buffer.byteLength(`Received: ${value}\r\n`)).toBeLessThanOrEqual(998);
  });
});
