// Test certificates made with openssl at test time (nothing secret is committed): a CA, a server certificate for
// localhost / 127.0.0.1 and a client certificate for CN=app, in a temp dir removed by cleanup().

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Certs {
  dir: string;
  /** Path of a file in the dir: ca.crt, server.key, server.crt, client.key, client.crt. */
  f(name: string): string;
  cleanup(): void;
}

/**
 * Make the certificates. `owner`: chown the dir and server key to this uid/gid (PostgreSQL run as `postgres` wants
 * its key file owned by itself, mode 0600); the dir is in /tmp so that user can reach it.
 */
export function makeCerts(owner?: { uid: number; gid: number }): Certs {
  const dir = mkdtempSync('/tmp/pgtide-certs-');
  const f = (name: string): string => join(dir, name);
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=pgtide-test-ca']);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(f('san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext']);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=app']);
  openssl(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2']);
  chmodSync(dir, 0o755);
  for (const n of ['ca.crt', 'server.crt', 'client.crt']) chmodSync(f(n), 0o644);
  chmodSync(f('server.key'), 0o600);
  if (owner) {
    chownSync(dir, owner.uid, owner.gid);
    chownSync(f('server.key'), owner.uid, owner.gid);
  }
  return { dir, f, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
