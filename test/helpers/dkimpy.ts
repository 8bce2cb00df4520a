/*
 * Debian's dkimpy and authheaders (python3-dkim, python3-authheaders) verifying a message, from
 * vitest: test/helpers/dkimpy-verify.py reads the message on stdin and the TXT records its DNS
 * function serves as JSON. /usr/bin/python3, not the python3 on PATH (pyenv's, without them).
 */

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';

export interface DkimpyResult {
  /** dkim.verify: the topmost DKIM-Signature */
  dkim_verify: boolean;
  /** every DKIM-Signature, top first */
  dkim: { d: string; s: string; h: string; valid: boolean }[];
  /** dkim.arc_verify */
  arc: { cv: string; reason: string; sets: { instance: number; cv: string; ams_valid: boolean; as_valid: boolean }[] };
  authentication_results: string;
}

const script = path.join(import.meta.dirname, 'dkimpy-verify.py');

export function dkimpyVerify(raw: Buffer, records: Record<string, string>): Promise<DkimpyResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', [script, JSON.stringify(records)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`dkimpy-verify exited ${code}: ${Buffer.concat(err).toString()}`));
      resolve(JSON.parse(Buffer.concat(out).toString()) as DkimpyResult);
    });
    child.stdin.end(raw);
  });
}

/** A key pair and the TXT record that publishes it. */
export function testKey(bits = 2048): { pem: string; txt: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: bits });
  return {
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    txt: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`,
  };
}
