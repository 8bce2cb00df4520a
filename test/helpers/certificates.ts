/*
 * Certificates for TLS tests, made with the openssl command: a test CA and a certificate it
 * signed for 127.0.0.1 / localhost (and 127.0.0.2, a loopback address the code under test does not
 * treat as local) (good, once the CA is trusted: NODE_EXTRA_CA_CERTS=caFile),
 * and two bad ones: self-signed for another name, and signed by the CA but expired.
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCertificates {
  dir: string;
  /** the CA's certificate (PEM file) to trust */
  caFile: string;
  ca: string;
  good: { key: string; cert: string };
  /** self-signed, for wrong.example: fails verification by issuer and by name */
  selfSignedWrongName: { key: string; cert: string };
  /** issued by the CA for 127.0.0.1, but its validity ended in the past */
  expired: { key: string; cert: string };
  remove(): void;
}

export function makeCertificates(): TestCertificates {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lk-certs-'));
  const file = (name: string) => path.join(dir, name);
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const key = (name: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file(name)]);

  key('ca.key');
  openssl(['req', '-x509', '-new', '-key', file('ca.key'), '-subj', '/CN=listkeeper test CA', '-days', '2', '-out', file('ca.pem')]);

  fs.writeFileSync(file('san.ext'), 'subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\nbasicConstraints=CA:FALSE\n');
  key('good.key');
  openssl(['req', '-new', '-key', file('good.key'), '-subj', '/CN=localhost', '-out', file('good.csr')]);
  openssl(['x509', '-req', '-in', file('good.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', file('san.ext'), '-out', file('good.pem')]);

  key('wrong.key');
  openssl(['req', '-x509', '-new', '-key', file('wrong.key'), '-subj', '/CN=wrong.example', '-addext', 'subjectAltName=DNS:wrong.example', '-days', '2', '-out', file('wrong.pem')]);

  // openssl x509 cannot date a certificate in the past; `openssl ca` can (-startdate/-enddate).
  key('expired.key');
  openssl(['req', '-new', '-key', file('expired.key'), '-subj', '/CN=localhost', '-out', file('expired.csr')]);
  fs.writeFileSync(file('index.txt'), '');
  fs.writeFileSync(file('ca.cnf'), [
    '[ca]', 'default_ca = test', '[test]', `dir = ${dir}`, 'database = $dir/index.txt', 'new_certs_dir = $dir',
    'serial = $dir/ca.srl', 'default_md = sha256', 'policy = any', 'copy_extensions = none', 'unique_subject = no',
    '[any]', 'commonName = supplied', '[ext]', 'subjectAltName=IP:127.0.0.1,DNS:localhost', 'basicConstraints=CA:FALSE', '',
  ].join('\n'));
  openssl(['ca', '-batch', '-config', file('ca.cnf'), '-cert', file('ca.pem'), '-keyfile', file('ca.key'), '-in', file('expired.csr'),
    '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-extensions', 'ext', '-notext', '-out', file('expired.pem')]);

  const read = (name: string) => fs.readFileSync(file(name), 'utf8');
  return {
    dir,
    caFile: file('ca.pem'),
    ca: read('ca.pem'),
    good: { key: read('good.key'), cert: read('good.pem') },
    selfSignedWrongName: { key: read('wrong.key'), cert: read('wrong.pem') },
    expired: { key: read('expired.key'), cert: read('expired.pem') },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
