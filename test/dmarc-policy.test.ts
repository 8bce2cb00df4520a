import { describe, expect, it } from 'vitest';
import { policyOf } from '../src/mail/dmarc.ts';

/** Reading a domain's DMARC record (src/mail/dmarc.ts): whether copies from its authors need From rewritten. */

describe('DMARC policies', () => {
  it('rewrites only for reject or quarantine, with sp= for subdomains', () => {
    expect(policyOf('v=DMARC1; p=reject; rua=mailto:x@y', false)).toBe('reject');
    expect(policyOf('v=DMARC1; p=none', false)).toBe('none');
    expect(policyOf('v=DMARC1; p=reject; sp=none', true)).toBe('none');
    expect(policyOf('v=DMARC1; p=quarantine; pct=0', false)).toBe('none');
    expect(policyOf(null, false)).toBe('none');
  });
});
