/* Where `pgtide bench` connects: a postgres:// URL parsed into host, port, user, password, database and sslmode. */

export type BenchSslMode = 'disable' | 'allow' | 'prefer' | 'require';

export interface BenchTarget {
  /** Host name, IP address, or a unix-socket directory (starts with '/'). */
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  sslmode: BenchSslMode;
  /** URL query parameters that were ignored (e.g. Prisma's schema=public), for a warning. */
  ignored: string[];
}

export class TargetError extends Error {}

const SSLMODES: readonly string[] = ['disable', 'allow', 'prefer', 'require'];
/** Parameters that only matter to ORMs or drivers other than libpq: ignored without fuss. */
const HARMLESS = new Set(['schema', 'connection_limit', 'pool_timeout', 'pgbouncer', 'application_name', 'connect_timeout']);

/**
 * Parse postgres://user:password@host:port/database?sslmode=… (or postgresql://). The password may instead come
 * from `fallbackPassword` (PGPASSWORD). A unix socket is given libpq's way: ?host=/var/run/postgresql.
 */
export function parseTarget(raw: string, fallbackPassword?: string): BenchTarget {
  let url: URL;
  // libpq allows an empty host (postgres://user:pw@/db?host=/socket/dir); WHATWG URLs do not: parse with a stand-in
  const emptyHost = /^postgres(?:ql)?:\/\/(?:[^/?#@]*@)?(?=[/?#]|$)/i.exec(raw);
  try {
    url = new URL(emptyHost ? `${emptyHost[0]}emptyhost.invalid${raw.slice(emptyHost[0].length)}` : raw);
  } catch {
    throw new TargetError(`not a URL: "${redact(raw)}" (expected postgres://user:password@host:port/database)`);
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new TargetError(`not a PostgreSQL URL: "${redact(raw)}" (expected postgres://user:password@host:port/database)`);
  }
  const dec = (s: string, what: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new TargetError(`bad percent-encoding in the URL's ${what}`);
    }
  };
  const params = url.searchParams;
  let host = emptyHost ? '' : dec(url.hostname, 'host');
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1); // IPv6 literal
  host = params.get('host') ?? host;
  if (!host) throw new TargetError('the URL names no host (postgres://user:password@host:port/database, or ?host=/socket/dir)');
  const portText = params.get('port') ?? (url.port || '5432');
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TargetError(`bad port "${portText}" in the URL`);
  const user = params.get('user') ?? dec(url.username, 'user name');
  if (!user) throw new TargetError('the URL names no user (postgres://user:password@host:port/database)');
  const password = params.get('password') ?? (url.password ? dec(url.password, 'password') : fallbackPassword ?? '');
  if (!password) {
    throw new TargetError(`the URL has no password for user "${user}": put it in the URL (postgres://${user}:PASSWORD@…) or in PGPASSWORD; ` +
      'the temporary pgtide needs it for its userlist.txt, and pgbench to log in');
  }
  const path = dec(url.pathname.replace(/^\//, ''), 'database name');
  const database = params.get('dbname') ?? (path || user);
  const sslmode = params.get('sslmode') ?? 'prefer';
  if (!SSLMODES.includes(sslmode)) {
    throw new TargetError(`sslmode=${sslmode} is not supported by pgtide bench (use one of ${SSLMODES.join(', ')}; certificates are not verified)`);
  }
  const known = new Set(['host', 'port', 'user', 'password', 'dbname', 'sslmode']);
  const ignored = [...new Set([...params.keys()].filter((k) => !known.has(k) && !HARMLESS.has(k)))];
  return { host, port, user, password, database, sslmode: sslmode as BenchSslMode, ignored };
}

/** The URL with its password replaced by "***", for messages. */
export function redact(raw: string): string {
  return raw.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@').replace(/([?&]password=)[^&]*/i, '$1***');
}

/** host:port (or the socket path) for messages. */
export function describeTarget(t: BenchTarget): string {
  return t.host.startsWith('/') ? `${t.host}/.s.PGSQL.${t.port}` : `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
}

/** Whether the server is on this machine as far as the address says (loopback or a unix socket). */
export function isLocalAddress(host: string): boolean {
  return host.startsWith('/') || host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
