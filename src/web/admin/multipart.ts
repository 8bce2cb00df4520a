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

export function parseMultipart(body: Buffer, boundary: string): { fields: Record<string, string | string[]>; files: UploadedFile[] } {
  const fields: Record<string, string | string[]> = {};
  const files: UploadedFile[] = [];
  const delimiter = Buffer.from(`--${boundary}`);
  let pos = body.indexOf(delimiter);
  while (pos >= 0) {
    let start = pos + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break; // closing delimiter
    if (body.subarray(start, start + 2).toString() === '\r\n') start += 2;
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`), start);
    if (next < 0) break;
    const part = body.subarray(start, next);
    const headEnd = part.indexOf('\r\n\r\n');
    if (headEnd >= 0) {
      const head = part.subarray(0, headEnd).toString('utf8');
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
          const value = content.toString('utf8');
          const prev = fields[name];
          fields[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
        }
      }
    }
    pos = next + 2;
  }
  return { fields, files };
}
