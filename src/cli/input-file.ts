/* A file a command reads whole (src/read-file.ts), its refusal made the command's one-line error. */

import { InvalidInput } from '../errors.ts';
import { FileRefused, readBoundedFile, type ReadLimit } from '../read-file.ts';

export function readInputFile(file: string, use: ReadLimit): Buffer {
  try {
    return readBoundedFile(file, use);
  } catch (err) {
    if (err instanceof FileRefused) throw new InvalidInput(err.message, err.reason === 'too_big' ? 'file_too_big' : 'bad_file');
    throw err;
  }
}

/** The per-use limits, in one place so that docs/command-line.md can name them all. */
export const INPUT_LIMITS = {
  /** a list's texts (footer, templates): far past any */
  setting: { limit: 1024 * 1024, what: "a setting's file", pipes: true },
  /** a PEM private key: an RSA-8192 key is 6 KB */
  dkimKey: { limit: 64 * 1024, what: 'a DKIM private key', pipes: true },
  /** a Mailman 3 REST JSON (some 100,000 members a page) or a Mailman 2 config_list or list_members output */
  mailman: { limit: 64 * 1024 * 1024, what: 'a Mailman export file', hint: 'give a Mailman 3 roster in pages (?count=…&page=…), Mailman 2 members in several files' },
} satisfies Record<string, ReadLimit>;
