import { afterEach, expect, it, vi } from 'vitest';
import { log, redactPath } from '../src/log.ts';

/** What reaches a log line: never a password, never the token of a mailed link. */
afterEach(() => vi.restoreAllMocks());

function logged(fn: () => void): string {
  const lines: string[] = [];
  const level = log.level;
  log.level = 'info';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    fn();
  } finally {
    log.level = level;
  }
  return lines.join('');
}

it('masks the token of an unsubscribe, confirmation or login link in a logged request path', () => {
  const out = logged(() => {
    log.error({ url: '/u/0123456789abcdef0123456789abcdef' }, 'web request failed');
    log.warn({ url: '/login/link/SECRET-LOGIN-TOKEN?next=%2Fadmin%2F' }, 'web request refused');
    log.info({ req: { url: '/confirm/feedfacefeedfacefeedfacefeedface' } }, 'nested');
  });
  expect(out).not.toMatch(/0123456789abcdef|SECRET-LOGIN-TOKEN|feedface/);
  expect(out).toContain('"url":"/u/***"');
  expect(out).toContain('"url":"/login/link/***?next=%2Fadmin%2F"');
  expect(out).toContain('"url":"/confirm/***"');
});

it('leaves other paths as they are', () => {
  expect(redactPath('/lists/dev/2026-11/')).toBe('/lists/dev/2026-11/');
  expect(redactPath('/message-id/u@example.org')).toBe('/message-id/u@example.org');
  expect(redactPath('/u/tok/reenable')).toBe('/u/***/reenable');
});
