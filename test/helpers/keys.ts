import fs from 'node:fs';
import path from 'node:path';

/**
 * An RSA private key of 4,104 bits (PKCS#8 PEM), just past RFC 8301's 4,096: the size the panel, the
 * CLI, doctor and delivery must refuse. Kept as a file because generating one takes 1–5 s, and four
 * test files need one. It signs nothing and is published nowhere.
 */
export const OVERSIZED_RSA_KEY = fs.readFileSync(path.join(import.meta.dirname, '../fixtures/keys/rsa-4104.pem'), 'utf8');
