/*
 * Types for the parts of mailauth that list-signing.ts and dkim-header-end.ts use directly
 * (mailauth ships declarations for its public functions only). Checked against mailauth 4.13:
 * lib/tools.js, lib/dkim/body, lib/dkim/message-parser.js (lib/arc has its own).
 */

declare module 'mailauth/lib/tools.js' {
  export interface HeaderRow {
    /** lower-case field name (null for a line that is not a field) */
    key: string | null;
    casedKey?: string;
    /** the field, folded lines joined with CRLF, no line ending at the end */
    line: Buffer;
  }
  export function parseHeaders(buf: Buffer): { parsed: HeaderRow[]; original: Buffer };
  export function getSigningHeaderLines(rows: HeaderRow[], fieldNames: string, verify?: boolean): { keys: string; headers: HeaderRow[] };
  /** a field in relaxed canonical form (RFC 6376 §3.4.2), `suffix` appended */
  export function formatRelaxedLine(line: Buffer | string, suffix?: string): Buffer;
  /** one method's result as a row of Authentication-Results (`dkim=pass (comment) header.d=…`) */
  export function formatAuthHeaderRow(method: string, status: object): string;
  export function formatSignatureHeaderLine(type: 'DKIM' | 'ARC' | 'AS', values: Record<string, unknown>, folded?: boolean): string;
}

declare module 'mailauth/lib/dkim/body/index.js' {
  export function dkimBody(canonicalization: 'relaxed' | 'simple', hashAlgo: string, maxBodyLength: number | false): {
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
    /** canonicalised body bytes hashed so far (all of them without l=) */
    bodyHashedBytes: number;
  };
}

declare module 'mailauth/lib/dkim/message-parser.js' {
  /** the Writable that splits a message into header and body for DKIM (verifier and signer extend it) */
  export class MessageParser {
    processChunk(chunk: Buffer): Promise<void>;
    finish(): Promise<void>;
  }
}
