/*
 * multipart/form-data for the one form that uploads a file (members from a CSV file). The body is
 * small (capped) and read whole, then split on its boundary: text fields land in req.body like
 * urlencoded ones, files in req.files. Forms without a file keep using urlencoded.
 */

import express, { type NextFunction, type Request, type Response } from 'express';
import { InvalidInput } from '../../errors.ts';
import { checkBody } from '../request-input.ts';

export interface UploadedFile {
  field: string;
  filename: string;
  contentType: string;
  content: Buffer;
}

declare module 'express-serve-static-core' {
  interface Request {
    files?: UploadedFile[];
  }
}

const MAX_BYTES = 5 * 1024 * 1024;

export function multipartForm() {
  const raw = express.raw({ type: 'multipart/form-data', limit: MAX_BYTES });
  return [
    raw,
    (req: Request, _res: Response, next: NextFunction) => {
      if (!Buffer.isBuffer(req.body)) return next();
      const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(req.get('content-type') ?? '');
      if (!boundary) return next(new InvalidInput('The form was sent without a multipart boundary.'));
      const { fields, files } = parseMultipart(req.body, boundary[1] ?? boundary[2]);
      req.body = fields;
      req.files = files;
      next();
    },
    // The text fields, as for urlencoded forms (app.ts); uploaded files are read by their own parser.
    checkBody,
  ];
}

/** More parts than any form of ours has (a CSV file and a few fields), as urlencoded allows 1,000 fields. */
const MAX_PARTS = 1000;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The parts of a multipart body: text fields (a name sent several times gives an array, in order),
 * and files. Refused with 400: more than MAX_PARTS parts, or a text field that is not UTF-8 (it
 * would be stored with U+FFFD where the bytes were). A file's bytes are its reader's to check.
 */
export function parseMultipart(body: Buffer, boundary: string): { fields: Record<string, string | string[]>; files: UploadedFile[] } {
  // Without a prototype, a field named __proto__ or constructor is a field like any other.
  const fields: Record<string, string | string[]> = Object.create(null);
  const files: UploadedFile[] = [];
  const delimiter = Buffer.from(`--${boundary}`);
  const nextDelimiter = Buffer.from(`\r\n--${boundary}`);
  let parts = 0;
  let pos = body.indexOf(delimiter);
  while (pos >= 0) {
    let start = pos + delimiter.length;
    if (body[start] === 0x2d && body[start + 1] === 0x2d) break; // closing delimiter
    if (body[start] === 0x0d && body[start + 1] === 0x0a) start += 2;
    const next = body.indexOf(nextDelimiter, start);
    if (next < 0) break;
    if (++parts > MAX_PARTS) throw new InvalidInput(`The form has more than ${MAX_PARTS} parts.`, 'bad_form');
    const part = body.subarray(start, next);
    const headEnd = part.indexOf('\r\n\r\n');
    if (headEnd >= 0) {
      // The part's header is ASCII in practice; a file name in Latin-1 (curl and such) is read
      // as Latin-1: it is not used, and the field's name and value are checked as UTF-8 below.
      const head = latin1OrUtf8(part.subarray(0, headEnd));
      const content = part.subarray(headEnd + 4);
      const disposition = /^content-disposition:(.*)$/im.exec(head)?.[1] ?? '';
      const name = /\bname="([^"]*)"/i.exec(disposition)?.[1];
      const filename = /\bfilename="([^"]*)"/i.exec(disposition)?.[1];
      if (name !== undefined) {
        if (filename !== undefined) {
          if (filename !== '' || content.length > 0) {
            files.push({ field: name, filename, contentType: /^content-type:\s*(.*)$/im.exec(head)?.[1]?.trim() ?? 'application/octet-stream', content: Buffer.from(content) });
          }
        } else {
          const value = text(content);
          const prev = fields[name];
          // Pushed, not copied: [...prev, value] for each of many parts of one name was quadratic
          // (20,000 parts: 16 s of a web process, before the CSRF check could refuse them).
          if (prev === undefined) fields[name] = value;
          else if (Array.isArray(prev)) prev.push(value);
          else fields[name] = [prev, value];
        }
      }
    }
    pos = next + 2;
  }
  return { fields, files };
}

/** The text of bytes that are UTF-8 (a byte order mark dropped); null for bytes that are not. */
export function utf8OrNull(bytes: Buffer): string | null {
  try {
    return UTF8.decode(bytes);
  } catch {
    return null;
  }
}

function text(bytes: Buffer): string {
  const t = utf8OrNull(bytes);
  if (t === null) throw new InvalidInput('This form is not UTF-8 text.', 'bad_form');
  return t;
}

function latin1OrUtf8(bytes: Buffer): string {
  return utf8OrNull(bytes) ?? bytes.toString('latin1');
}
