/* TLS on both sides: one SecureContext for clients (client_tls_*, pgtide as a TLS server) and one for servers
 * (server_tls_*, pgtide as a TLS client), built at startup and on RELOAD, and the mapping of PgBouncer's protocol and
 * cipher keywords onto Node's options. */

import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Settings } from '../config/params.js';

export interface ClientTls {
  context: tls.SecureContext;
  /** verify-ca / verify-full: a valid client certificate signed by client_tls_ca_file is required. */
  requestCert: boolean;
}

const VERSIONS: readonly tls.SecureVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];
const KEYWORD: Record<string, number> = { 'tlsv1.0': 0, tlsv1: 0, 'tlsv1.1': 1, 'tlsv1.2': 2, 'tlsv1.3': 3 };

/** client_tls_protocols → Node's minVersion/maxVersion (a gap in the list is closed: Node allows only a range). */
export function protocolRange(value: string): { minVersion: tls.SecureVersion; maxVersion: tls.SecureVersion } {
  const words = value.toLowerCase().split(/[\s,:]+/).filter(Boolean);
  let lo = 4;
  let hi = -1;
  for (const w of words) {
    let idx: number[];
    if (w === 'secure') idx = [2, 3];
    else if (w === 'all' || w === 'legacy') idx = [0, 1, 2, 3];
    else if (w in KEYWORD) idx = [KEYWORD[w]!];
    else throw new Error(`invalid TLS protocol "${w}" (use tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, all or secure)`);
    for (const i of idx) {
      lo = Math.min(lo, i);
      hi = Math.max(hi, i);
    }
  }
  if (hi < 0) [lo, hi] = [2, 3];
  return { minVersion: VERSIONS[lo]!, maxVersion: VERSIONS[hi]! };
}

/** client_tls_ciphers: PgBouncer's keywords mean the library defaults; anything else is an OpenSSL list. */
export function cipherList(value: string): string | undefined {
  const v = value.trim();
  if (v === '' || ['default', 'secure', 'fast', 'normal'].includes(v.toLowerCase())) return undefined;
  if (v.toLowerCase() === 'all') return 'ALL';
  return v;
}

/**
 * The OpenSSL cipher string for a side: its TLS 1.2 list (`*_tls_ciphers`) and, when set, its TLS 1.3 suites
 * (`*_tls13_ciphers`), which Node takes in the same string. undefined = Node's defaults.
 */
export function cipherString(tls12: string, tls13: string): string | undefined {
  const base = cipherList(tls12);
  const suites = tls13.trim();
  if (!suites || ['default', 'secure', 'fast', 'normal'].includes(suites.toLowerCase())) return base;
  const older = (base ?? tls.DEFAULT_CIPHERS).split(':').filter((c) => c && !c.startsWith('TLS_'));
  return [...suites.split(/[:,\s]+/).filter(Boolean), ...older].join(':');
}

function readPem(what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${what} "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Build the client TLS context from the settings: null when client_tls_sslmode is disable (then SSLRequest is
 * answered 'N'). As in PgBouncer, any other mode needs a key and a certificate. Throws an Error with a readable message on a bad file or value.
 */
export function buildClientTls(st: Settings): ClientTls | null {
  const mode = st.client_tls_sslmode;
  if (mode === 'disable') return null;
  const keyFile = st.client_tls_key_file;
  const certFile = st.client_tls_cert_file;
  if (!keyFile || !certFile) {
    throw new Error('to allow TLS connections from clients, client_tls_key_file and client_tls_cert_file must be set');
  }
  const requestCert = mode === 'verify-ca' || mode === 'verify-full';
  if (requestCert && !st.client_tls_ca_file) throw new Error(`client_tls_sslmode=${mode} needs client_tls_ca_file`);
  const opts: tls.SecureContextOptions = {
    key: readPem('client_tls_key_file', keyFile),
    cert: readPem('client_tls_cert_file', certFile),
    ...protocolRange(st.client_tls_protocols),
  };
  if (st.client_tls_ca_file) opts.ca = readPem('client_tls_ca_file', st.client_tls_ca_file);
  const ciphers = cipherString(st.client_tls_ciphers, st.client_tls13_ciphers);
  if (ciphers) opts.ciphers = ciphers;
  // client_tls_ecdhcurve: auto (and none, which Node cannot honour for TLS 1.3) keep Node's curves; a name is used
  const curve = st.client_tls_ecdhcurve.trim();
  if (curve && curve.toLowerCase() !== 'auto' && curve.toLowerCase() !== 'none') opts.ecdhCurve = curve;
  // client_tls_dheparams: auto and legacy let OpenSSL pick well-known parameters; none disables DHE
  const dhe = st.client_tls_dheparams.trim().toLowerCase();
  if (dhe === 'auto' || dhe === 'legacy') opts.dhparam = 'auto';
  else if (dhe && dhe !== 'none') throw new Error(`invalid client_tls_dheparams "${st.client_tls_dheparams}" (use none, auto or legacy)`);
  try {
    return { context: tls.createSecureContext(opts), requestCert };
  } catch (err) {
    throw new Error(`client TLS setup failed: ${(err as Error).message}`);
  }
}

/** `TLSv1.3/TLS_AES_256_GCM_SHA384` as PgBouncer logs it (and SHOW CLIENTS shows it). */
export function tlsDescription(sock: tls.TLSSocket): string {
  const c = sock.getCipher();
  return `${sock.getProtocol() ?? 'TLS'}/${c?.standardName ?? c?.name ?? ''}`;
}

export interface ServerTls {
  /** prefer: TLS when the server offers it; require: TLS or no connection; verify-ca/full: and check the certificate. */
  mode: 'prefer' | 'require' | 'verify-ca' | 'verify-full';
  context: tls.SecureContext;
}

/**
 * Build the server TLS context from the server_tls_* settings: null when no SSLRequest is to be sent (disable, and
 * allow, which pgtide treats as plain text: it does not retry a refused plain login with TLS). A key and certificate
 * are optional (client certificate for PostgreSQL); without server_tls_ca_file the system's CAs are used.
 */
export function buildServerTls(st: Settings): ServerTls | null {
  const mode = st.server_tls_sslmode;
  if (mode === 'disable' || mode === 'allow') return null;
  const opts: tls.SecureContextOptions = { ...protocolRange(st.server_tls_protocols) };
  if (st.server_tls_key_file || st.server_tls_cert_file) {
    if (!st.server_tls_key_file || !st.server_tls_cert_file) throw new Error('server_tls_key_file and server_tls_cert_file go together');
    opts.key = readPem('server_tls_key_file', st.server_tls_key_file);
    opts.cert = readPem('server_tls_cert_file', st.server_tls_cert_file);
  }
  if (st.server_tls_ca_file) opts.ca = readPem('server_tls_ca_file', st.server_tls_ca_file);
  const ciphers = cipherString(st.server_tls_ciphers, st.server_tls13_ciphers);
  if (ciphers) opts.ciphers = ciphers;
  try {
    return { mode, context: tls.createSecureContext(opts) };
  } catch (err) {
    throw new Error(`server TLS setup failed: ${(err as Error).message}`);
  }
}
